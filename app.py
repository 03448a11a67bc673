"""WSGI entry point: `gunicorn app:app`. Builds the app, then does what a serving process does once."""

from jollyjet import create_app
from jollyjet.job_runner import log_job_runner
from jollyjet.seed import seed_if_enabled
from jollyjet.services import services_of

app = create_app()
seed_if_enabled(app)
log_job_runner(services_of(app).settings, starts_threads=False)
