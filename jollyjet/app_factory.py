"""The application factory: a short list of named steps.

Building an app connects to no server and writes nothing: the MongoDB and Redis
clients connect on first use, and what a serving process does once at start-up
(embedded worker threads, the embedded demo catalog) is its entry point's business
(app.py, `python -m jollyjet`). What an operator runs once (seeding, indexes) is a
command of `flask --app app` (jollyjet/commands.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import FunctionType
from typing import Any

from flask import Flask
from flask_smorest import Api

from jollyjet import jobs
from jollyjet.api_docs import register_docs_page
from jollyjet.commands import register_commands
from jollyjet.db import connect_mongo
from jollyjet.errors import JsonErrorApi, register_error_handlers
from jollyjet.http_headers import register_http_headers
from jollyjet.jobs import celery_init_app
from jollyjet.monitoring_settings import LogFormat
from jollyjet.openapi_contract import register_contract
from jollyjet.ops.admin import blp as admin_blp
from jollyjet.ops.admin import init_ops, metrics_blp, stats_blp
from jollyjet.ops.health import blp as health_blp
from jollyjet.ops.logs import configure_logging as configure_log_output
from jollyjet.ops.metrics import QueryCounter
from jollyjet.products.views import blp as products_blp
from jollyjet.rate_limits import register_rate_limits
from jollyjet.services import EXTENSION, Services
from jollyjet.settings import Environment, Settings, load_settings
from jollyjet.wiring import build_services

log = logging.getLogger(__name__)
DEV_TOKEN = "dev-token"  # noqa: S105 - a documented, well-known development-only token


class _Flask(Flask):
    """Flask that checks each plain function once, not on every call, for being a coroutine.

    Flask asks `ensure_sync` about every hook and view of every request (five per cached
    read here), and each answer costs an `inspect` walk; a function's answer never changes.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync_functions: set[FunctionType] = set()

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        if type(func) is FunctionType and func in self._sync_functions:
            return func
        checked = super().ensure_sync(func)
        if checked is func and type(func) is FunctionType:
            self._sync_functions.add(func)
        return checked


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    """Build the WSGI app from settings (or the environment); services are built from them unless given."""
    settings = settings or load_settings()
    configure_logging(settings)
    app = _Flask("jollyjet")
    configure_app(app, settings)
    connect_mongo(settings, [QueryCounter()])
    services = register_services(app, settings, services)
    register_jobs(app, settings, services)
    register_docs_page(app)
    api = register_api(app)
    register_contract(api, app)
    register_blueprints(api)
    register_error_handlers(app)
    register_http_headers(app, settings)
    init_ops(app, settings, services)
    # After monitoring: its before_request hook must run first, or a 429 would go unmeasured.
    register_rate_limits(app, settings)
    register_commands(app)
    return app


def configure_logging(settings: Settings) -> None:
    """Log lines to stderr: JSON in production (or JOLLYJET_LOG_FORMAT=json), readable otherwise; secrets redacted."""
    json_lines = settings.log_format is LogFormat.JSON or (
        settings.log_format is LogFormat.AUTO and settings.env is Environment.PRODUCTION
    )
    secrets = [*settings.api_tokens, DEV_TOKEN] if settings.env is not Environment.PRODUCTION else settings.api_tokens
    configure_log_output(settings.log_level, json_lines, secrets)


def api_tokens(settings: Settings) -> tuple[str, ...]:
    """Configured tokens; outside production, a well-known development token when none is set."""
    if settings.api_tokens or settings.env is Environment.PRODUCTION:
        return settings.api_tokens
    log.warning("JOLLYJET_API_TOKENS is not set: writes accept the development token %r", DEV_TOKEN)
    return (DEV_TOKEN,)


def configure_app(app: Flask, settings: Settings) -> None:
    """Flask and flask-smorest configuration derived from settings."""
    app.config.update(
        TESTING=settings.env is Environment.TESTING,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        API_TITLE="JollyJet catalog API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        JOLLYJET_API_TOKENS=api_tokens(settings),
        JOLLYJET_MAX_PAGE=settings.max_page,
        JOLLYJET_MAX_PAGE_SIZE=settings.max_page_size,
    )


def register_services(app: Flask, settings: Settings, services: Services | None) -> Services:
    """Repositories, cache and service (built from settings unless given), reachable as current_services()."""
    services = services or build_services(settings)
    app.extensions[EXTENSION] = services
    return services


def register_jobs(app: Flask, settings: Settings, services: Services) -> None:
    """The Celery app (app.extensions["celery"]); after a Redis outage, enqueue the repair job at once."""
    celery = celery_init_app(app, settings)
    cache = services.cache
    if cache is None or not settings.repair_enabled:
        return

    def enqueue_repair() -> None:
        try:
            celery.send_task(jobs.REPAIR)
        except Exception:  # the broker may be down too; beat runs the repair anyway
            log.warning("could not enqueue the cache repair after Redis recovered", exc_info=True)

    # In a thread: the listener runs inside the request that closed the breaker, and a
    # slow or dead broker must not hold that request up.
    cache.breaker.on_recover.append(lambda: threading.Thread(target=enqueue_repair, daemon=True).start())


def register_api(app: Flask) -> Api:
    """flask-smorest's Api. One per app: it holds the app's OpenAPI spec, so tests
    building many apps must not share it."""
    api = JsonErrorApi(app)
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    return api


def register_blueprints(api: Api) -> None:
    """Every blueprint, through the Api so each appears in the OpenAPI document."""
    api.register_blueprint(products_blp)
    api.register_blueprint(admin_blp)
    api.register_blueprint(health_blp)
    api.register_blueprint(stats_blp)
    api.register_blueprint(metrics_blp)
