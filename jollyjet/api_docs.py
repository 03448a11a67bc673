"""The API docs page at /api/docs: Swagger UI from the swagger-ui-bundle package, no CDN.

flask-smorest renders the page; its scripts and styles are served from the files the
pinned `swagger-ui-bundle` wheel installs, so the page works offline and behind
firewalls, and its version changes only with the lock file.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, send_from_directory
from swagger_ui_bundle import swagger_ui_path

DOCS_PATH = "docs"  # under OPENAPI_URL_PREFIX (/api)
ASSETS_URL = "/api/docs/assets/"
ASSET_MAX_AGE_S = 3600

assets = Blueprint("api_docs_assets", __name__)


@assets.get(f"{ASSETS_URL}<path:filename>")
def asset(filename: str) -> Response:
    """One Swagger UI file (send_from_directory refuses paths outside the bundle)."""
    return send_from_directory(str(swagger_ui_path), filename, max_age=ASSET_MAX_AGE_S)


def register_docs_page(app: Flask) -> None:
    """Configure flask-smorest's Swagger UI page and serve its assets. Call before the Api is made."""
    app.config.update(OPENAPI_SWAGGER_UI_PATH=DOCS_PATH, OPENAPI_SWAGGER_UI_URL=ASSETS_URL)
    app.register_blueprint(assets)
