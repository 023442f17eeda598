"""What survives the end of a mount: the journal of work not yet uploaded, and the cache."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

import diskcache
import pytest
import trio
from trio.testing import MockClock

from fusestore.cache import Content
from fusestore.core import Kind
from fusestore.core.filesystem import Filesystem
from fusestore.stores import PosixAttrs

from .conftest import Env, MiB, ino_of, listdir, mkdir, pattern, read_all, read_path, resolve, write_file

pytestmark = pytest.mark.trio

BIG = pattern(3 * MiB + 21, seed=1)


def populate(env: Env) -> None:
    env.put("big", BIG)
    env.put("clean", b"clean file")
    env.put("doomed", b"to be unlinked")
    env.put("chmodded", b"mode changes", {"mode": str(stat.S_IFREG | 0o644)})
    env.put("olddir/a", b"a in a directory to be renamed")
    env.put("olddir/sub/b", b"b")


async def make_changes(fs: Filesystem) -> None:
    d = await mkdir(fs, "newdir")
    await write_file(fs, "newdir/new", b"a new file")
    await mkdir(fs, "emptydir")
    fh, _ = await fs.open(await ino_of(fs, "big"), os.O_RDWR)
    await fs.write(fh, MiB + 3, b"PATCH")  # one block of three, the rest never fetched
    fs.release(fh)
    await fs.rename(1, "clean", d.ino, "moved", 0)
    await fs.lookup(1, "doomed")
    await fs.unlink(1, "doomed")
    await fs.symlink(1, "link", "newdir/new", 0, 0)
    await fs.setattr(await ino_of(fs, "chmodded"), mode=0o600)
    await fs.rename(1, "olddir", 1, "renamed", 0)


def expected_objects() -> dict[str, bytes]:
    big = bytearray(BIG)
    big[MiB + 3 : MiB + 8] = b"PATCH"
    return {
        "big": bytes(big),
        "chmodded": b"mode changes",
        "emptydir/": b"",
        "link": b"newdir/new",
        "newdir/moved": b"clean file",
        "newdir/new": b"a new file",
        "renamed/a": b"a in a directory to be renamed",
        "renamed/sub/b": b"b",
    }


def expected_root() -> list[str]:
    return ["big", "chmodded", "emptydir", "link", "newdir", "renamed"]


def check_store(env: Env) -> None:
    assert env.objects() == expected_objects()
    assert PosixAttrs.from_metadata(env.metadata("chmodded")).mode == stat.S_IFREG | 0o600
    assert stat.S_ISLNK(int(env.metadata("link")["mode"]))


async def test_work_left_by_a_mount_without_a_flusher_is_replayed(env: Env) -> None:
    populate(env)
    before = env.objects()
    async with env.mount(flusher=False) as fs:
        await make_changes(fs)
        assert fs.journal.read_all().nodes, "the changes are journaled"
        assert "doomed" in fs.journal.read_all().deletes
    assert env.objects() == before, "nothing was uploaded"
    assert [name for name, _ in env.calls if name in ("put", "copy", "delete_many")] == []

    async with env.mount() as fs:
        assert fs.flusher.due, "replay makes the work due"
        # Before the upload, the mount already holds the journaled state (looked at without
        # listing the store, which would race with the uploads: see test_listings.py).
        assert sorted(fs.ns.root.children or {}) == expected_root()
        new = fs.ns.node_at("newdir/new")
        assert new is not None and await read_all(fs, new.ino) == b"a new file"
        await fs.flusher.sync_all()
        assert fs.journal.read_all().nodes == {} and fs.journal.read_all().deletes == {}
        assert sorted(await listdir(fs)) == expected_root()
        assert sorted(await listdir(fs, "newdir")) == ["moved", "new"]
        assert sorted(await listdir(fs, "renamed")) == ["a", "sub"]
    check_store(env)


async def test_after_a_replay_the_next_mount_has_nothing_to_do_and_sees_the_uploads(env: Env) -> None:
    populate(env)
    async with env.mount(flusher=False) as fs:
        await make_changes(fs)
    async with env.mount(flusher=False) as fs:
        assert await read_path(fs, "newdir/new") == b"a new file"  # lists before the uploads
        async with env.flushing(fs):
            pass
    check_store(env)

    env.calls.clear()
    async with env.mount(metadata_ttl=0) as fs:
        assert fs.journal.read_all().nodes == {} and fs.journal.read_all().deletes == {}
        assert not fs.flusher.due
        assert sorted(await listdir(fs)) == expected_root()
        assert (await resolve(fs, "link")).kind is Kind.SYMLINK
        assert (await resolve(fs, "chmodded")).mode == stat.S_IFREG | 0o600
        assert await read_path(fs, "big") == expected_objects()["big"]
    assert [name for name, _ in env.calls if name in ("put", "copy", "delete_many")] == []


async def test_work_left_by_a_mount_whose_store_failed_is_replayed(
    env: Env, virtual_clock: MockClock
) -> None:
    populate(env)
    before = env.objects()
    env.offline = True
    async with env.mount(sync=False) as fs:
        await make_changes(fs)
        with trio.move_on_after(0.4):
            await fs.flusher.sync_all()
        assert fs.flusher.failed_attempts > 0, "the flusher tried and failed"
        assert not fs.flusher.idle()
    assert env.objects() == before

    env.offline = False
    async with env.mount() as fs:
        pass  # replay, then sync on exit
    check_store(env)


async def test_a_file_still_open_when_the_mount_ends_is_replayed(env: Env) -> None:
    async with env.mount(flusher=False) as fs:
        fh, _ = await fs.create(1, "open", 0o644, os.O_WRONLY, 0, 0)
        await fs.write(fh, 0, b"written but never closed")
        await fs.write(fh, 2 * MiB, b"and a second block")
    async with env.mount():
        pass
    assert env.objects() == {
        "open": b"written but never closed" + bytes(2 * MiB - 24) + b"and a second block"
    }


async def test_replay_of_a_partially_overwritten_object_fetches_the_rest(env: Env) -> None:
    """The journal keeps the block bitmap: blocks never fetched come from the store after
    the restart, the written ones from the cache."""
    original = pattern(4 * MiB, seed=2)
    env.put("f", original)
    async with env.mount(flusher=False) as fs:
        fh, _ = await fs.open(await ino_of(fs, "f"), os.O_WRONLY)
        await fs.write(fh, 2 * MiB, b"new")
        fs.release(fh)
        assert env.called("open_range"), "the partially written block was fetched"
    env.calls.clear()
    async with env.mount():
        pass
    assert env.objects() == {"f": original[: 2 * MiB] + b"new" + original[2 * MiB + 3 :]}
    assert len(env.called("open_range")) >= 1, "the untouched blocks came from the store"


async def test_a_remount_within_the_ttl_sees_what_the_last_mount_uploaded(env: Env) -> None:
    """The next mount must not trust a listing cached before the upload (stale size/etag)."""
    env.put("f", b"old")
    env.put("g", b"mode", {"mode": str(stat.S_IFREG | 0o644)})
    async with env.mount() as fs:
        fh, _ = await fs.open(await ino_of(fs, "f"), os.O_WRONLY | os.O_TRUNC)
        await fs.write(fh, 0, b"new and longer")
        fs.release(fh)
        await fs.setattr(await ino_of(fs, "g"), mode=0o600)
    assert env.objects() == {"f": b"new and longer", "g": b"mode"}

    async with env.mount() as fs:  # same cache, well within the 60 s TTL
        f = await resolve(fs, "f")
        assert f.size == len(b"new and longer")
        assert await read_path(fs, "f") == b"new and longer"
        assert (await resolve(fs, "g")).mode == stat.S_IFREG | 0o600


async def test_the_cache_survives_a_remount(env: Env) -> None:
    data = pattern(3 * MiB + 5, seed=3)
    env.put("blob", data)
    async with env.mount(metadata_ttl=0) as fs:
        assert await read_path(fs, "blob") == data
    assert env.called("open_range")

    env.calls.clear()
    async with env.mount(metadata_ttl=0) as fs:  # relisted: same etag, so the data is reused
        assert await read_path(fs, "blob") == data
    assert env.called("open_range") == [] and env.called("open_range") == []


async def test_a_written_file_is_cached_for_the_next_mount(env: Env) -> None:
    data = pattern(2 * MiB + 9, seed=4)
    async with env.mount(metadata_ttl=0) as fs:
        await write_file(fs, "w", data)
    env.calls.clear()
    async with env.mount(metadata_ttl=0) as fs:
        assert await read_path(fs, "w") == data
    assert env.called("open_range") == []


async def test_cached_data_of_a_replaced_object_is_not_used(env: Env) -> None:
    env.put("blob", pattern(MiB + 1, seed=5))
    async with env.mount(metadata_ttl=0) as fs:
        await read_path(fs, "blob")
    env.put("blob", pattern(MiB + 1, seed=6))  # same size, another etag
    async with env.mount(metadata_ttl=0) as fs:
        assert await read_path(fs, "blob") == pattern(MiB + 1, seed=6)


async def test_a_remount_within_the_ttl_does_not_show_what_was_moved_away(env: Env) -> None:
    """The last mount remembered the listing of `b/` (a prefix `b/c/` of b/c/x only); b
    was renamed and a new, empty b made. Moving b/c/x away emptied the prefix `b/c/`, so
    the next mount must not show `b/c` from the remembered listing."""
    env.put("b/c/x", b"x")
    async with env.mount() as fs:
        assert set(await listdir(fs, "b")) == {"c"}
        await fs.rename(1, "b", 1, "z", 0)
        await mkdir(fs, "b")
    assert env.objects() == {"b/": b"", "z/c/x": b"x"}

    async with env.mount() as fs:  # same cache, well within the 60 s TTL
        assert set(await listdir(fs)) == {"b", "z"}
        assert set(await listdir(fs, "b")) == set()
        assert set(await listdir(fs, "z/c")) == {"x"}


async def test_a_new_mtime_alone_is_journaled_by_the_next_persist_not_by_the_close(env: Env) -> None:
    async with env.mount(writeback_delay=3600) as fs:
        fh, node = await fs.create(1, "f", 0o644, os.O_WRONLY, 0, 0)
        await fs.write(fh, 0, b"data")
        await fs.setattr(node.ino, mtime_ns=1_600_000_000_000_000_000, fh=fh)  # as the kernel does
        before = fs.journal.changes
        fs.flush(fh)
        fs.release(fh)
        assert fs.journal.changes == before, "the close wrote a transaction for an mtime"
        assert node.jid is not None
        assert fs.journal.read_all().nodes[node.jid]["mtime_ns"] != 1_600_000_000_000_000_000
        await fs.persist()
        assert fs.journal.read_all().nodes[node.jid]["mtime_ns"] == 1_600_000_000_000_000_000
        # A change that matters is written by the close at once.
        fh, _ = await fs.open(node.ino, os.O_WRONLY)
        await fs.setattr(node.ino, mode=0o600, fh=fh)
        fs.release(fh)
        assert fs.journal.read_all().nodes[node.jid]["perm"] == 0o600


async def test_an_fsync_after_a_new_mtime_alone_writes_no_record(env: Env) -> None:
    async with env.mount(writeback_delay=3600) as fs:
        fh, node = await fs.create(1, "f", 0o644, os.O_WRONLY, 0, 0)
        await fs.write(fh, 0, b"data")
        await fs.fsync(fh)
        await fs.setattr(node.ino, mtime_ns=1_600_000_000_000_000_000, fh=fh)
        before = fs.journal.changes
        await fs.fsync(fh)
        assert fs.journal.changes == before, "fsync wrote (and synced) a record for an mtime"
        assert not fs.journal.needs_sync()
        await fs.persist()
        assert node.jid is not None
        assert fs.journal.read_all().nodes[node.jid]["mtime_ns"] == 1_600_000_000_000_000_000
        fs.release(fh)


def crash_copy(env: Env, into: Path) -> None:
    """The cache directory as a `kill -9` would leave it now: every file as the kernel
    holds it (journal commits are in SQLite's write-ahead log, data in the cache files),
    nothing closed or persisted. The copy becomes the cache of the next mount."""
    shutil.copytree(env.cache_dir, into, symlinks=True)
    env.cache_dir = into


async def test_writes_past_the_stores_bytes_need_no_transaction_and_survive_a_crash(
    env: Env, tmp_path: Path
) -> None:
    """A new file is journaled once, at create: a restart takes its size from the cache
    file. Writes over an object's own bytes are journaled at once, writes past them not."""
    original = pattern(3 * MiB + 5, seed=4)
    env.put("old", original)
    new_data = pattern(2 * MiB + 77, seed=5)
    async with env.mount(flusher=False) as fs:
        before = fs.journal.changes
        fh, node = await fs.create(1, "new", 0o644, os.O_WRONLY, 0, 0)
        assert fs.journal.changes == before + 1, "the create is journaled at once"
        for offset in range(0, len(new_data), 64 * 1024):
            await fs.write(fh, offset, new_data[offset : offset + 64 * 1024])
        await fs.setattr(node.ino, mtime_ns=1_700_000_000_000_000_000, fh=fh)  # as the kernel does
        fs.flush(fh)
        fs.release(fh)
        assert fs.journal.changes == before + 1, "a new file's writes and close wrote transactions"

        fh, _ = await fs.open(await ino_of(fs, "old"), os.O_WRONLY)
        await fs.write(fh, MiB + 1, b"OVER")  # over the store's bytes: journaled now
        after_patch = fs.journal.changes
        assert after_patch > before + 1
        await fs.write(fh, 4 * MiB, b"APPENDED")  # past them: the cache file says it
        fs.flush(fh)
        fs.release(fh)
        assert fs.journal.changes == after_patch
        crash_copy(env, tmp_path / "after-kill")

    env.calls.clear()
    expected_old = bytearray(original)
    expected_old[MiB + 1 : MiB + 5] = b"OVER"
    expected_old += bytes(4 * MiB - len(original)) + b"APPENDED"
    async with env.mount() as fs:
        await fs.flusher.sync_all()
        assert env.objects() == {"new": new_data, "old": bytes(expected_old)}
        assert env.called("open_range"), "the blocks never fetched came from the store"
        env.calls.clear()
        assert await read_path(fs, "new") == new_data
        assert await read_path(fs, "old") == expected_old
        assert not env.called("open_range") and not env.called("get_range"), "uploaded data was refetched"


async def test_a_mount_reads_its_journal_once_and_aborts_the_uploads_it_names(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unfinished multipart uploads a killed daemon left are taken from the records
    read at open: no second pass over the journal on the event loop."""
    async with env.mount(flusher=False) as fs:
        upload_id = env.store.start_multipart("big")
        fs.journal.save_upload("big", {"ids": [upload_id], "before": None})
        # the mount ends without finishing it (as when the daemon is killed)
    passes = []
    real = diskcache.Cache.iterkeys

    def iterkeys(self: diskcache.Cache, *args: object, **kwargs: object) -> object:
        if Path(self.directory).name == "journal":
            passes.append(self.directory)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(diskcache.Cache, "iterkeys", iterkeys)
    async with env.mount():
        while env.store.list_multipart():  # aborted in the background (bounded by the mount's 10 s)
            await trio.sleep(0.01)
    assert len(passes) == 1, passes


@pytest.mark.parametrize("operation", ["create", "symlink", "rename"])
async def test_a_kill_during_a_namespace_change_leaves_all_of_it_or_none(
    env: Env, tmp_path: Path, operation: str
) -> None:
    """`rm a` (its delete journaled, not sent yet), then a new `a` (a file, a symlink, or
    `b` renamed onto it): the new `a` takes the key, which drops the delete, and is
    journaled. A kill between the two transactions would leave neither the delete nor
    the new file: the old `a` would come back. Each such change is one transaction: a
    kill leaves all of it or none. Here the kill comes as the new `a`'s record is
    written: the old `a` still goes."""
    env.put("a", b"the old a")
    env.put("b", b"b")
    async with env.mount(flusher=False) as fs:
        await fs.lookup(1, "b")
        await fs.unlink(1, "a")
        assert "a" in fs.ns.deletes
        real_save = fs.journal.save_node

        def save_node(jid: str, record: dict[str, Any], **kwargs: Any) -> None:
            if record["key"] == "a" and not (tmp_path / "after-kill").exists():
                crash_copy(env, tmp_path / "after-kill")  # the kill, just before this record
            real_save(jid, record, **kwargs)

        fs.journal.save_node = save_node  # type: ignore[method-assign]
        if operation == "create":
            fh, _ = await fs.create(1, "a", 0o644, os.O_WRONLY, 0, 0)
            fs.release(fh)
        elif operation == "symlink":
            await fs.symlink(1, "a", "target", 0, 0)
        else:
            await fs.rename(1, "b", 1, "a", 0)
        assert (tmp_path / "after-kill").exists()
    async with env.mount():
        pass
    assert "a" not in env.objects(), "the old `a` came back"


@pytest.mark.parametrize("kill", ["before the cut", "after the cut"])
@pytest.mark.parametrize("how", ["a new file opened with O_TRUNC", "an object's changed copy cut short"])
async def test_a_kill_during_a_truncation_keeps_the_file_as_it_was_or_as_cut(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kill: str, how: str
) -> None:
    """A truncation cuts the cache file and writes the record of the shorter file in one
    step, yet a kill -9 can fall between the two (the cut of a big file takes a while). A
    restart sets aside a cache file shorter than its record as damaged, and the file would
    come back as the store's older version (or not at all): so the record goes first. A
    kill just before or just after the cut leaves the file as it was or as cut, and
    nothing in lost+found."""
    old = pattern(3 * MiB + 5, seed=6)
    if how == "a new file opened with O_TRUNC":
        cut_to = 0
    else:
        env.put("f", pattern(3 * MiB + 5, seed=7))
        old = pattern(MiB, seed=8) + pattern(3 * MiB + 5, seed=7)[MiB:]
        cut_to = MiB + 100
    real_truncate = Content.truncate

    def truncate(content: Content, size: int) -> None:
        killed = tmp_path / "killed"
        if killed.exists():
            real_truncate(content, size)
        elif kill == "before the cut":
            crash_copy(env, killed)
            real_truncate(content, size)
        else:
            real_truncate(content, size)
            crash_copy(env, killed)

    async with env.mount(flusher=False) as fs:
        if how == "a new file opened with O_TRUNC":
            fh, node = await fs.create(1, "f", 0o644, os.O_WRONLY, 0, 0)
            await fs.write(fh, 0, old)
        else:
            node = await resolve(fs, "f")
            fh, _ = await fs.open(node.ino, os.O_RDWR)
            await fs.write(fh, 0, old[:MiB])  # a whole block: the others are never fetched
            assert node.content is not None and node.content.present == 1
        await fs.fsync(fh)
        fs.release(fh)
        assert node.journaled is not None and node.journaled["size"] == len(old)
        monkeypatch.setattr(Content, "truncate", truncate)
        if how == "a new file opened with O_TRUNC":
            fh, _ = await fs.open(node.ino, os.O_WRONLY | os.O_TRUNC)
        else:
            fh, _ = await fs.open(node.ino, os.O_RDWR)
            await fs.setattr(node.ino, size=cut_to, fh=fh)
        fs.release(fh)
        assert (tmp_path / "killed").exists()
    async with env.mount() as fs:
        assert fs.lost_found.entries() == [], "a kill alone set a cache file aside"
        kept = await read_path(fs, "f")
        assert kept in (old, old[:cut_to])
        if kept != old:  # the bytes cut off are gone for good: growing again shows zeros
            await fs.setattr(await ino_of(fs, "f"), size=len(old))
            kept = old[:cut_to] + bytes(len(old) - cut_to)
            assert await read_path(fs, "f") == kept
    assert env.objects()["f"] == kept
