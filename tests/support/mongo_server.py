"""A MongoDB for tests: nx-27017 (MongoDB wire protocol over SQLite) on a free port, or a real server.

MongoDB itself cannot be installed where the tests run, so by default a test session
starts nx-27017 (a dev dependency): a separate process that several processes
(gunicorn, Celery worker and beat, the tests) can share, unlike mongomock.
Set MONGODB_URI=mongodb://... to run the same tests against a real MongoDB instead;
tests/integration/test_mongo_wire.py lists what nx-27017 does differently.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from tests.support.processes import stop_process
from tests.support.redis_server import free_port

# nx-27017 has no __main__ module, and `python -m nx_27017.nx_27017` warns about a
# double import; calling the console-script function keeps us on this interpreter.
_NX_MAIN = "import sys; from nx_27017.nx_27017 import main; sys.exit(main())"


def unique_database_name(prefix: str = "jj_test") -> str:
    """A fresh database name, valid on MongoDB and as an nx-27017 file name (no dots, <= 64 chars)."""
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def external_mongo_uri() -> str | None:
    """MONGODB_URI when it names a real server (mongodb:// or mongodb+srv://), else None."""
    uri = os.environ.get("MONGODB_URI", "")
    return uri if uri.startswith(("mongodb://", "mongodb+srv://")) else None


def _ping(uri: str, timeout_ms: int) -> None:
    client: MongoClient[dict[str, object]] = MongoClient(
        uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
    )
    try:
        client.admin.command("ping")
    finally:
        client.close()


class MongoForTests(Protocol):
    """What the fixtures need from either kind of server."""

    @property
    def uri(self) -> str: ...

    def uri_for(self, database: str) -> str: ...

    def client(self) -> MongoClient[dict[str, object]]: ...

    def drop_database(self, database: str) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


class MongoWireServer:
    """One nx-27017 process on 127.0.0.1; stop() and start() keep the port and the data."""

    def __init__(self, database: str | None = None) -> None:
        if importlib.util.find_spec("nx_27017") is None:
            raise RuntimeError("nx-27017 is not installed (it is in requirements-dev.lock)")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="jj-mongo-"))
        self.database = database or unique_database_name()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return self.uri_for(self.database)

    @property
    def log_file(self) -> Path:
        return self.dir / "nx.log"

    def uri_for(self, database: str) -> str:
        """URI of another database on this server (each is its own SQLite file, dropped independently)."""
        return f"mongodb://127.0.0.1:{self.port}/{database}"

    def client(self) -> MongoClient[dict[str, object]]:
        """A plain pymongo client for test assertions (not the app's)."""
        return MongoClient(f"mongodb://127.0.0.1:{self.port}/", tz_aware=True, serverSelectionTimeoutMS=2000)

    def drop_database(self, database: str) -> None:
        """Drop one database (nx-27017 deletes its file)."""
        with self.client() as client:
            client.drop_database(database)

    def start(self) -> None:
        """Start (or restart) on the same port; waits until it answers ping."""
        # --data-dir: one SQLite file per logical database, so databases are isolated
        # and dropDatabase removes only its own (with --db FILE every logical database
        # shares one file and dropDatabase drops them all).
        # --pid-file/--log-file: the defaults are fixed paths in /tmp, and a second
        # server refuses to start while that pid file names a live process.
        command = [
            sys.executable,
            "-c",
            _NX_MAIN,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.dir / "data"),
            "--pid-file",
            str(self.dir / "nx.pid"),
            "--log-file",
            str(self.log_file),
        ]
        self.process = subprocess.Popen(command, cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                _ping(f"mongodb://127.0.0.1:{self.port}/", timeout_ms=250)
                return
            except PyMongoError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nx-27017 did not start on port {self.port}:\n{self._log_tail()}")

    def stop(self) -> None:
        """SIGTERM (nx-27017 exits cleanly and removes its pid file) and wait for the exit."""
        if self.process is None:
            return
        stop_process(self.process)
        self.process = None

    def close(self) -> None:
        """Stop and remove the data directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class ExternalMongo:
    """A real MongoDB named by a URI; databases handed out by uri_for are dropped at close()."""

    def __init__(self, base_uri: str, database: str | None = None) -> None:
        self.base_uri = base_uri
        self.database = database or unique_database_name()
        self._used: set[str] = set()

    @property
    def uri(self) -> str:
        return self.uri_for(self.database)

    def uri_for(self, database: str) -> str:
        """The base URI with its path replaced by database; credentials still authenticate where they did."""
        parts = urlsplit(self.base_uri)
        query = dict(parse_qsl(parts.query))
        if "@" in parts.netloc and "authSource" not in query:
            # Without authSource the driver authenticates against the URI's database:
            # keep it pointing at the original one (admin when the URI named none).
            query["authSource"] = parts.path.lstrip("/") or "admin"
        self._used.add(database)
        return urlunsplit((parts.scheme, parts.netloc, f"/{database}", urlencode(query), ""))

    def client(self) -> MongoClient[dict[str, object]]:
        """A plain pymongo client for test assertions (not the app's)."""
        return MongoClient(self.uri, tz_aware=True, serverSelectionTimeoutMS=5000)

    def drop_database(self, database: str) -> None:
        """Drop one database."""
        with self.client() as client:
            client.drop_database(database)
        self._used.discard(database)

    def start(self) -> None:
        """Nothing to start: check that the server answers."""
        _ping(self.uri, timeout_ms=5000)

    def stop(self) -> None:
        """Not ours to stop."""

    def close(self) -> None:
        """Drop every database this run used."""
        with self.client() as client:
            for database in sorted(self._used | {self.database}):
                client.drop_database(database)
        self._used.clear()


def mongo_for_tests() -> MongoForTests:
    """The real MongoDB in MONGODB_URI when set, otherwise a private nx-27017 (not yet started)."""
    uri = external_mongo_uri()
    return ExternalMongo(uri) if uri else MongoWireServer()
