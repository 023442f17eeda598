"""Entries the kernel forgot, holding nothing of their own, leave memory (`Compaction`),
and come back as they were from the remembered listing, without a LIST inside the TTL.
Entries that hold anything local are never dropped, and none of their data is lost."""

from __future__ import annotations

import gc
import hashlib
import os
import tracemalloc
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from fusestore.core import Node, pinning
from fusestore.core.filesystem import Filesystem
from fusestore.stores import StoreUnavailable
from fusestore.stores.memory import _etag, _Object

from .conftest import Env, listdir

pytestmark = pytest.mark.trio


def plant(env: Env, prefix: str, count: int) -> None:
    backend = env.store._backend
    with backend.lock:
        for i in range(count):
            data = str(i).encode()
            backend.objects[f"{prefix}file-{i:06d}"] = _Object(data, {}, _etag(data), 1.7e9 + i)


async def walk(fs: Filesystem, directory: Node) -> list[Node]:
    """What the kernel does on `find` with readdirplus: every entry looked up once."""
    fh = await fs.opendir(directory.ino)
    try:
        entries = []
        cookie = 0
        while batch := list(await fs.readdir(fh, cookie)):
            entries += [node for _, node, _ in batch]
            cookie = batch[-1][2]
    finally:
        fs.releasedir(fh)
    for node in entries:
        node.lookups += 1
    return entries


def forget_all(fs: Filesystem, nodes: list[Node]) -> None:
    """What the kernel does when it drops its caches."""
    for node in nodes:
        fs.forget(node.ino, node.lookups)


def shown(nodes: list[Node]) -> dict[str, tuple[Any, ...]]:
    return {n.name: (n.kind, n.size, n.mtime_ns, n.perm, n.uid, n.gid, n.etag) for n in nodes}


def fingerprint(nodes: list[Node]) -> bytes:
    """`shown`, in 32 bytes (kept while memory is measured)."""
    return hashlib.sha256(repr(sorted(shown(nodes).items())).encode()).digest()


async def test_forgotten_entries_leave_memory_and_return_without_a_list(env: Env) -> None:
    count = 10_000
    plant(env, "big/", count)
    env.bare_listings = True
    async with env.mount(flusher=False) as fs:
        big = await fs.lookup(1, "big")
        assert big is not None
        idle_nodes = len(fs.ns.nodes)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            entries = await walk(fs, big)
            seen = fingerprint(entries)
            gc.collect()
            listed = tracemalloc.get_traced_memory()[0] - before
            forget_all(fs, entries)
            del entries
            assert await fs.compaction.sweep() == count
            gc.collect()
            left = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert len(fs.ns.nodes) == idle_nodes
        assert listed > 200 * count
        assert left < 20 * count, f"{left / count:.0f} bytes per entry left"

        lists = len(env.called("list"))
        again = await walk(fs, big)
        assert len(env.called("list")) == lists  # merged from the remembered listing
        assert fingerprint(again) == seen
        assert await fs.lookup(big.ino, "file-000007") is again[7]


async def test_a_tree_is_compacted_bottom_up_and_read_again(env: Env) -> None:
    for top in range(3):
        for sub in range(3):
            plant(env, f"t{top}/s{sub}/", 5)
    async with env.mount(flusher=False) as fs:
        known: list[Node] = []
        before = {}
        for top in await walk(fs, fs.ns.root):
            known.append(top)
            for sub in await walk(fs, top):
                known.append(sub)
                files = await walk(fs, sub)
                known += files
                before[sub.path()] = shown(files)
        forget_all(fs, known)
        await fs.compaction.sweep()
        assert set(fs.ns.nodes) == {1}
        assert not fs.ns.root.children
        lists = len(env.called("list"))
        for dirpath, files in before.items():
            found = os.path.join("/", *dirpath.strip("/").split("/"))
            node = fs.ns.root
            for name in found.strip("/").split("/"):
                child = await fs.lookup(node.ino, name)
                assert child is not None
                node = child
            assert shown(await walk(fs, node)) == files
        assert len(env.called("list")) == lists


async def test_entries_holding_local_state_are_never_dropped(env: Env) -> None:
    plant(env, "d/", 4)
    plant(env, "pinned/", 2)
    plant(env, "quiet/", 3)
    async with env.mount(flusher=False) as fs:
        d = await fs.lookup(1, "d")
        quiet = await fs.lookup(1, "quiet")
        assert d is not None and quiet is not None
        entries = await walk(fs, d)
        quiet_entries = await walk(fs, quiet)
        # a new file, dirty (the flusher is off: not uploaded)
        fh, new = await fs.create(d.ino, "new", 0o100644, os.O_WRONLY, 0, 0)
        await fs.write(fh, 0, b"not in the store yet")
        fs.release(fh)
        # a file open for reading
        held = fs.ns.nodes[entries[1].ino]
        reader, _ = await fs.open(held.ino, os.O_RDONLY)
        # a file renamed (its object still to be moved)
        moved = entries[2]
        await fs.rename(d.ino, moved.name, d.ino, "moved", 0)
        # a pinned directory, and another with nothing local
        await pinning.pin(fs, "pinned")
        forget_all(fs, [*entries, new, *quiet_entries])
        await fs.compaction.sweep()

        assert quiet.children == {}  # the quiet one went
        for node in (new, held, moved):
            assert fs.ns.nodes.get(node.ino) is node and node.attached
        assert d.children is not None
        assert set(d.children) == {"file-000000", "file-000001", "file-000003", "new", "moved"}
        pinned = fs.ns.node_at("pinned")
        assert pinned is not None and pinned.children
        fs.release(reader)
        async with env.flushing(fs):
            pass
    assert env.objects()["d/new"] == b"not in the store yet"
    assert env.objects()["d/moved"] == b"2"
    assert "d/file-000002" not in env.objects()


async def test_an_open_directory_keeps_its_entries(env: Env) -> None:
    plant(env, "d/", 3)
    async with env.mount(flusher=False) as fs:
        d = await fs.lookup(1, "d")
        assert d is not None
        entries = await walk(fs, d)
        fh = await fs.opendir(d.ino)
        other = await fs.opendir(d.ino)
        forget_all(fs, entries)
        await fs.compaction.sweep()
        assert all(fs.ns.nodes.get(node.ino) is node for node in entries)
        fs.releasedir(other)  # one handle is still open on it
        fs.compaction.forgotten(entries[0])
        await fs.compaction.sweep()
        assert all(fs.ns.nodes.get(node.ino) is node for node in entries)
        fs.releasedir(fh)
        fs.compaction.forgotten(entries[0])
        await fs.compaction.sweep()
        assert d.children == {}


async def test_a_compacted_directory_during_an_outage(env: Env, virtual_clock: MockClock) -> None:
    """Its remembered listing serves it inside the TTL, store down or not, and past the
    TTL while the store is down: as a directory listed before, it shows what it last
    listed rather than EIO. A directory never listed still gives EIO."""
    plant(env, "d/", 3)
    plant(env, "never-listed/", 1)
    async with env.mount(flusher=False, metadata_ttl=4.0, io_timeout=2.0, deadline=7200) as fs:
        d = await fs.lookup(1, "d")
        assert d is not None
        forget_all(fs, await walk(fs, d))
        await fs.compaction.sweep()
        assert d.children == {}

        def down(*args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable("test: the store is down")

        env.store.list = down  # type: ignore[method-assign]
        env.store.head = down  # type: ignore[method-assign]
        node = await fs.lookup(d.ino, "file-000001")
        assert node is not None and node.size == 1
        forget_all(fs, [node])
        await fs.compaction.sweep()
        assert d.children == {}

        await trio.sleep(5)
        node = await fs.lookup(d.ino, "file-000001")
        assert node is not None and node.size == 1
        assert sorted(await listdir(fs, "d")) == [f"file-{i:06d}" for i in range(3)]
        forget_all(fs, [node])
        await fs.compaction.sweep()
        await trio.sleep(3600)
        assert sorted(await listdir(fs, "d")) == [f"file-{i:06d}" for i in range(3)], "an hour later"
        with pytest.raises(StoreUnavailable):
            await listdir(fs, "never-listed")
