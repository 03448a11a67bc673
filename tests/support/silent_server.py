"""A TCP server on 127.0.0.1 that accepts connections and never answers: a hung dependency."""

from __future__ import annotations

import socket
import threading


class SilentServer:
    """Accepts every connection, reads nothing, writes nothing, until closed."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # closed
                return
            self._accepted.append(connection)

    def close(self) -> None:
        """Stop accepting and drop every connection (clients then see a reset)."""
        self._listener.close()
        for connection in self._accepted:
            connection.close()
        self._thread.join(timeout=5)
