"""Store listings merged into the tree: keys that cannot be names, and listings that race
with the flusher's uploads."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from fusestore.core import Node
from fusestore.core.filesystem import Filesystem
from fusestore.stores import StoreError, errno_for

from .conftest import Env, ino_of, listdir, mkdir, read_path, resolve, write_file

pytestmark = pytest.mark.trio

LONG = "n" * 256
LONG_UTF8 = "é" * 128  # 128 characters, 256 bytes
LONGEST = "m" * 255

BAD_KEYS = [
    "a//b",
    "x/../y",
    "x/./z",
    "//lead",
    f"{LONG}",
    f"deep/{LONG}",
    f"deep/{LONG_UTF8}",
    f"{LONG}/under-a-long-prefix",
    "nul\x00name",
]
GOOD_KEYS = ["ok", f"deep/{LONGEST}", "dup", "dup/inner"]


async def test_keys_that_cannot_be_names_are_skipped_and_left_alone(env: Env) -> None:
    for key in BAD_KEYS:
        env.put_raw(key, b"bad")
    for key in GOOD_KEYS:
        env.put(key, key.encode())
    before = env.objects()

    async with env.mount() as fs:
        root = await listdir(fs)
        assert sorted(root) == ["a", "deep", "dup", "ok", "x"]
        assert root["dup"].is_dir, "a key that is both an object and a prefix shows the directory"
        assert sorted(await listdir(fs, "dup")) == ["inner"]
        assert sorted(await listdir(fs, "deep")) == [LONGEST]
        assert await read_path(fs, f"deep/{LONGEST}") == f"deep/{LONGEST}".encode()
        assert await listdir(fs, "a") == {}
        assert await listdir(fs, "x") == {}
        with pytest.raises(OSError) as exc:
            await fs.lookup(1, LONG)
        assert exc.value.errno == errno.ENAMETOOLONG
        assert await fs.lookup(await ino_of(fs, "x"), "..") is not None  # the parent, not a key

        # Hidden keys still count: these directories are not empty in the store.
        for name in ("a", "x"):
            with pytest.raises(OSError) as exc:
                await fs.rmdir(1, name)
            assert exc.value.errno == errno.ENOTEMPTY, name

    after = env.objects()
    for key in BAD_KEYS + GOOD_KEYS:
        assert after[key] == before[key], f"{key!r} was touched"
    assert env.called("copy") == env.called("delete_many") == []


async def test_listing_directories_whose_keys_are_all_hidden_writes_nothing(env: Env) -> None:
    """`a` and `x` look empty, but the store holds keys below them (rmdir says ENOTEMPTY):
    they need no `dir/` marker, and an `ls` must not write to the store."""
    env.put_raw("a//b", b"bad")
    env.put_raw("x/../y", b"bad")
    async with env.mount() as fs:
        assert await listdir(fs, "a") == {}
        assert await listdir(fs, "x") == {}
    assert env.objects() == {"a//b": b"bad", "x/../y": b"bad"}
    assert env.called("put") == []


async def test_a_directory_holding_hidden_keys_moves_its_other_keys(env: Env) -> None:
    env.put_raw("d/x/../y", b"hidden")
    env.put("d/visible", b"v")
    env.put("d/sub/deeper", b"s")
    async with env.mount() as fs:
        await fs.rename(1, "d", 1, "e", 0)
        # `x` is a directory (the prefix `d/x/`), whose only key is hidden
        assert sorted(await listdir(fs, "e")) == ["sub", "visible", "x"]
        assert await listdir(fs, "e/x") == {}
    objects = env.objects()
    assert objects["d/x/../y"] == b"hidden", "never touched"
    assert objects["e/visible"] == b"v" and objects["e/sub/deeper"] == b"s"
    assert "d/visible" not in objects and "d/sub/deeper" not in objects


async def test_names_the_store_cannot_hold_are_refused_before_anything_changes(env: Env) -> None:
    async with env.mount() as fs:
        for name, code in [
            (LONG, errno.ENAMETOOLONG),
            (LONG_UTF8, errno.ENAMETOOLONG),
            ("a/b", errno.EINVAL),
        ]:
            with pytest.raises(OSError) as exc:
                await fs.create(1, name, 0o644, os.O_WRONLY, 0, 0)
            assert exc.value.errno == code
            with pytest.raises(OSError) as exc:
                await fs.mkdir(1, name, 0o755, 0, 0)
            assert exc.value.errno == code
        with pytest.raises(OSError) as exc:
            await fs.symlink(1, LONG, "target", 0, 0)
        assert exc.value.errno == errno.ENAMETOOLONG
        assert await listdir(fs) == {}
    assert env.objects() == {}


async def deep_directory(fs: Filesystem) -> Node:
    """A directory whose prefix (`.../`) is 1019 bytes: a key below it has 5 bytes left."""
    node = fs.node(1)
    for name in ("d" * 255, "e" * 255, "f" * 255, "g" * 250):
        node = await fs.mkdir(node.ino, name, 0o755, fs.settings.uid, fs.settings.gid)
    assert len(node.prefix.encode()) == 1019
    return node


async def test_keys_over_1024_bytes_are_refused_with_enametoolong(env: Env) -> None:
    async with env.mount() as fs:
        deep = await deep_directory(fs)
        for make in (
            lambda: fs.create(deep.ino, "h" * 6, 0o644, os.O_WRONLY, 0, 0),  # a 1025-byte key
            lambda: fs.mkdir(deep.ino, "h" * 5, 0o755, 0, 0),  # `.../hhhhh/`: 1025 bytes
            lambda: fs.symlink(deep.ino, "h" * 6, "target", 0, 0),
        ):
            with pytest.raises((OSError, StoreError)) as exc:
                await make()
            assert errno_for(exc.value) == errno.ENAMETOOLONG
        assert await listdir(fs, deep.key) == {}
    assert list(env.objects()) == [deep.prefix]


async def test_a_directory_rename_that_would_make_a_key_over_1024_bytes_is_refused(env: Env) -> None:
    """Renaming a directory moves every key below it: when the longest of them would pass
    1024 bytes at the new name, the rename fails with ENAMETOOLONG and nothing moves (it
    succeeded, and those files could never be uploaded)."""
    env.put("k/" + "a" * 250 + "/" + "b" * 250 + "/f", b"deep")
    async with env.mount() as fs:
        deep = await deep_directory(fs)  # 1019 bytes: "k" fits, "k/a…/b…/f" does not
        await listdir(fs, "k")  # its entries known, not the ones below them
        with pytest.raises((OSError, StoreError)) as exc:
            await fs.rename(1, "k", deep.ino, "k", 0)
        assert errno_for(exc.value) == errno.ENAMETOOLONG
        assert await read_path(fs, "k/" + "a" * 250 + "/" + "b" * 250 + "/f") == b"deep"
    assert sorted(env.objects()) == sorted([deep.prefix, "k/" + "a" * 250 + "/" + "b" * 250 + "/f"])


async def test_a_file_key_of_exactly_1024_bytes_can_be_created(env: Env) -> None:
    """The store takes keys of up to 1024 bytes, and rename allows a 1024-byte file key:
    create must not refuse it either (only a directory needs room for its `/`)."""
    async with env.mount() as fs:
        deep = await deep_directory(fs)
        await write_file(fs, deep.key + "/" + "r" * 4, b"renamed into place")
        await fs.rename(deep.ino, "r" * 4, deep.ino, "R" * 5, 0)  # a 1024-byte key: fine
        await write_file(fs, deep.key + "/" + "c" * 5, b"created in place")  # also 1024 bytes
    assert env.objects() == {
        deep.prefix + "R" * 5: b"renamed into place",
        deep.prefix + "c" * 5: b"created in place",
    }


class GatedList:
    """Makes the store's `list` take its snapshot, then wait for the test to let it return
    (a LIST that is in flight while the flusher uploads)."""

    def __init__(self, env: Env) -> None:
        self.snapshot_taken = threading.Event()
        self.release = threading.Event()
        self.armed = False
        inner: Callable[..., Any] = env.store.list

        def gated(*args: Any, **kwargs: Any) -> Any:
            page = inner(*args, **kwargs)
            if self.armed:
                self.snapshot_taken.set()
                assert self.release.wait(5), "the test never released the listing"
            return page

        env.store.list = gated  # type: ignore[method-assign]

    async def wait_for_snapshot(self) -> None:
        with trio.fail_after(5):
            while not self.snapshot_taken.is_set():
                await trio.sleep(0.005)


@pytest.mark.parametrize("kind", ["file", "directory"])
async def test_an_entry_uploaded_while_a_listing_is_in_flight_stays_visible(env: Env, kind: str) -> None:
    """A LIST taken before the upload lands must not make the new entry vanish once it does."""
    gate = GatedList(env)
    async with env.mount(flusher=False, metadata_ttl=0.05) as fs:
        if kind == "file":
            await write_file(fs, "new", b"data")
        else:
            await mkdir(fs, "new")
        await trio.sleep(0.1)  # the root's listing expires

        names: list[str] = []

        async def list_root() -> None:
            names.extend(await listdir(fs))

        gate.armed = True
        async with trio.open_nursery() as nursery:
            nursery.start_soon(list_root)
            await gate.wait_for_snapshot()  # the store said: nothing here yet
            async with env.flushing(fs):  # ... and now the upload lands
                pass
            gate.release.set()
        gate.armed = False

        assert set(env.objects()) == ({"new"} if kind == "file" else {"new/"})
        assert names == ["new"]
        assert await fs.lookup(1, "new") is not None


async def test_an_entry_deleted_while_a_listing_is_in_flight_stays_deleted(env: Env) -> None:
    """A LIST taken before the flusher's delete lands must not bring the unlinked file back
    (as a file whose object is gone, and which makes rmdir fail with ENOTEMPTY)."""
    env.put("d/f", b"unlinked")
    env.put("d/", b"")
    gate = GatedList(env)
    async with env.mount(flusher=False) as fs:
        d = await resolve(fs, "d")
        assert sorted(await listdir(fs, "d")) == ["f"]
        await fs.unlink(d.ino, "f")

        async def rmdir() -> None:
            await fs.rmdir(1, "d")  # lists `d/` from the store: is it empty there?

        gate.armed = True
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rmdir)
            await gate.wait_for_snapshot()  # the store still holds d/f ...
            async with env.flushing(fs):  # ... until the flusher deletes it
                pass
            gate.release.set()
        gate.armed = False
        assert await fs.lookup(1, "d") is None
        async with env.flushing(fs):  # the marker `d/` goes too
            pass
    assert env.objects() == {}


async def test_an_entry_deleted_by_another_client_goes_after_the_ttl(
    env: Env, virtual_clock: MockClock
) -> None:
    env.put("theirs", b"x")
    env.put("dir/theirs", b"x")
    async with env.mount(metadata_ttl=0.1, writeback_delay=30) as fs:
        assert sorted(await listdir(fs)) == ["dir", "theirs"]
        assert await read_path(fs, "dir/theirs") == b"x"
        mine = await write_file(fs, "mine", b"local, not uploaded yet")
        env.store.delete_many(["theirs", "dir/theirs"])  # another client
        await trio.sleep(0.15)
        assert mine.pending
        assert sorted(await listdir(fs)) == ["mine"], "pending local work survives the listing"
        assert await read_path(fs, "mine") == b"local, not uploaded yet"
        assert await fs.lookup(1, "dir") is None
    assert env.objects() == {"mine": b"local, not uploaded yet"}


async def test_lookups_of_a_fresh_directory_do_not_list_again(env: Env) -> None:
    for i in range(5):
        env.put(f"f{i}", b"")
    async with env.mount() as fs:
        for i in range(5):
            await resolve(fs, f"f{i}")
            assert await fs.lookup(1, f"missing{i}") is None
        await listdir(fs)
    assert len(env.called("list")) == 1
