"""Azurite's Blob service (the Azure Storage emulator, an npm package) as a child process
on 127.0.0.1, for tests and trying az:// stores without an Azure account.

It binds only the loopback address, on a free port unless one is given, keeps its data
in memory (its working directory is a temporary one, removed by `stop()`), sends no
telemetry, and dies with the process that started it (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Self

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

from .s3server import HOST, _die_with_parent, free_port

#: Azurite's one built-in account and its key, published in Azure's documentation.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#: A well-formed key of the same length that Azurite refuses.
WRONG_KEY = "A" * 86 + "=="


class AzuriteServer:
    """Azurite's Blob service: `start()` returns once it answers; `stop()` ends it.

    Blocking: start waits up to `start_timeout` seconds, stop up to a few seconds.
    The interface matches the S3 test servers' where a mount test uses it: `name`,
    `endpoint_url`, `create_bucket`, `store_url`, `store_options`, `environment`,
    `log_tail`.
    """

    name = "Azurite"

    def __init__(self, port: int = 0, *, start_timeout: float = 60.0) -> None:
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        # Nobody drains a pipe: the log goes to a file.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server

    @staticmethod
    def binary() -> str | None:
        """`azurite-blob`: on PATH, or where `make venv` installs it beside this Python."""
        found = shutil.which("azurite-blob")
        if found:
            return found
        venv = os.path.dirname(os.path.dirname(sys.executable))
        bundled = os.path.join(venv, "node", "node_modules", ".bin", "azurite-blob")
        return os.path.abspath(bundled) if os.access(bundled, os.X_OK) else None

    @staticmethod
    def available() -> bool:
        return AzuriteServer.binary() is not None and shutil.which("node") is not None

    @property
    def endpoint_url(self) -> str:
        """The blob service's URL, path-style with the account (Azurite's form)."""
        return f"http://{HOST}:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.endpoint_url};"
        )

    def start(self) -> Self:
        binary = self.binary()
        if binary is None:
            raise RuntimeError("Azurite is not installed (npm install azurite)")
        self._workdir = tempfile.TemporaryDirectory(prefix="fusestore-azurite-")
        command = [
            binary,
            "--blobHost",
            HOST,
            "--blobPort",
            str(self.port),
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
        ]
        try:
            self.process = subprocess.Popen(
                command,
                cwd=self._workdir.name,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
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

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}?comp=list", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # refused unsigned: it answers
        except OSError:
            return False

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
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, size: int = 500) -> str:
        """The end of the server's log, for error messages."""
        self._log.seek(0, os.SEEK_END)
        self._log.seek(max(0, self._log.tell() - size))
        return self._log.read().decode(errors="replace").strip()

    def client(self) -> BlobServiceClient:
        """An SDK client for this server, independent of the environment."""
        return BlobServiceClient.from_connection_string(self.connection_string)

    def create_bucket(self, name: str) -> None:
        """Create the container `name` (one that exists already is fine)."""
        with contextlib.suppress(ResourceExistsError):
            self.client().create_container(name)

    def store_url(self, bucket: str) -> str:
        return f"az://{bucket}"

    def store_options(self) -> dict[str, str]:
        """The non-secret options of a store on this server."""
        return {"endpoint": self.endpoint_url, "account": ACCOUNT}

    def environment(self) -> dict[str, str]:
        """The variables that give a store (or a daemon) the account's key."""
        return {"AZURE_STORAGE_ACCOUNT": ACCOUNT, "AZURE_STORAGE_KEY": ACCOUNT_KEY}

    def denied_environment(self) -> dict[str, str]:
        """Variables with a key the server refuses: every request fails with 403."""
        return {"AZURE_STORAGE_ACCOUNT": ACCOUNT, "AZURE_STORAGE_KEY": WRONG_KEY}
