"""Other clients' changes reach this mount once `--metadata-ttl` has passed: a changed
object is a new inode (the kernel keeps neither its pages nor its size), its old clean
data goes, and handles open on the old version read what is cached of it or ESTALE."""

from __future__ import annotations

import errno
import os
import threading
import time
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from fusestore.core.filesystem import Filesystem
from fusestore.stores import PreconditionFailed

from .conftest import Env, MiB, ino_of, listdir, pattern, read_path, resolve

pytestmark = pytest.mark.trio

TTL = 0.2


def cached_versions(fs: Filesystem, key: str) -> set[str]:
    """The etags of `key` whose clean data the cache holds."""
    return {etag for (k, etag) in fs.contents.cached_objects() if k == key}


async def open_and_read(fs: Filesystem, path: str, size: int) -> tuple[int, bytes]:
    fh, _ = await fs.open(await ino_of(fs, path), os.O_RDONLY)
    return fh, await fs.read(fh, 0, size)


async def test_another_clients_version_is_a_new_inode_and_the_old_data_goes(
    env: Env, virtual_clock: MockClock
) -> None:
    first = env.put("shared", b"version one")
    async with env.mount(metadata_ttl=TTL) as fs:
        old = await resolve(fs, "shared")
        assert await read_path(fs, "shared") == b"version one"
        assert cached_versions(fs, "shared") == {first}
        second = env.put("shared", b"version two, longer")
        assert (await resolve(fs, "shared")) is old, "within the TTL the listing stands"
        await trio.sleep(TTL + 0.05)
        new = await resolve(fs, "shared")
        assert new.ino != old.ino, "a new inode: the kernel's size and pages of the old one go with it"
        assert not old.attached and new.size == len(b"version two, longer")
        assert cached_versions(fs, "shared") == set(), "the old version's clean data is dropped"
        assert await read_path(fs, "shared") == b"version two, longer"
        assert cached_versions(fs, "shared") == {second}
    assert env.called("delete_many") == [] and env.called("put") == []


async def test_a_handle_open_on_the_old_version_reads_it_or_estale_never_a_mix(
    env: Env, virtual_clock: MockClock
) -> None:
    old_data, new_data = pattern(32 * MiB, seed=1), pattern(32 * MiB, seed=2)
    env.put("big", old_data)
    async with env.mount(metadata_ttl=TTL) as fs:
        fh, head = await open_and_read(fs, "big", 4096)
        assert head == old_data[:4096]
        env.put("big", new_data)
        await trio.sleep(TTL + 0.05)
        assert await read_path(fs, "big") == new_data
        assert await fs.read(fh, 0, 4096) == old_data[:4096], "what it cached of its version"
        with pytest.raises(PreconditionFailed) as failure:
            await fs.read(fh, 30 * MiB, 4096)
        assert failure.value.errno == errno.ESTALE
        fs.release(fh)
        assert cached_versions(fs, "big") == {env.store.head("big").etag}, "its data goes at the release"


async def test_a_remote_delete_while_open_for_reading(env: Env, virtual_clock: MockClock) -> None:
    env.put("dir/gone", b"read before the delete")
    env.put("dir/stays", b"x")
    async with env.mount(metadata_ttl=TTL) as fs:
        fh, data = await open_and_read(fs, "dir/gone", 100)
        assert data == b"read before the delete"
        env.real["delete_many"](["dir/gone"])
        await trio.sleep(TTL + 0.05)
        assert sorted(await listdir(fs, "dir")) == ["stays"], "gone from the listing, though open"
        assert await fs.lookup(await ino_of(fs, "dir"), "gone") is None
        assert await fs.read(fh, 0, 100) == b"read before the delete", "the handle reads its version"
        env.put("dir/gone", b"created again by another client")
        fs.release(fh)
        await fs.flusher.sync_all()
    assert env.objects()["dir/gone"] == b"created again by another client", "nothing of ours deleted it"
    assert env.called("delete_many") == []


async def test_a_directory_deleted_remotely_goes_with_a_file_open_below_it(
    env: Env, virtual_clock: MockClock
) -> None:
    env.put("tree/sub/file", b"data")
    async with env.mount(metadata_ttl=TTL) as fs:
        fh, _ = await open_and_read(fs, "tree/sub/file", 10)
        env.real["delete_many"](["tree/sub/file"])
        await trio.sleep(TTL + 0.05)
        assert await listdir(fs) == {}
        assert await fs.read(fh, 0, 10) == b"data"
        fs.release(fh)
    assert env.objects() == {} and env.called("put") == []


async def test_a_file_open_for_writing_keeps_its_version_and_its_change_conflicts(
    env: Env, virtual_clock: MockClock
) -> None:
    env.put("notes", b"original")
    async with env.mount(metadata_ttl=TTL) as fs:
        node = await resolve(fs, "notes")
        fh, _ = await fs.open(node.ino, os.O_RDWR)
        assert await fs.read(fh, 0, 100) == b"original"
        env.put("notes", b"theirs")
        await trio.sleep(TTL + 0.05)
        assert await resolve(fs, "notes") is node, "a writer's file is not swapped under it"
        await fs.write(fh, 8, b" + ours")
        fs.release(fh)
        await fs.flusher.sync_all()
    objects = env.objects()
    assert objects["notes"] == b"theirs"
    assert [data for key, data in objects.items() if ".conflict-" in key] == [b"original + ours"]


async def test_a_read_that_meets_a_changed_object_makes_the_next_open_see_it(env: Env) -> None:
    env.put("f", pattern(MiB, seed=3))
    async with env.mount(metadata_ttl=60) as fs:
        ino = await ino_of(fs, "f")
        env.put("f", b"replaced long before the listing expires")
        fh, _ = await fs.open(ino, os.O_RDONLY)
        with pytest.raises(PreconditionFailed):
            await fs.read(fh, 0, 4096)
        fs.release(fh)
        assert await read_path(fs, "f") == b"replaced long before the listing expires"
        assert len(env.called("list")) == 2


async def test_a_big_directory_revalidates_one_file_with_a_head(env: Env, virtual_clock: MockClock) -> None:
    for i in range(1001):
        env.put(f"many/f{i:04}", b"v1")

    def listings_of(prefix: str) -> list[tuple[object, ...]]:
        return [args for args in env.called("list") if args[0] == prefix]

    async with env.mount(metadata_ttl=TTL) as fs:
        await listdir(fs, "many")
        lists = len(listings_of("many/"))
        old = await resolve(fs, "many/f0007")
        env.put("many/f0007", b"version 2")
        env.put("many/new", b"")
        await trio.sleep(TTL + 0.05)
        assert await read_path(fs, "many/f0007") == b"version 2"
        assert (await resolve(fs, "many/f0007")) is not old
        assert (await resolve(fs, "many/f0008")).size == 2
        assert len(listings_of("many/")) == lists, "no re-listing of 1002 names for two lookups"
        # (`many/`: the directory's marker, read at its first lookup)
        assert [args[0] for args in env.called("head")] == ["many/", "many/f0007", "many/f0008"]
        assert await fs.lookup(await ino_of(fs, "many"), "new") is not None, "a new name lists"
        assert len(listings_of("many/")) > lists


async def test_names_expire_in_the_kernel_with_what_confirmed_them(
    env: Env, virtual_clock: MockClock
) -> None:
    env.put("theirs", b"x")
    async with env.mount(metadata_ttl=10, writeback_delay=30) as fs:
        theirs = await resolve(fs, "theirs")
        assert 9 < fs.listings.entry_timeout(theirs) <= 10
        fs.node(1).listed_at -= 4
        theirs.checked_at -= 4
        assert 5 < fs.listings.entry_timeout(theirs) <= 6, "confirmed by the listing 4 s ago"
        assert 5 < fs.listings.absence_timeout(fs.node(1)) <= 6
        fs.node(1).listed_at += 3
        assert 8 < fs.listings.entry_timeout(theirs) <= 9, "confirmed again by a later listing"
        fh, mine = await fs.create(1, "mine", 0o644, os.O_WRONLY, 0, 0)
        fs.release(fh)
        assert fs.listings.entry_timeout(mine) == 10, "a name with local changes is this mount's"
        fs.node(1).listed_at -= 20
        theirs.checked_at -= 20
        assert fs.listings.entry_timeout(theirs) == 0


async def test_a_change_whose_base_version_went_before_it_was_cached_keeps_every_written_byte(
    env: Env,
) -> None:
    env.put("big", pattern(3 * MiB, seed=4))
    ours = pattern(MiB, seed=5)
    async with env.mount(metadata_ttl=60, writeback_delay=30) as fs:
        fh, _ = await fs.open(await ino_of(fs, "big"), os.O_WRONLY)
        await fs.write(fh, MiB, ours)  # a whole block: nothing of the old version is read
        fs.release(fh)
        env.put("big", b"theirs")  # the old version is gone before the upload
        await fs.flusher.sync_all()
    objects = env.objects()
    assert objects["big"] == b"theirs"
    (copy,) = [data for key, data in objects.items() if ".conflict-" in key]
    assert copy == bytes(MiB) + ours + bytes(MiB), "ours whole; the old bytes never cached are zeros"


async def test_a_listing_taken_before_our_upload_does_not_bring_the_old_version_back(env: Env) -> None:
    env.put("c", b"old")
    async with env.mount(metadata_ttl=0, writeback_delay=0) as fs:
        ino = await ino_of(fs, "c")
        assert await read_path(fs, "c") == b"old"
        real_list = env.store.list
        listed, go_on = threading.Event(), threading.Event()

        def held_list(*args: Any, **kwargs: Any) -> Any:
            page = real_list(*args, **kwargs)  # what the store held when asked ...
            listed.set()
            go_on.wait(10)  # ... arrives after our upload
            return page

        env.store.list = held_list  # type: ignore[method-assign]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(listdir, fs)
            await trio.to_thread.run_sync(listed.wait, 10)
            env.store.list = real_list  # type: ignore[method-assign]
            fh, _ = await fs.open(ino, os.O_WRONLY)
            await fs.setattr(ino, size=0, fh=fh)
            await fs.write(fh, 0, b"new")
            fs.release(fh)
            await fs.flusher.sync_all()
            assert env.objects() == {"c": b"new"}
            go_on.set()
        assert await read_path(fs, "c") == b"new", "the late listing's old version came back"
        fh, _ = await fs.open(await ino_of(fs, "c"), os.O_WRONLY)
        await fs.write(fh, 3, b" and newer")
        fs.release(fh)
    assert env.objects() == {"c": b"new and newer"}, "no conflict with our own upload"


async def test_a_readdir_gives_each_entry_the_time_left_of_what_confirmed_it(
    env: Env, virtual_clock: MockClock
) -> None:
    """What a readdir works out once for all its entries: a clean name gets what is left
    of its listing, one confirmed later what is left of that, and a name the store does
    not hold yet (new, changed, renamed in its directory, out of it, or under a renamed
    directory) the whole TTL."""
    for name in ("clean", "checked", "changed", "moved", "away"):
        env.put(f"d/{name}", b"x")
    env.put("top/in/f", b"x")
    async with env.mount(metadata_ttl=10, writeback_delay=30) as fs:
        d = await resolve(fs, "d")
        await listdir(fs, "d")
        await listdir(fs, "top/in")
        await trio.sleep(3)
        (await resolve(fs, "d/checked")).checked_at = time.monotonic()
        fh, _ = await fs.create(d.ino, "new", 0o644, os.O_WRONLY, 0, 0)
        fs.release(fh)
        fh, _ = await fs.open((await resolve(fs, "d/changed")).ino, os.O_WRONLY)
        await fs.write(fh, 0, b"y")
        fs.release(fh)
        await trio.sleep(2)  # the listings are 5 s old, the confirmation of "checked" 2 s
        # Renamed last: a file only moved is copied within a moment (then its name is in
        # the store, confirmed by the copy).
        await fs.rename(d.ino, "moved", d.ino, "moved-here", 0)
        await fs.rename(d.ino, "away", 1, "away", 0)
        await fs.rename(1, "top", 1, "top2", 0)

        def entry_timeouts(path: str) -> dict[str, float]:
            directory = fs.ns.node_at(path) if path else fs.node(1)
            assert directory is not None and directory.children is not None
            timeouts = fs.listings.entry_timeouts(directory)
            return {name: timeouts(node)[0] for name, node in directory.children.items() if not node.is_dir}

        assert entry_timeouts("d") == {"clean": 5, "checked": 8, "changed": 10, "new": 10, "moved-here": 10}
        assert entry_timeouts("")["away"] == 10
        assert entry_timeouts("top2/in") == {"f": 10}
        # a lookup's answer is a readdir's
        clean = fs.ns.node_at("d/clean")
        assert clean is not None and fs.listings.entry_timeout(clean) == 5
