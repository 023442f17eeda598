"""Kernel-free tests of the core: a `Filesystem` on a memory store, driven by trio.

`Env` is one memory store plus one cache directory. `env.mount()` opens a `Filesystem`
on them the way the daemon does (cache dir, journal replay, flusher task), and on exit
syncs, stops the flusher and closes everything, so a test can "remount" as often as it
likes and then look at what the store really holds.
"""

from __future__ import annotations

import dataclasses
import os
import random
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from fusestore.cache import BLOCK_SIZE, CacheDir, Content
from fusestore.core import MountSettings, Node
from fusestore.core.filesystem import Filesystem
from fusestore.stores import Store, StoreUnavailable, open_store
from fusestore.stores.memory import MemoryStore, _etag, _Object
from fusestore.writeback.landings import TOKEN

MiB = 2**20

#: Store methods that write (recorded by `Env.calls`, and failing while `Env.offline`).
WRITES = (
    "put",
    "start_multipart",
    "put_part",
    "complete_multipart",
    "abort_multipart",
    "copy",
    "delete_many",
)
#: Store methods that read (recorded by `Env.calls`).
READS = ("get_range", "open_range", "head", "list")


class Env:
    """One memory store and one cache directory, shared by the mounts of one test."""

    def __init__(self, name: str, cache_dir: Path) -> None:
        self.name = name
        self.store: MemoryStore = open_store(f"memory://{name}")  # type: ignore[assignment]
        self.cache_dir = cache_dir
        #: every store call made through a spied method: (method, positional args)
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        #: while True, every writing store call fails with StoreUnavailable
        self.offline = False
        #: while True, listings carry no metadata, as S3's do
        self.bare_listings = False
        #: the store's own methods, for the test to call without being recorded
        self.real: dict[str, Callable[..., Any]] = {m: getattr(self.store, m) for m in (*WRITES, *READS)}
        for method in (*WRITES, *READS):
            self._spy(method)

    def _spy(self, method: str) -> None:
        real = getattr(self.store, method)

        def spied(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((method, args))
            if self.offline and method in WRITES:
                raise StoreUnavailable(f"test: the store is offline ({method})")
            result = real(*args, **kwargs)
            if method == "list" and self.bare_listings:
                objects = [dataclasses.replace(info, metadata=None) for info in result.objects]
                result = dataclasses.replace(result, objects=objects)
            return result

        setattr(self.store, method, spied)

    # -- mounting -----------------------------------------------------------------------

    def settings(self, **overrides: Any) -> MountSettings:
        options: dict[str, Any] = {"writeback_delay": 0.05, "metadata_ttl": 60.0, **overrides}
        return MountSettings(**options)

    @asynccontextmanager
    async def mount(
        self,
        *,
        flusher: bool = True,
        sync: bool = True,
        replay: bool = True,
        probe: bool = False,
        store: Store | None = None,
        deadline: float = 10,
        **settings: Any,
    ) -> AsyncIterator[Filesystem]:
        """A mounted Filesystem; on a clean exit `sync_all` (when the flusher runs), then close.

        The memory store honours conditional writes; unless `probe`, the flusher is told so
        rather than finding out with requests of its own (tests count requests). `store`:
        the env's store wrapped (faults), instead of the store itself. `deadline`: seconds
        the body and the final sync may take (virtual ones on the virtual clock)."""
        cache = CacheDir.for_store(self.store.to_url(), str(self.cache_dir)).open()
        fs = Filesystem(store or self.store, cache, self.settings(**settings))
        if not probe:
            fs.flusher.conditions_honoured = True
        try:
            if replay:
                fs.replay()
                fs.account_for_files()
            async with trio.open_nursery() as nursery:
                if flusher:
                    await nursery.start(fs.serve)
                with trio.fail_after(deadline):
                    yield fs
                    if flusher and sync:
                        await fs.flusher.sync_all()
                nursery.cancel_scope.cancel()
        finally:
            fs.close()
            cache.close()

    @staticmethod
    @asynccontextmanager
    async def flushing(fs: Filesystem, *, sync: bool = True) -> AsyncIterator[None]:
        """Run the flusher of a mount opened with `flusher=False`, for the body (then sync)."""
        async with trio.open_nursery() as nursery:
            await nursery.start(fs.serve)
            yield
            if sync:
                await fs.flusher.sync_all()
            nursery.cancel_scope.cancel()

    # -- the store's side -----------------------------------------------------------------

    def objects(self) -> dict[str, bytes]:
        """Every object in the store, read directly from the backend (no spy)."""
        backend = self.store._backend
        with backend.lock:
            return {key: obj.data for key, obj in sorted(backend.objects.items())}

    def metadata(
        self, key: str, *, without_token: bool = False, without_times: bool = False
    ) -> dict[str, str]:
        """The object's metadata (`without_token`: but the upload token, see landings;
        `without_times`: but the ctime and atime, which a change here sets)."""
        backend = self.store._backend
        with backend.lock:
            metadata = dict(backend.objects[key].metadata)
        if without_token:
            metadata.pop(TOKEN, None)
        if without_times:
            metadata.pop("ctime", None)
            metadata.pop("atime", None)
        return metadata

    def put(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> str:
        """Put an object as another client would (not recorded by the spy)."""
        etag: str = self.real["put"](key, data, metadata or {})
        return etag

    def put_raw(self, key: str, data: bytes) -> None:
        """Plant an object under a key the store's own `put` refuses (`a//b`, `x/../y`), as a
        bucket written by other tools may hold."""
        backend = self.store._backend
        with backend.lock:
            backend.objects[key] = _Object(data, {}, _etag(data), time.time())

    def called(self, method: str) -> list[tuple[Any, ...]]:
        return [args for name, args in self.calls if name == method]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    name = f"core-{uuid.uuid4().hex[:12]}"
    yield Env(name, tmp_path / "cache")
    MemoryStore.forget(name)


@pytest.fixture
def virtual_clock(monkeypatch: pytest.MonkeyPatch) -> MockClock:
    """Time that passes only while every task waits for it (trio's autojump clock), for
    tests of what TTLs and delays do: a test that asks for this fixture runs on it.

    Everything the core reads time from follows it: trio's clock (the flusher), and
    `time.monotonic` and `time.time` (metadata TTLs; the expiry of remembered listings).
    Blocking calls meant for worker threads (store calls) run inline instead, so the clock
    cannot jump while one is under way. A slow machine then changes nothing the test sees;
    a test that waits for a thread of its own must not use it."""
    clock = MockClock(autojump_threshold=0)
    start, wall, monotonic = clock.current_time(), time.time(), time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: monotonic + clock.current_time() - start)
    monkeypatch.setattr(time, "time", lambda: wall + clock.current_time() - start)

    async def run_inline(call: Callable[..., Any], *args: Any, **_options: Any) -> Any:
        await trio.lowlevel.checkpoint()
        return call(*args)

    monkeypatch.setattr(trio.to_thread, "run_sync", run_inline)
    return clock


def slow_store(env: Env, methods: tuple[str, ...], seed: int, most: float) -> None:
    """Each call of `methods` on the store first sleeps a random moment of up to `most`
    seconds (drawn from one generator seeded with `seed`, shared by the worker threads)."""
    pauses = random.Random(seed)
    lock = threading.Lock()
    for method in methods:
        inner = getattr(env.store, method)

        def slow(*args: Any, inner: Any = inner, **kwargs: Any) -> Any:
            with lock:
                pause = pauses.uniform(0, most)
            time.sleep(pause)
            return inner(*args, **kwargs)

        setattr(env.store, method, slow)


class GatedPut:
    """The store's first `put` (or first call of `method`) waits, once it is called, until
    the test lets it go on."""

    def __init__(self, env: Env, method: str = "put") -> None:
        self.started = threading.Event()
        self.proceed = threading.Event()
        inner = getattr(env.store, method)

        def gated(*args: Any, **kwargs: Any) -> Any:
            if not self.started.is_set():
                self.started.set()
                assert self.proceed.wait(5), "the test never let the upload go on"
            return inner(*args, **kwargs)

        setattr(env.store, method, gated)

    async def wait_until_started(self) -> None:
        with trio.fail_after(5):
            while not self.started.is_set():
                await trio.sleep(0.005)


def fill(content: Content, first: int, data: bytes | memoryview) -> None:
    """Bring fetched bytes into `content` from block `first` on, as a fetch does, on one
    thread: the file made if need be, the bytes written where blocks are missing, those
    blocks marked present."""
    content.ensure_file()
    content.fetched(first, -(-len(data) // BLOCK_SIZE), content.store_fetched(first, data))


# -- file-system helpers ---------------------------------------------------------------------


async def resolve(fs: Filesystem, path: str) -> Node:
    """The node at `path` (slash-separated, relative to the root), via lookups."""
    node = fs.node(1)
    for name in path.split("/") if path else []:
        found = await fs.lookup(node.ino, name)
        assert found is not None, f"{path}: no {name!r} in {node.path()}"
        node = found
    return node


async def ino_of(fs: Filesystem, path: str) -> int:
    return (await resolve(fs, path)).ino


async def mkdir(fs: Filesystem, path: str, mode: int = 0o755) -> Node:
    """A directory with the mount's default owner (and by default its default mode), so the
    store needs no marker to remember its attributes once it holds entries."""
    parent, _, name = path.rpartition("/")
    return await fs.mkdir(await ino_of(fs, parent), name, mode, fs.settings.uid, fs.settings.gid)


async def write_file(fs: Filesystem, path: str, data: bytes, mode: int = 0o644) -> Node:
    """Create `path` (its parent exists) as uid/gid 1000, write `data`, release."""
    parent, _, name = path.rpartition("/")
    fh, node = await fs.create(await ino_of(fs, parent), name, mode, os.O_WRONLY, 1000, 1000)
    if data:
        assert await fs.write(fh, 0, data) == len(data)
    fs.release(fh)
    return node


async def read_all(fs: Filesystem, ino: int, chunk: int = 128 * 1024) -> bytes:
    """Read a whole file through a new handle, sequentially in `chunk`-sized reads."""
    fh, _ = await fs.open(ino, os.O_RDONLY)
    try:
        parts: list[bytes] = []
        offset = 0
        while True:
            data = await fs.read(fh, offset, chunk)
            if not data:
                return b"".join(parts)
            parts.append(data)
            offset += len(data)
    finally:
        fs.release(fh)


async def read_path(fs: Filesystem, path: str) -> bytes:
    return await read_all(fs, await ino_of(fs, path))


async def listdir(fs: Filesystem, path: str = "") -> dict[str, Node]:
    """The entries of a directory through opendir/readdir/releasedir."""
    fh = await fs.opendir(await ino_of(fs, path))
    try:
        found: dict[str, Node] = {}
        cookie = 0
        # Request after request, as the kernel does: a listing under way gives its pages.
        while batch := list(await fs.readdir(fh, cookie)):
            found.update((name, node) for name, node, _ in batch)
            cookie = batch[-1][2]
        return found
    finally:
        fs.releasedir(fh)


def pattern(size: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating-per-block bytes (a misplaced block cannot go unnoticed)."""
    return random.Random(seed).randbytes(size)
