"""The stored product body: the API body itself, served from a hit as stored, and its checks."""

from __future__ import annotations

import orjson
from flask import Flask
from flask.testing import FlaskClient

from jollyjet.extensions import services_of
from jollyjet.products.record import json_array, names, parse, product_to_api, render
from tests.conftest import TOKEN
from tests.support.api import PRODUCTS
from tests.support.factories import product_payload
from tests.support.fake_cache import FakeCacheBackend, write_entry

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _create(client: FlaskClient, **overrides: object) -> dict[str, object]:
    response = client.post(PRODUCTS, json=product_payload(**overrides), headers=AUTH)
    assert response.status_code == 201, response.get_data()
    created: dict[str, object] = response.get_json()
    return created


def test_the_stored_bytes_are_the_api_body_and_decode_back_to_the_record(app: Flask, client: FlaskClient) -> None:
    created = _create(client, price="0.05", tags=["a", "b"], description='ünïcode \u2028 "quoted"')
    record = services_of(app).mongo.get(str(created["id"])).value
    assert record is not None
    rendered = render(record)
    assert rendered == orjson.dumps(product_to_api(record))
    assert parse(rendered) == record
    assert orjson.loads(rendered) == created
    assert names(record.id, rendered) and not names("0" * 24, rendered)
    assert json_array([rendered, rendered]) == orjson.dumps([product_to_api(record)] * 2)
    assert json_array([]) == b"[]"


def test_a_hit_serves_the_stored_bytes_as_they_are(
    app: Flask, client: FlaskClient, fake_cache: FakeCacheBackend
) -> None:
    product_id = str(_create(client)["id"])
    product = services_of(app).require_cache().keys.product(product_id)
    entry = fake_cache.get_versioned(product.entry)
    assert entry is not None and entry.payload is not None
    # Rewrite the stored body (same version) with bytes the route would never render itself:
    # a hit must send them untouched, which proves there is no decode/re-encode on the way.
    marked = entry.payload[:-1] + b',"x":1}'
    assert write_entry(fake_cache, product, marked, entry.version, 60)
    response = client.get(f"{PRODUCTS}/{product_id}")
    assert response.headers["X-Cache"] == "HIT" and response.get_data() == marked
    assert response.headers["ETag"] == f'"v{entry.version}"' and response.mimetype == "application/json"


def test_an_entry_that_does_not_hold_this_products_body_is_a_miss(
    app: Flask, client: FlaskClient, fake_cache: FakeCacheBackend
) -> None:
    product_id = str(_create(client)["id"])
    other_id = str(_create(client)["id"])
    keys = services_of(app).cache.keys  # type: ignore[union-attr]
    other = fake_cache.get_versioned(keys.product(other_id).entry)
    assert other is not None and other.payload is not None
    product = keys.product(product_id)
    for foreign in (other.payload, b"garbage", b'{"id":'):
        fake_cache.delete(product.entry)
        assert write_entry(fake_cache, product, foreign, 1, 60)
        response = client.get(f"{PRODUCTS}/{product_id}")
        assert response.status_code == 200 and response.headers["X-Cache"] == "MISS"
        assert response.get_json()["id"] == product_id
