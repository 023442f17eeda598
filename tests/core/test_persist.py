"""The periodic persist: every cache file written since the last one is fdatasync'ed,
after the write-out of all of them was started (one journal commit then covers most), and
the journal records left to it are written in one transaction."""

from __future__ import annotations

import ctypes
import errno
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from fusestore.cache import writeout
from fusestore.stores.base import MiB

from .conftest import Env, write_file


@pytest.mark.trio
async def test_persist_starts_the_write_out_of_all_then_syncs_each(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, int]] = []
    real_fdatasync = os.fdatasync

    def fdatasync(fd: int) -> None:
        calls.append(("sync", os.fstat(fd).st_ino))
        real_fdatasync(fd)

    monkeypatch.setattr(writeout, "start_writeout", lambda fd: calls.append(("start", os.fstat(fd).st_ino)))
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    async with env.mount(writeback_delay=60) as fs:
        nodes = [await write_file(fs, f"f{i}", b"data %d" % i) for i in range(3)]
        files = {os.stat(node.content.path).st_ino for node in nodes if node.content is not None}
        assert len(files) == 3
        await fs.persist()
        started = [ino for kind, ino in calls if kind == "start"]
        synced = [ino for kind, ino in calls if kind == "sync"]
        assert set(started) == files and files <= set(synced)
        last_start = max(i for i, (kind, _) in enumerate(calls) if kind == "start")
        first_sync = min(i for i, (kind, ino) in enumerate(calls) if kind == "sync" and ino in files)
        assert last_start < first_sync, "every write-out starts before the first fdatasync"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_starting_a_write_out_asks_the_kernel_about_that_file_and_never_fails(tmp_path: Path) -> None:
    """The hint reaches the kernel for the descriptor given (its errno says so: the call
    is not the do-nothing fallback), and where the kernel refuses it nothing raises."""
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"x" * 10000)
        ctypes.set_errno(0)
        writeout.start_writeout(fd)
        assert ctypes.get_errno() == 0, "the write-out of a file's dirty pages starts"
    finally:
        os.close(fd)
    read_end, write_end = os.pipe()
    try:
        writeout.start_writeout(read_end)
        assert ctypes.get_errno() == errno.ESPIPE, "sync_file_range was asked about this very fd"
    finally:
        os.close(read_end)
        os.close(write_end)
    writeout.start_writeout(-1)
    assert ctypes.get_errno() == errno.EBADF, "refused: the hint is lost, nothing raises"


@pytest.mark.trio
async def test_a_persist_on_a_full_disk_writes_no_record_and_the_next_writes_all(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with env.mount(writeback_delay=3600) as fs:
        nodes = []
        for i in range(5):
            fh, node = await fs.create(1, f"f{i}", 0o644, os.O_WRONLY, 0, 0)
            await fs.write(fh, 0, b"x" * (i + 1))
            fs.flush(fh)
            fs.release(fh)
            nodes.append(node)

        def sizes() -> list[int]:
            records = fs.journal.read_all().nodes
            return [records[node.jid]["size"] for node in nodes if node.jid is not None]

        assert sizes() == [0] * 5, "the sizes are left to the persist (the cache files say them)"
        real = fs.journal.save_node
        calls = 0

        def fills_up(jid: str, record: dict[str, Any]) -> None:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise sqlite3.OperationalError("database or disk is full")
            real(jid, record)

        monkeypatch.setattr(fs.journal, "save_node", fills_up)
        with pytest.raises(OSError) as failed:
            await fs.persist()
        assert failed.value.errno == errno.ENOSPC
        assert calls == 3
        assert sizes() == [0] * 5, "records of a failed persist's transaction were kept"
        monkeypatch.undo()
        await fs.persist()
        assert sizes() == [1, 2, 3, 4, 5]


@pytest.mark.trio
async def test_the_index_names_an_uploaded_file_durably_before_the_journal_forgets_it(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once uploaded, a file's data is a clean copy the index names, and its journal record
    goes. The journal's log is fsynced every 2 s: the index's is fsynced first, or a power
    cut could leave the data file named by neither (and the next mount, unable to tell it
    from lost changes, would keep it in lost+found)."""
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    async with env.mount() as fs:
        node = await write_file(fs, "f", b"data")
        await fs.flusher.sync_all()
        assert not node.pending and fs.journal.read_all().nodes == {}
        monkeypatch.setattr(os, "fsync", fsync)
        await fs.persist()
        monkeypatch.setattr(os, "fsync", real_fsync)
    index_log = os.path.realpath(env.cache_dir / "index" / "cache.db-wal")
    journal_log = os.path.realpath(env.cache_dir / "journal" / "cache.db-wal")
    assert journal_log in synced, synced
    assert index_log in synced[: synced.index(journal_log)], synced


@pytest.mark.trio
async def test_an_fsync_whose_record_waits_for_new_timestamps_opens_no_transaction(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rewrite in place changes only the record's mtime, which waits for the next full
    persist: the fsync's persist has no record to write, so no journal transaction."""
    async with env.mount(writeback_delay=60) as fs:
        node = await write_file(fs, "f", b"a" * 2 * MiB)
        fh, _ = await fs.open(node.ino, os.O_RDWR)
        await fs.fsync(fh)
        transactions: list[int] = []
        real_batch = fs.journal.batch

        def batch() -> Any:
            transactions.append(1)
            return real_batch()

        monkeypatch.setattr(fs.journal, "batch", batch)
        for offset in (4096, 3 * 4096):
            assert await fs.write(fh, offset, b"b" * 4096) == 4096
            await fs.fsync(fh)
        assert transactions == []
        await fs.persist()  # a full persist does write the new mtime
        assert transactions == [1]
        assert node.journaled is not None and node.journaled["mtime_ns"] == node.mtime_ns
        fs.release(fh)
