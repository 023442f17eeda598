"""A cache damaged after a crash: a journal that cannot be read, or reads as empty, stops
the mount; a damaged index is rebuilt; data no record accounts for, and a pending file
shorter than its record, are set aside in lost+found (never deleted, never uploaded) and
`fusestore cache recover` brings them back.

The crash is real: a child process fsyncs five files and ends with `os._exit` (no close,
no checkpoint: the journal's records are in its write-ahead log, as after kill -9).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio
from click.testing import CliRunner

from fusestore.cache import CacheDir, inspector
from fusestore.cache.diskfull import Index
from fusestore.cache.recovery import JournalDamaged
from fusestore.cli import main
from fusestore.core.filesystem import Filesystem
from fusestore.service.mounts import is_mounted, lazy_unmount

from .conftest import Env, MiB, ino_of, pattern, write_file

#: name -> size: each written in 64 KiB writes, then fsynced (as the kernel sends them)
FILES = {f"f{i}": 150_000 + 70_001 * i for i in range(5)}

CRASH = """
import os, random, sys, trio
from fusestore.cache import CacheDir
from fusestore.cache.diskfull import Index
from fusestore.core.filesystem import Filesystem
from fusestore.core import MountSettings
from fusestore.stores import open_store

url, cache_dir, *specs = sys.argv[1:]

async def main():
    store = open_store(url)
    cache = CacheDir.for_store(store.to_url(), cache_dir).open()
    fs = Filesystem(store, cache, MountSettings(writeback_delay=3600))
    fs.replay()
    for seed, spec in enumerate(specs):
        name, size = spec.split("=")
        data = random.Random(seed).randbytes(int(size))  # as conftest.pattern
        fh, _ = await fs.create(1, name, 0o644, os.O_WRONLY, 1000, 1000)
        for offset in range(0, len(data), 65536):
            await fs.write(fh, offset, data[offset : offset + 65536])
        await fs.fsync(fh)
        fs.release(fh)
    os._exit(0)  # as kill -9: nothing closed, nothing checkpointed

trio.run(main)
"""


def expected() -> dict[str, bytes]:
    return {name: pattern(size, seed) for seed, (name, size) in enumerate(FILES.items())}


def crash_after_fsyncs(url: str, cache_dir: Path) -> None:
    """Five files fsynced by a process that then dies without closing anything."""
    root = Path(__file__).resolve().parents[2]
    specs = [f"{name}={size}" for name, size in FILES.items()]
    subprocess.run(
        [sys.executable, "-c", CRASH, url, str(cache_dir), *specs], cwd=root, check=True, timeout=60
    )
    wal = cache_dir / "journal" / "cache.db-wal"
    assert wal.stat().st_size > 0, "the records are in the write-ahead log"
    assert len(data_files(cache_dir)) >= 5


def data_files(cache_dir: Path) -> dict[str, bytes]:
    """The non-empty files under data/ (spares are empty)."""
    return {p.name: p.read_bytes() for p in (cache_dir / "data").iterdir() if p.stat().st_size}


def recovered(cache_dir: Path, target: Path) -> Counter[bytes]:
    """`fusestore cache recover CACHE TARGET`; the recovered files' contents."""
    result = CliRunner().invoke(main, ["cache", "recover", str(cache_dir), str(target)])
    assert result.exit_code == 0, result.output
    return Counter(p.read_bytes() for p in target.rglob("*") if p.is_file())


def open_fs(env: Env) -> None:
    """Open the cache as the daemon does (the journal, the index, the data files)."""
    cache = CacheDir.for_store(env.store.to_url(), str(env.cache_dir)).open()
    try:
        Filesystem(env.store, cache, env.settings()).close()
    finally:
        cache.close()


def drop_record_of(env: Env, key: str) -> None:
    """Remove the journal record of `key` (as if lost in a damaged log frame)."""
    cache = CacheDir.for_store(env.store.to_url(), str(env.cache_dir)).open()
    try:
        fs = Filesystem(env.store, cache, env.settings())
        [jid] = [jid for jid, rec in fs.journal.read_all().nodes.items() if rec["key"] == key]
        fs.journal.drop_node(jid)
        fs.journal.close()
        fs.index.close()
    finally:
        cache.close()


def garble(path: Path, length: int = 100, offset: int = 0) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(os.urandom(length))


async def assert_deleted_at_next_mount(env: Env, scratch: Path) -> None:
    """The data file `scratch`, left by a mount that ended without closing, is deleted by
    the next mount and not set aside: it holds no lost change."""
    assert scratch.exists()
    async with env.mount():
        pass
    assert not scratch.exists()
    assert inspector.lost_entries(env.cache_dir) == []


@pytest.mark.trio
@pytest.mark.timeout(60)
@pytest.mark.parametrize("damage", ["random-wal", "damaged-frame", "empty-database", "garbled-header"])
async def test_a_damaged_journal_stops_the_mount_and_loses_no_data_file(
    env: Env, tmp_path: Path, damage: str
) -> None:
    crash_after_fsyncs(env.store.to_url(), env.cache_dir)
    journal = env.cache_dir / "journal"
    if damage == "random-wal":
        (journal / "cache.db-wal").write_bytes(os.urandom(8192))
    elif damage == "damaged-frame":
        # A frame in the middle of the log (header 32 bytes, frames of 24 + the page
        # size): SQLite would drop it and every commit after it without a word, and the
        # journal, its id in an earlier frame, would read as sound.
        wal = journal / "cache.db-wal"
        frame = 24 + int.from_bytes(wal.read_bytes()[8:12], "big")
        frames = (wal.stat().st_size - 32) // frame
        assert frames >= 6, "commits follow the damaged frame"
        garble(wal, 16, offset=32 + (frames // 2) * frame + 24 + 100)
    elif damage == "empty-database":
        (journal / "cache.db").write_bytes(b"")
        for name in ("cache.db-wal", "cache.db-shm"):
            (journal / name).unlink(missing_ok=True)
    else:
        garble(journal / "cache.db")
    before = data_files(env.cache_dir)

    with pytest.raises(JournalDamaged) as refused:
        open_fs(env)
    message = str(refused.value)
    assert "\n" not in message and "cache recover" in message, message
    assert data_files(env.cache_dir) == before, "no data file was touched"

    shown = CliRunner().invoke(main, ["cache", "show", str(env.cache_dir)])
    assert "cache recover" in shown.output, shown.output
    assert recovered(env.cache_dir, tmp_path / "rescued") == Counter(expected().values())


@pytest.mark.trio
@pytest.mark.timeout(60)
async def test_a_damaged_index_is_rebuilt_with_a_warning_and_pending_files_go_up(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    crash_after_fsyncs(env.store.to_url(), env.cache_dir)
    garble(env.cache_dir / "index" / "cache.db")
    with caplog.at_level(logging.WARNING):
        async with env.mount():
            pass
    assert "index" in caplog.text and "rebuilt" in caplog.text, caplog.text
    assert env.objects() == expected()


@pytest.mark.trio
@pytest.mark.timeout(60)
async def test_a_pending_file_shorter_than_its_record_is_set_aside_not_uploaded(
    env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    crash_after_fsyncs(env.store.to_url(), env.cache_dir)
    whole = expected()
    [damaged] = [p for p in (env.cache_dir / "data").iterdir() if p.read_bytes() == whole["f3"]]
    half = whole["f3"][: len(whole["f3"]) // 2]
    os.truncate(damaged, len(half))

    with caplog.at_level(logging.WARNING):
        async with env.mount():
            pass
    assert env.objects() == {k: v for k, v in whole.items() if k != "f3"}, "f3 is not uploaded"
    assert "f3" in caplog.text and "lost+found" in caplog.text, caplog.text

    info = inspector.describe(env.cache_dir)
    assert info.lost_files == 1
    [entry] = inspector.lost_entries(env.cache_dir)
    assert entry.key == "f3" and entry.size == len(half) and entry.expected_size == len(whole["f3"])
    shown = CliRunner().invoke(main, ["cache", "show", str(env.cache_dir)])
    assert "lost+found" in shown.output and "f3" in shown.output, shown.output

    inspector.clean(inspector.describe(env.cache_dir))
    assert len(inspector.lost_entries(env.cache_dir)) == 1, "a clean without --force keeps lost+found"
    target = tmp_path / "rescued"
    assert recovered(env.cache_dir, target) == Counter([half])
    assert (target / "f3").read_bytes() == half, "named by its key"
    assert inspector.lost_entries(env.cache_dir) == [], "recovered files leave lost+found"


@pytest.mark.trio
@pytest.mark.timeout(60)
async def test_a_data_file_no_record_names_is_set_aside_never_deleted(
    env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A journal that reads well but lacks a record (lost in a damaged log frame): the
    data file it named is of unknown status, so it is kept in lost+found."""
    crash_after_fsyncs(env.store.to_url(), env.cache_dir)
    whole = expected()
    drop_record_of(env, "f1")

    with caplog.at_level(logging.WARNING):
        async with env.mount():
            pass
    assert env.objects() == {k: v for k, v in whole.items() if k != "f1"}
    assert "lost+found" in caplog.text, caplog.text
    [entry] = inspector.lost_entries(env.cache_dir)
    assert entry.key is None and entry.size == len(whole["f1"])
    assert recovered(env.cache_dir, tmp_path / "rescued") == Counter([whole["f1"]])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("damage", ["random-wal", "another-journal", "journal-removed"])
def test_mount_with_a_damaged_journal_exits_2_with_one_line(tmp_path: Path, damage: str) -> None:
    """A journal that cannot be read, one put in its place (another cache's: `journal.id`
    names another), and a journal directory gone while `journal.id` remains."""
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    url = f"file://{bucket}"
    cache_dir = tmp_path / "cache"
    crash_after_fsyncs(url, cache_dir)
    journal = cache_dir / "journal"
    if damage == "random-wal":
        (journal / "cache.db-wal").write_bytes(os.urandom(8192))
    elif damage == "another-journal":
        other = tmp_path / "other-cache"
        crash_after_fsyncs(url, other)
        shutil.rmtree(journal)
        shutil.copytree(other / "journal", journal)
    else:
        shutil.rmtree(journal)
    before = data_files(cache_dir)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    command = [
        sys.executable,
        "-m",
        "fusestore",
        "mount",
        url,
        str(mountpoint),
        "--cache-dir",
        str(cache_dir),
    ]
    try:
        # A daemon that mounted would serve in the foreground: killed at the timeout.
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("the damaged journal was mounted")
    finally:
        if is_mounted(mountpoint):
            lazy_unmount(mountpoint)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fusestore: error: "), done.stderr
    assert "journal" in lines[0] and "cache recover" in lines[0]
    assert data_files(cache_dir) == before, "no data file was touched"
    assert not (cache_dir / "lost+found").exists()
    assert recovered(cache_dir, tmp_path / "rescued") == Counter(expected().values())


@pytest.mark.trio
@pytest.mark.timeout(60)
async def test_the_data_of_a_file_removed_while_open_is_not_taken_for_lost_changes(env: Env) -> None:
    """After a crash, the cache file of a file unlinked while open is named by no node
    record, yet it holds no lost change: it is deleted, not kept in lost+found."""
    async with env.mount(flusher=False) as fs:
        fh, node = await fs.create(1, "tmp", 0o644, os.O_RDWR, 1000, 1000)
        await fs.write(fh, 0, b"scratch data")
        await fs.fsync(fh)
        assert node.content is not None
        scratch = node.content.path
        await fs.unlink(1, "tmp")
        # the mount ends with the file still open (as when the daemon is killed)
    await assert_deleted_at_next_mount(env, scratch)


@pytest.mark.trio
@pytest.mark.timeout(60)
async def test_an_empty_new_file_whose_cache_file_was_never_made_is_not_taken_for_damage(env: Env) -> None:
    async with env.mount(flusher=False) as fs:
        await write_file(fs, "empty", b"")
    async with env.mount():
        pass
    assert env.objects() == {"empty": b""}
    assert inspector.lost_entries(env.cache_dir) == []


@pytest.mark.trio
@pytest.mark.timeout(60)
async def test_a_file_that_gets_dirty_after_it_was_removed_while_open_is_not_taken_for_lost_changes(
    env: Env,
) -> None:
    """`exec 3<>f; rm f; echo x >&3`, then a crash: the data was clean at the unlink and
    changed after it; it holds no lost change either."""
    env.put("f", b"in the store")
    async with env.mount(flusher=False) as fs:
        ino = await ino_of(fs, "f")
        fh, _ = await fs.open(ino, os.O_RDWR)
        await fs.unlink(1, "f")
        await fs.write(fh, 0, b"x\n")
        await fs.fsync(fh)
        node = fs.node(ino)
        assert node.content is not None and node.content.dirty
        scratch = node.content.path
        # the mount ends with the file still open (as when the daemon is killed)
    await assert_deleted_at_next_mount(env, scratch)


@pytest.mark.trio
@pytest.mark.timeout(60)
async def test_with_the_index_rebuilt_a_data_file_no_record_names_is_still_set_aside(
    env: Env, tmp_path: Path
) -> None:
    """A damaged index says nothing about the data files; one no journal record names may
    hold changes whose record was lost as well, so it is kept, never deleted."""
    crash_after_fsyncs(env.store.to_url(), env.cache_dir)
    whole = expected()
    drop_record_of(env, "f1")
    garble(env.cache_dir / "index" / "cache.db")

    async with env.mount():
        pass
    assert env.objects() == {k: v for k, v in whole.items() if k != "f1"}
    [entry] = inspector.lost_entries(env.cache_dir)
    assert entry.size == len(whole["f1"]) and "index" in entry.reason
    assert recovered(env.cache_dir, tmp_path / "rescued") == Counter([whole["f1"]])


@pytest.mark.timeout(60)
def test_recover_keeps_a_data_file_whose_size_disagrees_with_its_index_entry(
    env: Env, tmp_path: Path
) -> None:
    """An index entry a power cut brought back (its delete was never synced) names a data
    file that has changed since: recover copies it, as any file the index does not vouch
    for; a data file of the size its entry says is a clean copy and stays."""
    crash_after_fsyncs(env.store.to_url(), env.cache_dir)
    whole = expected()
    ids = {data: name for name, data in data_files(env.cache_dir).items()}
    index = Index(str(env.cache_dir / "index"))
    try:
        for key, size in (("f2", 10), ("f3", len(whole["f3"]))):
            entry = {"key": key, "etag": "e", "size": size, "present": "1", "atime": 0.0}
            index.set(("content", ids[whole[key]]), entry)
    finally:
        index.close()
    (env.cache_dir / "journal" / "cache.db-wal").write_bytes(os.urandom(8192))

    assert recovered(env.cache_dir, tmp_path / "rescued") == Counter(
        data for key, data in whole.items() if key != "f3"
    )


@pytest.mark.trio
async def test_a_change_to_an_object_not_cached_whole_is_not_taken_for_damage(
    env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A patch of the first bytes of a 3 MiB object that was never read whole: the cache
    file holds the block it changed, the rest is the store's. A kill then is no damage:
    the next mount uploads the change, and nothing goes to lost+found."""
    from .test_journal_and_remount import crash_copy

    original = pattern(3 * MiB, seed=8)
    env.put("big", original)
    async with env.mount(flusher=False) as fs:
        fh, _ = await fs.open(await ino_of(fs, "big"), os.O_WRONLY)
        await fs.write(fh, 0, b"patched")
        await fs.fsync(fh)
        fs.release(fh)
        await fs.persist()
        crash_copy(env, tmp_path / "after-kill")
    with caplog.at_level(logging.WARNING):
        async with env.mount():
            pass
    assert "lost+found" not in caplog.text, caplog.text
    assert inspector.lost_entries(env.cache_dir) == []
    assert env.objects() == {"big": b"patched" + original[7:]}


@pytest.mark.trio
@pytest.mark.parametrize("cached", ["partly cached", "not cached"])
async def test_a_copy_made_dirty_by_a_write_cut_by_a_kill_is_not_taken_for_lost_changes(
    env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture, cached: str
) -> None:
    """A write into a file whose cached copy lacks the block it changes (or that has no
    cached copy at all): the copy leaves the index (it is the file's now), then the block
    is fetched, then the change is journaled. A kill once the block is fetched leaves a
    data file that no record names, holding the object's bytes and nothing written: it is
    no lost change, so it is deleted, not set aside."""
    from .test_journal_and_remount import crash_copy

    original = pattern(3 * MiB, seed=9)
    env.put("big", original)
    async with env.mount(flusher=False) as fs:
        if cached == "partly cached":
            fh, _ = await fs.open(await ino_of(fs, "big"), os.O_RDONLY)
            assert await fs.read(fh, 2 * MiB, 10) == original[2 * MiB : 2 * MiB + 10]  # block 2 cached
            fs.release(fh)
        fetching = trio.Event()
        held = trio.Event()
        fetcher = fs.fetcher

        real_ensure = fetcher.ensure

        async def ensure(*args: Any, **kwargs: Any) -> Any:
            result = await real_ensure(*args, **kwargs)
            fetching.set()
            await held.wait()
            return result

        fetcher.ensure = ensure  # type: ignore[method-assign]
        async with trio.open_nursery() as nursery:

            async def write() -> None:
                wfh, _ = await fs.open(await ino_of(fs, "big"), os.O_WRONLY)
                await fs.write(wfh, 10, b"patched")

            nursery.start_soon(write)
            await fetching.wait()
            crash_copy(env, tmp_path / "after-kill")
            nursery.cancel_scope.cancel()
    with caplog.at_level(logging.WARNING):
        async with env.mount():
            pass
    assert inspector.lost_entries(env.cache_dir) == [], caplog.text
    assert env.objects() == {"big": original}


@pytest.mark.trio
async def test_the_eviction_pass_outlives_its_cache_directory_removed_under_the_mount(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """Someone removes the cache's data directory of a live mount: the eviction pass,
    which measures that disk every interval, says so once and goes on (it had ended the
    daemon, and with it every process using the mount)."""
    async with env.mount(sync=False) as fs:
        room = fs.contents.room
        shutil.rmtree(room.path)
        with trio.move_on_after(0.5):
            await fs.persister.evict_loop(0.05)
        problems = [
            r for r in caplog.records if "eviction" in r.getMessage() and r.levelno >= logging.WARNING
        ]
        assert len(problems) == 1, [r.getMessage() for r in caplog.records]
        os.makedirs(room.path)
        with trio.move_on_after(0.2):
            await fs.persister.evict_loop(0.05)  # measures again once the directory is back
        assert room.free > 0
