"""The application factory: explicit settings, the OpenAPI document, and nothing done at import time."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from flask import Flask

from jollyjet import create_app
from jollyjet.app_factory import build_services
from jollyjet.extensions import services_of
from jollyjet.products.record import ProductDocument
from jollyjet.settings import DEV_TOKEN
from tests.conftest import TOKEN, make_app, make_settings
from tests.support.api import PRODUCTS, assert_json_error
from tests.support.factories import product_payload
from tests.support.fake_cache import FakeCacheBackend
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_comes_from_the_settings_given() -> None:
    settings = make_settings(max_body_bytes=2048, max_page=7, max_page_size=9)
    app = make_app(settings, cache_backend=FakeCacheBackend())
    assert app.config["TESTING"] is True
    assert app.config["MAX_CONTENT_LENGTH"] == 2048
    assert (app.config["JOLLYJET_MAX_PAGE"], app.config["JOLLYJET_MAX_PAGE_SIZE"]) == (7, 9)
    assert app.config["JOLLYJET_API_TOKENS"] == (TOKEN,)
    assert services_of(app).settings is settings


def test_explicit_settings_are_not_reread_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings()
    monkeypatch.setenv("JOLLYJET_ENV", "not-an-environment")
    monkeypatch.setenv("REDIS_URL", "http://not-redis")
    client = make_app(settings, cache_backend=FakeCacheBackend()).test_client()
    assert client.get(PRODUCTS).status_code == 200


def test_apps_do_not_share_configuration() -> None:
    small = make_app(make_settings(max_page_size=2), cache_backend=FakeCacheBackend()).test_client()
    default = make_app(make_settings(), cache_backend=FakeCacheBackend()).test_client()
    assert_json_error(small.get(f"{PRODUCTS}?page_size=3"), 422, "must be at most 2")
    assert default.get(f"{PRODUCTS}?page_size=3").status_code == 200


def test_building_needs_no_server() -> None:
    """Unreachable MongoDB and Redis: the app is built, and liveness answers."""
    port = free_port()
    settings = make_settings(mongodb_uri=f"mongodb://127.0.0.1:{port}/x", redis_url=f"redis://127.0.0.1:{port}/0")
    app = create_app(settings)
    assert app.test_client().get("/health/live").get_json() == {"status": "ok"}


def test_development_without_tokens_accepts_the_dev_token() -> None:
    app = make_app(make_settings(env="development", api_tokens_raw=""), cache_backend=FakeCacheBackend())
    response = app.test_client().post(
        PRODUCTS, json=product_payload(), headers={"Authorization": f"Bearer {DEV_TOKEN}"}
    )
    assert response.status_code == 201


def test_the_dev_token_is_refused_once_tokens_are_configured(app: Flask) -> None:
    response = app.test_client().post(
        PRODUCTS, json=product_payload(), headers={"Authorization": f"Bearer {DEV_TOKEN}"}
    )
    assert_json_error(response, 401)


def test_building_and_serving_create_no_index_and_seed_nothing() -> None:
    # create_app, not make_app: no release phase ran (make_app stands for one that did).
    settings = make_settings()
    app = create_app(settings, build_services(settings, cache_backend=FakeCacheBackend()))
    client = app.test_client()
    assert client.get(f"{PRODUCTS}/count").get_json() == {"count": 0}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post(PRODUCTS, json=product_payload(), headers=headers).status_code == 201
    # Indexes are `flask --app app ensure-indexes`' business (the release phase), not a first write's.
    assert list(ProductDocument._get_collection().index_information()) == ["_id_"]
    assert client.get(f"{PRODUCTS}/count").get_json() == {"count": 1}


def test_openapi_document_lists_the_product_api(app: Flask) -> None:
    response = app.test_client().get("/api/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["info"]["title"] == "JollyJet catalog API" and spec["openapi"] == "3.0.3"
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    paths = spec["paths"]
    assert {"/api/v1/products", "/api/v1/products/count", "/api/v1/products/{product_id}", "/api/v1/categories"} <= set(
        paths
    )
    product_paths = {
        path: item for path, item in paths.items() if path.startswith(("/api/v1/products", "/api/v1/categories"))
    }
    secured = {
        (path, method) for path, item in product_paths.items() for method, op in item.items() if "security" in op
    }
    assert secured == {
        ("/api/v1/products", "post"),
        ("/api/v1/products/{product_id}", "put"),
        ("/api/v1/products/{product_id}", "patch"),
        ("/api/v1/products/{product_id}", "delete"),
    }
    for path, method in secured:
        assert paths[path][method]["security"] == [{"bearerAuth": []}]
    listing = paths["/api/v1/products"]["get"]
    assert listing["summary"] == "List products with filters, sorting and pagination."
    assert {p["name"] for p in listing["parameters"]} >= {"category", "q", "sort", "page", "page_size"}
    assert {p["name"] for p in paths["/api/v1/products/count"]["get"]["parameters"]}.isdisjoint({"sort", "page"})


_IMPORT_EVERYTHING = textwrap.dedent(
    """
    import importlib, pkgutil, socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"network connection at import time: {args!r}")

    socket.socket.connect = refuse
    socket.create_connection = refuse

    import jollyjet
    names = [m.name for m in pkgutil.walk_packages(jollyjet.__path__, "jollyjet.")]
    for name in names:
        importlib.import_module(name)
    print(len(names))
    """
)


def test_importing_the_package_connects_to_nothing_and_reads_no_settings() -> None:
    """Every jollyjet module imports with no network and with settings that would not validate."""
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "JOLLYJET_ENV": "production",  # would demand real servers and tokens
        "MONGODB_URI": f"mongodb://127.0.0.1:{port}/x",
        "REDIS_URL": "http://not-a-redis-url",
        "JOLLYJET_CACHE_PRODUCT_TTL_S": "abc",
    }
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_EVERYTHING], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 20  # the walk really found the package's modules
