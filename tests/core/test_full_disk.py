"""A cache disk that runs short: clean data gives way to new writes, and a write that
cannot be stored leaves the file showing, keeping and uploading the same bytes.

The disk is simulated: `statvfs` of the cache's data directory reports a small disk
whose used space is what the cache files really take (plus `taken`, to fill it at will).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from fusestore.cache import Content, Journal, inspector
from fusestore.core.filesystem import Filesystem

from .conftest import Env, MiB, pattern, read_path, resolve, write_file
from .test_journal_and_remount import crash_copy

pytestmark = pytest.mark.trio

BLOCK = 4096


class SmallDisk:
    """What `os.statvfs` says of the cache's data directory while a test runs.

    The mount measures the free space only now and then (and counts what it writes in
    between); another program filling the disk is caught by the disk's own ENOSPC, which
    the fake disk does not give: so a change of `taken` has the mount measure again."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._taken = 0
        self.data_dir: Path | None = None
        self.fs: Filesystem | None = None
        #: how many times the mount measured the free space
        self.measured = 0

    @property
    def taken(self) -> int:
        """Bytes taken by something else on the disk."""
        return self._taken

    @taken.setter
    def taken(self, value: int) -> None:
        self._taken = value
        if self.fs is not None:
            self.fs.contents.room.measure()

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
        small.measured += 1
        blocks, free = small.size // BLOCK, small.free() // BLOCK
        return os.statvfs_result((BLOCK, BLOCK, blocks, free, free, 10**6, 10**6, 10**6, 0, 255))

    monkeypatch.setattr(os, "statvfs", statvfs)
    yield small


def on(disk: SmallDisk, fs: Filesystem) -> Filesystem:
    disk.data_dir = Path(fs.cache.data_dir)
    disk.fs = fs
    disk.taken = disk.taken  # measured on this disk
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
        await fs.budgets.evict()
        kept = {content.source for content in fs.contents.all()}
        assert kept == {(key, etag) for key, etag in zip(keys, etags, strict=True)} - {(keys[0], etags[0])}
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


@pytest.mark.parametrize("settled_by", ["close", "fsync", "upload"])
async def test_a_failed_write_into_a_sparse_file_keeps_what_was_written_before(
    env: Env, disk: SmallDisk, settled_by: str
) -> None:
    """4 KiB written at 16 MiB, a hole before them on purpose, then closed, fsynced or
    uploaded. A later write at 0 that the full disk refuses did not happen: the file keeps
    its 16 MiB + 4 KiB (no hole of that burst is left to cut at), and so does the store."""
    tail = pattern(4096, seed=5)
    sparse = bytes(16 * MiB) + tail
    async with env.mount(writeback_delay=60) as fs:
        on(disk, fs)
        fh, node = await fs.create(1, "f", 0o644, os.O_WRONLY, 0, 0)
        assert await fs.write(fh, 16 * MiB, tail) == 4096
        if settled_by == "close":
            fs.flush(fh)
            fs.release(fh)
            fh, _ = await fs.open(node.ino, os.O_WRONLY)
        elif settled_by == "fsync":
            await fs.fsync(fh)
        else:
            await fs.flusher.sync_all()
            assert env.objects()["f"] == sparse
        disk.fill()
        assert await write_chunks(fs, fh, {0: pattern(4096, seed=6)}) == {0: errno.ENOSPC}
        fs.release(fh)
        assert node.size == len(sparse)
        disk.taken = 0
        assert await read_path(fs, "f") == sparse
    assert env.objects()["f"] == sparse


async def test_a_write_waiting_for_room_does_not_land_past_what_a_concurrent_failure_kept(
    env: Env, disk: SmallDisk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writes of one kernel inode on a full disk: the second (at 2 MiB) waits for the
    room an unlinked file will give back; meanwhile the first (at 1 MiB) fails, and the
    file keeps 1 MiB. Once room comes, the waiting write may not land at 2 MiB, past the
    lost MiB (which would read and go up as zeros)."""
    data = pattern(4 * MiB, seed=7)
    real_write = Content.write

    def refusing(content: Content, offset: int, chunk: bytes | memoryview) -> int:
        if offset == MiB:  # the disk refuses this one though the estimate said it fits
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(content, offset, chunk)

    async with env.mount(writeback_delay=60) as fs:
        on(disk, fs)
        fs.budgets.room_wait = 60.0  # the wait is ended by the release
        fh, node = await fs.create(1, "f", 0o644, os.O_WRONLY, 0, 0)
        assert await fs.write(fh, 0, data[:MiB]) == MiB
        gone_fh, _ = await fs.create(1, "gone", 0o644, os.O_WRONLY, 0, 0)
        assert await fs.write(gone_fh, 0, pattern(MiB, seed=8)) == MiB
        await fs.unlink(1, "gone")  # still open: its room comes back at its release
        disk.taken += disk.free() - 8 * MiB - MiB  # room for a small write, not for 2 MiB
        monkeypatch.setattr(Content, "write", refusing)
        failed: dict[int, int] = {}
        async with trio.open_nursery() as nursery:
            waiting = trio.Event()

            async def second() -> None:
                waiting.set()
                failed.update(await write_chunks(fs, fh, {2 * MiB: data[2 * MiB :]}))

            nursery.start_soon(second)
            await waiting.wait()
            await trio.testing.wait_all_tasks_blocked(0.05)
            assert await write_chunks(fs, fh, {MiB: data[MiB : 2 * MiB]}) == {MiB: errno.ENOSPC}
            assert not failed, "the second write was still waiting for room"
            disk.taken = 0
            fs.release(gone_fh)
        assert failed == {2 * MiB: errno.ENOSPC}
        fs.release(fh)
        assert node.size == MiB
        assert await read_path(fs, "f") == data[:MiB]
    assert env.objects()["f"] == data[:MiB]


async def test_clean_data_evicted_for_a_write_leaves_no_index_entry(env: Env, disk: SmallDisk) -> None:
    keys = [f"clean/{n}" for n in range(4)]
    for n, key in enumerate(keys):
        env.put(key, pattern(4 * MiB, seed=n))
    async with env.mount(writeback_delay=60) as fs:
        on(disk, fs)
        await read_objects(fs, keys)
        ids = {content.id for content in fs.contents.all()}
        fh, _ = await fs.create(1, "new", 0o644, os.O_WRONLY, 0, 0)
        for start in range(0, 14 * MiB, MiB):
            assert await fs.write(fh, start, pattern(MiB, seed=start)) == MiB
        evicted = ids - {content.id for content in fs.contents.all()}
        assert evicted, "nothing was evicted"
        assert [i for i in evicted if ("content", i) in fs.index] == []
        fs.release(fh)


async def test_a_lost_write_that_cuts_the_file_survives_a_crash_right_after(
    env: Env, disk: SmallDisk, tmp_path: Path
) -> None:
    """The journal said 3 MiB (a persist after the kernel sent the third MiB ahead of the
    second); the second is lost and the file cut to 1 MiB. A kill -9 right after: the next
    mount finds the file as cut, not a cache file shorter than its record (set aside)."""
    data = pattern(3 * MiB, seed=9)
    async with env.mount(writeback_delay=60, flusher=False) as fs:
        on(disk, fs)
        fh, node = await fs.create(1, "f", 0o644, os.O_WRONLY, 0, 0)
        assert await write_chunks(fs, fh, {0: data[:MiB], 2 * MiB: data[2 * MiB :]}) == {}
        await fs.persist()
        assert node.jid is not None and fs.journal.read_all().nodes[node.jid]["size"] == 3 * MiB
        disk.fill()
        assert await write_chunks(fs, fh, {MiB: data[MiB : 2 * MiB]}) == {MiB: errno.ENOSPC}
        assert node.size == MiB
        crash_copy(env, tmp_path / "after-kill")
    async with env.mount() as fs:
        assert fs.lost_found.entries() == []
        assert await read_path(fs, "f") == data[:MiB]
    assert env.objects() == {"f": data[:MiB]}


async def test_a_short_write_marks_only_the_blocks_it_wrote_whole(
    env: Env, disk: SmallDisk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk takes 1.5 MiB of a 2 MiB write over an object none of which is cached, then
    runs full. The second MiB, half written, still holds the store's bytes for the rest:
    the file reads and goes up with the store's second MiB, not half of it as zeros."""
    old = pattern(2 * MiB, seed=10)
    new = pattern(2 * MiB, seed=11)
    env.put("f", old)
    real_pwrite = os.pwrite

    def short(fd: int, data: bytes | memoryview, offset: int) -> int:
        if len(data) == 2 * MiB:
            written = real_pwrite(fd, memoryview(data)[: 3 * MiB // 2], offset)
            disk.fill()
            return written
        return real_pwrite(fd, data, offset)

    async with env.mount(writeback_delay=60) as fs:
        on(disk, fs)
        node = await resolve(fs, "f")
        fh, _ = await fs.open(node.ino, os.O_WRONLY)
        monkeypatch.setattr(os, "pwrite", short)
        assert await write_chunks(fs, fh, {0: new}) == {0: errno.ENOSPC}
        monkeypatch.setattr(os, "pwrite", real_pwrite)
        fs.release(fh)
        disk.taken = 0
        assert node.size == 2 * MiB
        assert await read_path(fs, "f") == new[:MiB] + old[MiB:]
    assert env.objects()["f"] == new[:MiB] + old[MiB:]


async def test_writes_with_room_to_spare_do_not_ask_the_disk_each_time(env: Env, disk: SmallDisk) -> None:
    """The free space is measured now and then (and what the mount writes counted in
    between), not with a statvfs per write."""
    async with env.mount(writeback_delay=60) as fs:
        on(disk, fs)
        fh, _ = await fs.create(1, "f", 0o644, os.O_WRONLY, 0, 0)
        disk.measured = 0
        for n in range(100):
            assert await fs.write(fh, n * 4096, pattern(4096, seed=n)) == 4096
        assert disk.measured == 0
        fs.release(fh)


async def test_writes_failing_on_a_full_disk_look_for_clean_data_once(
    env: Env, disk: SmallDisk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing clean can give way (what is cached is open): the first write that fails
    looks through the contents; the next ones, with nothing changed since, do not."""
    keys = [f"clean/{n}" for n in range(20)]
    for n, key in enumerate(keys):
        env.put(key, pattern(64 * 1024, seed=n))
    scans = [0]
    real_present_bytes = Content.present_bytes

    def counted(content: Content) -> int:
        scans[0] += 1
        return real_present_bytes(content)

    async with env.mount(writeback_delay=60) as fs:
        on(disk, fs)
        held = [(await fs.open((await resolve(fs, key)).ino, os.O_RDONLY))[0] for key in keys]
        for fh in held:
            await fs.read(fh, 0, 4096)
        writers = [(await fs.create(1, f"new{n}", 0o644, os.O_WRONLY, 0, 0))[0] for n in range(10)]
        disk.fill()
        monkeypatch.setattr(Content, "present_bytes", counted)
        assert await write_chunks(fs, writers[0], {0: b"x" * 4096}) == {0: errno.ENOSPC}
        assert scans[0] > 0
        scans[0] = 0
        for fh in writers[1:]:
            assert await write_chunks(fs, fh, {0: b"x" * 4096}) == {0: errno.ENOSPC}
        assert scans[0] == 0
        for fh in held + writers:
            fs.release(fh)
        disk.taken = 0


async def test_a_cut_limits_descriptors_of_a_newer_kernel_inode_too(env: Env, disk: SmallDisk) -> None:
    """A loss cut the file and gave it a new inode, which a second descriptor opened and
    wrote; a second loss of the old inode's burst cuts it shorter. The newer descriptor's
    writes still on their way may not land past that cut either (zeros before them)."""
    data = pattern(3 * MiB, seed=12)
    quarter = MiB // 4
    async with env.mount(writeback_delay=60) as fs:
        on(disk, fs)
        old_fh, node = await fs.create(1, "f", 0o644, os.O_WRONLY, 0, 0)
        chunks = {0: data[:quarter], 2 * quarter: data[2 * quarter : MiB], 2 * MiB: data[2 * MiB :]}
        assert await write_chunks(fs, old_fh, chunks) == {}
        disk.fill()
        assert await write_chunks(fs, old_fh, {MiB: data[MiB : 2 * MiB]}) == {MiB: errno.ENOSPC}
        assert node.size == MiB
        disk.taken = 0
        new_fh, _ = await fs.open(node.ino, os.O_WRONLY)  # the new kernel inode
        assert await write_chunks(fs, new_fh, {MiB: data[MiB : MiB + quarter]}) == {}
        disk.fill()
        assert await write_chunks(fs, old_fh, {quarter: data[quarter : 2 * quarter]}) == {
            quarter: errno.ENOSPC
        }
        assert node.size == quarter
        disk.taken = 0
        late = {MiB + quarter: data[MiB + quarter : MiB + 2 * quarter]}
        assert await write_chunks(fs, new_fh, late) == {MiB + quarter: errno.ENOSPC}
        fs.release(old_fh)
        fs.release(new_fh)
        assert await read_path(fs, "f") == data[:quarter]
    assert env.objects()["f"] == data[:quarter]


async def test_an_unlink_the_journal_cannot_record_keeps_the_files_data(
    env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Another program filled the disk, and the journal cannot commit: the unlink fails
    with ENOSPC, and the file's data stays where its journal record says. It deleted the
    data first, so a kill then left the file's record pointing at nothing (lost+found,
    with no bytes: the file lost for good, though the unlink had failed)."""
    data = pattern(3000, seed=11)
    async with env.mount(writeback_delay=3600, sync=False) as fs:
        node = await write_file(fs, "f", data)
        content = node.content
        assert content is not None
        real_batch = Journal.batch

        @contextlib.contextmanager
        def full(journal: Journal) -> Iterator[None]:
            with real_batch(journal):
                yield
                raise OSError(errno.ENOSPC, "No space left on device")  # at the commit

        monkeypatch.setattr(Journal, "batch", full)
        with pytest.raises(OSError) as failed:
            await fs.unlink(1, "f")
        assert failed.value.errno == errno.ENOSPC
        assert Path(content.path).read_bytes() == data
        crash_copy(env, tmp_path / "after-kill")
        monkeypatch.setattr(Journal, "batch", real_batch)
    async with env.mount() as fs:
        assert await read_path(fs, "f") == data
    assert inspector.lost_entries(env.cache_dir) == []
