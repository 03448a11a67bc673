"""schemathesis against the running API: every operation, every check, all four phases.

The app runs behind a real HTTP server on a free loopback port, on mongomock and a real
redis-server, with a bearer token. The examples, coverage and fuzzing phases run per
operation (`@schema.parametrize()`); the stateful phase follows the document's links from
POST /products to the id operations and from POST /cache/{job} to GET /tasks/{task_id}.
Bounded in examples (and so in time): the whole module stays well under two minutes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import Phase, settings
from hypothesis.errors import FlakyStrategyDefinition
from schemathesis.config import SchemathesisConfig
from werkzeug.serving import make_server

from jollyjet import create_app
from jollyjet.cache.epoch import drop_cached_data
from jollyjet.commands import catalog_products, ensure_indexes, seed_products
from jollyjet.extensions import services_of
from jollyjet.products.record import ProductDocument
from jollyjet.products.schemas import RESERVED
from tests.conftest import TOKEN, make_settings
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Per-operation fuzzing cases; the examples and coverage phases add their own on top.
FUZZ_EXAMPLES = 25
STATEFUL_SCENARIOS = 20
STATEFUL_STEPS = 6
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def contract_config() -> SchemathesisConfig:
    """Every built-in check on, the bearer token sent, a fixed seed so CI runs are repeatable."""
    return SchemathesisConfig.from_dict(
        {
            "seed": 20261126,
            "headers": AUTH,
            "checks": {"enabled": True},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": True},
            },
            "generation": {"max-examples": FUZZ_EXAMPLES},
        }
    )


class ServedApp:
    """The app behind werkzeug's threaded server on 127.0.0.1, for as long as the module runs."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, name="contract-server", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def reset(self) -> None:
        """An empty catalog and cache, so that each stateful scenario starts from the same state."""
        cache = services_of(self.app).cache
        with self.app.app_context():
            ProductDocument.drop_collection()
            ensure_indexes()  # dropped with the collection
        if cache is not None:
            drop_cached_data(cache.backend, cache.keys, 1000)

    def __enter__(self) -> ServedApp:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def served(redis_server: RedisServer) -> Iterator[ServedApp]:
    # Rate limits off: the fuzz sends thousands of requests, many with bad tokens, from one
    # address, and schemathesis expects 401 for a bad token (the limits: tests/unit/test_overload.py).
    app = create_app(make_settings(redis_url=redis_server.url, rate_limits_enabled=False))
    with app.app_context():  # the parametrized cases read and write a catalog of 48 products
        ensure_indexes()
        seed_products(services_of(app).products, catalog_products())
    with ServedApp(app) as running:
        yield running


def contract_document() -> dict[str, Any]:
    """The OpenAPI document as the app serves it (the served app has the same settings that shape it)."""
    app = create_app(make_settings(cache_enabled=False))
    document: dict[str, Any] = app.test_client().get("/api/openapi.json").get_json()
    return document


# Loaded when the module is collected: @schema.parametrize() needs the operations then.
# Building an app connects nothing (mongomock, no Redis with the cache off).
schema = schemathesis.openapi.from_dict(contract_document(), config=contract_config())


@schema.hook
def filter_path_parameters(_context: Any, path_parameters: dict[str, Any] | None) -> bool:
    """Leave out product ids that spell a sibling route: /products/count is another operation."""
    return (path_parameters or {}).get("product_id") not in RESERVED


@schema.parametrize()
def test_every_operation_keeps_the_contract(case: Any, served: ServedApp) -> None:
    case.call_and_validate(base_url=served.base_url)


def test_stateful_sequences_keep_the_contract(served: ServedApp) -> None:
    reached: list[tuple[str, str, int]] = []
    failures: list[Exception] = []

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": served.base_url}

        def setup(self) -> None:
            # Hypothesis needs a scenario's steps to depend on its own draws only: with
            # the server's state carried over between scenarios, the same draws would meet
            # other responses (and other enabled rules), which it reports as flaky.
            served.reset()

        def after_call(self, response: Any, case: Any) -> None:
            reached.append((case.method, case.path, response.status_code))

        def step(self, input: Any) -> Any:
            try:
                return super().step(input)
            except Exception as failure:
                failures.append(failure)
                raise

    # No shrinking: the server keeps what earlier scenarios wrote, so a replayed scenario
    # sees other responses. For the same reason Hypothesis's confirming replay of a
    # failure may report a flaky strategy instead: report the failure itself then.
    try:
        Workflow.run(
            settings=settings(
                Workflow.TestCase.settings,
                max_examples=STATEFUL_SCENARIOS,
                stateful_step_count=STATEFUL_STEPS,
                phases=[Phase.explicit, Phase.reuse, Phase.generate],
            )
        )
    except FlakyStrategyDefinition:
        if failures:
            raise failures[0] from None
        raise
    # The scenarios did follow links: a product made by POST was then read, changed or deleted.
    by_id = {(method, status) for method, path, status in reached if path == "/api/v1/products/{product_id}"}
    assert {("POST", 201)} <= {(m, s) for m, p, s in reached if p == "/api/v1/products"}, reached
    assert {("GET", 200), ("DELETE", 204)} & by_id, by_id
