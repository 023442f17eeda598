"""A slow link to an S3 server: a TCP relay on 127.0.0.1 that holds back every answer.

A request goes through at once, and the server acts on it; its answer reaches the client
`delay` seconds later. A daemon killed in that time has changed the store without knowing
it, which is the moment a crash test wants to hit (an upload done, the journal not told).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from urllib.parse import urlsplit


class SlowAnswers:
    """Relays `http://127.0.0.1:PORT` (`endpoint_url`) to the server at `target`,
    delaying the first bytes of each answer by `delay` seconds. A context manager: every
    socket and thread is closed on exit."""

    def __init__(self, target: str, delay: float) -> None:
        parts = urlsplit(target)
        assert parts.hostname == "127.0.0.1" and parts.port, target
        self.target = (parts.hostname, parts.port)
        self.delay = delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> SlowAnswers:
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
            asked = threading.Event()
            threading.Thread(target=self._pipe, args=(client, upstream, asked, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, asked, True), daemon=True).start()

    def _pipe(
        self, source: socket.socket, sink: socket.socket, asked: threading.Event, answers: bool
    ) -> None:
        try:
            while data := source.recv(65536):
                if not answers:
                    asked.set()
                elif asked.is_set():  # the first bytes of an answer
                    asked.clear()
                    time.sleep(self.delay)
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
