"""A real redis-server on a free port, started and stopped by the tests."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.support.processes import stop_process

# Below Linux's ephemeral range (32768-60999 by default): a port chosen here is never
# taken, between choosing it and the server's bind, by the outgoing connection of some
# other client (a replica, a sentinel, the tests themselves), which the kernel gives
# ports from that range. Port 0 would pick from that very range.
_PORT_RANGE = (20000, 32000)


def free_port() -> int:
    """A TCP port nobody listens on right now, outside the range outgoing connections use."""
    for _ in range(200):
        port = random.randrange(*_PORT_RANGE)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_PORT_RANGE} after 200 tries")


class RedisServer:
    """One redis-server process; stop() and start() keep the port (and, with persist=True, the data)."""

    def __init__(self, persist: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (scripts/test installs it)")
        self.binary = binary
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="jj-redis-"))
        self.persist = persist
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A plain client for test assertions (not the app's)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def start(self, *extra: str) -> None:
        """Start (or restart) on the same port, with extra redis-server arguments; waits until it answers PING."""
        save = ["--save", "", "--appendonly", "no"]
        if self.persist:
            # An RDB snapshot written at shutdown lets a restart come back with its old (stale) data.
            save = ["--save", "3600 1", "--appendonly", "no", "--dbfilename", "dump.rdb"]
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), *save, *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except redis.RedisError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        """Shut down (saving first when persist=True) and wait for the process to exit."""
        if self.process is None:
            return
        # SIGTERM: redis-server saves an RDB snapshot first when save points are set (persist=True).
        stop_process(self.process)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: no snapshot at shutdown, so a restart loads whatever the last SAVE wrote."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def close(self) -> None:
        """Stop and remove the data directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
