"""Kernel-free tests of the file system: `Filesystem` on the memory store, driven by trio."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from fusestore.cache import CacheDir
from fusestore.core import Filesystem, MountSettings
from fusestore.stores import Store, open_store
from fusestore.stores.memory import MemoryStore

Body = Callable[[Filesystem], Awaitable[Any]]


class Harness:
    """Runs `Filesystem`s on one memory store and one cache directory, one after another
    (like remounts)."""

    def __init__(self, store: Store, cache_dir: Path) -> None:
        self.store = store
        self.cache_dir = cache_dir

    def run(self, body: Body, *, flusher: bool = True, sync: bool = True, **settings: Any) -> Any:
        """Open a Filesystem (replaying the journal), run `body`, sync (when the flusher
        runs), close. Returns what `body` returned."""
        options = {"writeback_delay": 0.01, "metadata_ttl": 60.0, **settings}

        async def main() -> Any:
            cache = CacheDir.for_store(self.store.to_url(), str(self.cache_dir)).open()
            fs = Filesystem(self.store, cache, MountSettings(**options))
            try:
                fs.replay()
                async with trio.open_nursery() as nursery:
                    if flusher:
                        await nursery.start(fs.flusher.run)
                    with trio.fail_after(30):
                        result = await body(fs)
                        if flusher and sync:
                            await fs.flusher.sync_all()
                    nursery.cancel_scope.cancel()
                return result
            finally:
                fs.close()
                cache.close()

        return trio.run(main)

    def objects(self) -> dict[str, bytes]:
        return {info.key: self.store.get_range(info.key) for info in self.store.iter_objects("")}


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    name = f"core-{uuid.uuid4().hex[:8]}"
    store = open_store(f"memory://{name}")
    yield Harness(store, tmp_path / "cache")
    MemoryStore.forget(name)


async def write_file(fs: Filesystem, parent: int, name: str, data: bytes, mode: int = 0o644) -> int:
    fh, node = await fs.create(parent, name, mode, 0o1, 0, 0)
    if data:
        await fs.write(fh, 0, data)
    fs.release(fh)
    return node.ino


async def read_file(fs: Filesystem, ino: int) -> bytes:
    fh, _ = await fs.open(ino, 0)
    try:
        return await fs.read(fh, 0, 1 << 30)
    finally:
        fs.release(fh)


async def ino_of(fs: Filesystem, path: str) -> int:
    ino = 1
    for name in path.split("/"):
        node = await fs.lookup(ino, name)
        assert node is not None, path
        ino = node.ino
    return ino
