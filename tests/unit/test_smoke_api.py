"""The basic create/read/list/update/delete flow through the HTTP API."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.support.factories import product_payload


def test_create_read_update_delete(client: FlaskClient, auth: dict[str, str]) -> None:
    created = client.post("/api/v1/products", json=product_payload(price="12.50"), headers=auth)
    assert created.status_code == 201, created.json
    body = created.json
    assert body["price"] == "12.50" and body["version"] == 1
    assert created.headers["Location"].endswith(f"/api/v1/products/{body['id']}")
    assert created.headers["ETag"] == '"v1"'

    first = client.get(f"/api/v1/products/{body['id']}")
    assert first.status_code == 200 and first.headers["X-Cache"] == "HIT"  # written through on create

    patched = client.patch(f"/api/v1/products/{body['id']}", json={"stock": 9}, headers={**auth, "If-Match": '"v1"'})
    assert patched.status_code == 200 and patched.json["version"] == 2 and patched.json["stock"] == 9

    stale = client.patch(f"/api/v1/products/{body['id']}", json={"stock": 1}, headers={**auth, "If-Match": '"v1"'})
    assert stale.status_code == 412

    deleted = client.delete(f"/api/v1/products/{body['id']}", headers=auth)
    assert deleted.status_code == 204
    assert client.get(f"/api/v1/products/{body['id']}").status_code == 404
