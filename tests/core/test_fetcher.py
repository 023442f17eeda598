"""Streamed fetches (core/fetcher.py): one GET per run of missing blocks, split by a jump,
reopened after a break."""

from __future__ import annotations

import errno
import os
import threading
import time
import tracemalloc
from typing import Any

import pytest
import trio
from trio.testing import MockClock, wait_all_tasks_blocked

from fusestore.cache import BLOCK_SIZE, Content
from fusestore.core import fetcher
from fusestore.core.fetcher import BLOCKS_PER_READ
from fusestore.stores import StoreUnavailable
from fusestore.stores.base import ObjectReader

from .conftest import Env, MiB, ino_of, pattern, read_all

pytestmark = pytest.mark.trio


async def test_a_sequential_read_is_one_get(env: Env) -> None:
    data = pattern(24 * MiB + 5, seed=1)
    env.put("f", data)
    async with env.mount() as fs:
        assert await read_all(fs, await ino_of(fs, "f"), MiB) == data
    assert [(start, length) for _, start, length, *_ in env.called("open_range")] == [(0, len(data))]


async def test_a_jump_far_ahead_gets_its_own_get_and_skips_the_middle(env: Env) -> None:
    data = pattern(64 * MiB, seed=2)
    env.put("f", data)
    async with env.mount() as fs:
        fh, _ = await fs.open(await ino_of(fs, "f"), os.O_RDONLY)
        for offset in range(0, 4 * MiB, MiB):  # sequential: the stream runs a window ahead
            assert await fs.read(fh, offset, MiB) == data[offset : offset + MiB]
        far = 48 * MiB
        assert await fs.read(fh, far, 4096) == data[far : far + 4096]
        content = fs.handles.file(fh).content
        assert content is not None
        starts = [start for _, start, *_ in env.called("open_range")]
        assert starts == [0, far], "the far read did not wait for the first stream to get there"
        assert not any(content.present >> block & 1 for block in range(20, 48)), "the middle stayed out"
        fs.release(fh)


class BreakingReader(ObjectReader):
    """Gives `limit` bytes of another reader, then fails as a dropped connection would."""

    def __init__(self, inner: ObjectReader, limit: int) -> None:
        self.inner, self.left = inner, limit

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise StoreUnavailable("test: connection reset mid-stream")
        chunk = self.inner.read(min(size, self.left) if size >= 0 else self.left)
        self.left -= len(chunk)
        return chunk

    def close(self) -> None:
        self.inner.close()


async def test_a_stream_broken_midway_is_reopened_where_it_stopped(env: Env) -> None:
    data = pattern(8 * MiB + 100, seed=3)
    env.put("f", data)
    spied = env.store.open_range
    opened = 0

    def breaking(*args: Any, **kwargs: Any) -> ObjectReader:
        nonlocal opened
        opened += 1
        reader = spied(*args, **kwargs)
        return BreakingReader(reader, 2 * BLOCK_SIZE + 1000) if opened == 1 else reader

    env.store.open_range = breaking  # type: ignore[method-assign]
    async with env.mount() as fs:
        assert await read_all(fs, await ino_of(fs, "f"), MiB) == data
    starts = [start for _, start, *_ in env.called("open_range")]
    assert starts == [0, 2 * BLOCK_SIZE], "reopened at the first block it could not finish"


class StalledReader(ObjectReader):
    """A GET the store answered but sends no bytes of: every read hangs until `release`."""

    def __init__(self, inner: ObjectReader, release: threading.Event) -> None:
        self.inner, self.release = inner, release

    def read(self, size: int = -1) -> bytes:
        self.release.wait(20)
        raise StoreUnavailable("test: the connection died")

    def close(self) -> None:
        self.inner.close()


async def test_a_stream_that_brings_nothing_fails_the_read_after_the_io_timeout(env: Env) -> None:
    # The GET is answered, then no byte comes: the read fails (EIO) after about the I/O
    # timeout instead of re-opening for ever (a read that times out is abandoned, so the
    # store is never marked down).
    env.put("f", pattern(4 * MiB, seed=5))
    spied = env.store.open_range
    release = threading.Event()
    env.store.open_range = lambda *a, **k: StalledReader(spied(*a, **k), release)  # type: ignore[method-assign]
    try:
        async with env.mount(io_timeout=1.0) as fs:
            fh, _ = await fs.open(await ino_of(fs, "f"), os.O_RDONLY)
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await fs.read(fh, 0, MiB)
            assert 0.99 <= time.monotonic() - started < 5
            fs.release(fh)
    finally:
        release.set()


async def test_a_stream_that_keeps_breaking_but_makes_progress_completes(
    env: Env, virtual_clock: MockClock
) -> None:
    # Each GET takes 0.4 of the I/O timeout and breaks after a trip's worth of blocks:
    # together far longer than the timeout, but every GET brings something.
    data = pattern(16 * MiB, seed=6)
    env.put("f", data)
    spied = env.store.open_range

    def breaking(*args: Any, **kwargs: Any) -> ObjectReader:
        virtual_clock.jump(0.4)
        return BreakingReader(spied(*args, **kwargs), BLOCKS_PER_READ * BLOCK_SIZE + 1000)

    env.store.open_range = breaking  # type: ignore[method-assign]
    async with env.mount(io_timeout=1.0) as fs:
        assert await read_all(fs, await ino_of(fs, "f"), MiB) == data
    assert len(env.called("open_range")) >= 4


async def test_small_writes_spread_over_an_object_take_few_gets(env: Env) -> None:
    """Each write into a block not cached needs its old bytes; one stream brings the
    blocks after it as well, since the upload will want the whole object anyway."""
    size = 64 * MiB
    data = bytearray(pattern(size, seed=3))
    env.put("f", bytes(data))
    async with env.mount() as fs:
        fh, _ = await fs.open(await ino_of(fs, "f"), os.O_RDWR)
        for block in (0, 40, 20, 60, 10, 50, 30):  # far apart: each would be its own GET
            offset = block * MiB + 4096
            await fs.write(fh, offset, b"w" * 4096)
            data[offset : offset + 4096] = b"w" * 4096
        fs.release(fh)
        gets = len(env.called("open_range"))
        assert gets <= 2, f"{gets} GETs for 7 small writes into one object"
    assert env.objects()["f"] == bytes(data)


async def test_a_cache_disk_that_fails_mid_stream_fails_the_read_after_one_get(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.put("f", pattern(8 * MiB, seed=4))

    def full(self: Content, first: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    async with env.mount() as fs:
        ino = await ino_of(fs, "f")
        monkeypatch.setattr(Content, "store_fetched", full)
        with trio.fail_after(10), pytest.raises(OSError) as failed:
            await read_all(fs, ino, MiB)
        assert failed.value.errno == errno.ENOSPC
    assert len(env.called("open_range")) == 1, "another GET would fail the same way"


async def test_streams_paused_for_their_readers_hold_no_buffers(env: Env) -> None:
    """Each stream reads into a reused 4 MiB buffer; one waiting for its reader to go on
    (up to IDLE_STOP) lets it go after BUFFERS_KEPT_PAUSED, or 20 readers stopped
    part-way would hold 80 MiB."""
    for i in range(20):
        env.put(f"f{i}", pattern(64 * MiB, seed=i))
    async with env.mount() as fs:
        tracemalloc.start()
        try:
            for i in range(20):
                fh, _ = await fs.open(await ino_of(fs, f"f{i}"), os.O_RDONLY)
                for offset in range(0, 2 * MiB, MiB):  # sequential: its stream runs ahead, then waits
                    await fs.read(fh, offset, MiB)
            with trio.fail_after(10):  # every stream reaches its readers' window and pauses
                while any(s.position < min(s.limit, s.end) for s in fs.fetcher.streams.values()):
                    await trio.sleep(0.01)
            await trio.sleep(fetcher.BUFFERS_KEPT_PAUSED + 0.5)
            await wait_all_tasks_blocked()  # and each has let its buffers go
            assert fs.fetcher.streams, "the streams ended: the test proves nothing"
            held = sum(
                stat.size
                for stat in tracemalloc.take_snapshot().statistics("filename")
                if stat.traceback[0].filename.endswith("fetcher.py")
            )
        finally:
            tracemalloc.stop()
    assert held < 8 * MiB, f"paused streams hold {held / MiB:.0f} MiB of buffers"


async def test_a_fetch_writes_the_cache_file_from_a_worker_thread(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trio thread also answers the kernel's reads of the same file: a cold read
    goes at the speed of one thread doing both unless the fetched bytes are written
    into the cache file where they were read from the socket."""
    data = pattern(8 * MiB + 5, seed=7)
    env.put("f", data)
    real_pwrite = os.pwrite
    on_trio_thread: list[int] = []

    def pwrite(fd: int, chunk: Any, offset: int) -> int:
        if threading.current_thread() is threading.main_thread():
            on_trio_thread.append(len(chunk))
        return real_pwrite(fd, chunk, offset)

    async with env.mount() as fs:
        ino = await ino_of(fs, "f")
        monkeypatch.setattr(os, "pwrite", pwrite)
        assert await read_all(fs, ino, MiB) == data
    assert on_trio_thread == [], f"{len(on_trio_thread)} writes of fetched bytes on the trio thread"


class PausedReader(ObjectReader):
    """Another reader's bytes, its first read held in the worker thread until `go_on`."""

    def __init__(self, inner: ObjectReader, reading: threading.Event, go_on: threading.Event) -> None:
        self.inner, self.reading, self.go_on = inner, reading, go_on

    def read(self, size: int = -1) -> bytes:
        return self.inner.read(size)

    def readinto(self, buffer: memoryview) -> int:
        if not self.reading.is_set():
            self.reading.set()
            self.go_on.wait(10)
        return self.inner.readinto(buffer)

    def close(self) -> None:
        self.inner.close()


async def test_local_writes_and_a_truncate_during_a_fetch_keep_their_bytes(env: Env) -> None:
    """While a stream's worker thread is reading blocks 0-3 off the socket, the file is
    written over whole blocks and cut: what it then writes into the cache file never
    replaces those bytes, and nothing past the cut comes back."""
    data = bytearray(pattern(4 * MiB, seed=8))
    env.put("f", bytes(data))
    reading, go_on = threading.Event(), threading.Event()
    spied = env.store.open_range

    def paused(*args: Any, **kwargs: Any) -> ObjectReader:
        return PausedReader(spied(*args, **kwargs), reading, go_on)

    env.store.open_range = paused  # type: ignore[method-assign]
    async with env.mount() as fs:
        ino = await ino_of(fs, "f")
        fh, _ = await fs.open(ino, os.O_RDWR)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fs.read, fh, 0, 4096)  # starts the stream
            with trio.fail_after(10):
                await trio.to_thread.run_sync(reading.wait)
            try:
                await fs.write(fh, MiB, b"L" * MiB)  # whole block 1: no fetch needed
                data[MiB : 2 * MiB] = b"L" * MiB
                await fs.setattr(ino, size=3 * MiB, fh=fh)  # at a block's edge: no fetch
                del data[3 * MiB :]
            finally:
                go_on.set()
        with trio.fail_after(10):
            assert await read_all(fs, ino, MiB) == bytes(data)
        fs.release(fh)
    assert env.objects()["f"] == bytes(data)
