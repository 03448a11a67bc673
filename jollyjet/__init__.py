"""JollyJet product catalog service."""

from jollyjet.app_factory import create_app

__all__ = ["create_app"]
