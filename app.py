"""WSGI entry point: `gunicorn app:app`. Builds the app, then does what a serving process does once."""

from jollyjet import create_app
from jollyjet.seed import seed_if_enabled

app = create_app()
seed_if_enabled(app)
