"""What only the file driver promises: a plain directory layout, atomic replacement seen
by concurrent readers, exact conditional writes between processes, no escape from ROOT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from storetools import all_keys

from fusestore.stores import AlreadyExists, InvalidKey, KeyTooLong, NotFound, StoreNotFound, open_store
from fusestore.stores.file import XATTR, FileStore


def test_objects_are_plain_files_with_metadata_in_an_xattr(fs: FileStore, root: Path) -> None:
    fs.put("docs/readme.txt", b"hello", {"mode": "33188"})
    assert (root / "docs" / "readme.txt").read_bytes() == b"hello"
    attr = json.loads(os.getxattr(root / "docs" / "readme.txt", XATTR))
    assert attr["meta"] == {"mode": "33188"}


def test_files_placed_by_other_programs_are_objects(fs: FileStore, root: Path) -> None:
    (root / "a").mkdir()
    (root / "a" / "b.txt").write_bytes(b"from elsewhere")
    info = fs.head("a/b.txt")
    assert (info.size, info.metadata) == (14, {})
    assert fs.get_range("a/b.txt") == b"from elsewhere"
    (root / "a" / "b.txt").write_bytes(b"edited in place!")
    assert fs.head("a/b.txt").etag != info.etag


def test_concurrent_readers_never_see_a_partial_object(fs: FileStore) -> None:
    versions = [bytes([n]) * (2 * 1024 * 1024) for n in range(1, 6)]
    fs.put("hot", versions[0])
    seen: set[bytes] = set()
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            data = fs.get_range("hot")
            if data not in versions:
                errors.append(f"partial read of {len(data)} bytes")
            seen.add(data[:1])

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in range(6):
        for version in versions:
            fs.put("hot", version)
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(seen) > 1


def test_create_only_puts_race_to_exactly_one_winner_across_processes(root: Path) -> None:
    script = (
        "import sys\n"
        "from fusestore.stores import open_store, AlreadyExists\n"
        "s = open_store(sys.argv[1])\n"
        "try:\n"
        "    s.put('lock', sys.argv[2].encode(), if_none_match=True); print('won')\n"
        "except AlreadyExists:\n"
        "    print('lost')\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, f"file://{root}", str(n)], stdout=subprocess.PIPE, text=True
        )
        for n in range(6)
    ]
    results = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(results) == ["lost"] * 5 + ["won"]
    with pytest.raises(AlreadyExists):
        open_store(f"file://{root}").put("lock", b"late", if_none_match=True)


@pytest.mark.parametrize(
    "key", ["../outside", "a/../../x", "./x", "a//b", "a/./b", ".fusestore/lock", "x/.fusestore"]
)
def test_keys_that_are_not_paths_are_refused(fs: FileStore, key: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidKey):
        fs.put(key, b"x")
    assert not (tmp_path / "outside").exists()


def test_name_components_over_255_bytes_are_too_long(fs: FileStore) -> None:
    with pytest.raises(KeyTooLong):
        fs.put("d/" + "n" * 256, b"x")


def test_an_object_cannot_also_be_a_prefix(fs: FileStore) -> None:
    fs.put("a", b"file")
    with pytest.raises(InvalidKey, match="also a prefix"):
        fs.put("a/b", b"x")
    fs.put("c/d", b"x")
    with pytest.raises(InvalidKey, match="prefix"):
        fs.put("c", b"x")


def test_deletes_remove_emptied_directories_but_keep_markers(fs: FileStore, root: Path) -> None:
    fs.put("keep/", b"")
    fs.put("keep/inner/file", b"x")
    fs.put("gone/deep/file", b"x")
    fs.delete_many(["keep/inner/file", "gone/deep/file"])
    assert sorted(os.listdir(root)) == [".fusestore", "keep"]
    assert os.listdir(root / "keep") == []
    assert all_keys(fs) == ["keep/"]


def test_symbolic_links_are_not_followed(fs: FileStore, root: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"outside the store")
    (root / "link").symlink_to(secret)
    assert all_keys(fs) == []
    with pytest.raises(NotFound):
        fs.get_range("link")


def test_temporary_files_never_show_and_stale_ones_are_swept(fs: FileStore, root: Path) -> None:
    fs.put("x", b"1")
    stale = root / ".fusestore" / "tmp" / "99999-stale"
    stale.write_bytes(b"left by a crash")
    os.utime(stale, (0, 0))
    assert all_keys(fs) == ["x"]
    open_store(f"file://{root}").put("y", b"2")
    assert not stale.exists()


def test_missing_root_is_store_not_found(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/absent")
    with pytest.raises(StoreNotFound, match="does not exist"):
        store.probe()
    with pytest.raises(StoreNotFound):
        store.put("k", b"v")


def test_capacity_comes_from_the_file_system(fs: FileStore) -> None:
    stats = fs.stat_store()
    assert stats.total_bytes and stats.free_bytes is not None and stats.total_bytes >= stats.free_bytes


def test_a_symlinked_directory_does_not_lead_out_of_the_store(
    fs: FileStore, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "passwd").write_bytes(b"not yours")
    (root / "door").symlink_to(outside)
    with pytest.raises(InvalidKey, match="symbolic link"):
        fs.get_range("door/passwd")
    with pytest.raises(InvalidKey, match="symbolic link"):
        fs.put("door/new", b"x")
    assert sorted(os.listdir(outside)) == ["passwd"]


def test_new_directories_are_fsynced_up_to_the_existing_one(
    fs: FileStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (root / "a").mkdir()
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    fs.put("a/b/c/file", b"x")
    dirs = [p for p in synced if os.path.isdir(p)]
    assert dirs == [str(root / "a/b/c"), str(root / "a/b"), str(root / "a")]


def test_empty_directories_left_by_other_programs_are_no_prefix(fs: FileStore, root: Path) -> None:
    (root / "left-empty" / "deeper").mkdir(parents=True)
    (root / "has-data" / "deeper").mkdir(parents=True)
    (root / "has-data" / "deeper" / "f").write_bytes(b"x")
    fs.put("marked/", b"")
    assert fs.list("", "/").prefixes == ["has-data/", "marked/"]
    assert all_keys(fs) == ["has-data/deeper/f", "marked/"]
