"""Monitoring: Prometheus metrics, the cache statistics endpoint's figures, structured logs.

One rule keeps metrics exact across processes: prometheus-client decides at import
time whether values live in memory or in files shared by the processes of one
server (multiprocess mode, PROMETHEUS_MULTIPROC_DIR). So nothing that importing the
service pulls in imports prometheus_client; the modules that do are imported by
`setup.register_monitoring`, which runs inside create_app, after the gunicorn config
(`jollyjet/monitoring/gunicorn_config.py`) or the Celery entry point (`tasks.app`)
has chosen the directory. tests/unit/test_monitoring_imports.py keeps this true.
"""
