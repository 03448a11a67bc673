"""Unbound Flask extensions; create_app binds them.

flask-smorest's Api is not here: it holds one app's OpenAPI spec, so the factory
makes one per app (tests build many apps in one process).
"""

from flask_caching import Cache

# Flask-Caching keeps each app's backend in app.extensions, so one object serves every app.
flask_cache = Cache()
