"""Structured logs: JSON in production, readable in development, a request id per request, no secrets."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator

import pytest

from jollyjet import create_app
from jollyjet.ops.logs import REDACTED, BatchedAccessLines, Redactor
from tests.conftest import TOKEN, make_app, make_settings
from tests.support.events import EventCounter
from tests.support.factories import product_payload
from tests.support.fake_cache import FakeCacheBackend


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def written(capfd: pytest.CaptureFixture[str]) -> str:
    """What the handlers wrote to stderr, the access lines still in their batch included."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    return capfd.readouterr().err


def json_lines(text: str) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_json_lines_carry_the_request_id_route_cache_outcome_and_latency(capfd: pytest.CaptureFixture[str]) -> None:
    app = make_app(
        make_settings(log_format="json", log_level="INFO"), cache_backend=FakeCacheBackend(), events=EventCounter()
    )
    client = app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    product = client.post("/api/v1/products", json=product_payload(), headers=auth).get_json()
    written(capfd)  # the POST's lines, not looked at
    response = client.get(f"/api/v1/products/{product['id']}", headers={"X-Request-ID": "trace-0001-abcd"})
    lines = json_lines(written(capfd))
    access = [line for line in lines if line["logger"] == "jollyjet.access"]
    assert len(access) == 1, lines
    line = access[0]
    assert line["request_id"] == "trace-0001-abcd" == response.headers["X-Request-ID"]
    assert line["route"] == "/api/v1/products/<product_id:product_id>" and line["status"] == 200
    assert line["cache"] == "hit" and line["method"] == "GET" and line["duration_ms"] >= 0
    assert line["level"] == "INFO" and line["ts"].endswith("+00:00")


def test_production_logs_json_and_development_readable_lines(capfd: pytest.CaptureFixture[str]) -> None:
    make_app(make_settings(log_level="INFO"), cache_backend=FakeCacheBackend()).test_client().get("/health/live")
    readable = written(capfd)
    assert "INFO jollyjet.access [" in readable and "route=/health/live" in readable
    assert not json_lines(readable)


def test_tokens_and_passwords_never_reach_the_log(capfd: pytest.CaptureFixture[str]) -> None:
    secret_url = "redis://:hunter2-redis-password@127.0.0.1:1/0"
    app = create_app(make_settings(log_format="json", log_level="INFO", redis_url=secret_url))
    client = app.test_client()
    # Writes with the token (the cache is down: the failed cache write is logged), a wrong token,
    # and anything else that mentions a credential.
    client.post("/api/v1/products", json=product_payload(), headers={"Authorization": f"Bearer {TOKEN}"})
    client.post("/api/v1/products", json=product_payload(), headers={"Authorization": "Bearer not-the-token-123"})
    logging.getLogger("jollyjet.test").warning("header was Authorization: Bearer %s, url %s", TOKEN, secret_url)
    logging.getLogger("jollyjet.test").error("configured token %s", TOKEN)
    err = capfd.readouterr().err
    assert TOKEN not in err and "hunter2-redis-password" not in err and "not-the-token-123" not in err
    assert REDACTED in err and json_lines(err)


def test_the_redactor_scrubs_bearer_credentials_known_tokens_and_url_passwords() -> None:
    redact = Redactor(["s3cret-token-value"])
    assert redact("Authorization: Bearer abc.def-123") == f"Authorization: Bearer {REDACTED}"
    assert redact("token s3cret-token-value!") == f"token {REDACTED}!"
    assert redact("mongodb://user:pa55@h:27017/db") == f"mongodb://user:{REDACTED}@h:27017/db"
    assert redact("nothing secret here") == "nothing secret here"


def test_gunicorns_messages_go_through_the_one_redacting_handler(capfd: pytest.CaptureFixture[str]) -> None:
    from gunicorn.config import Config

    from jollyjet.ops.logs import ServiceLogger

    cfg = Config()
    cfg.set("accesslog", "-")  # off in the Procfile; asked for here to see it redacted too
    logger = ServiceLogger(cfg)
    try:
        assert logger.error_log.handlers == [] and logger.error_log.propagate
        capfd.readouterr()
        logger.info("Booting worker with pid: %s, Bearer %s", 42, "s3cret-in-a-message")
        logger.access_log.info('"GET /api/v1/products HTTP/1.1" 200 Authorization: Bearer s3cret-in-an-access-line')
        out, err = capfd.readouterr()
    finally:
        for log in (logger.error_log, logger.access_log):
            log.handlers.clear()
            log.propagate = False
    [line] = [line for line in err.splitlines() if "Booting worker" in line]  # once, by the service's handler
    assert line.endswith(" INFO gunicorn.error: Booting worker with pid: 42, Bearer [REDACTED]")
    assert "Bearer [REDACTED]" in out and "s3cret" not in out + err


class _Writes:
    """A stream that keeps each write."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        return None


def _record(logger_name: str, text: str) -> logging.LogRecord:
    return logging.getLogger(logger_name).makeRecord(logger_name, logging.INFO, __file__, 0, text, None, None)


def test_access_lines_go_out_in_whole_batches_and_other_lines_at_once_in_order() -> None:
    stream = _Writes()
    handler = BatchedAccessLines(stream)  # type: ignore[arg-type]
    handler.FLUSH_S = 3600  # this test's batches are written by size and by other lines only
    for i in range(3):
        handler.handle(_record("jollyjet.access", f"request {i}"))
    assert stream.writes == []  # batched
    handler.handle(_record("jollyjet.test", "not an access line"))
    assert stream.writes == ["request 0\nrequest 1\nrequest 2\nnot an access line\n"]  # one write, in order
    stream.writes.clear()
    for _ in range(8):
        handler.handle(_record("jollyjet.access", "x" * 1000))
    # Written before the batch would pass BATCH_CHARS: never more than a pipe writes atomically, lines whole.
    assert stream.writes == [("x" * 1000 + "\n") * 3] * 2
    stream.writes.clear()
    handler.handle(_record("jollyjet.test", "y" * 2000))  # the batch holds 2,002 characters: two writes, in order
    assert stream.writes == [("x" * 1000 + "\n") * 2, "y" * 2000 + "\n"]


def test_a_batch_is_written_unasked_shortly_after_its_first_line() -> None:
    stream = _Writes()
    handler = BatchedAccessLines(stream)  # type: ignore[arg-type]
    handler.FLUSH_S = 0.05
    handler.handle(_record("jollyjet.access", "the last request"))
    deadline = time.monotonic() + 5
    while not stream.writes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stream.writes == ["the last request\n"]


def test_one_flushing_thread_per_handler_and_closing_writes_the_batch_and_ends_it() -> None:
    stream = _Writes()
    handler = BatchedAccessLines(stream)  # type: ignore[arg-type]
    handler.FLUSH_S = 3600  # only close() writes here
    handler.handle(_record("jollyjet.access", "request 0"))
    flusher = handler._flusher
    assert flusher is not None and flusher.is_alive()  # the first line started it
    for i in (1, 2):
        handler.handle(_record("jollyjet.access", f"request {i}"))
    assert handler._flusher is flusher  # the later lines reused it
    handler.close()
    assert stream.writes == ["request 0\nrequest 1\nrequest 2\n"]
    flusher.join(timeout=5)
    assert not flusher.is_alive()


def test_a_forked_child_starts_without_its_parents_batch() -> None:
    stream = _Writes()
    handler = BatchedAccessLines(stream)  # type: ignore[arg-type]
    handler.FLUSH_S = 3600
    handler.handle(_record("jollyjet.access", "the parent's request"))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it would write, then leave without running the parent's atexit
        os.close(read_end)
        handler.flush()
        os.write(write_end, repr(stream.writes).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as child:
        assert child.read() == "[]"
    os.waitpid(pid, 0)
    handler.flush()
    assert stream.writes == ["the parent's request\n"]
