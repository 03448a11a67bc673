"""The docs page and every file it loads come from this service (swagger-ui-bundle), never a CDN."""

from __future__ import annotations

import re

from flask.testing import FlaskClient


def test_docs_page_loads_only_local_assets(client: FlaskClient) -> None:
    page = client.get("/api/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(urls) >= 3, urls  # stylesheet, preset, bundle
    for url in urls:
        assert url.startswith("/api/docs/assets/"), url  # no http(s):// host: nothing from a CDN
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.data) > 1000, url
    assert '"/api/openapi.json"' in html


def test_asset_paths_cannot_leave_the_bundle(client: FlaskClient) -> None:
    for path in ("../__init__.py", "..%2F__init__.py", "nope.js", "..%2F..%2F..%2Fswagger_ui_bundle%2F__init__.py"):
        assert client.get(f"/api/docs/assets/{path}").status_code == 404, path
    # A doubled slash is merged by a redirect that stays inside the assets.
    response = client.get("/api/docs/assets//etc/passwd", follow_redirects=True)
    assert response.status_code == 404 and response.request.path == "/api/docs/assets/etc/passwd"
