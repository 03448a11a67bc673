"""WSGI entry point: `gunicorn app:app`."""

from jollyjet import create_app

app = create_app()
