"""A link to an S3 server that holds one PUT back until the next daemon has asked about it.

A TCP relay on 127.0.0.1. The first PUT of `key` it sees is kept in the relay (the daemon
has sent it all and waits for the answer); it goes on to the server, whatever became of
the daemon, once the server has answered the next HEAD of `key`; and the next PUT of
`key` after that waits until the server has answered the held one. So a daemon killed
with that PUT on its way is followed by a store that takes it after the next daemon
found it missing, and before that daemon's own upload of the key: a server still
working on a dead client's request.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from .relay import Relay


class LateRequest(Relay):
    """Relays `endpoint_url` to the server at `target`, holding back the first PUT of
    `/bucket/key` as the module docstring says. A context manager: every socket is
    closed on exit. `held` counts the bytes held; `late_status` is the server's status
    line for the held PUT, once answered."""

    def __init__(self, target: str, bucket: str, key: str) -> None:
        super().__init__(target)
        self.put = f"PUT /{bucket}/{key} ".encode()
        self.head = f"HEAD /{bucket}/{key} ".encode()
        self.held = 0
        self._buffer: list[bytes] = []
        self._held_upstream: socket.socket | None = None
        self.caught = threading.Event()  # the PUT is held
        self.released = threading.Event()  # a HEAD of the key was answered since: sent on
        self.answered = threading.Event()  # the server answered the held PUT
        self.late_status = ""

    def connected(self, client: socket.socket, upstream: socket.socket) -> None:
        state = {"held": False, "head": False}
        threading.Thread(target=self._requests, args=(client, upstream, state), daemon=True).start()
        threading.Thread(target=self._answers, args=(upstream, client, state), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, state: dict[str, bool]) -> None:
        try:
            while data := client.recv(65536):
                if state["held"]:
                    self._buffer.append(data)
                    self.held += len(data)
                    continue
                if data.startswith(self.put) and not self.caught.is_set():
                    state["held"] = True
                    self._held_upstream = upstream
                    self._buffer.append(data)
                    self.held += len(data)
                    self.caught.set()
                    continue
                if data.startswith(self.put) and self.released.is_set():
                    self.answered.wait(30)  # the late one first
                if data.startswith(self.head) and self.caught.is_set() and not self.released.is_set():
                    state["head"] = True
                upstream.sendall(data)
            if not state["held"]:
                upstream.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _answers(self, upstream: socket.socket, client: socket.socket, state: dict[str, bool]) -> None:
        try:
            while data := upstream.recv(65536):
                if state["held"] and not self.answered.is_set():
                    # the final answer, past any "100 Continue"
                    for part in data.split(b"\r\n\r\n"):
                        if part.startswith(b"HTTP/1.") and part[9:10] != b"1":
                            self.late_status = part.split(b"\r\n", 1)[0].decode(errors="replace")
                            self.answered.set()
                            break
                with contextlib.suppress(OSError):
                    client.sendall(data)
                if state["head"]:
                    state["head"] = False
                    self._release()
        except OSError:
            pass

    def _release(self) -> None:
        """The held PUT goes on to the server (its client may be long dead)."""
        if self.released.is_set():
            return
        self.released.set()
        assert self._held_upstream is not None
        with contextlib.suppress(OSError):
            self._held_upstream.sendall(b"".join(self._buffer))
