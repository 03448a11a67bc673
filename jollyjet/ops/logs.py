"""Structured logs: JSON lines in production, readable lines in development; secrets never written.

Every record carries its request's id. One handler, on the root logger, writes every line
once, redacted (bearer tokens, the API tokens, URL passwords), whoever logged it: gunicorn's
own messages reach it too (ServiceLogger), and no entry point adds a second.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import sys
import threading
import weakref
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
from gunicorn.glogging import Logger

from jollyjet.ops.metrics import ACCESS_LOGGER, REQUEST_ID
from jollyjet.settings import DEV_TOKEN, Environment, LogFormat, Settings, SettingsError, load_settings

REDACTED = "[REDACTED]"
_BEARER = re.compile(r"(?i)\b(bearer)\s+[^\s,;\"']+")
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]+)@")
# Attributes every LogRecord has; anything else was passed in `extra=` and is a field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "request_id"}
_TEXT_STANDARD = _STANDARD | {"rid", "kv"}  # what TextFormatter sets on a record
_HANDLER_MARK = "_jollyjet_handler"
_SECOND: list[tuple[int, str]] = [(0, "")]  # the last second _timestamp formatted


class Redactor:
    """Removes secrets from text: bearer credentials, known tokens, passwords in URLs."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a token that contains another is replaced whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """text with every secret replaced by [REDACTED]."""
        # Each pattern runs only where its literal occurs: the scans were a tenth of a cached read's CPU.
        if "bearer" in text.lower():
            text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
        if "://" in text:
            text = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{REDACTED}@", text)
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


def _with_request_id(record: logging.LogRecord) -> bool:
    record.request_id = REQUEST_ID.get()
    return True


def _fields(record: logging.LogRecord, skip: frozenset[str] = _STANDARD) -> dict[str, Any]:
    """The record's `extra=` fields: its attributes less skip (the standard ones, and any a formatter set)."""
    attributes = vars(record)
    return {name: attributes[name] for name in _extra_names(tuple(attributes), skip)}


@functools.lru_cache(maxsize=64)
def _extra_names(names: tuple[str, ...], skip: frozenset[str]) -> tuple[str, ...]:
    # Records logged from one place have the same attributes in the same order (the access line's on every
    # request): the names are sorted out once per shape, which halves the cost of finding the fields.
    return tuple(name for name in names if name not in skip and not name.startswith("_"))


def _timestamp(created: float) -> str:
    """ISO 8601 in UTC, to the millisecond; the part up to the second is formatted once per second."""
    whole = int(created)
    second, text = _SECOND[0]  # one read: another thread may replace the pair meanwhile
    if second != whole:
        text = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _SECOND[0] = (whole, text)
    return f"{text}.{int((created - whole) * 1000):03d}+00:00"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id and any extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        body: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if request_id := getattr(record, "request_id", None):
            body["request_id"] = request_id
        body.update(_fields(record))
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        try:  # orjson: a twentieth of json.dumps' cost, and every request logs one line
            return orjson.dumps(body, default=str).decode()
        except TypeError:  # what orjson refuses (an integer beyond 64 bits, say) json.dumps writes
            return json.dumps(body, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [request id]: message key=value …`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(rid)s: %(message)s%(kv)s")

    def format(self, record: logging.LogRecord) -> str:
        """The record as a human-readable line."""
        rid = getattr(record, "request_id", None)
        record.rid = f" [{rid}]" if rid else ""
        record.kv = "".join(f" {k}={v}" for k, v in _fields(record, _TEXT_STANDARD).items())
        return super().format(record)


class _Redacted(logging.Formatter):
    """Another formatter's lines, redacted: the service's own, and gunicorn's access log when asked for."""

    def __init__(self, inner: logging.Formatter | None, redact: Redactor) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        """The inner formatter's line, redacted."""
        return self.redact(self.inner.format(record))


class BatchedAccessLines(logging.StreamHandler):
    """The one handler. Access lines go out in batches, as nginx's `access_log ... buffer= flush=` does;
    every other line at once, after the batch before it (the order is kept).

    Written as the one write() per request cost a tenth of a cached read's throughput on gunicorn
    (docs/performance.md). A batch is written whole, before it grows past what a pipe writes
    atomically (two workers' lines never interleave), and at most FLUSH_S after its first line;
    a process killed outright loses at most that much of its access lines, never a warning."""

    FLUSH_S = 0.1
    BATCH_CHARS = 3500  # under PIPE_BUF (4,096 bytes on Linux), in characters of mostly-ASCII JSON

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._batch: list[str] = []
        self._chars = 0
        # One flushing thread per process, started by its first access line and kept: a thread started per
        # batch (threading.Timer) held every request thread on this handler's lock while it started, which
        # cost 11.5% of a cached read's throughput on gunicorn's threads (docs/performance.md).
        self._flusher: threading.Thread | None = None
        self._stopped = threading.Event()
        _BATCHING.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        """Add an access line to the batch; write anything else at once (Handler.handle holds the lock)."""
        try:
            line = self.format(record) + self.terminator
            if self._chars + len(line) > self.BATCH_CHARS:
                self.flush()  # what is batched first: a write stays under PIPE_BUF where the lines allow
            self._batch.append(line)
            self._chars += len(line)
            if record.name != ACCESS_LOGGER:
                self.flush()  # at once, with the access lines before it
            elif self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_every, name="jollyjet-access-lines", daemon=True)
                self._flusher.start()
        except Exception:
            self.handleError(record)

    def _flush_every(self) -> None:
        while not self._stopped.wait(self.FLUSH_S):
            with contextlib.suppress(OSError, ValueError):  # the stream was closed meanwhile: nothing to write to
                self.flush()

    def flush(self) -> None:
        """Write the batch in one write (also at exit: logging.shutdown flushes every handler)."""
        with self.lock:  # type: ignore[union-attr]  # Handler.createLock made it
            # Taken before the write: a write that fails loses its lines, as StreamHandler's does, never repeats them.
            text, self._batch, self._chars = "".join(self._batch), [], 0
            if text:
                self.stream.write(text)
            self.stream.flush()

    def close(self) -> None:
        """Write what is batched and stop the flushing thread (the stream stays open, as StreamHandler's does)."""
        self._stopped.set()
        with contextlib.suppress(OSError, ValueError):  # a stream already closed: nothing to write to
            self.flush()
        super().close()


_BATCHING: weakref.WeakSet[BatchedAccessLines] = weakref.WeakSet()


def _start_empty_after_fork() -> None:
    # The parent writes its own batch, and its flushing thread is not in the child: the child's first access
    # line starts the child's own (with a new Event, in case the parent's thread held the old one's lock).
    for handler in _BATCHING:
        handler._batch, handler._chars, handler._flusher, handler._stopped = [], 0, None, threading.Event()


os.register_at_fork(after_in_child=_start_empty_after_fork)


def configure_logging(settings: Settings) -> None:
    """Install (or replace) this service's handler on the root logger: JSON in production (or
    JOLLYJET_LOG_FORMAT=json), readable otherwise, secrets redacted; other handlers are left alone."""
    json_lines = settings.log_format is LogFormat.JSON or (
        settings.log_format is LogFormat.AUTO and settings.env is Environment.PRODUCTION
    )
    secrets = [*settings.api_tokens, DEV_TOKEN] if settings.env is not Environment.PRODUCTION else settings.api_tokens
    root = logging.getLogger()
    for handler in [h for h in root.handlers if hasattr(h, _HANDLER_MARK)]:
        root.removeHandler(handler)
        handler.close()  # writes its batch and ends its flushing thread
    handler = BatchedAccessLines(sys.stderr)
    redact = Redactor(secrets)
    handler.setFormatter(_Redacted(JsonFormatter() if json_lines else TextFormatter(), redact))
    handler.addFilter(_with_request_id)
    setattr(handler, _HANDLER_MARK, redact)  # the mark is its redactor: ServiceLogger lends it
    root.addHandler(handler)
    root.setLevel(settings.log_level)


class ServiceLogger(Logger):
    """gunicorn's own messages written by the service's one redacting handler, in the master too.

    gunicorn's own `gunicorn.error` handler would write a second format that skips the
    redaction: its lines propagate to the root handler instead, installed from the settings
    a worker builds its app with. gunicorn's access log stays off unless asked for (the
    app's `jollyjet.access` line is the one per request); when asked for, it is redacted."""

    def setup(self, cfg: Any) -> None:
        """gunicorn's setup (also run on a reload), then its messages handed to the root handler."""
        super().setup(cfg)
        try:
            configure_logging(load_settings())
        except SettingsError:
            return  # gunicorn's own handler stays, for on_starting's one line (exit_on_bad_settings)
        for handler in list(self.error_log.handlers):
            self.error_log.removeHandler(handler)
        self.error_log.propagate = True
        redact = next(getattr(h, _HANDLER_MARK) for h in logging.getLogger().handlers if hasattr(h, _HANDLER_MARK))
        for handler in self.access_log.handlers:
            if not isinstance(handler.formatter, _Redacted):
                handler.setFormatter(_Redacted(handler.formatter, redact))
