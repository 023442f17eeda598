"""`ServerProcess`: a local store server (moto, SeaweedFS, Azurite, fake-gcs-server) as a
child process, for tests, the demo and benchmarks.

Each binds only the loopback address, on a free port unless one is given, logs into a
temporary file (a pipe nobody drains would fill and stall it), and dies with the process
that started it (PR_SET_PDEATHSIG), so a killed test run leaves no server behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import tempfile
import time
from typing import Self

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def die_with_parent() -> None:
    """For `preexec_fn`: the child gets SIGTERM when its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ServerProcess:
    """A server as a child process: `start()` returns once it answers; `stop()` ends it.

    Blocking: start waits up to `start_timeout` seconds, stop up to a few seconds.
    Subclasses say how to run the server (`_command`, `_environment`) and how to tell
    that it answers (`_answers`); `_prepare` and `_cleanup` make and remove what it needs
    around its life (a data directory).
    """

    name = "the server"
    #: where the server's stdout goes: its log, or nowhere (a server that writes its
    #: requests to stderr, whose log is read request by request)
    log_stdout = True

    def __init__(self, port: int = 0, *, start_timeout: float = 60.0) -> None:
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _environment(self) -> dict[str, str] | None:
        return None  # this process's

    def _answers(self) -> bool:
        raise NotImplementedError

    def _prepare(self) -> str | None:
        """Before the process starts; the working directory it gets (None: ours)."""
        return None

    def _cleanup(self) -> None:
        """Once the process has ended (or never started)."""

    def start(self) -> Self:
        try:
            cwd = self._prepare()
            self.process = subprocess.Popen(
                self._command(),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=self._log if self.log_stdout else subprocess.DEVNULL,
                stderr=self._log,
                env=self._environment(),
                preexec_fn=die_with_parent,
                start_new_session=True,  # a Ctrl-C at the terminal is for us, who stop it after cleaning up
            )
            deadline = time.monotonic() + self.start_timeout
            while not self._answers():
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited at start: {self.log_tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not answer on {self.endpoint_url}")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(5)
            self.process = None
        self._cleanup()

    def log_tail(self, size: int = 500) -> str:
        """The end of the server's log, for error messages."""
        self._log.seek(0, os.SEEK_END)
        self._log.seek(max(0, self._log.tell() - size))
        return self._log.read().decode(errors="replace").strip()

    def log_size(self) -> int:
        """Where the server's log ends now (for `log_since`)."""
        self._log.seek(0, os.SEEK_END)
        return self._log.tell()

    def log_since(self, offset: int) -> str:
        """What the server logged after `offset` (moto's, fake-gcs-server's: one line per
        request it served)."""
        self._log.seek(offset)
        return self._log.read().decode(errors="replace")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
