"""A cache disk that runs short: clean data gives way to new writes, and a write that
cannot be stored leaves the file showing, keeping and uploading the same bytes.

The disk is simulated: `statvfs` of the cache's data directory reports a small disk
whose used space is what the cache files really take (plus `taken`, to fill it at will).
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusestore.cache import Content
from fusestore.core import Filesystem

from .conftest import Env, MiB, pattern, read_path, resolve

pytestmark = pytest.mark.trio

BLOCK = 4096


class SmallDisk:
    """What `os.statvfs` says of the cache's data directory while a test runs."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.taken = 0  # bytes taken by something else on the disk
        self.data_dir: Path | None = None

    def used(self) -> int:
        assert self.data_dir is not None
        return self.taken + sum(entry.stat().st_blocks * 512 for entry in os.scandir(self.data_dir))

    def fill(self) -> None:
        """Take every free byte."""
        self.taken += max(0, self.size - self.used())

    def free(self) -> int:
        return max(0, self.size - self.used())


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmallDisk]:
    small = SmallDisk(32 * MiB)
    real = os.statvfs

    def statvfs(path: str | os.PathLike[str]) -> os.statvfs_result:
        if small.data_dir is None or Path(path) != small.data_dir:
            return real(path)
        blocks, free = small.size // BLOCK, small.free() // BLOCK
        return os.statvfs_result((BLOCK, BLOCK, blocks, free, free, 10**6, 10**6, 10**6, 0, 255))

    monkeypatch.setattr(os, "statvfs", statvfs)
    yield small


def on(disk: SmallDisk, fs: Filesystem) -> Filesystem:
    disk.data_dir = Path(fs.cache.data_dir)
    return fs


async def read_objects(fs: Filesystem, keys: list[str]) -> None:
    for key in keys:
        await read_path(fs, key)


async def test_clean_data_gives_way_to_a_write_when_the_disk_is_short(env: Env, disk: SmallDisk) -> None:
    """--cache-size (10 GiB) is far away, but the disk is not: the clean data read
    before is evicted, least recently used first, for the new file."""
    keys = [f"clean/{n}" for n in range(4)]
    for n, key in enumerate(keys):
        env.put(key, pattern(4 * MiB, seed=n))
    data = pattern(14 * MiB, seed=9)
    async with env.mount(writeback_delay=60) as fs:
        on(disk, fs)
        await read_objects(fs, keys)
        assert fs.contents.used == 16 * MiB
        assert disk.free() - 8 * MiB < len(data), "the new file would fit beside the clean data"
        fh, _ = await fs.create(1, "new", 0o644, os.O_WRONLY, 0, 0)
        for start in range(0, len(data), MiB):
            assert await fs.write(fh, start, data[start : start + MiB]) == MiB
        fs.release(fh)
        assert fs.contents.used < 16 * MiB + len(data), "nothing was evicted"
    assert env.objects()["new"] == data


async def test_the_eviction_loop_keeps_a_floor_of_free_space_on_the_cache_disk(
    env: Env, disk: SmallDisk
) -> None:
    """Free space below 8 MiB and a twentieth of the disk: the least recently used clean
    data goes, though --cache-size (10 GiB) is far away."""
    keys = [f"clean/{n}" for n in range(6)]
    etags = [env.put(key, pattern(4 * MiB, seed=n)) for n, key in enumerate(keys)]
    async with env.mount() as fs:
        on(disk, fs)
        await read_objects(fs, keys)
        assert disk.free() < 8 * MiB + 32 * MiB // 20  # 32 MiB disk, 24 MiB of clean data
        victims = fs.contents.evict_candidates()
        assert [victim.source for victim in victims] == [(keys[0], etags[0])]
        fs.contents.remove_files(victims)
        assert disk.free() >= 8 * MiB + 32 * MiB // 20
        assert fs.contents.evict_candidates() == []


async def write_chunks(fs: Filesystem, fh: int, chunks: dict[int, bytes]) -> dict[int, int]:
    """Write each chunk at its offset, in order: the errno of each that failed."""
    failed = {}
    for offset, chunk in chunks.items():
        try:
            await fs.write(fh, offset, chunk)
        except OSError as exc:
            failed[offset] = exc.errno
    return failed


def warnings_about(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and f"/{name}:" in r.getMessage()
    ]


async def test_a_write_that_cannot_be_stored_ends_the_file_where_its_data_ends(
    env: Env, disk: SmallDisk, caplog: pytest.LogCaptureFixture
) -> None:
    """The kernel's writeback sends a 3 MiB file as three writes; the second finds the
    disk full. The file keeps its first MiB, and shows, reads and uploads exactly that:
    the third write (room again by then) may not leave the second as zeros in the middle."""
    data = pattern(3 * MiB, seed=1)
    async with env.mount(writeback_delay=60) as fs:
        on(disk, fs)
        fh, node = await fs.create(1, "f", 0o644, os.O_WRONLY, 0, 0)
        assert await fs.write(fh, 0, data[:MiB]) == MiB
        taken = disk.taken
        disk.fill()
        generation = node.generation
        assert await write_chunks(fs, fh, {MiB: data[MiB : 2 * MiB]}) == {MiB: errno.ENOSPC}
        disk.taken = taken  # room again
        assert await write_chunks(fs, fh, {2 * MiB: data[2 * MiB :]}) == {2 * MiB: errno.ENOSPC}
        fs.release(fh)
        assert (await fs.getattr(node.ino)).size == MiB
        assert await read_path(fs, "f") == data[:MiB]
        assert node.generation == generation + 1, "the kernel keeps its own size and pages"
        # Opened again (as a new kernel inode), the file is written as usual.
        fh, _ = await fs.open(node.ino, os.O_WRONLY)
        assert await write_chunks(fs, fh, {MiB: data[MiB : 2 * MiB]}) == {}
        fs.release(fh)
        await fs.flusher.sync_all()
        assert env.objects()["f"] == data[: 2 * MiB]
    [warning] = warnings_about(caplog, "f")
    assert "the file is now 1048576 bytes" in warning


async def test_a_lost_write_sent_out_of_order_cuts_the_file_at_the_hole(
    env: Env, disk: SmallDisk, caplog: pytest.LogCaptureFixture
) -> None:
    """The kernel sent the third MiB before the second, which then finds the disk full:
    the third would follow zeros, so the file ends at the second."""
    data = pattern(3 * MiB, seed=2)
    async with env.mount(writeback_delay=60) as fs:
        on(disk, fs)
        fh, node = await fs.create(1, "f", 0o644, os.O_WRONLY, 0, 0)
        assert await write_chunks(fs, fh, {0: data[:MiB], 2 * MiB: data[2 * MiB :]}) == {}
        disk.fill()
        assert await write_chunks(fs, fh, {MiB: data[MiB : 2 * MiB]}) == {MiB: errno.ENOSPC}
        fs.release(fh)
        assert node.size == MiB
        assert await read_path(fs, "f") == data[:MiB]
    assert env.objects()["f"] == data[:MiB]
    assert len(warnings_about(caplog, "f")) == 1


async def test_a_lost_overwrite_of_stored_bytes_leaves_them_as_they_were(
    env: Env, disk: SmallDisk, caplog: pytest.LogCaptureFixture
) -> None:
    """Bytes that replace bytes the file holds: the write did not happen, the file keeps
    its old bytes there (nothing is cut from it)."""
    old = pattern(3 * MiB, seed=3)
    env.put("f", old)
    async with env.mount(writeback_delay=60) as fs:
        on(disk, fs)
        await read_path(fs, "f")
        node = await resolve(fs, "f")
        fh, _ = await fs.open(node.ino, os.O_WRONLY)
        disk.fill()
        generation = node.generation
        assert await write_chunks(fs, fh, {MiB: pattern(MiB, seed=4)}) == {MiB: errno.ENOSPC}
        fs.release(fh)
        assert node.size == 3 * MiB
        assert await read_path(fs, "f") == old
        assert node.generation == generation + 1, "the kernel's pages hold the lost bytes"
    assert env.objects()["f"] == old
    assert len(warnings_about(caplog, "f")) == 1


async def test_a_write_the_disk_refuses_after_all_evicts_clean_data_and_is_tried_once_more(
    env: Env, disk: SmallDisk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """statvfs said the write would fit, but another writer took the room first: the
    disk's ENOSPC makes clean data give way, and the write is tried again."""
    disk.size = 25 * MiB  # 9 MiB free beside the clean data: above the reserve, below the floor
    keys = [f"clean/{n}" for n in range(4)]
    for n, key in enumerate(keys):
        env.put(key, pattern(4 * MiB, seed=n))
    refusals = [OSError(errno.ENOSPC, "No space left on device")]
    real_write = Content.write

    def write(content: Content, offset: int, data: bytes | memoryview) -> int:
        if refusals:
            raise refusals.pop()
        return real_write(content, offset, data)

    async with env.mount(writeback_delay=60) as fs:
        on(disk, fs)
        await read_objects(fs, keys)
        monkeypatch.setattr(Content, "write", write)
        fh, _ = await fs.create(1, "f", 0o644, os.O_WRONLY, 0, 0)
        assert await fs.write(fh, 0, b"stored") == 6
        fs.release(fh)
        assert not refusals
        assert fs.contents.used < 16 * MiB + 6, "no clean data gave way"
    assert env.objects()["f"] == b"stored"
