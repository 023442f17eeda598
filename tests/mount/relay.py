"""A TCP relay on 127.0.0.1 in front of an S3 server, for tests that need a say in what
passes between a daemon and the server (see slow_link.py and late_request.py)."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Self
from urllib.parse import urlsplit


class Relay:
    """Relays `endpoint_url` (http://127.0.0.1:PORT) to the server at `target`: each
    connection accepted gets one to the server, and `connected` starts whatever moves the
    bytes between the two. A context manager: every socket is closed on exit."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        assert parts.hostname == "127.0.0.1" and parts.port, target
        self.target = (parts.hostname, parts.port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False

    def connected(self, client: socket.socket, upstream: socket.socket) -> None:
        """Start moving bytes between a new client and its connection to the server."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._closed = True
            sockets = [self._listener, *self._sockets]
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                if self._closed:
                    return
                continue
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            self.connected(client, upstream)
