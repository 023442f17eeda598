"""rename: what the tree shows at once, and what the store holds once the flusher is done."""

from __future__ import annotations

import errno
import os
import threading
from typing import Any

import pytest
import trio

from fusestore.stores.faulty import FaultyStore

from .conftest import Env, GatedPut, MiB, ino_of, listdir, mkdir, pattern, read_path, resolve, write_file

pytestmark = pytest.mark.trio

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


async def test_a_clean_file_is_moved_by_server_side_copy_and_delete(env: Env) -> None:
    data = pattern(2 * MiB + 5, seed=1)
    env.put("old", data, {"mode": "33188", "uid": "5", "gid": "6", "mtime": "1700000000"})
    async with env.mount() as fs:
        await fs.lookup(1, "old")
        await fs.rename(1, "old", 1, "new", 0)
        assert await fs.lookup(1, "old") is None
        node = await resolve(fs, "new")
        assert node.pending
        await fs.flusher.sync_all()
        assert not node.pending
        assert await read_path(fs, "new") == data

    assert env.objects() == {"new": data}
    stored = {"mode": "33188", "uid": "5", "gid": "6", "mtime": "1700000000"}
    assert env.metadata("new", without_token=True, without_times=True) == stored
    assert "ctime" in env.metadata("new"), "a rename changes the moved file's ctime"
    assert [args[:2] for args in env.called("copy")] == [("old", "new")]
    assert env.called("put") == [], "a clean file is not re-uploaded"
    assert [sorted(args[0]) for args in env.called("delete_many")] == [["old"]]


async def test_a_dirty_file_is_uploaded_under_its_new_name(env: Env) -> None:
    async with env.mount() as fs:
        await write_file(fs, "draft", b"not uploaded yet")
        await fs.rename(1, "draft", 1, "final", 0)
        assert await read_path(fs, "final") == b"not uploaded yet"
    assert env.objects() == {"final": b"not uploaded yet"}


async def test_renaming_a_file_that_is_being_written_to(env: Env) -> None:
    async with env.mount() as fs:
        fh, node = await fs.create(1, "a", 0o644, os.O_WRONLY, 0, 0)
        await fs.write(fh, 0, b"first half ")
        await fs.flusher.sync_all()
        await fs.rename(1, "a", 1, "b", 0)
        await fs.write(fh, 11, b"second half")
        fs.release(fh)
        assert node.key == "b"
    assert env.objects() == {"b": b"first half second half"}


@pytest.mark.parametrize("target_listed", [True, False])
async def test_rename_onto_an_existing_file_replaces_it(env: Env, target_listed: bool) -> None:
    env.put("src", b"the source")
    env.put("dst", b"the old target, to be replaced")
    async with env.mount() as fs:
        if target_listed:
            await read_path(fs, "dst")
        await fs.rename(1, "src", 1, "dst", 0)
        assert await read_path(fs, "dst") == b"the source"
        assert sorted(await listdir(fs)) == ["dst"]
    assert env.objects() == {"dst": b"the source"}


async def test_rename_noreplace_refuses_an_existing_target(env: Env) -> None:
    env.put("a", b"a")
    env.put("b", b"b")
    async with env.mount() as fs:
        with pytest.raises(OSError) as exc:
            await fs.rename(1, "a", 1, "b", RENAME_NOREPLACE)
        assert exc.value.errno == errno.EEXIST
        # NOREPLACE onto a free name is an ordinary rename
        await fs.rename(1, "a", 1, "c", RENAME_NOREPLACE)
    assert env.objects() == {"b": b"b", "c": b"a"}


async def test_rename_errors(env: Env) -> None:
    env.put("file", b"f")
    env.put("dir/x", b"x")
    env.put("full/y", b"y")
    async with env.mount() as fs:
        dir_ino = await ino_of(fs, "dir")
        cases = [
            ((1, "missing", 1, "z", 0), errno.ENOENT),
            ((1, "dir", dir_ino, "inside", 0), errno.EINVAL),  # into itself
            ((1, "file", 1, "dir", 0), errno.EISDIR),
            ((1, "dir", 1, "file", 0), errno.ENOTDIR),
            ((1, "dir", 1, "full", 0), errno.ENOTEMPTY),
            ((1, "file", 1, "a/b", 0), errno.EINVAL),
            ((1, "file", 1, "n" * 256, 0), errno.ENAMETOOLONG),
            ((1, "file", 1, "g", RENAME_EXCHANGE), errno.EINVAL),
        ]
        for args, code in cases:
            with pytest.raises(OSError) as exc:
                await fs.rename(*args)
            assert exc.value.errno == code, args
        await fs.rename(1, "file", 1, "file", 0)  # onto itself: nothing happens
    assert env.objects() == {"dir/x": b"x", "file": b"f", "full/y": b"y"}
    assert env.called("copy") == env.called("put") == env.called("delete_many") == []


async def test_a_directory_moves_every_key_below_it_listed_or_not(env: Env) -> None:
    keys = {
        "tree/1": b"one",
        "tree/x/2": b"two",
        "tree/x/y/3": b"three",
        "tree/x/y/z/4": b"four",
        "tree/empty/": b"",
        "treehouse": b"a sibling with a common prefix: must not move",
    }
    for key, data in keys.items():
        env.put(key, data)
    async with env.mount() as fs:
        await fs.lookup(1, "tree")  # only the top is known; nothing below was listed
        await fs.rename(1, "tree", 1, "forest", 0)
        assert await fs.lookup(1, "tree") is None
        assert await read_path(fs, "forest/x/y/z/4") == b"four"
    assert env.objects() == {
        "forest/1": b"one",
        "forest/x/2": b"two",
        "forest/x/y/3": b"three",
        "forest/x/y/z/4": b"four",
        "forest/empty/": b"",
        "treehouse": b"a sibling with a common prefix: must not move",
    }


async def test_a_directory_with_dirty_files_moves_into_another_directory(env: Env) -> None:
    env.put("src/clean", b"clean")
    async with env.mount() as fs:
        await mkdir(fs, "dst")
        await write_file(fs, "src/dirty", b"dirty")
        await fs.rename(await ino_of(fs, ""), "src", await ino_of(fs, "dst"), "moved", 0)
        assert sorted(await listdir(fs, "dst/moved")) == ["clean", "dirty"]
    assert env.objects() == {"dst/moved/clean": b"clean", "dst/moved/dirty": b"dirty"}


async def test_mv_a_to_b_then_create_a_new_a(env: Env) -> None:
    env.put("a", pattern(3 * MiB, seed=2))
    async with env.mount() as fs:
        await fs.rename(1, "a", 1, "b", 0)
        await write_file(fs, "a", b"the new a")
        assert await read_path(fs, "a") == b"the new a"
        assert await read_path(fs, "b") == pattern(3 * MiB, seed=2)
    assert env.objects() == {"a": b"the new a", "b": pattern(3 * MiB, seed=2)}


async def test_mv_a_to_b_then_create_a_new_a_before_anything_was_read(env: Env) -> None:
    """The new `a` must not be uploaded before the old `a` was copied to `b`."""
    env.put("a", b"old a")
    async with env.mount(writeback_delay=0) as fs:
        await fs.rename(1, "a", 1, "b", 0)
        await write_file(fs, "a", b"new a")
    assert env.objects() == {"a": b"new a", "b": b"old a"}


@pytest.mark.parametrize("clean", [True, False], ids=["clean", "dirty"])
async def test_swap_two_files_through_a_temporary_name(env: Env, clean: bool) -> None:
    async with env.mount() as fs:
        if clean:
            env.put("a", b"content of a")
            env.put("b", b"content of b")
        else:
            await write_file(fs, "a", b"content of a")
            await write_file(fs, "b", b"content of b")
        await fs.rename(1, "a", 1, "t", 0)
        await fs.rename(1, "b", 1, "a", 0)
        await fs.rename(1, "t", 1, "b", 0)
        assert await read_path(fs, "a") == b"content of b"
        assert await read_path(fs, "b") == b"content of a"
    assert env.objects() == {"a": b"content of b", "b": b"content of a"}


async def test_swap_two_directories_through_a_temporary_name(env: Env) -> None:
    env.put("d1/f", b"in d1")
    env.put("d2/f", b"in d2")
    env.put("d2/g", b"only in d2")
    async with env.mount() as fs:
        await fs.rename(1, "d1", 1, "tmp", 0)
        await fs.rename(1, "d2", 1, "d1", 0)
        await fs.rename(1, "tmp", 1, "d2", 0)
    assert env.objects() == {"d1/f": b"in d2", "d1/g": b"only in d2", "d2/f": b"in d1"}


async def test_a_chain_of_renames_before_the_flusher_runs(env: Env) -> None:
    env.put("x", b"x data")
    async with env.mount() as fs:
        for src, dst in [("x", "y"), ("y", "z"), ("z", "x2")]:
            await fs.rename(1, src, 1, dst, 0)
    assert env.objects() == {"x2": b"x data"}


async def test_rename_away_and_back_before_the_flusher_runs(env: Env) -> None:
    env.put("a", b"a")
    async with env.mount() as fs:
        await fs.rename(1, "a", 1, "b", 0)
        await fs.rename(1, "b", 1, "a", 0)
        assert not (await resolve(fs, "a")).pending
    assert env.objects() == {"a": b"a"}
    assert env.called("copy") == env.called("delete_many") == env.called("put") == []


async def test_rename_then_unlink_before_the_copy(env: Env) -> None:
    env.put("a", b"a")
    async with env.mount() as fs:
        await fs.rename(1, "a", 1, "b", 0)
        await fs.unlink(1, "b")
    assert env.objects() == {}


async def test_rename_of_a_clean_file_then_a_write(env: Env) -> None:
    original = pattern(2 * MiB, seed=3)
    env.put("a", original)
    async with env.mount() as fs:
        await fs.rename(1, "a", 1, "b", 0)
        fh, _ = await fs.open(await ino_of(fs, "b"), os.O_WRONLY)
        await fs.write(fh, MiB, b"changed")
        fs.release(fh)
    assert env.objects() == {"b": original[:MiB] + b"changed" + original[MiB + 7 :]}


async def test_a_directory_renamed_while_a_file_in_it_is_dirty_and_open(env: Env) -> None:
    async with env.mount() as fs:
        await mkdir(fs, "d")
        fh, node = await fs.create(await ino_of(fs, "d"), "f", 0o644, os.O_WRONLY, 0, 0)
        await fs.write(fh, 0, b"before ")
        await fs.rename(1, "d", 1, "e", 0)
        await fs.write(fh, 7, b"after")
        fs.release(fh)
        assert node.key == "e/f"
    assert env.objects() == {"e/f": b"before after"}


async def test_a_new_empty_directory_renamed_before_its_marker_went_up(env: Env) -> None:
    async with env.mount() as fs:
        await mkdir(fs, "d")
        await fs.rename(1, "d", 1, "e", 0)
    assert env.objects() == {"e/": b""}


async def test_rename_a_directory_onto_an_empty_directory(env: Env) -> None:
    env.put("src/f", b"f")
    env.put("dst/", b"")
    async with env.mount() as fs:
        await fs.rename(1, "src", 1, "dst", 0)
        assert sorted(await listdir(fs, "dst")) == ["f"]
    assert env.objects() == {"dst/f": b"f"}


async def test_rename_onto_a_file_that_is_open_keeps_it_readable(env: Env) -> None:
    env.put("victim", b"old contents, still open")
    env.put("src", b"new")
    async with env.mount() as fs:
        fh, _ = await fs.open(await ino_of(fs, "victim"), os.O_RDONLY)
        await fs.rename(1, "src", 1, "victim", 0)
        await fs.flusher.sync_all()
        assert await fs.read(fh, 0, 100) == b"old contents, still open"
        fs.release(fh)
        assert await read_path(fs, "victim") == b"new"
    assert env.objects() == {"victim": b"new"}


async def test_rename_a_file_out_of_a_directory_then_rmdir(env: Env) -> None:
    env.put("d/f", b"f")
    async with env.mount() as fs:
        await fs.rename(await ino_of(fs, "d"), "f", 1, "f", 0)
        await fs.rmdir(1, "d")
    assert env.objects() == {"f": b"f"}


@pytest.mark.parametrize("then", ["rename away", "unlink", "move its directory", "remount, rename away"])
async def test_a_file_that_replaced_an_object_leaves_before_its_upload(env: Env, then: str) -> None:
    """`mv c a` drops the pending delete of the replaced `a`, since uploading `c` there overwrites
    it; if the file leaves `a` before that upload, the old object at `a` must still go."""
    env.put("d/a", b"the replaced a")
    env.put("d/c", b"the c that replaces it")
    async with env.mount(flusher=False, sync=False) as fs:
        d = await ino_of(fs, "d")
        await fs.lookup(d, "a")
        await fs.rename(d, "c", d, "a", 0)
        assert "d/a" not in fs.ns.deletes
        if then == "rename away":
            await fs.rename(d, "a", d, "c", 0)
        elif then == "unlink":
            await fs.unlink(d, "a")
        elif then == "move its directory":
            await fs.rename(1, "d", 1, "e", 0)
    if then == "remount, rename away":
        async with env.mount(flusher=False) as fs:
            d = await ino_of(fs, "d")
            await fs.rename(d, "a", d, "c", 0)
            async with env.flushing(fs):
                pass
    else:
        async with env.mount():
            pass
    expected = {
        "rename away": {"d/c": b"the c that replaces it"},
        "unlink": {"d/": b""},  # the directory is empty now: it keeps a marker
        "move its directory": {"e/a": b"the c that replaces it"},
        "remount, rename away": {"d/c": b"the c that replaces it"},
    }
    assert env.objects() == expected[then]


@pytest.mark.parametrize("copied", [False, True], ids=["before the copy", "after the copy"])
async def test_a_new_file_at_a_moved_files_key_leaves_before_its_upload(env: Env, copied: bool) -> None:
    """`mv b/c a/c; create b/c; rm a/c; rm b/c`: the old object at b/c was first needed as the
    source of the move, then by nobody; the new b/c, never uploaded, must not leave it behind."""
    env.put("b/c", b"the first c")
    async with env.mount(flusher=False, sync=False) as fs:
        b = await ino_of(fs, "b")
        await fs.lookup(b, "c")
        a = await mkdir(fs, "a")
        await fs.rename(b, "c", a.ino, "c", 0)
        if copied:
            async with env.flushing(fs):
                pass
        await write_file(fs, "b/c", b"the second c")
        await fs.unlink(a.ino, "c")
        await fs.unlink(b, "c")
    async with env.mount():
        pass
    assert env.objects() == {"a/": b"", "b/": b""}


async def test_this_mount_never_sees_its_directory_rename_half_done(env: Env) -> None:
    """Other hosts may see a renamed tree half-copied; the host that renamed it, listing
    again and again (TTL 0) while the store is half-way, always sees the whole new tree."""
    names = [f"f{i:02}" for i in range(40)]
    for name in names:
        env.put(f"src/{name}", name.encode())
    slow = FaultyStore(env.store, "copy:latency=0.02;delete_many:latency=0.3")
    async with env.mount(store=slow, metadata_ttl=0, writeback_delay=0) as fs:
        await listdir(fs, "src")
        await fs.rename(1, "src", 1, "dst", 0)
        store_states = set()
        while any(key.startswith("src/") for key in env.objects()):
            keys = env.objects()
            old_left = any(k.startswith("src/") for k in keys)
            store_states.add((old_left, sum(k.startswith("dst/") for k in keys)))
            assert sorted(await listdir(fs)) == ["dst"]
            assert sorted(await listdir(fs, "dst")) == names
            assert await fs.lookup(1, "src") is None
            await trio.sleep(0.01)
        assert sorted(await listdir(fs, "dst")) == names
        half_way = {copied for old_left, copied in store_states if old_left and 0 < copied < len(names)}
        assert half_way, f"the store was never caught half-way: {sorted(store_states)}"
    assert env.objects() == {f"dst/{name}": name.encode() for name in names}


@pytest.mark.parametrize("how", ["renamed", "removed"])
async def test_a_listing_taken_before_a_directory_left_the_store_does_not_bring_it_back(
    env: Env, how: str
) -> None:
    """The root is listed while the store still holds `src/...`; the listing's answer
    arrives once the flusher has moved (or deleted) every object below `src/`. No key of
    that listing is one the mount still shadows by then, so only the time of the listing
    tells that its `src/` is older than the mount's own deletes: `src` must not come back."""
    names = [f"f{i}" for i in range(3)]
    for name in names:
        env.put(f"src/{name}", name.encode())
    listed, go_on = threading.Event(), threading.Event()
    list_objects = env.store.list

    def held_list(prefix: str, *args: Any, **kwargs: Any) -> Any:
        page = list_objects(prefix, *args, **kwargs)
        if prefix == "" and not go_on.is_set():
            listed.set()
            go_on.wait(10)
        return page

    async with env.mount(metadata_ttl=0, writeback_delay=30) as fs:
        await listdir(fs, "src")
        if how == "renamed":
            await fs.rename(1, "src", 1, "dst", 0)
        else:
            src = await ino_of(fs, "src")
            for name in names:
                await fs.unlink(src, name)
            await fs.rmdir(1, "src")
        env.store.list = held_list  # type: ignore[method-assign]
        root: dict[str, Any] = {}

        async def list_root() -> None:
            root.update(await listdir(fs))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(list_root)
            await trio.to_thread.run_sync(listed.wait, 10)  # taken: it shows `src/`
            await fs.flusher.sync_all()
            assert not any(key.startswith("src/") for key in env.objects())
            go_on.set()
        assert sorted(root) == (["dst"] if how == "renamed" else [])
        assert await fs.lookup(1, "src") is None


async def test_a_file_written_during_its_move_keeps_the_bytes_of_its_moved_object(env: Env) -> None:
    """`a` (never read here) is open while it is renamed to `b`; during its move (the copy
    to `b`) a few of its bytes change, and a new `a` is made. The new `a` goes up once the
    move landed, before `b`'s change does: the bytes of `b` the cache never held must then
    come from `b`'s own object, not from the `a` it was copied from (which holds the new
    file by then). Nothing of `b` becomes zeros."""
    original = pattern(3 * MiB, seed=7)
    env.put("a", original)
    gate = GatedPut(env, "copy")
    async with env.mount(writeback_delay=0.3) as fs:
        fh, _ = await fs.open(await ino_of(fs, "a"), os.O_RDWR)
        await fs.rename(1, "a", 1, "b", 0)
        await gate.wait_until_started()
        await fs.write(fh, 2 * MiB, b"changed")
        await write_file(fs, "a", b"a new file at the old name")
        await trio.sleep(0.4)  # the new `a` is due, and waits for the move
        gate.proceed.set()
        await fs.flusher.sync_all()
        fs.release(fh)
    expected = original[: 2 * MiB] + b"changed" + original[2 * MiB + 7 :]
    assert env.objects() == {"a": b"a new file at the old name", "b": expected}


async def test_a_fetch_named_before_its_files_move_landed_reads_the_moved_object(env: Env) -> None:
    """A write into a renamed file fetches the block it changes from the object the file
    mirrors, the old key. If the move lands before that GET goes out (the copy, then the
    delete of the old key), the GET finds nothing there: it is sent again to the object the
    file mirrors now, and the write keeps every other byte (it failed with NotFound)."""
    original = pattern(3 * MiB, seed=9)
    env.put("a", original)
    gate = GatedPut(env, "open_range")
    async with env.mount(writeback_delay=60) as fs:
        await fs.rename(1, "a", 1, "b", 0)
        fh, _ = await fs.open(await ino_of(fs, "b"), os.O_RDWR)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fs.write, fh, MiB + 10, b"changed")
            await gate.wait_until_started()  # the GET names `a`, and waits
            await fs.flusher.sync_all()  # the move lands: `b` copied, `a` deleted
            assert sorted(env.objects()) == ["b"]
            gate.proceed.set()
        fs.release(fh)
    assert env.objects() == {"b": original[: MiB + 10] + b"changed" + original[MiB + 17 :]}
