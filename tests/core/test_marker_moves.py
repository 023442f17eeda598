"""A renamed directory's kept `dir/` markers move as files do: a server-side copy of each
marker object to its new key, then a delete of the old one. The copy keeps the marker's
own metadata, so a rename needs no HEAD first, and attributes this mount never read are
never replaced by its defaults (a rename during an outage wrote the defaults)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
import trio

from fusestore.core.filesystem import Filesystem
from fusestore.stores import StoreUnavailable

from .conftest import Env, listdir, read_path
from .test_journal_and_remount import crash_copy

pytestmark = pytest.mark.trio

TOP = {"mode": str(stat.S_IFDIR | 0o750), "uid": "1234", "gid": "5678", "mtime": "981158400"}
SUB = {"mode": str(stat.S_IFDIR | 0o700), "uid": "4321", "gid": "8765", "mtime": "981244800", "other": "x"}


def seed(env: Env) -> None:
    """A tree an earlier mount (or another tool) left: two markers holding attributes."""
    env.put("t/", b"", TOP)
    env.put("t/sub/", b"", SUB)
    env.put("t/sub/f", b"f")
    env.put("t/g", b"g")
    env.bare_listings = True  # as on S3: the listings carry no metadata


def heads_fail(env: Env) -> None:
    """Every HEAD fails as while the store does not answer (writes still go through)."""
    real = env.store.head

    def failing(*args: Any, **kwargs: Any) -> Any:
        env.calls.append(("head", args))
        raise StoreUnavailable("test: the store does not answer")

    env.store.head = failing  # type: ignore[method-assign]
    env.real_head = real  # type: ignore[attr-defined]


async def list_tree(fs: Filesystem) -> None:
    assert sorted(await listdir(fs)) == ["t"]
    assert sorted(await listdir(fs, "t")) == ["g", "sub"]
    assert sorted(await listdir(fs, "t/sub")) == ["f"]


def check_moved(env: Env) -> None:
    assert env.objects() == {"u/": b"", "u/g": b"g", "u/sub/": b"", "u/sub/f": b"f"}
    assert env.metadata("u/", without_times=True) == TOP
    assert "ctime" in env.metadata("u/"), "a rename changes the moved directory's ctime"
    assert env.metadata("u/sub/") == SUB


async def test_a_renamed_tree_keeps_its_markers_metadata_without_a_head(env: Env) -> None:
    seed(env)
    async with env.mount() as fs:
        await list_tree(fs)
        env.calls.clear()
        heads_fail(env)
        with trio.fail_after(5):
            await fs.rename(1, "t", 1, "u", 0)
        assert env.called("head") == [], "the rename asked for each marker's attributes"
        with trio.fail_after(5):
            await fs.flusher.sync_all()
        assert await read_path(fs, "u/sub/f") == b"f"
    check_moved(env)
    copied = [args[:2] for args in env.called("copy")]
    assert ("t/", "u/") in copied and ("t/sub/", "u/sub/") in copied
    assert not [args for args in env.called("put") if args[0].endswith("/")], "a marker was written anew"


async def test_a_marker_move_cut_by_a_crash_keeps_its_metadata(env: Env, tmp_path: Path) -> None:
    seed(env)
    async with env.mount(flusher=False) as fs:
        await list_tree(fs)
        await fs.rename(1, "t", 1, "u", 0)
        await fs.persist()
        crash_copy(env, tmp_path / "after-kill")  # before anything went up
    env.calls.clear()
    heads_fail(env)
    async with env.mount() as fs:
        with trio.fail_after(5):
            await fs.flusher.sync_all()
    check_moved(env)


async def test_a_new_directory_at_the_old_name_waits_for_the_marker_move(env: Env) -> None:
    """The old marker is the move's source: a new directory's marker there is written
    only once it was copied away (else the copy would take the new one's attributes,
    and deleting the source would delete it)."""
    seed(env)
    async with env.mount(flusher=False) as fs:
        await list_tree(fs)
        await fs.rename(1, "t", 1, "u", 0)
        await fs.mkdir(1, "t", 0o711, 0, 0)
        async with env.flushing(fs):
            pass
    objects = env.objects()
    assert objects["t/"] == b"" and env.metadata("t/")["mode"] == str(stat.S_IFDIR | 0o711)
    check_moved_with(env, {"t/": b""})


async def test_a_directory_renamed_over_an_empty_one_keeps_its_own_marker(env: Env) -> None:
    seed(env)
    env.put("u/", b"", {"mode": str(stat.S_IFDIR | 0o777)})  # an empty directory with a marker
    async with env.mount() as fs:
        assert sorted(await listdir(fs)) == ["t", "u"]
        assert sorted(await listdir(fs, "t")) == ["g", "sub"]
        assert await listdir(fs, "u") == {}
        await fs.rename(1, "t", 1, "u", 0)
    check_moved(env)


async def test_a_directory_renamed_twice_before_its_move_went_up(env: Env) -> None:
    seed(env)
    async with env.mount(flusher=False) as fs:
        await list_tree(fs)
        await fs.rename(1, "t", 1, "v", 0)
        await fs.rename(1, "v", 1, "u", 0)
        async with env.flushing(fs):
            pass
    check_moved(env)


def check_moved_with(env: Env, extra: dict[str, bytes]) -> None:
    expected = {"u/": b"", "u/g": b"g", "u/sub/": b"", "u/sub/f": b"f", **extra}
    assert env.objects() == expected
    assert env.metadata("u/", without_times=True) == TOP
    assert "ctime" in env.metadata("u/"), "a rename changes the moved directory's ctime"
    assert env.metadata("u/sub/") == SUB


async def test_a_file_move_replayed_after_a_crash_keeps_metadata_never_read(env: Env, tmp_path: Path) -> None:
    """The same for a file: whether its attributes were read is journaled, so the copy a
    restart makes keeps the object's own metadata rather than writing the defaults."""
    metadata = {"mode": str(stat.S_IFREG | 0o600), "uid": "1234", "gid": "5678", "x": "y"}
    env.put("a", b"data", metadata)
    env.bare_listings = True
    async with env.mount(flusher=False) as fs:
        assert sorted(await listdir(fs)) == ["a"]
        await fs.rename(1, "a", 1, "b", 0)
        await fs.persist()
        crash_copy(env, tmp_path / "after-kill")
    heads_fail(env)
    async with env.mount() as fs:
        with trio.fail_after(5):
            await fs.flusher.sync_all()
    assert env.objects() == {"b": b"data"}
    assert env.metadata("b") == metadata
