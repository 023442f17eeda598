"""Azurite's Blob service (the Azure Storage emulator, an npm package) as a child process
on 127.0.0.1, for tests and trying az:// stores without an Azure account.

It runs as every test server does (`serverprocess`: loopback only, a free port, dies with
the process that started it), keeps its data in memory, and sends no telemetry.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

from .serverprocess import HOST, ServerProcess

#: Azurite's one built-in account and its key, published in Azure's documentation.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#: A well-formed key of the same length that Azurite refuses.
WRONG_KEY = "A" * 86 + "=="


class AzuriteServer(ServerProcess):
    """Azurite's Blob service (see `ServerProcess`), its data in memory and its working
    directory a temporary one. The interface matches the S3 test servers' where a mount
    test uses it: `name`, `endpoint_url`, `create_bucket`, `store_url`, `store_options`,
    `environment`, `log_tail`.
    """

    name = "Azurite"

    def __init__(self, port: int = 0, *, start_timeout: float = 60.0) -> None:
        super().__init__(port, start_timeout=start_timeout)
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

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

    def _prepare(self) -> str:
        self._workdir = tempfile.TemporaryDirectory(prefix="fusestore-azurite-")
        return self._workdir.name

    def _command(self) -> list[str]:
        binary = self.binary()
        if binary is None:
            raise RuntimeError("Azurite is not installed (npm install azurite)")
        return [
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

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}?comp=list", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # refused unsigned: it answers
        except OSError:
            return False

    def _cleanup(self) -> None:
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

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
