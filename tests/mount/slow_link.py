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

from .relay import Relay


class SlowAnswers(Relay):
    """Relays `http://127.0.0.1:PORT` (`endpoint_url`) to the server at `target`,
    delaying the first bytes of each answer by `delay` seconds. A context manager: every
    socket and thread is closed on exit."""

    def __init__(self, target: str, delay: float) -> None:
        super().__init__(target)
        self.delay = delay

    def connected(self, client: socket.socket, upstream: socket.socket) -> None:
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
