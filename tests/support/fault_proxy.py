"""A small fault-injecting TCP proxy on 127.0.0.1 for the fault suite: pass, add latency, blackhole.

The service's REDIS_URL points at the proxy; the proxy forwards to the real server.
`delay(seconds)` holds every chunk that long before forwarding it (both directions),
`hold_replies(seconds)` holds only what the upstream sends back (a command arrives and
runs, its reply comes late: past a client's socket timeout, a reply lost to the client),
`drop()` discards everything sent meanwhile, for good (what a process sent just before
it died: it never arrives), `blackhole()` forwards nothing and answers nothing while keeping connections open (a
network that drops packets: clients see timeouts, not resets), `heal()` passes
again. When one side closes, the other is closed too, exactly as a direct connection
would see it: the proxy never re-establishes a connection behind a client's back.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from tests.support.redis_server import free_port


class FaultProxy:
    """TCP proxy from a free loopback port to upstream_port; faults switch at run time."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._delay_s = 0.0
        self._reply_delay_s = 0.0
        self._blackhole = False
        self._dropping = False
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> FaultProxy:
        """Start accepting."""
        self._thread.start()
        return self

    def delay(self, seconds: float) -> None:
        """Hold every chunk this long before forwarding it."""
        self._delay_s, self._blackhole = seconds, False

    def hold_replies(self, seconds: float) -> None:
        """Forward requests at once; hold every chunk of the upstream's replies this long."""
        self._reply_delay_s, self._delay_s, self._blackhole = seconds, 0.0, False

    def drop(self) -> None:
        """Discard every chunk from now on, in both directions, until heal()."""
        self._dropping = True

    def blackhole(self) -> None:
        """Forward nothing, answer nothing, keep connections open."""
        self._blackhole = True

    def heal(self) -> None:
        """Pass traffic through again, without delay."""
        self._delay_s, self._reply_delay_s, self._blackhole, self._dropping = 0.0, 0.0, False, False

    def stop(self) -> None:
        """Stop accepting and close every connection."""
        self._stopped.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            for sock in list(self._sockets):
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
            except OSError:
                client.close()  # upstream down: the client sees its connection refused-ish (closed)
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for source, target, replies in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pump, args=(source, target, replies), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, replies: bool) -> None:
        source.settimeout(0.2)
        try:
            while not self._stopped.is_set():
                try:
                    chunk = source.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                if self._dropping:
                    continue
                while self._blackhole and not self._stopped.is_set():
                    time.sleep(0.01)  # held while the hole lasts, then delivered late (as TCP retransmits)
                if self._delay_s:
                    time.sleep(self._delay_s)
                if replies and self._reply_delay_s:
                    time.sleep(self._reply_delay_s)
                target.sendall(chunk)
        except OSError:
            return
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with self._lock:
                    self._sockets.discard(sock)


@contextlib.contextmanager
def fault_proxy(upstream_port: int) -> Iterator[FaultProxy]:
    """A started proxy, stopped on exit."""
    proxy = FaultProxy(upstream_port).start()
    try:
        yield proxy
    finally:
        proxy.stop()
