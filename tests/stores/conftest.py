"""One fixture per driver kind, so the conformance suite runs unchanged on each.

A `StoreFactory` opens stores of one kind on one fresh backend (a memory name, a
directory, a bucket): `root()` sees the whole backend, `at(prefix)` is confined below a
prefix, `denied()` is a store whose backend refuses writes.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fusestore.stores import Store, open_store
from fusestore.stores.faulty import FaultyStore
from fusestore.stores.memory import MemoryStore
from fusestore.testing.s3server import LocalS3Server

DRIVERS = ["memory", "file", "s3", "faulty"]  # faulty: a memory store wrapped, no faults


class StoreFactory:
    def __init__(
        self, kind: str, url: str, options: dict[str, str], cleanup: list[Callable[[], None]]
    ) -> None:
        self.kind = kind
        self.url = url
        self.options = options
        self._cleanup = cleanup
        self._opened: list[Store] = []

    def _open(self, url: str) -> Store:
        store = open_store(url, **self.options)
        if self.kind == "faulty":
            store = FaultyStore(store, "")
        self._opened.append(store)
        return store

    def root(self) -> Store:
        return self._open(self.url)

    def at(self, prefix: str) -> Store:
        return self._open(f"{self.url}/{prefix}")

    def close(self) -> None:
        for store in self._opened:
            store.close()
        for step in reversed(self._cleanup):
            step()


def _make_immutable(path: Path) -> bool:
    return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def denied_s3_server() -> Iterator[LocalS3Server]:
    """A second moto server that refuses every request: our test keys are unknown to it."""
    with LocalS3Server() as server:
        server.create_bucket("denied")
        server.require_auth()
        yield server


@pytest.fixture(params=DRIVERS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def stores(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    cleanup: list[Callable[[], None]] = []
    if kind in ("memory", "faulty"):
        name = f"conf-{uuid.uuid4().hex}"
        cleanup.append(lambda: MemoryStore.forget(name))
        factory = StoreFactory(kind, f"memory://{name}", {}, cleanup)
    elif kind == "file":
        root = tmp_path / "objects"
        root.mkdir()
        factory = StoreFactory(kind, f"file://{root}", {}, cleanup)
    else:
        server: LocalS3Server = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("make_bucket")()
        factory = StoreFactory(kind, f"s3://{bucket}", {"endpoint_url": server.endpoint_url}, cleanup)
    yield factory
    factory.close()


@pytest.fixture
def store(stores: StoreFactory) -> Store:
    """A fresh, empty store of each driver kind."""
    return stores.root()


@pytest.fixture
def denied_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store whose backend refuses writes: a read-only memory store, an immutable
    directory (chattr +i holds even for root), a server that rejects our credentials."""
    if kind == "memory":
        yield MemoryStore(read_only=True)
    elif kind == "faulty":
        yield FaultyStore(MemoryStore(read_only=True), "")
    elif kind == "file":
        root = tmp_path / "immutable"
        root.mkdir()
        if not shutil.which("chattr") or not _make_immutable(root):
            pytest.skip("chattr +i is not available on this file system")
        try:
            yield open_store(f"file://{root}")
        finally:
            subprocess.run(["chattr", "-i", str(root)], check=True)
    else:
        server: LocalS3Server = request.getfixturevalue("denied_s3_server")
        yield open_store("s3://denied", endpoint_url=server.endpoint_url)
