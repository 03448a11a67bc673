"""Structured logs: JSON lines in production, readable lines in development; secrets never written.

Every record carries the id of the request it was logged in. A redacting formatter
scrubs bearer tokens, the configured API tokens and URL passwords from every line,
whatever logged them. One handler, on the root logger, writes every line once:
gunicorn's own messages reach it too (ServiceLogger), and no entry point adds a second.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from gunicorn.glogging import Logger

from jollyjet.settings import DEV_TOKEN, Environment, LogFormat, Settings, SettingsError, load_settings

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("jollyjet_request_id", default=None)
REDACTED = "[REDACTED]"
_BEARER = re.compile(r"(?i)\b(bearer)\s+[^\s,;\"']+")
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]+)@")
# Accepted from clients and proxies as is; anything else (too long, spaces, control or
# quote characters that could forge log lines) is replaced by a fresh id.
_WELL_FORMED_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$")
# Attributes every LogRecord has; anything else was passed in `extra=` and is a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "request_id"}
_HANDLER_MARK = "_jollyjet_handler"
access_log = logging.getLogger("jollyjet.access")


class Redactor:
    """Removes secrets from text: bearer credentials, known tokens, passwords in URLs."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a token that contains another is replaced whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """text with every secret replaced by [REDACTED]."""
        # Each pattern runs only where its literal part occurs: most lines (every access line)
        # hold neither, and the two scans were a tenth of a cached read's CPU.
        if "bearer" in text.lower():
            text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
        if "://" in text:
            text = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{REDACTED}@", text)
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


def request_id_from(header: str | None) -> str:
    """The client's X-Request-ID when well-formed, else a new one (32 hex digits)."""
    if header and _WELL_FORMED_ID.match(header):
        return header
    return os.urandom(16).hex()  # what uuid4().hex is, without building a UUID


def access_line(method: str, route: str, path: str, status: int, cache: str, seconds: float) -> None:
    """The one access line of a request (jollyjet.access, INFO)."""
    if access_log.isEnabledFor(logging.INFO):
        fields = {"method": method, "route": route, "path": path, "status": status, "cache": cache,
                  "duration_ms": round(seconds * 1000, 3)}  # fmt: skip
        # log.info() would first walk the stack for the caller's file and line, which no
        # formatter here prints; one line per request makes that walk worth skipping.
        access_log.handle(
            access_log.makeRecord(
                access_log.name, logging.INFO, __file__, 0, "%s %s %s", (method, route, status), None, extra=fields
            )
        )


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _json_line(body: dict[str, Any]) -> str:
    """body as one JSON line; orjson (a twentieth of json.dumps' cost: every request logs one line)."""
    try:
        return orjson.dumps(body, default=str).decode()
    except TypeError:  # what orjson refuses (an integer beyond 64 bits, say) json.dumps writes
        return json.dumps(body, default=str, ensure_ascii=False)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id and any extra fields."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        """The record as a redacted JSON line."""
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            body["request_id"] = request_id
        body.update(_fields(record))
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return self.redact(_json_line(body))


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [request id]: message key=value …`, redacted."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(rid)s: %(message)s%(kv)s")
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        """The record as a redacted human-readable line."""
        rid = getattr(record, "request_id", None)
        record.rid = f" [{rid}]" if rid else ""
        fields = _fields(record)
        fields.pop("rid", None)
        fields.pop("kv", None)
        record.kv = "".join(f" {k}={v}" for k, v in fields.items())
        return self.redact(super().format(record))


class _Redacted(logging.Formatter):
    """Another handler's formatter, its output redacted like the service's own lines."""

    def __init__(self, inner: logging.Formatter | None, redact: Redactor) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        """The inner formatter's line, redacted."""
        return self.redact(self.inner.format(record))


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
    handler = logging.StreamHandler(sys.stderr)
    redact = Redactor(secrets)
    handler.setFormatter(JsonFormatter(redact) if json_lines else TextFormatter(redact))
    handler.addFilter(_RequestIdFilter())
    setattr(handler, _HANDLER_MARK, redact)  # the mark is its redactor: ServiceLogger lends it
    root.addHandler(handler)
    root.setLevel(settings.log_level)


class ServiceLogger(Logger):
    """gunicorn's own messages written by the service's one redacting handler, in the master too.

    gunicorn gives `gunicorn.error` a handler of its own: lines in a second format
    (plain text in a JSON stream) that skip the redaction. Here they propagate to the root
    logger instead, whose handler the master installs from the same settings a worker
    builds its app with, so every line is written once, redacted. gunicorn's access log
    stays off unless asked for (`--access-logfile`): the app's `jollyjet.access` line is
    the one line per request. When asked for, it is redacted too.
    """

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
