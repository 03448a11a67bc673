"""The Flask CLI (jollyjet/commands.py) on a real redis-server and nx-27017 (or the MongoDB in MONGODB_URI).

The release phase and seeding run as real `flask --app app …` processes, configured by
the environment as a platform does; the cache commands through Flask's CliRunner, on
an app built on the same servers, so the test can plant drift and look at the keys.
"""

from __future__ import annotations

import subprocess
import uuid
from typing import Any

import pytest
from bson import ObjectId
from click.testing import Result
from flask import Flask

from jollyjet.cache.fence import RepairLog
from jollyjet.commands import EXIT_BUSY, ensure_indexes
from jollyjet.extensions import services_of
from jollyjet.products.record import ProductDocument
from tests.conftest import TOKEN, make_app, make_settings
from tests.support.factories import product_payload
from tests.support.mongo_server import MongoForTests
from tests.support.procfile import REPO_ROOT, procfile_env
from tests.support.redis_server import RedisServer, free_port

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Read counts in Redis at once, every read: "most read" is exact for the warming test.
EVERY_READ_COUNTED = {"popularity_sample_rate": 1.0}  # and POPULARITY_FLUSH_S = 0 (cli_app)
COMMANDS = ("seed", "ensure-indexes", "warm", "audit", "repair", "drop-cache")


def flask_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`flask --app app <args>` from the repository root, as the Procfile's release line runs it."""
    return subprocess.run(
        ["flask", "--app", "app", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def one_error_line(stderr: str) -> str:
    """The error line of a failed command: the last line on stderr, the only one saying Error, no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("Error:")] == lines[-1:], stderr
    return lines[-1]


def test_release_then_seed_as_processes(
    shared_mongodb_uri: str, wire_mongo: MongoForTests, redis_server: RedisServer
) -> None:
    env = procfile_env(
        MONGODB_URI=shared_mongodb_uri,
        REDIS_URL=redis_server.url,
        JOLLYJET_ENV="testing",
        JOLLYJET_API_TOKENS=TOKEN,
        JOLLYJET_CACHE_KEY_PREFIX=f"cli{uuid.uuid4().hex[:10]}",
        JOLLYJET_LOG_LEVEL="WARNING",
    )
    database = shared_mongodb_uri.rsplit("/", 1)[1]

    listed = flask_cli(env, "--help")
    assert listed.returncode == 0 and all(f"\n  {name} " in listed.stdout for name in COMMANDS), listed.stdout

    release = flask_cli(env, "ensure-indexes")
    assert release.returncode == 0, release.stderr
    assert release.stdout.startswith("ensure-indexes: ") and "products 6" in release.stdout
    with wire_mongo.client() as client:
        indexes = client[database]["products"].index_information()
        assert any(index.get("unique") and index["key"] == [("sku", 1)] for index in indexes.values()), indexes

    # Above the progress bar's threshold (jollyjet/commands.py PROGRESS_FROM); the bar goes to stderr.
    seeded = flask_cli(env, "seed", "--count", "500", "--category", "toys & games", "--category", "audio")
    assert seeded.returncode == 0, seeded.stderr
    assert seeded.stdout == "seed: 500 products added, 0 already present\n"
    again = flask_cli(env, "seed", "--count", "510", "--category", "toys & games", "--category", "audio")
    assert again.stdout == "seed: 10 products added, 500 already present\n", again.stderr
    with wire_mongo.client() as client:
        products = client[database]["products"]
        assert products.count_documents({"category": "toys & games"}) == products.count_documents({}) // 2 == 255
        assert len(products.distinct("sku")) == 510

    env["MONGODB_URI"] = f"mongodb://127.0.0.1:{free_port()}/nothing_here"
    env["JOLLYJET_MONGODB_TIMEOUT_MS"] = "300"
    down = flask_cli(env, "ensure-indexes")
    assert down.returncode == 1 and down.stdout == ""
    assert one_error_line(down.stderr).startswith("Error: cannot reach MongoDB at 127.0.0.1:")


def test_bad_options_are_usage_errors_naming_the_problem(cli_app: Flask) -> None:
    runner = cli_app.test_cli_runner()
    zero = runner.invoke(args=["seed", "--count", "0"])
    blank = runner.invoke(args=["seed", "--category", "   "])
    assert zero.exit_code == blank.exit_code == 2
    assert "'--count': 0 is not in the range 1<=x<=1000000" in zero.stderr
    assert "'   ': must contain a non-blank character" in blank.stderr


@pytest.fixture
def cli_app(shared_mongodb_uri: str, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Flask:
    """An app on the shared nx-27017 database and the real Redis, with its indexes (the release phase ran)."""
    monkeypatch.setattr("jollyjet.app_factory.POPULARITY_FLUSH_S", 0)
    app = make_app(make_settings(mongodb_uri=shared_mongodb_uri, redis_url=redis_server.url, **EVERY_READ_COUNTED))
    ensure_indexes()
    return app


def invoke(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=list(args))


def create(app: Flask, **fields: Any) -> str:
    response = app.test_client().post("/api/v1/products", json=product_payload(**fields), headers=AUTH)
    assert response.status_code == 201, response.json
    return str(response.json["id"])  # type: ignore[index]


def test_drop_cache_then_warm(cli_app: Flask, redis_server: RedisServer) -> None:
    keys = services_of(cli_app).cache.keys  # type: ignore[union-attr]
    raw = redis_server.client()
    client = cli_app.test_client()
    read = [create(cli_app, category="cli") for _ in range(3)]
    unread = create(cli_app, category="cli")
    for product_id in read:
        assert client.get(f"/api/v1/products/{product_id}").status_code == 200
    assert client.get("/api/v1/products?category=cli").status_code == 200
    job_lock = keys.job_lock("cleanup")
    raw.set(job_lock, b"a running cleanup's token", ex=60)
    raw.set(f"{keys.prefix}:visits", b"not ours", ex=60)  # under the prefix, but no schema: not ours
    cached = set(raw.scan_iter(f"{keys.root}:product:*"))
    assert len(cached) >= 4

    dropped = invoke(cli_app, "drop-cache")

    assert dropped.exit_code == 0, dropped.output
    deleted = int(dropped.stdout.removeprefix("drop-cache: ").split()[0])
    assert dropped.stdout == f"drop-cache: {deleted} keys deleted under {keys.prefix}:v*\n" and deleted >= len(cached)
    assert list(raw.scan_iter(f"{keys.root}:product:*")) == []
    # What a new cache epoch keeps (cache/keys.py survives_new_epoch) stays: the job lock, the read counts.
    assert raw.exists(job_lock, keys.popular_products, keys.popular_queries, f"{keys.prefix}:visits") == 4

    warmed = invoke(cli_app, "warm")

    assert warmed.exit_code == 0, warmed.output
    assert warmed.stdout.startswith("warm: 3 products and 1 list pages warmed (3 and 1 considered) in ")
    for product_id in read:
        assert raw.hget(keys.product(product_id).entry, "v") == b"1"
    assert not raw.exists(keys.product(unread).entry)


def test_audit_finds_and_repairs_drift(cli_app: Flask, redis_server: RedisServer) -> None:
    keys = services_of(cli_app).cache.keys  # type: ignore[union-attr]
    raw = redis_server.client()
    product_id = create(cli_app)
    raw.persist(keys.product(product_id).entry)  # drift behind the service's back: no TTL

    audited = invoke(cli_app, "audit", "--full")

    assert audited.exit_code == 0, audited.output
    assert audited.stdout.startswith("audit (full): 1 of 1 keys checked, drift: wrong_ttl 1; 1 repaired in ")
    assert raw.ttl(keys.product(product_id).entry) > 0


def test_repair_replays_a_failed_cache_write(cli_app: Flask, redis_server: RedisServer) -> None:
    keys = services_of(cli_app).cache.keys  # type: ignore[union-attr]
    raw = redis_server.client()
    product_id = create(cli_app)
    # A write whose cache update failed: MongoDB moved on, the cache did not, the record says so.
    ProductDocument.objects(id=ObjectId(product_id)).update_one(inc__version=1, set__stock=11)
    assert RepairLog().record(product_id, "test: the cache write failed")

    repaired = invoke(cli_app, "repair")

    assert repaired.exit_code == 0, repaired.output
    assert repaired.stdout.startswith(
        "repair: 1 records replayed for 1 products (1 rewritten, 0 tombstoned, 0 deferred), 0 pending, in "
    )
    assert raw.hget(keys.product(product_id).entry, "v") == b"2"


def test_a_job_whose_lock_is_held_does_nothing_and_exits_3(cli_app: Flask) -> None:
    cache = services_of(cli_app).cache
    assert cache is not None
    token = cache.backend.acquire_lock(cache.keys.job_lock("warm"), 60_000)
    assert token is not None
    try:
        busy = invoke(cli_app, "warm")
    finally:
        cache.backend.release_lock(cache.keys.job_lock("warm"), token)
    assert busy.exit_code == EXIT_BUSY and busy.stdout == ""
    assert busy.stderr == "Error: warm: another run of this job is in progress (its lock is held); nothing done\n"


@pytest.mark.parametrize("command", COMMANDS)
def test_mongodb_unreachable_is_one_line_and_exit_1(command: str, redis_server: RedisServer) -> None:
    port = free_port()
    settings = make_settings(
        mongodb_uri=f"mongodb://127.0.0.1:{port}/x", mongodb_timeout_ms=300, redis_url=redis_server.url
    )
    result = invoke(make_app(settings), command)
    assert result.exit_code == 1 and result.stdout == ""
    assert one_error_line(result.stderr).startswith(f"Error: cannot reach MongoDB at 127.0.0.1:{port} (MONGODB_URI)")


@pytest.mark.parametrize("command", ["seed", "warm", "audit", "repair", "drop-cache"])
def test_redis_unreachable_is_one_line_and_exit_1(command: str, shared_mongodb_uri: str) -> None:
    port = free_port()
    app = make_app(make_settings(mongodb_uri=shared_mongodb_uri, redis_url=f"redis://:s3cret@127.0.0.1:{port}/0"))
    result = invoke(app, command)
    assert result.exit_code == 1 and result.stdout == ""
    line = one_error_line(result.stderr)
    assert line.startswith(f"Error: cannot reach Redis at redis://:**@127.0.0.1:{port}/0 (REDIS_URL): ")
    assert "s3cret" not in result.output


@pytest.mark.parametrize(
    ("command", "overrides", "says"),
    [
        ("ensure-indexes", {}, "MONGODB_URI is unset or mongomock://"),
        ("drop-cache", {}, "REDIS_URL is unset"),
        ("warm", {"cache_enabled": False}, "the cache is disabled (JOLLYJET_CACHE_ENABLED=false)"),
    ],
)
def test_the_in_process_stand_ins_and_a_disabled_cache_are_refused(
    command: str, overrides: dict[str, Any], says: str
) -> None:
    # make_settings: mongomock and no REDIS_URL, stores of the command's own process that vanish with it.
    result = invoke(make_app(make_settings(**overrides)), command)
    assert result.exit_code == 1 and says in one_error_line(result.stderr)
