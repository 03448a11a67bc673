"""WSGI entry point (`gunicorn app:app`) and the CLI's app (`flask --app app <command>`, jollyjet/commands.py)."""

from jollyjet import create_app
from jollyjet.jobs import log_job_runner
from jollyjet.services import services_of

app = create_app()
log_job_runner(services_of(app).settings, starts_threads=False)
