"""The API docs page, loaded by a real headless Chromium from a real server: every operation is rendered."""

from __future__ import annotations

import re

import pytest

from jollyjet import create_app
from tests.conftest import make_settings
from tests.support.chromium import rendered_dom, served

pytestmark = pytest.mark.browser


def test_chromium_renders_every_operation_of_the_document() -> None:
    app = create_app(make_settings())
    document = app.test_client().get("/api/openapi.json").get_json()
    expected = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item if method != "parameters"
    }
    with served(app) as base_url:
        dom = rendered_dom(f"{base_url}/api/docs")
    # Swagger UI writes one block per operation: its method, then its path.
    rendered = set(
        re.findall(
            r'opblock-summary-method">([A-Z]+)</span>.*?data-path="([^"]+)"',
            dom,
            flags=re.S,
        )
    )
    assert rendered == expected, (sorted(expected - rendered), len(dom))
    assert "JollyJet catalog API" in dom
