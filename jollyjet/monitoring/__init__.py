"""Monitoring: metric definitions, the request hook, the MongoDB command listener, structured logs.

One rule keeps metrics exact across processes: prometheus-client decides at import
time whether values live in memory or in files shared by the processes of one
server (multiprocess mode, PROMETHEUS_MULTIPROC_DIR). So nothing that importing the
service pulls in imports prometheus_client; the modules that do are imported inside
the functions of `setup.py`, which run when services or an app are built: after the
gunicorn config (`gunicorn.conf.py`) or the Celery entry point (`tasks.app`) has
chosen the directory. tests/unit/test_metrics.py keeps this true.
"""
