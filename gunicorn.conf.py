"""gunicorn settings the command line does not carry; gunicorn reads ./gunicorn.conf.py by itself."""

from jollyjet.gunicorn_hooks import pre_request

__all__ = ["pre_request"]
