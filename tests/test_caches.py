"""`fusestore.cache.inspector`: listing, showing and cleaning cache directories left by mounts.

The caches are real: a `Filesystem` on a memory store, driven by trio without a kernel (as in
tests/core), with the flusher off so that the changes stay in the journal for the next mount.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import random
import stat
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import trio
from core.conftest import Env

from fusestore.cache import inspector
from fusestore.cache.inspector import (
    CacheInfo,
    CacheInUse,
    NotACache,
    clean,
    describe,
    find_caches,
    pending_items,
    survey,
)
from fusestore.cache.layout import cache_name
from fusestore.core.filesystem import Filesystem
from fusestore.stores.memory import MemoryStore

MiB = 2**20
BIG = random.Random(1).randbytes(3 * MiB + 21)
KEEP = b"a file that is only read: its data is clean"

Body = Callable[[Filesystem], Awaitable[None]]


class Bench(Env):
    """tests/core's Env (one memory store, one cache directory), driven from sync tests."""

    def __init__(self, cache_dir: Path) -> None:
        super().__init__(f"caches-{uuid.uuid4().hex[:12]}", cache_dir)

    def run(self, body: Body, *, flusher: bool) -> None:
        """Mount as the daemon does (replay, orphans removed), run `body`, then with the
        flusher: upload everything; without: leave it in the journal."""

        async def main() -> None:
            async with self.mount(flusher=flusher, sync=flusher) as fs:
                await body(fs)

        trio.run(main)


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    made = Bench(tmp_path / "cache")
    yield made
    MemoryStore.forget(made.name)


# -- file-system helpers ----------------------------------------------------------------------


async def ino(fs: Filesystem, name: str) -> int:
    node = await fs.lookup(1, name)
    assert node is not None, name
    return node.ino


async def read(fs: Filesystem, name: str) -> bytes:
    fh, _ = await fs.open(await ino(fs, name), os.O_RDONLY)
    parts: list[bytes] = []
    try:
        while data := await fs.read(fh, sum(map(len, parts)), MiB):
            parts.append(data)
    finally:
        fs.release(fh)
    return b"".join(parts)


async def write(fs: Filesystem, name: str, offset: int, data: bytes, *, create: bool = False) -> None:
    if create:
        fh, _ = await fs.create(1, name, 0o644, os.O_WRONLY, 1000, 1000)
    else:
        fh, _ = await fs.open(await ino(fs, name), os.O_RDWR)
    assert await fs.write(fh, offset, data) == len(data)
    fs.release(fh)


def populate(bench: Bench) -> None:
    for key, data in {
        "big": BIG,
        "keep": KEEP,
        "gone": b"to be deleted",
        "src": b"to be renamed",
        "chmod": b"mode changes",
    }.items():
        bench.store.put(key, data, {"mode": str(stat.S_IFREG | 0o644)})


async def make_changes(fs: Filesystem) -> None:
    """Every kind of pending work: new data, changed data (one block of four, the rest never
    fetched), a rename, an attribute change and a delete; plus clean data (`keep`, read)."""
    assert await read(fs, "keep") == KEEP
    await write(fs, "new.txt", 0, b"brand new", create=True)
    await write(fs, "big", MiB + 3, b"PATCH")
    await fs.lookup(1, "gone")
    await fs.unlink(1, "gone")
    await fs.rename(1, "src", 1, "dst", 0)
    await fs.setattr(await ino(fs, "chmod"), mode=0o600)


def expected_objects() -> dict[str, bytes]:
    big = bytearray(BIG)
    big[MiB + 3 : MiB + 8] = b"PATCH"
    return {
        "big": bytes(big),
        "chmod": b"mode changes",
        "dst": b"to be renamed",
        "keep": KEEP,
        "new.txt": b"brand new",
    }


def pending_cache(bench: Bench) -> CacheInfo:
    populate(bench)
    bench.run(make_changes, flusher=False)
    return describe(bench.cache_dir)


def snapshot(path: Path) -> dict[str, tuple[int, int, str]]:
    """Every file below `path` (symlinks not followed): size, mtime and a hash of its bytes."""
    found = {}
    for directory, _dirs, files in os.walk(path):
        for name in files:
            full = Path(directory, name)
            st = full.lstat()
            digest = "link" if full.is_symlink() else hashlib.sha256(full.read_bytes()).hexdigest()
            found[str(full.relative_to(path))] = (st.st_size, st.st_mtime_ns, digest)
    return found


# -- list ---------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_list_shows_a_cache_with_pending_work_and_its_store_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    busy = Bench(root / "placeholder")
    idle = Bench(root / "placeholder")
    try:
        busy.cache_dir = root / cache_name(busy.store.to_url())
        idle.cache_dir = root / cache_name(idle.store.to_url())
        populate(busy)
        busy.run(make_changes, flusher=False)
        idle.run(lambda fs: write(fs, "f", 0, b"uploaded", create=True), flusher=True)
        (root / "not-a-cache").mkdir()
        (root / "not-a-cache" / "file").write_bytes(b"x")
        (root / "a-link").symlink_to(busy.cache_dir)
        before = snapshot(root)

        infos = find_caches(root)
        assert snapshot(root) == before, "listing changes nothing, not even the journal's files"
        assert sorted(info.path for info in infos) == sorted([busy.cache_dir, idle.cache_dir])
        assert [info.path.name for info in infos] == sorted(info.path.name for info in infos)
        by_url = {info.store_url: info for info in infos}

        info = by_url[busy.store.to_url()]
        assert not info.in_use
        assert info.pending is True and info.pending_error is None
        assert info.pending_files == 4  # new.txt, big, dst (moved), chmod (attributes)
        assert info.pending_dirs == 0
        assert info.dirty_bytes == len(BIG) + len(b"brand new")
        assert info.pending_deletes == 1
        assert info.unfinished_uploads == 0
        assert info.clean_bytes is not None and info.clean_bytes >= len(KEEP)  # keep's clean data
        assert info.data_files == 3  # keep (clean), big and new.txt (dirty)
        assert info.data_bytes > info.clean_bytes
        assert info.index_bytes > 0 and info.journal_bytes > 0
        assert info.total_bytes >= info.data_bytes + info.index_bytes + info.journal_bytes
        assert info.last_used is not None
        as_json = json.loads(json.dumps(info.to_json()))
        assert as_json["store_url"] == busy.store.to_url()
        assert as_json["path"] == str(busy.cache_dir)
        assert as_json["pending"] is True and as_json["pending_deletes"] == 1

        other = by_url[idle.store.to_url()]
        assert other.pending is False and other.dirty_bytes == 0 and other.pending_files == 0
        assert other.clean_bytes == other.data_bytes > 0

        monkeypatch.setattr(survey, "default_cache_root", lambda: root)
        assert [info.path for info in find_caches()] == [info.path for info in infos]
        assert find_caches(tmp_path / "missing") == []
    finally:
        MemoryStore.forget(busy.name)
        MemoryStore.forget(idle.name)


@pytest.mark.timeout(30)
def test_a_journal_left_by_a_killed_daemon_is_read_without_changing_it(bench: Bench) -> None:
    """The lock is free but the journal's write-ahead log still holds the records (as after
    kill -9): they are read from a copy, and no file of the cache changes."""
    populate(bench)
    seen: list[CacheInfo] = []

    async def changes_then_die(fs: Filesystem) -> None:
        await make_changes(fs)
        fs.journal.save_upload("big", {"ids": ["upload-1"], "before": None})
        fs.cache.close()  # the daemon is gone: its lock with it
        wal = bench.cache_dir / "journal" / "cache.db-wal"
        assert wal.exists() and wal.stat().st_size > 0, "the records are still in the log"
        before = snapshot(bench.cache_dir)
        seen.append(describe(bench.cache_dir))
        assert {item.kind for item in pending_items(bench.cache_dir)} == {"file", "delete", "upload"}
        assert snapshot(bench.cache_dir) == before

    bench.run(changes_then_die, flusher=False)
    (info,) = seen
    assert not info.in_use
    assert (info.pending_files, info.pending_deletes, info.unfinished_uploads) == (4, 1, 1)
    assert info.dirty_bytes == len(BIG) + len(b"brand new")


# -- show ---------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_show_lists_the_pending_files_with_their_sizes_and_a_pending_delete(bench: Bench) -> None:
    pending_cache(bench)
    items = pending_items(bench.cache_dir)
    assert [(item.kind, item.key) for item in items] == [
        ("file", "big"),
        ("file", "chmod"),
        ("file", "dst"),
        ("file", "new.txt"),
        ("delete", "gone"),
    ]
    by_key = {item.key: item for item in items}

    big = by_key["big"]
    assert (big.data, big.dirty_bytes, big.moved_from) == (True, len(BIG), None)
    assert big.content is not None and (bench.cache_dir / "data" / big.content).is_file()
    assert big.summary().startswith("data")

    new = by_key["new.txt"]
    assert (new.data, new.dirty_bytes, new.moved_from) == (True, len(b"brand new"), None)

    moved = by_key["dst"]
    assert (moved.data, moved.metadata, moved.dirty_bytes, moved.moved_from) == (False, False, 0, "src")
    assert moved.summary() == "move from src"

    chmod = by_key["chmod"]
    assert (chmod.data, chmod.metadata, chmod.dirty_bytes) == (False, True, 0)
    assert chmod.summary() == "metadata"

    assert by_key["gone"].summary() == "delete" and by_key["gone"].dirty_bytes == 0
    assert json.loads(json.dumps([item.to_json() for item in items]))[0]["key"] == "big"


# -- clean ----------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_clean_keeps_dirty_data_and_the_journal_and_the_next_mount_uploads_everything(
    bench: Bench,
) -> None:
    info = pending_cache(bench)
    dirty = {item.content for item in pending_items(bench.cache_dir) if item.content}
    assert len(dirty) == 2
    assert info.clean_bytes is not None

    result = clean(info)

    assert not result.removed_directory and bench.cache_dir.is_dir()
    assert result.removed_files >= 2  # keep's data and the index's database at least
    assert result.removed_bytes >= info.clean_bytes + info.index_bytes
    assert result.discarded == []
    kept = {k.what: k for k in result.kept}
    assert kept["data"].files == 2 and "not yet in the store" in kept["data"].why
    assert kept["journal"].files >= 1
    assert {p.name for p in (bench.cache_dir / "data").iterdir()} == dirty
    assert not (bench.cache_dir / "index").exists()
    assert (bench.cache_dir / "journal").is_dir() and (bench.cache_dir / "store.json").is_file()
    assert json.loads(json.dumps(result.to_json()))["kept_files"] == result.kept_files

    after = describe(bench.cache_dir)
    assert after.clean_bytes == 0 and after.index_bytes == 0
    assert (after.pending_files, after.pending_deletes, after.dirty_bytes) == (
        info.pending_files,
        info.pending_deletes,
        info.dirty_bytes,
    )
    assert bench.objects()["src"] == b"to be renamed", "nothing went to the store yet"

    async def nothing(fs: Filesystem) -> None:
        pass

    bench.run(nothing, flusher=True)  # replay, then upload everything
    assert bench.objects() == expected_objects()
    assert stat.S_IMODE(int(bench.metadata("chmod")["mode"])) == 0o600
    done = describe(bench.cache_dir)
    assert done.pending is False and pending_items(bench.cache_dir) == []


@pytest.mark.timeout(30)
def test_clean_of_a_cache_with_nothing_pending_removes_the_directory(bench: Bench) -> None:
    populate(bench)

    async def read_and_write(fs: Filesystem) -> None:
        assert await read(fs, "keep") == KEEP
        await write(fs, "new.txt", 0, b"uploaded before the end", create=True)

    bench.run(read_and_write, flusher=True)
    info = describe(bench.cache_dir)
    assert info.pending is False and info.data_files >= 1

    result = clean(info)

    assert result.removed_directory and not bench.cache_dir.exists()
    assert result.kept == [] and result.discarded == []
    assert result.removed_bytes >= info.data_bytes + info.index_bytes + info.journal_bytes
    assert result.removed_files >= info.data_files + 3  # + index, journal, store.json (and lock)
    assert bench.objects()["new.txt"] == b"uploaded before the end"


@pytest.mark.timeout(30)
def test_clean_refuses_a_cache_in_use(bench: Bench) -> None:
    info = pending_cache(bench)
    lock = os.open(bench.cache_dir / "lock", os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running daemon holds it
        before = snapshot(bench.cache_dir)
        busy = describe(bench.cache_dir)
        assert busy.in_use
        assert busy.pending_files == info.pending_files  # read next to the daemon
        with pytest.raises(CacheInUse) as refused:
            clean(busy)
        message = str(refused.value)
        assert "\n" not in message and "in use by a running daemon; unmount it first" in message
        with pytest.raises(CacheInUse):
            clean(busy, force=True)
        with pytest.raises(CacheInUse):
            clean(info)  # a stale CacheInfo saying "not in use" changes nothing
        assert snapshot(bench.cache_dir) == before
    finally:
        os.close(lock)
    assert not describe(bench.cache_dir).in_use

    # A real mount holds it too; the journal is read while it works.
    async def check_while_mounted(fs: Filesystem) -> None:
        await write(fs, "more", 0, b"written while mounted", create=True)
        files = set(snapshot(bench.cache_dir))
        mounted = describe(bench.cache_dir)
        assert set(snapshot(bench.cache_dir)) == files
        assert mounted.in_use and mounted.pending_files == (info.pending_files or 0) + 1
        assert "more" in {item.key for item in pending_items(bench.cache_dir)}
        with pytest.raises(CacheInUse):
            clean(mounted, force=True)

    bench.run(check_while_mounted, flusher=False)
    assert bench.cache_dir.is_dir()


@pytest.mark.timeout(30)
def test_the_in_use_test_never_creates_the_lock_file(bench: Bench) -> None:
    pending_cache(bench)
    (bench.cache_dir / "lock").unlink()
    assert not describe(bench.cache_dir).in_use
    assert not (bench.cache_dir / "lock").exists()


@pytest.mark.timeout(30)
def test_clean_refuses_a_directory_that_is_not_a_cache(bench: Bench, tmp_path: Path) -> None:
    info = pending_cache(bench)
    other = tmp_path / "documents"
    other.mkdir()
    (other / "data").mkdir()
    (other / "data" / "precious").write_bytes(b"not a cache file")
    (other / "journal").write_bytes(b"mine")

    with pytest.raises(NotACache, match="not a fusestore cache directory") as refused:
        describe(other)
    assert "\n" not in str(refused.value)
    with pytest.raises(NotACache):
        clean(dataclasses.replace(info, path=other), force=True)
    with pytest.raises(NotACache):
        pending_items(other)
    with pytest.raises(NotACache, match="does not exist"):
        describe(tmp_path / "missing")
    (tmp_path / "plain-file").write_bytes(b"x")
    with pytest.raises(NotACache, match="not a directory"):
        describe(tmp_path / "plain-file")
    assert (other / "data" / "precious").read_bytes() == b"not a cache file"
    assert (other / "journal").read_bytes() == b"mine"


@pytest.mark.timeout(30)
def test_clean_force_removes_everything(bench: Bench) -> None:
    info = pending_cache(bench)
    before = bench.objects()

    result = clean(info, force=True)

    assert result.removed_directory and not bench.cache_dir.exists()
    assert result.kept == []
    assert result.removed_bytes >= info.data_bytes + info.index_bytes + info.journal_bytes
    assert result.removed_files >= info.data_files + 3
    lost = " / ".join(result.discarded)
    assert "4 file(s) with changes not yet in the store" in lost
    assert "1 key(s) not yet deleted" in lost
    assert bench.objects() == before, "nothing reached the store"


@pytest.mark.timeout(30)
def test_clean_never_follows_symlinks_and_keeps_files_that_are_not_the_caches(
    bench: Bench, tmp_path: Path
) -> None:
    pending_cache(bench)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"must survive")
    (bench.cache_dir / "data" / "evil-file").symlink_to(outside / "victim")
    (bench.cache_dir / "data" / "evil-dir").symlink_to(outside)
    (bench.cache_dir / "index" / "evil-dir").symlink_to(outside)
    (bench.cache_dir / "notes.txt").write_bytes(b"the user's own file")

    info = describe(bench.cache_dir)
    assert info.data_files == 5  # three contents and two symlinks, not what they point to
    clean(info)  # without force: the links are not pending data, so they go
    assert not (bench.cache_dir / "data" / "evil-file").is_symlink()
    assert not (bench.cache_dir / "data" / "evil-dir").is_symlink()
    result = clean(describe(bench.cache_dir), force=True)

    assert (outside / "victim").read_bytes() == b"must survive"
    assert sorted(p.name for p in bench.cache_dir.iterdir()) == ["notes.txt"]
    assert not result.removed_directory
    (kept,) = result.kept
    assert kept.what == "notes.txt" and "not a fusestore cache file" in kept.why
    assert (bench.cache_dir / "notes.txt").read_bytes() == b"the user's own file"


@pytest.mark.timeout(30)
def test_an_unreadable_journal_is_reported_and_only_force_cleans_it(bench: Bench) -> None:
    pending_cache(bench)
    (bench.cache_dir / "journal" / "cache.db").write_bytes(b"not a database at all" * 100)
    for leftover in ("cache.db-wal", "cache.db-shm"):
        (bench.cache_dir / "journal" / leftover).unlink(missing_ok=True)

    info = describe(bench.cache_dir)
    assert info.pending is None and info.pending_files is None and info.clean_bytes is None
    assert info.pending_error
    assert json.loads(json.dumps(info.to_json()))["pending"] is None
    with pytest.raises(inspector.CacheError, match="cannot read the journal"):
        pending_items(bench.cache_dir)
    with pytest.raises(inspector.CacheError, match="nothing was removed") as refused:
        clean(info)
    assert "\n" not in str(refused.value)
    assert (bench.cache_dir / "data").is_dir() and (bench.cache_dir / "index").is_dir()

    result = clean(info, force=True)
    assert result.removed_directory and not bench.cache_dir.exists()
    assert any("could not be read" in line for line in result.discarded)


# -- the command line --------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_the_cache_commands(bench: Bench) -> None:
    from click.testing import CliRunner

    from fusestore.cli import main

    pending_cache(bench)
    root = str(bench.cache_dir.parent)
    runner = CliRunner()
    listed = runner.invoke(main, ["cache", "list", "--root", root, "--json"], standalone_mode=False)
    assert listed.exit_code == 0, listed.output
    [entry] = json.loads(listed.output)
    assert entry["store_url"] == bench.store.to_url() and entry["pending_files"] >= 3

    shown = runner.invoke(main, ["cache", "show", str(bench.cache_dir)], standalone_mode=False)
    assert shown.exit_code == 0, shown.output
    assert "PENDING" in shown.output and "new.txt" in shown.output and "gone" in shown.output

    cleaned = runner.invoke(main, ["cache", "clean", str(bench.cache_dir)], standalone_mode=False)
    assert cleaned.exit_code == 0, cleaned.output
    assert "kept" in cleaned.output and bench.cache_dir.exists()

    refused = runner.invoke(main, ["cache", "clean", "--force", str(bench.cache_dir)], input="n\n")
    assert refused.exit_code != 0 and bench.cache_dir.exists(), "--force asks first"
    forced = runner.invoke(
        main, ["cache", "clean", "--force", "--yes", str(bench.cache_dir)], standalone_mode=False
    )
    assert forced.exit_code == 0, forced.output
    assert not (bench.cache_dir / "journal").exists()


def test_umounts_account_names_lost_found_files_twenty_at_most(
    bench: Bench, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing pending, but lost+found holds files (a rebuilt index can put thousands
    there): `fusestore umount`'s account exits 1 and names the first twenty."""
    from fusestore.cache.recovery import LostFound
    from fusestore.cli.control import left_behind

    async def nothing(fs: Filesystem) -> None:
        pass

    bench.run(nothing, flusher=True)
    lost_found = LostFound(bench.cache_dir / "lost+found")
    for number in range(25):
        data = bench.cache_dir / "data" / f"orphan{number:02d}"
        data.write_bytes(b"x")
        lost_found.keep(data, key=f"d/f{number:02d}", reason="a test")

    assert left_behind("/mnt", None, str(bench.cache_dir), "fusestore: /mnt unmounted") == 1
    err = capsys.readouterr().err
    assert "holds every change" not in err, err
    assert "25 file(s)" in err and f"fusestore cache recover {bench.cache_dir}" in err, err
    assert err.count("  lost: ") == 20 and "'d/f00'" in err and "… and 5 more" in err, err


@pytest.mark.timeout(30)
def test_show_finds_a_mounts_cache_by_the_url_as_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The URL a user types (endpoint not percent-encoded, a trailing slash) names the same
    cache as the mount's own, normalised URL."""
    from click.testing import CliRunner

    from fusestore.cache.layout import CacheDir
    from fusestore.cli import cache as cache_cli
    from fusestore.cli import main
    from fusestore.stores import open_store

    typed = "s3://bkt/k9/?endpoint_url=http://127.0.0.1:18555"
    mounted = open_store("s3://bkt/k9", endpoint_url="http://127.0.0.1:18555").to_url()
    assert mounted != typed
    monkeypatch.setattr(cache_cli, "default_cache_root", lambda: tmp_path)
    monkeypatch.setattr("fusestore.cache.layout.default_cache_root", lambda: tmp_path)
    made = CacheDir.for_store(mounted, None).open()  # where the daemon puts it
    made.close()

    shown = CliRunner().invoke(main, ["cache", "show", typed], standalone_mode=False)
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith(f"{made.path}  ({mounted}, not in use)")
