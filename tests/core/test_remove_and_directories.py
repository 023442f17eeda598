"""unlink, mkdir and rmdir, and the `dir/` marker objects that hold empty directories."""

from __future__ import annotations

import errno
import os
import stat

import pytest
import trio
from trio.testing import MockClock

from fusestore.stores import PosixAttrs

from .conftest import Env, MiB, ino_of, listdir, mkdir, pattern, resolve, write_file

pytestmark = pytest.mark.trio


async def test_unlink_deletes_the_object(env: Env) -> None:
    env.put("d/victim", b"bye")
    env.put("d/keep", b"stays")
    async with env.mount() as fs:
        d = await ino_of(fs, "d")
        await fs.lookup(d, "victim")
        await fs.unlink(d, "victim")
        assert await fs.lookup(d, "victim") is None
        assert sorted(await listdir(fs, "d")) == ["keep"]
        await fs.flusher.sync_all()
        assert env.objects() == {"d/keep": b"stays"}
        assert fs.journal.read_all().deletes == {}
        with pytest.raises(OSError) as exc:
            await fs.unlink(d, "victim")
        assert exc.value.errno == errno.ENOENT
        with pytest.raises(OSError) as exc:
            await fs.unlink(1, "d")
        assert exc.value.errno == errno.EISDIR


async def test_a_file_created_and_unlinked_before_upload_never_reaches_the_store(
    env: Env, virtual_clock: MockClock
) -> None:
    async with env.mount(writeback_delay=0.5) as fs:
        await write_file(fs, "tmp", b"scratch")
        await fs.unlink(1, "tmp")
    assert env.objects() == {}
    assert env.called("put") == []


async def test_an_unlinked_open_file_stays_readable_until_release(env: Env) -> None:
    data = pattern(3 * MiB + 5, seed=1)
    env.put("gone", data)
    async with env.mount() as fs:
        ino = await ino_of(fs, "gone")
        fh, _ = await fs.open(ino, os.O_RDONLY)
        assert await fs.read(fh, 0, 10) == data[:10]  # only the first block is cached
        await fs.unlink(1, "gone")
        assert await fs.lookup(1, "gone") is None
        await fs.flusher.sync_all()
        # The rest of the data must still be readable through the handle.
        assert await fs.read(fh, 0, len(data) + 1) == data
        fs.release(fh)
        fs.forget(ino, 1)
        await fs.flusher.sync_all()
        assert env.objects() == {}
        assert ino not in fs.ns.nodes, "the inode is freed once nothing refers to it"


async def test_an_unlinked_dirty_file_stays_readable_and_writable_until_release(env: Env) -> None:
    async with env.mount() as fs:
        fh, _ = await fs.create(1, "f", 0o644, os.O_RDWR, 0, 0)
        await fs.write(fh, 0, b"private data")
        await fs.unlink(1, "f")
        await fs.write(fh, 0, b"PRIVATE")
        await fs.flusher.sync_all()
        assert await fs.read(fh, 0, 100) == b"PRIVATE data"
        fs.release(fh)
    assert env.objects() == {}


async def test_unlink_then_create_the_same_name(env: Env) -> None:
    env.put("f", b"old")
    async with env.mount() as fs:
        await fs.lookup(1, "f")
        await fs.unlink(1, "f")
        await write_file(fs, "f", b"new")
    assert env.objects() == {"f": b"new"}


async def test_mkdir_creates_a_marker_that_goes_once_the_directory_has_entries(env: Env) -> None:
    async with env.mount() as fs:
        d = await mkdir(fs, "d")
        assert d.mode == stat.S_IFDIR | 0o755
        await fs.flusher.sync_all()
        assert env.objects() == {"d/": b""}
        meta = PosixAttrs.from_metadata(env.metadata("d/"), directory=True)
        assert meta.mode == stat.S_IFDIR | 0o755
        assert (meta.uid, meta.gid) == (fs.settings.uid, fs.settings.gid)

        await write_file(fs, "d/f", b"content")
        await fs.flusher.sync_all()
        assert env.objects() == {"d/f": b"content"}

        await fs.unlink(d.ino, "f")
        await fs.flusher.sync_all()
        assert env.objects() == {"d/": b""}, "empty again: the marker holds the directory"


async def test_a_directory_with_its_own_attributes_keeps_its_marker(env: Env) -> None:
    async with env.mount() as fs:
        d = await fs.mkdir(1, "private", 0o700, 1234, 1234)
        await write_file(fs, "private/f", b"x")
        await fs.flusher.sync_all()
        assert set(env.objects()) == {"private/", "private/f"}
        meta = PosixAttrs.from_metadata(env.metadata("private/"), directory=True)
        assert (meta.mode, meta.uid) == (stat.S_IFDIR | 0o700, 1234)
        assert d.marker_key == "private/"


async def test_nested_empty_directories_each_get_a_marker_only_the_leaf_keeps_it(env: Env) -> None:
    async with env.mount() as fs:
        await mkdir(fs, "a")
        await mkdir(fs, "a/b")
        await mkdir(fs, "a/b/c")
    assert env.objects() == {"a/b/c/": b""}


async def test_rmdir_of_a_non_empty_directory_is_enotempty(env: Env) -> None:
    async with env.mount() as fs:
        await mkdir(fs, "d")
        await write_file(fs, "d/f", b"x")
        with pytest.raises(OSError) as exc:
            await fs.rmdir(1, "d")
        assert exc.value.errno == errno.ENOTEMPTY
        assert (await resolve(fs, "d")).is_dir
    assert env.objects() == {"d/f": b"x"}


@pytest.mark.parametrize("looked_up", [False, True])
async def test_rmdir_is_enotempty_when_the_only_entry_is_in_the_store_unlisted(
    env: Env, looked_up: bool
) -> None:
    """The directory was never listed (or only its marker is known): rmdir must ask the store."""
    env.put("d/", b"")
    env.put("d/only-in-store", b"x")
    async with env.mount(metadata_ttl=3600) as fs:
        if looked_up:
            await fs.lookup(1, "d")
        with pytest.raises(OSError) as exc:
            await fs.rmdir(1, "d")
        assert exc.value.errno == errno.ENOTEMPTY
        assert sorted(await listdir(fs, "d")) == ["only-in-store"]
    # The marker stays: this mount did not make it, and changed nothing.
    assert env.objects() == {"d/": b"", "d/only-in-store": b"x"}


async def test_rmdir_is_enotempty_for_an_entry_added_by_another_client_after_the_listing(env: Env) -> None:
    async with env.mount(metadata_ttl=3600) as fs:
        await mkdir(fs, "d")
        await fs.flusher.sync_all()
        env.put("d/from-elsewhere", b"x")
        with pytest.raises(OSError) as exc:
            await fs.rmdir(1, "d")
        assert exc.value.errno == errno.ENOTEMPTY


async def test_rmdir_removes_the_marker(env: Env) -> None:
    env.put("old/", b"")
    async with env.mount() as fs:
        await mkdir(fs, "new")
        await fs.flusher.sync_all()
        assert set(env.objects()) == {"old/", "new/"}
        await fs.rmdir(1, "new")
        await fs.rmdir(1, "old")
        assert await fs.lookup(1, "old") is None
        assert await listdir(fs) == {}
        with pytest.raises(OSError) as exc:
            await fs.rmdir(1, "old")
        assert exc.value.errno == errno.ENOENT
    assert env.objects() == {}


async def test_rmdir_keeps_a_marker_that_holds_data(env: Env) -> None:
    """A `dir/` object with bytes in it (another tool's) is shown as the directory, its data
    not shown: like an object the mount cannot show, it makes the directory not empty,
    and rmdir fails with ENOTEMPTY rather than delete data nobody saw (it was deleted)."""
    env.put("d/", b"DIRDATA")
    env.put("d/f", b"x")
    async with env.mount() as fs:
        await fs.unlink(await ino_of(fs, "d"), "f")
        with pytest.raises(OSError) as exc:
            await fs.rmdir(1, "d")
        assert exc.value.errno == errno.ENOTEMPTY
        assert set(await listdir(fs)) == {"d"}
    assert env.objects() == {"d/": b"DIRDATA"}


async def test_rmdir_of_a_file_is_enotdir(env: Env) -> None:
    env.put("f", b"")
    async with env.mount() as fs:
        with pytest.raises(OSError) as exc:
            await fs.rmdir(1, "f")
        assert exc.value.errno == errno.ENOTDIR


async def test_mkdir_over_an_existing_name_is_eexist(env: Env) -> None:
    env.put("f", b"")
    env.put("d/x", b"")
    async with env.mount() as fs:
        for name in ("f", "d"):
            with pytest.raises(OSError) as exc:
                await fs.mkdir(1, name, 0o755, 0, 0)
            assert exc.value.errno == errno.EEXIST
            with pytest.raises(OSError) as exc:
                await fs.create(1, name, 0o644, os.O_WRONLY, 0, 0)
            assert exc.value.errno == errno.EEXIST
    assert env.objects() == {"d/x": b"", "f": b""}


async def test_rmdir_then_mkdir_the_same_name(env: Env) -> None:
    env.put("d/", b"", {"mode": str(stat.S_IFDIR | 0o700)})
    async with env.mount() as fs:
        await fs.rmdir(1, "d")
        await fs.mkdir(1, "d", 0o750, fs.settings.uid, fs.settings.gid)
    assert env.objects() == {"d/": b""}
    assert int(env.metadata("d/")["mode"]) == stat.S_IFDIR | 0o750


async def test_rm_r_of_a_tree(env: Env) -> None:
    for key in ("t/a", "t/b/c", "t/b/d/e", "t/b/d/"):
        env.put(key, b"" if key.endswith("/") else b"x")
    # The flusher starts once everything is removed: its deletes landing while rmdir lists
    # the store race with that listing (see test_listings.py).
    async with env.mount(flusher=False) as fs:

        async def remove(path: str) -> None:
            for name, node in (await listdir(fs, path)).items():
                child = f"{path}/{name}"
                if node.is_dir:
                    await remove(child)
                    await fs.rmdir(await ino_of(fs, path), name)
                else:
                    await fs.unlink(await ino_of(fs, path), name)

        await remove("t")
        await fs.rmdir(1, "t")
        assert await fs.lookup(1, "t") is None
        assert set(env.objects()) == {"t/a", "t/b/c", "t/b/d/e", "t/b/d/"}, "nothing deleted yet"
        async with env.flushing(fs):
            pass
    assert env.objects() == {}


async def test_a_directory_made_where_a_file_was_deleted_still_deletes_the_file(env: Env) -> None:
    env.put("b", b"a file")
    async with env.mount() as fs:
        await fs.unlink(1, "b")
        await mkdir(fs, "b", 0o711)
        await write_file(fs, "b/inner", b"x")
    assert env.objects() == {"b/": b"", "b/inner": b"x"}
    async with env.mount() as fs:
        assert (await resolve(fs, "b")).is_dir


async def test_a_file_deleted_while_open_does_not_hide_its_live_directory(env: Env) -> None:
    async with env.mount() as fs:
        await mkdir(fs, "b", 0o711)
        node = await write_file(fs, "b/c", b"open while deleted")
        await fs.flusher.sync_all()
        fh, _ = await fs.open(node.ino, os.O_RDONLY)
        await fs.unlink(await ino_of(fs, "b"), "c")  # still open: its object is still needed
        await fs.listings.refresh(fs.ns.root)  # a listing shows `b/`, below a key still in use
        assert (await resolve(fs, "b")).is_dir
        assert await fs.read(fh, 0, 100) == b"open while deleted"
        fs.release(fh)
    assert env.objects() == {"b/": b""}


async def test_deletes_made_over_time_go_in_batches_of_at_most_1000_keys(
    env: Env, virtual_clock: MockClock
) -> None:
    keys = [f"big/f{i:04}" for i in range(2300)]
    for key in keys:
        env.put(key, b"x")
    async with env.mount(writeback_delay=30.0) as fs:
        big = await ino_of(fs, "big")
        names = sorted(await listdir(fs, "big"))
        for number, name in enumerate(names):
            await fs.unlink(big, name)
            if number % 50 == 0:
                # rm -rf takes time: the flusher runs between unlinks, as on a real mount
                await trio.sleep(0.01)
        await fs.rmdir(1, "big")
        with trio.fail_after(10):
            while fs.ns.deletes:
                await trio.sleep(0.05)
    batches = [sorted(args[0]) for args in env.called("delete_many")]
    assert len(batches) == 3, [len(b) for b in batches]
    assert all(len(batch) <= 1000 for batch in batches)
    assert sorted(key for batch in batches for key in batch) == keys
    assert env.objects() == {}


async def test_a_slow_rm_of_many_files_is_not_cut_into_a_batch_per_writeback_delay(
    env: Env, virtual_clock: MockClock
) -> None:
    keys = [f"slow/f{i:02}" for i in range(30)]
    for key in keys:
        env.put(key, b"x")
    async with env.mount(writeback_delay=2.0) as fs:
        slow = await ino_of(fs, "slow")
        for name in sorted(await listdir(fs, "slow")):
            await fs.unlink(slow, name)
            await trio.sleep(0.2)  # 6 s in all, three writeback delays
        with trio.fail_after(20):
            while fs.ns.deletes:
                await trio.sleep(0.05)
    batches = [sorted(args[0]) for args in env.called("delete_many")]
    assert len(batches) == 1, [len(b) for b in batches]
    assert sorted(key for batch in batches for key in batch) == keys


async def test_unlinking_a_closed_dirty_file_frees_its_cache_space_before_the_kernel_forgets_it(
    env: Env,
) -> None:
    async with env.mount(writeback_delay=30.0) as fs:
        node = await write_file(fs, "scratch", pattern(3 * MiB))
        path = node.content.path
        assert path.exists() and fs.contents.dirty_bytes == 3 * MiB
        await fs.unlink(1, "scratch")
        assert node.lookups > 0, "the kernel has not forgotten the inode yet"
        assert not path.exists() and fs.contents.dirty_bytes == 0
    assert env.objects() == {}


async def test_a_write_on_a_full_disk_waits_for_an_unlinked_file_being_released(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel sends a close's RELEASE after close() returned, so `rm big` after ENOSPC
    can come first: the next write waits for the release instead of failing."""
    async with env.mount(writeback_delay=60) as fs:
        fh_big, big = await fs.create(1, "big", 0o644, os.O_WRONLY, 0, 0)
        await fs.write(fh_big, 0, pattern(MiB, seed=2))
        await fs.unlink(1, "big")  # still open: its data stays until the release
        fh, _ = await fs.create(1, "after", 0o644, os.O_WRONLY, 0, 0)
        # The disk is full until the unlinked file's data goes.
        monkeypatch.setattr(fs.contents.room, "has_room", lambda size: big.content is None)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fs.write, fh, 0, b"room again")
            await trio.testing.wait_all_tasks_blocked()  # the write waits for room
            assert fs.node((await resolve(fs, "after")).ino).size == 0, "wrote on a full disk"
            fs.release(fh_big)
        assert fs.node((await resolve(fs, "after")).ino).size == len(b"room again")
        fs.release(fh)


async def test_a_write_on_a_full_disk_fails_at_once_when_nothing_will_free_room(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with env.mount(writeback_delay=60) as fs:
        fh, _ = await fs.create(1, "after", 0o644, os.O_WRONLY, 0, 0)
        monkeypatch.setattr(fs.contents.room, "has_room", lambda size: False)
        started = trio.current_time()
        with pytest.raises(OSError) as exc:
            await fs.write(fh, 0, b"no room")
        assert exc.value.errno == errno.ENOSPC
        assert trio.current_time() - started < 1
        fs.release(fh)
