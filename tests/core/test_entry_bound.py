"""Beyond `--max-entries` the mount asks the kernel to forget the entries of the
directories read least recently; once forgotten they leave memory (`Compaction`) and come
back from the remembered listing, without a LIST inside the TTL. Entries something holds
(an open directory, a dirty file, entries loaded below) are never asked for."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from trio.testing import MockClock

from fusestore.core import Node, compaction
from fusestore.core.filesystem import Filesystem

from .conftest import Env
from .test_compaction import plant, shown, walk

pytestmark = pytest.mark.trio


class KernelCache:
    """Stands in for the kernel's entry cache: records the (directory inode, name) pairs
    the mount asks it to forget, and forgets them as the kernel does, on `drop`."""

    def __init__(self, fs: Filesystem) -> None:
        self.fs = fs
        self.asked: list[tuple[int, str]] = []
        fs.kernel.forget = lambda parent_ino, name: self.asked.append((parent_ino, name))

    def asked_in(self, directory: Node) -> set[str]:
        return {name for ino, name in self.asked if ino == directory.ino}

    def drop(self) -> None:
        for parent_ino, name in self.asked:
            parent = self.fs.ns.nodes[parent_ino]
            node = (parent.children or {})[name]
            self.fs.forget(node.ino, node.lookups)
        self.asked.clear()


async def settle(fs: Filesystem, kernel: KernelCache, *, background: bool = False) -> None:
    """The shedding runs (in the mount's background, or called here), the kernel forgets
    what it was asked to, compaction sweeps."""
    if background:
        await trio.sleep(10)
    else:
        await fs.compaction.shed()
    kernel.drop()
    await fs.compaction.sweep()


async def directories(fs: Filesystem, names: list[str]) -> list[Node]:
    found = [await fs.lookup(1, name) for name in names]
    assert all(node is not None for node in found)
    return [node for node in found if node is not None]


@asynccontextmanager
async def bounded(
    env: Env, count: int, entries: int, max_entries: int
) -> AsyncIterator[tuple[Filesystem, KernelCache, list[Node]]]:
    """A mount bounded at `max_entries`, over `count` directories d0, d1... of `entries`
    objects each, with the stand-in kernel and the directories looked up."""
    names = [f"d{i}" for i in range(count)]
    for name in names:
        plant(env, f"{name}/", entries)
    async with env.mount(max_entries=max_entries, deadline=600) as fs:
        kernel = KernelCache(fs)
        yield fs, kernel, await directories(fs, names)


async def test_beyond_the_bound_the_least_recently_read_directories_are_forgotten(
    env: Env, virtual_clock: MockClock
) -> None:
    async with bounded(env, 8, 50, 200) as (fs, kernel, dirs):
        before = {}
        for d in dirs:
            before[d.name] = shown(await walk(fs, d))
        assert len(fs.ns.nodes) > 400
        await settle(fs, kernel, background=True)

        assert 100 <= len(fs.ns.nodes) <= 200, "down to the bound, not below it"
        gone = [d.name for d in dirs if not d.children]
        assert gone == [f"d{i}" for i in range(len(gone))] and gone, "the least recently read go first"
        assert all(len(d.children or {}) == 50 for d in dirs[len(gone) :])
        # read again: the same entries, from the remembered listing
        lists = len(env.called("list"))
        assert shown(await walk(fs, dirs[0])) == before["d0"]
        assert len(env.called("list")) == lists


async def test_entries_something_holds_are_not_asked_for(env: Env, virtual_clock: MockClock) -> None:
    names = ["open", "dirty", "parent", "quiet"]
    for name in names:
        plant(env, f"{name}/", 60)
    plant(env, "parent/sub/", 60)
    async with env.mount(flusher=False, max_entries=100, deadline=600) as fs:
        kernel = KernelCache(fs)
        opened, dirty, parent, quiet = await directories(fs, names)
        await walk(fs, opened)
        fh = await fs.opendir(opened.ino)  # still open: a reader is in it
        entries = await walk(fs, dirty)
        wh, _ = await fs.open(entries[0].ino, os.O_WRONLY)
        await fs.write(wh, 0, b"not uploaded")
        fs.release(wh)
        sub = next(node for node in await walk(fs, parent) if node.name == "sub")
        await walk(fs, sub)
        await walk(fs, quiet)
        await settle(fs, kernel)

        assert len(opened.children or {}) == 60
        assert len(dirty.children or {}) == 60
        assert parent.children and "sub" in parent.children, "its entries below are loaded"
        assert sub.children == {} and quiet.children == {}
        assert not kernel.asked_in(fs.ns.root) and not kernel.asked_in(parent)
        fs.releasedir(fh)
        # The kernel holds `sub` (a directory is never asked for, it may be a working
        # directory): the parent stays, and goes once the kernel lets `sub` go.
        await fs.opendir(opened.ino)
        await settle(fs, kernel)
        assert parent.children and "sub" in parent.children
        fs.forget(sub.ino, sub.lookups)
        await fs.opendir(opened.ino)
        await settle(fs, kernel)
        assert parent.children == {}
        assert entries[0].attached and fs.ns.nodes.get(entries[0].ino) is entries[0]
        async with env.flushing(fs):
            pass
    assert env.objects()["dirty/file-000000"] == b"not uploaded"


async def test_under_the_bound_nothing_is_asked(env: Env, virtual_clock: MockClock) -> None:
    plant(env, "d/", 50)
    async with env.mount(max_entries=1000, deadline=600) as fs:
        kernel = KernelCache(fs)
        (d,) = await directories(fs, ["d"])
        await walk(fs, d)
        await trio.sleep(5)
        assert kernel.asked == []
        assert len(d.children or {}) == 50


async def test_a_walk_faster_than_the_kernel_forgets_waits_at_opendir(
    env: Env, virtual_clock: MockClock
) -> None:
    """Past 1.5 times the bound an opendir waits for the rounds while they catch up with
    a slow kernel, so that the walk stays near the bound; once everything that could go
    was asked for (the kernel keeps it), opendirs do not wait."""
    async with bounded(env, 10, 100, 200) as (fs, kernel, dirs):
        most = 0
        async with trio.open_nursery() as nursery:

            async def slow_kernel() -> None:
                while True:
                    await trio.sleep(1)  # forgets what it was asked, a second late
                    kernel.drop()

            nursery.start_soon(slow_kernel)
            for d in dirs:
                await walk(fs, d)
                most = max(most, len(fs.ns.nodes))
            nursery.cancel_scope.cancel()
        assert most <= 200 * compaction.HARD_LIMIT + 100 + 11, f"{most} nodes at the walk's peak"
        # Nothing left to ask for (the kernel keeps what it was asked): no waiting.
        for d in dirs:
            await fs.opendir(d.ino)  # open: none of them can go
        started = trio.current_time()
        for d in dirs:
            await fs.opendir(d.ino)
        assert trio.current_time() - started < 1.0


async def test_a_directory_in_use_at_a_round_goes_at_a_later_one(env: Env, virtual_clock: MockClock) -> None:
    """Rounds go on while the bound is passed: a directory passed over because it was
    open is asked for once it is closed, with no directory opened after it."""
    async with bounded(env, 3, 100, 150) as (fs, kernel, dirs):
        for d in dirs:
            await walk(fs, d)
        handles = [await fs.opendir(d.ino) for d in dirs]
        await trio.sleep(1)
        kernel.drop()
        assert len(fs.ns.nodes) > 300, "all of them open: nothing asked for"
        for fh in handles:
            fs.releasedir(fh)
        await trio.sleep(20)  # no opendir meanwhile
        kernel.drop()
        await fs.compaction.sweep()
        assert len(fs.ns.nodes) <= 150


async def test_entries_merged_after_the_last_opendir_are_shed_too(env: Env, virtual_clock: MockClock) -> None:
    """The last directory of a walk passes the bound with the entries its listing merged
    after its opendir: closing it starts a round."""
    async with bounded(env, 3, 100, 250) as (fs, kernel, dirs):
        for d in dirs:
            await walk(fs, d)
        assert len(fs.ns.nodes) > 300
        await settle(fs, kernel, background=True)
        assert len(fs.ns.nodes) <= 250


async def test_entries_loaded_by_lookups_alone_are_shed_too(env: Env, virtual_clock: MockClock) -> None:
    """A program that opens paths it knows (no `ls`, no opendir) loads each directory's
    listing by a lookup: past the bound those entries are asked for like any others
    (they were never in the order of directories read, and stayed for good)."""
    async with bounded(env, 4, 100, 150) as (fs, kernel, dirs):
        for d in dirs:
            assert await fs.lookup(d.ino, "file-000001") is not None
            assert len(d.children or {}) == 100
        await settle(fs, kernel, background=True)
        assert len(fs.ns.nodes) <= 150
        assert await fs.lookup(dirs[0].ino, "file-000002") is not None  # back, as it was
