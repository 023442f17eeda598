"""Changes made while the flusher's upload of the same node is in flight."""

from __future__ import annotations

import os
import random
import threading
from typing import Any

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from fusestore.cache.content import BLOCK_SIZE
from fusestore.core import Node
from fusestore.core.filesystem import Filesystem
from fusestore.stores import StoreError
from fusestore.stores.wrapper import WrappedStore

from .conftest import Env, GatedPut, ino_of, listdir, mkdir, resolve, slow_store, write_file

pytestmark = pytest.mark.trio


async def moving_a_to_b(env: Env, fs: Filesystem) -> GatedPut:
    """`mv a b`, its copy a -> b held at the store until the test lets it go on."""
    gate = GatedPut(env, "copy")
    await resolve(fs, "a")
    await fs.rename(1, "a", 1, "b", 0)
    await gate.wait_until_started()
    return gate


async def make(fs: Filesystem, kind: str, name: str) -> None:
    if kind == "file":
        await write_file(fs, name, b"data")
    else:
        await mkdir(fs, name)


@pytest.mark.parametrize("kind", ["file", "directory"])
async def test_removed_while_its_first_upload_is_in_flight(env: Env, kind: str) -> None:
    """unlink/rmdir of a new entry whose object (or `dir/` marker) is being written: the
    object the upload leaves behind must be deleted too."""
    gate = GatedPut(env)
    async with env.mount(writeback_delay=0) as fs:
        await make(fs, kind, "x")
        await gate.wait_until_started()
        if kind == "file":
            await fs.unlink(1, "x")
        else:
            await fs.rmdir(1, "x")
        gate.proceed.set()
        await fs.flusher.sync_all()
        assert await fs.lookup(1, "x") is None
    assert env.objects() == {}


@pytest.mark.parametrize("kind", ["file", "directory"])
async def test_renamed_while_its_first_upload_is_in_flight(env: Env, kind: str) -> None:
    gate = GatedPut(env)
    async with env.mount(writeback_delay=0) as fs:
        await make(fs, kind, "x")
        await gate.wait_until_started()
        await fs.rename(1, "x", 1, "y", 0)
        gate.proceed.set()
    assert env.objects() == ({"y": b"data"} if kind == "file" else {"y/": b""})


async def test_rm_r_of_a_tree_with_the_flusher_running(env: Env) -> None:
    """`rm -r` as a shell runs it, while the flusher uploads and deletes as fast as it can:
    directories emptied on the way must not come back, and no rmdir may fail."""
    for key in ("t/a", "t/b/c", "t/b/d/e", "t/b/d/", "t/b/f", "t/g/h"):
        env.put(key, b"" if key.endswith("/") else b"x")
    async with env.mount(writeback_delay=0) as fs:

        async def remove(path: str) -> None:
            for name, node in (await listdir(fs, path)).items():
                if node.is_dir:
                    await remove(f"{path}/{name}")
                    await fs.rmdir(await ino_of(fs, path), name)
                else:
                    await fs.unlink(await ino_of(fs, path), name)

        await remove("t")
        await fs.rmdir(1, "t")
        assert await listdir(fs) == {}
    assert env.objects() == {}


async def test_chmod_of_a_directory_while_its_marker_is_written(env: Env) -> None:
    """The marker in flight carries the old mode; the new one must follow it to the store."""
    gate = GatedPut(env)
    async with env.mount(writeback_delay=0) as fs:
        d = await mkdir(fs, "d", mode=0o700)
        await gate.wait_until_started()
        await fs.setattr(d.ino, mode=0o40751)
        gate.proceed.set()
    assert env.objects() == {"d/": b""}
    assert int(env.metadata("d/")["mode"]) == 0o40751


async def test_attributes_changed_while_the_data_goes_up_cost_a_copy_not_a_new_upload(env: Env) -> None:
    """The kernel sends a file's mtime when it is closed, often while its upload is in
    flight: the data is in the store, only the attributes follow."""
    gate = GatedPut(env)
    async with env.mount(writeback_delay=0) as fs:
        node = await write_file(fs, "f", b"the data")
        await gate.wait_until_started()
        await fs.setattr(node.ino, mtime_ns=1_500_000_000_000_000_000)
        gate.proceed.set()
        await fs.flusher.sync_all()
        assert not node.data_dirty and not node.meta_dirty
    assert env.objects() == {"f": b"the data"}
    assert len(env.called("put")) == 1, "the data went up twice"
    assert len(env.called("copy")) == 1
    assert env.metadata("f")["mtime"] == "1500000000"


async def test_data_changed_while_it_goes_up_is_uploaded_again(env: Env) -> None:
    gate = GatedPut(env)
    async with env.mount(writeback_delay=0) as fs:
        node = await write_file(fs, "f", b"old data")
        await gate.wait_until_started()
        fh, _ = await fs.open(node.ino, os.O_WRONLY)
        await fs.write(fh, 0, b"new")
        fs.release(fh)
        gate.proceed.set()
        await fs.flusher.sync_all()
    assert env.objects() == {"f": b"new data"}
    assert len(env.called("put")) == 2


async def rewrite(fs: Filesystem, ino: int, data: bytes) -> None:
    fh, _ = await fs.open(ino, os.O_WRONLY)
    await fs.setattr(ino, size=0, fh=fh)
    await fs.write(fh, 0, data)
    fs.release(fh)


async def waiting_for_its_key(fs: Filesystem, node: Node) -> None:
    """Returns once the flusher's job for `node` runs and waits (for its key)."""
    with trio.fail_after(5):
        while node not in fs.flusher.running:
            await trio.sleep(0.001)
    await trio.testing.wait_all_tasks_blocked()


async def test_a_file_renamed_onto_a_busy_key_and_back_goes_up_at_its_own_name(env: Env) -> None:
    """A job takes its file's key, then may wait for it (another upload there is in
    flight). The file renamed back meanwhile and written must go up at its name only: at
    the key it left its new bytes were never a version of that name, and they met the
    other upload's object as another client's (a conflict copy with no other writer)."""
    env.put("x", b"x0")
    env.put("y", b"y0")
    gate = GatedPut(env)
    async with env.mount(writeback_delay=0) as fs:
        x, y = await resolve(fs, "x"), await resolve(fs, "y")
        await rewrite(fs, y.ino, b"y1")
        await gate.wait_until_started()
        await fs.rename(1, "x", 1, "y", 0)
        await waiting_for_its_key(fs, x)
        await fs.rename(1, "y", 1, "x", 0)
        await rewrite(fs, x.ino, b"x1")
        gate.proceed.set()
        await fs.flusher.sync_all()
        assert fs.flusher.conflicts == 0
    assert env.objects() == {"x": b"x1"}
    assert [args[0] for args in env.called("put")] == ["y", "x"]


async def test_a_file_removed_while_its_job_waits_for_the_key_writes_nothing(env: Env) -> None:
    """A file renamed over one whose upload is in flight, then removed: its job, waiting
    for the key, must not write its (now empty) data there, nor keep the key's delete
    from happening."""
    env.put("a", b"a0")
    env.put("b", b"b0")
    gate = GatedPut(env)
    async with env.mount(writeback_delay=0) as fs:
        a = await resolve(fs, "a")
        await rewrite(fs, (await resolve(fs, "b")).ino, b"b1")
        await gate.wait_until_started()
        await fs.rename(1, "a", 1, "b", 0)
        await waiting_for_its_key(fs, a)
        await fs.unlink(1, "b")
        gate.proceed.set()
        await fs.flusher.sync_all()
        assert fs.flusher.conflicts == 0
    assert env.objects() == {}


async def test_a_new_file_waits_for_a_copy_landing_at_its_key_to_move_on(env: Env) -> None:
    """`mv a b; mv b c; echo > b` while the copy a -> b is in flight: once it lands, the
    object at b is the source of the copy to c, so the new b must wait for that copy
    (a new file's upload that only checked before waiting for the key met the copy's
    object there as another client's, and the copy to c lost its source)."""
    env.put("a", b"a0")
    async with env.mount(writeback_delay=0) as fs:
        gate = await moving_a_to_b(env, fs)
        await fs.rename(1, "b", 1, "c", 0)
        await waiting_for_its_key(fs, await write_file(fs, "b", b"b1"))
        gate.proceed.set()
        await fs.flusher.sync_all()
        assert fs.flusher.conflicts == 0
    assert env.objects() == {"b": b"b1", "c": b"a0"}


async def test_a_file_renamed_and_written_while_its_upload_fetches_goes_up_at_its_new_name(env: Env) -> None:
    """An upload of a changed file first fetches the bytes of its version the cache lacks
    (that yields). Renamed and written meanwhile, it must go up at its new name only: its
    new bytes were never a version of the old one."""
    env.put("x", bytes(2 * BLOCK_SIZE))
    async with env.mount(writeback_delay=0) as fs:
        x = await resolve(fs, "x")
        gate = GatedPut(env, "open_range")
        fh, _ = await fs.open(x.ino, os.O_WRONLY)
        await fs.write(fh, 0, b"new".ljust(BLOCK_SIZE, b"\0"))  # a whole block: nothing fetched
        await gate.wait_until_started()  # the upload fetches the second block
        await fs.rename(1, "x", 1, "y", 0)
        await fs.write(fh, 3, b" bytes")
        fs.release(fh)
        gate.proceed.set()
        await fs.flusher.sync_all()
    assert env.objects() == {"y": b"new bytes" + bytes(2 * BLOCK_SIZE - 9)}
    assert [args[0] for args in env.called("put")] == ["y"]


async def test_a_file_removed_during_its_copy_copies_nothing_more(env: Env) -> None:
    """`mv a b; rm b; echo > a` while the copy a -> b is in flight: the new a may go up
    before the copy reads its source. The copy's failed condition is then this mount's
    doing, not another client's: nothing is copied to b again (the new a's bytes there
    would be an object b never held)."""
    env.put("a", b"a0")
    async with env.mount(writeback_delay=0) as fs:
        gate = await moving_a_to_b(env, fs)
        await fs.unlink(1, "b")
        await fs.flusher.wait_uploaded(await write_file(fs, "a", b"a1"))
        gate.proceed.set()
        await fs.flusher.sync_all()
    assert env.objects() == {"a": b"a1"}
    assert [args[:2] for args in env.called("copy")] == [("a", "b")]


async def test_a_delete_landing_during_a_directory_renames_listing_brings_nothing_back(env: Env) -> None:
    """`rm d/a; mv d e` with the delete of d/a landing while the rename lists everything
    below d: the listing, taken before the delete, still shows d/a. It must not bring the
    removed file back (it came back as e/a, whose copy found no source and which then
    went up empty)."""
    env.put("d/a", b"old")
    env.put("d/b", b"kept")
    async with env.mount(writeback_delay=0) as fs:
        await resolve(fs, "d/a")
        deleting = GatedPut(env, "delete_many")
        listed, go_on = threading.Event(), threading.Event()
        list_page = env.store.list

        def list_then_wait(*args: Any, **kwargs: Any) -> Any:
            page = list_page(*args, **kwargs)  # the store as it was when asked
            listed.set()
            assert go_on.wait(5), "the test never let the listing go on"
            return page

        await fs.unlink(await ino_of(fs, "d"), "a")
        await deleting.wait_until_started()
        env.store.list = list_then_wait  # type: ignore[method-assign]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fs.rename, 1, "d", 1, "e", 0)
            with trio.fail_after(5):
                while not listed.is_set():
                    await trio.sleep(0.005)
            deleting.proceed.set()
            with trio.fail_after(5):
                while "d/a" in fs.ns.deletes:
                    await trio.sleep(0.005)
            go_on.set()
        assert sorted(await listdir(fs, "e")) == ["b"]
        await fs.flusher.sync_all()
    assert env.objects() == {"e/b": b"kept"}


@pytest.mark.parametrize("seed", range(4))
async def test_random_renames_and_writes_with_the_flusher_running(env: Env, seed: int) -> None:
    """Files written, appended, renamed (one by one, and their directory d <-> e back and
    forth) and removed while the store takes a random moment for each put and copy: with
    no other writer there is never a conflict, every object the store is given is a
    version its name had, and the store ends as the tree is."""
    rng = random.Random(seed)
    stored: list[tuple[str, bytes]] = []
    commit = env.store._commit

    def recorded(key: str, data: bytes, *args: Any) -> str:
        stored.append((key, data))  # called under the store's lock
        return commit(key, data, *args)

    env.store._commit = recorded  # type: ignore[method-assign]
    slow_store(env, ("put", "copy"), -seed, 0.02)

    files: dict[str, bytes] = {}
    versions: dict[str, set[bytes]] = {}
    where = "d"

    def now_holds(name: str, data: bytes) -> None:
        files[name] = data
        versions.setdefault(name, set()).add(data)

    async with env.mount(writeback_delay=rng.choice([0.0, 0.01, 0.05])) as fs:
        await mkdir(fs, "d")
        for number in range(200):
            here = await ino_of(fs, where)
            kind = rng.choice(["write", "write", "append", "rename", "rename_dir", "unlink"])
            if kind == "write":
                name = f"g{rng.randrange(4)}"
                data = f"<{name}:{number}>".encode() * rng.randint(1, 100)
                node = await fs.lookup(here, name)
                if node is None:
                    fh, node = await fs.create(here, name, 0o644, os.O_WRONLY, 1000, 1000)
                else:
                    fh, _ = await fs.open(node.ino, os.O_WRONLY)
                    await fs.setattr(node.ino, size=0, fh=fh)
                await fs.write(fh, 0, data)
                fs.release(fh)
                now_holds(f"{where}/{name}", data)
            elif kind == "rename_dir":
                other = "e" if where == "d" else "d"
                await fs.rename(1, where, 1, other, 0)
                for path in sorted(files):
                    now_holds(other + path[1:], files.pop(path))
                where = other
            elif files:
                path = rng.choice(sorted(files))
                name = path.split("/")[1]
                if kind == "append":
                    node = await fs.lookup(here, name)
                    assert node is not None
                    fh, _ = await fs.open(node.ino, os.O_WRONLY)
                    more = f"[{number}]".encode() * rng.randint(1, 50)
                    await fs.write(fh, len(files[path]), more)
                    fs.release(fh)
                    now_holds(path, files[path] + more)
                elif kind == "rename":
                    target = f"g{rng.randrange(4)}"
                    if target != name:
                        await fs.rename(here, name, here, target, 0)
                        now_holds(f"{where}/{target}", files.pop(path))
                else:
                    await fs.unlink(here, name)
                    del files[path]
            await trio.sleep(rng.uniform(0, 0.01))
        await fs.flusher.sync_all()
        assert fs.flusher.conflicts == 0
    files_stored = [(key, data) for key, data in stored if not key.endswith("/")]
    never = [(key, len(data)) for key, data in files_stored if data not in versions.get(key, ())]
    assert not never, "objects never a version of their name"
    assert {key: data for key, data in env.objects().items() if not key.endswith("/")} == files


@pytest.mark.parametrize("how", ["create", "rename-into"])
async def test_a_directory_filled_while_its_marker_is_in_flight(env: Env, how: str) -> None:
    """An empty directory's `dir/` marker is being written when the directory gets an
    entry: once the entry is in the store, the marker it no longer needs must go."""
    if how == "rename-into":
        env.put("src/clean", b"clean")
    gate = GatedPut(env)
    async with env.mount(writeback_delay=0) as fs:
        await mkdir(fs, "dst")
        await gate.wait_until_started()
        if how == "create":
            await write_file(fs, "dst/f", b"f")
        else:
            await write_file(fs, "src/dirty", b"dirty")
            await fs.rename(1, "src", await ino_of(fs, "dst"), "moved", 0)
        gate.proceed.set()
    expected = (
        {"dst/f": b"f"} if how == "create" else {"dst/moved/clean": b"clean", "dst/moved/dirty": b"dirty"}
    )
    assert env.objects() == expected


async def test_a_file_removed_while_its_upload_waits_for_a_slot_is_no_failed_upload(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """The upload of a file is under way (waiting for a store slot) when the file is
    removed, its cache file with it: the upload has nothing left to do. That is no failed
    attempt, and no warning (it was one of each, which a dashboard shows as a failure)."""
    async with env.mount(writeback_delay=0.2) as fs:
        await write_file(fs, "f", b"data")
        limiter = fs.flusher.calls.limiter
        holders = [object() for _ in range(int(limiter.total_tokens))]
        for holder in holders:
            await limiter.acquire_on_behalf_of(holder)
        await trio.sleep(0.5)  # due, and waiting for a slot
        await fs.unlink(1, "f")
        for holder in holders:
            limiter.release_on_behalf_of(holder)
        await fs.flusher.sync_all()
        assert fs.flusher.failed_attempts == 0
    assert "failed" not in caplog.text
    assert env.objects() == {}


class _Refusing(WrappedStore):
    """A store that refuses every upload (not an outage: an answer, every time)."""

    def put(self, *args: Any, **kwargs: Any) -> str:
        raise StoreError("test: refused")

    def put_file(self, *args: Any, **kwargs: Any) -> str:
        raise StoreError("test: refused")


@pytest.mark.timeout(120)
async def test_an_upload_refused_for_days_backs_off_and_never_ends_the_mount(
    env: Env, virtual_clock: MockClock
) -> None:
    """Each failed attempt doubles the wait up to a minute. After about 1,025 attempts
    (17 hours at a minute each; 100 s at the 0.1 s of a file that keeps changing) the
    doubling overflowed a float and the OverflowError ended the daemon."""
    async with env.mount(store=_Refusing(env.store), sync=False, deadline=30 * 3600) as fs:
        await write_file(fs, "f", b"data")
        await trio.sleep(20 * 3600)
        assert fs.flusher.failed_attempts > 1100
        assert fs.flusher.pending()[0] >= 1  # still to upload, and still trying


@pytest.mark.timeout(120)
async def test_a_cache_file_cut_short_is_not_uploaded_in_a_busy_loop(
    env: Env, virtual_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The cache file of a pending file is cut short by another program: every upload
    finds fewer bytes than the file has, as when the file changes while it is read. That
    goes again at once a few times, then backs off and says so (it went again every 0.1 s
    for as long as the mount ran, without a word)."""
    async with env.mount(sync=False, writeback_delay=0.5, deadline=3600) as fs:
        node = await write_file(fs, "f", b"x" * 200_000)
        assert node.content is not None
        os.truncate(node.content.path, 5000)
        await trio.sleep(120)
        assert 10 <= fs.flusher.failed_attempts <= 20
    assert "upload of /f failed" in caplog.text
    assert env.objects() == {}
