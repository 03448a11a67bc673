"""WSGI entry point (`gunicorn app:app`) and the CLI's app (`flask --app app <command>`, jollyjet/commands.py)."""

from jollyjet import create_app
from jollyjet.extensions import services_of
from jollyjet.jobs import log_job_runner

app = create_app()
log_job_runner(services_of(app).settings, starts_threads=False)
