"""The metadata of small objects read ahead of a program that looks them up in order
(core/headahead.py): `stat` of many small files waits for one HEAD at a time otherwise."""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from typing import Any

import pytest
import trio

from fusestore.core import Node
from fusestore.core.filesystem import Filesystem
from fusestore.core.headahead import AHEAD
from fusestore.core.nodes import Kind
from fusestore.stores import StoreUnavailable

from .conftest import Env

pytestmark = pytest.mark.trio

COUNT = 40


def small_files(env: Env, count: int = COUNT) -> list[str]:
    """`count` objects of 100 bytes in `d/`, listed without their metadata (as S3's are),
    each with a mode of its own; `d/f00007` is an s3fs symlink."""
    names = [f"f{i:05d}" for i in range(count)]
    for i, name in enumerate(names):
        if name == "f00007":
            env.put(f"d/{name}", b"target", {"mode": str(stat.S_IFLNK | 0o777)})
        else:
            env.put(f"d/{name}", b"y" * 100, {"mode": str(stat.S_IFREG | 0o600 + i % 8)})
    env.bare_listings = True
    return names


async def look_up(fs: Filesystem, names: list[str]) -> list[Node]:
    """The nodes of `names` in `d/`, looked up one after another as `stat` does."""
    directory = await fs.lookup(1, "d")
    assert directory is not None
    found = []
    for name in names:
        node = await fs.lookup(directory.ino, name)
        assert node is not None, name
        found.append(node)
    return found


class CountedHeads:
    """The store's HEADs, each taking `pause` seconds; the most at once is `most`."""

    def __init__(self, env: Env, pause: float = 0.02) -> None:
        self.now = self.most = self.started = 0
        self.keys: list[str] = []
        #: the HEADs that ran with no other one in flight at any moment
        self.alone: list[str] = []
        self.lock = threading.Lock()
        inner = env.store.head

        def head(key: str, *args: Any, **kwargs: Any) -> Any:
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
                self.keys.append(key)
                first_alone, started = self.now == 1, self.started
                self.started += 1
            try:
                time.sleep(pause)
                return inner(key, *args, **kwargs)
            finally:
                with self.lock:
                    self.now -= 1
                    if first_alone and self.started == started + 1:
                        self.alone.append(key)

        env.store.head = head  # type: ignore[method-assign]

    def of_files(self) -> list[str]:
        return [key for key in self.keys if not key.endswith("/") and key != "d"]


async def test_lookups_in_order_read_the_next_entries_metadata_ahead(env: Env) -> None:
    names = small_files(env)
    heads = CountedHeads(env)
    async with env.mount() as fs:
        for i, node in enumerate(await look_up(fs, names)):
            if node.name == "f00007":
                assert node.kind is Kind.SYMLINK, "a symlink read ahead is still a symlink"
            else:
                assert node.kind is Kind.FILE and stat.S_IMODE(node.mode) == 0o600 + i % 8
    assert heads.most > 1, "the HEADs went one at a time"
    assert sorted(heads.of_files()) == [f"d/{name}" for name in names], "one HEAD per object, no more"
    # Only the first file's (and the directory's marker's) waited alone: the read-ahead
    # goes on past each batch it brought.
    assert [key for key in heads.alone if key != "d/"] == ["d/f00000"]


async def test_a_lookup_alone_or_out_of_order_reads_no_other_metadata(env: Env) -> None:
    names = small_files(env)
    heads = CountedHeads(env, pause=0)
    async with env.mount() as fs:
        await look_up(fs, [names[i] for i in (10, 30, 20, 22)])  # 22 is not the one after 20
        await trio.sleep(0.1)
    assert heads.of_files() == [f"d/{names[i]}" for i in (10, 30, 20, 22)]


async def test_a_program_that_stops_costs_at_most_the_heads_read_ahead(env: Env) -> None:
    names = small_files(env)
    heads = CountedHeads(env, pause=0)
    async with env.mount() as fs:
        await look_up(fs, names[:3])
        await trio.sleep(0.2)
    assert len(heads.of_files()) <= 3 + AHEAD
    assert len(set(heads.of_files())) == len(heads.of_files()), "an object HEADed twice"


async def test_heads_read_ahead_that_fail_leave_each_lookup_its_own(env: Env) -> None:
    """A HEAD read ahead that fails (the store down a moment) is quiet: the lookup of its
    entry reads the metadata itself."""
    names = small_files(env)
    inner = env.store.head
    failed: list[str] = []
    lock = threading.Lock()

    def head(key: str, *args: Any, **kwargs: Any) -> Any:
        with lock:  # a few, apart: five in a row would take the store for down
            first = key not in failed and key in {f"d/{names[i]}" for i in (3, 5, 9)}
            if first:
                failed.append(key)
        if first:
            raise StoreUnavailable("test: a moment's outage")
        return inner(key, *args, **kwargs)

    env.store.head = head  # type: ignore[method-assign]
    async with env.mount() as fs:
        for i, node in enumerate(await look_up(fs, names[:12])):
            if node.name == "f00007":
                assert node.kind is Kind.SYMLINK
            else:
                assert stat.S_IMODE(node.mode) == 0o600 + i % 8, f"{node.name}: the guessed attributes stayed"
    assert len(failed) == 3, "the test failed no HEAD read ahead"


async def test_an_entry_the_kernel_holds_is_not_read_ahead(env: Env) -> None:
    """A HEAD that finds a symlink listed as a file replaces its node (a new inode). The
    kernel holds the inodes a listing gave it (readdirplus): one replaced behind its back
    would open as a file, reading the link's target, where its open must fail with ESTALE
    so that the kernel looks the name up again and follows the link."""
    names = small_files(env)
    heads = CountedHeads(env, pause=0)
    async with env.mount() as fs:
        directory = await fs.lookup(1, "d")
        assert directory is not None
        entries = await fs.listings.children(directory)
        link = entries["f00007"]
        link.lookups += 1  # as a readdirplus reply counts it
        await look_up(fs, names[5:7])  # in order, just before it
        await trio.sleep(0.1)
        with pytest.raises(OSError) as stale:
            await fs.open(link.ino, os.O_RDONLY)
        assert stale.value.errno == errno.ESTALE
    assert "d/f00007" in heads.of_files(), "read at its open, not ahead"


async def test_a_directorys_order_is_sorted_once_per_listing(env: Env) -> None:
    """Each in-order lookup looks its name up in the directory's sorted names: sorted once
    per listing, not again when files are made there between lookups (an rsync into a
    directory of 100,000 files makes a temporary file per file it looks up)."""
    names = small_files(env)
    async with env.mount() as fs:
        nodes = await look_up(fs, names[:2])
        directory = nodes[0].parent
        assert directory is not None and directory.children is not None
        orders = fs.listings.head_ahead.orders
        order = orders.of(directory, directory.children)
        fh, _ = await fs.create(directory.ino, ".tmp", 0o644, os.O_WRONLY, 0, 0)
        fs.release(fh)
        await look_up(fs, names[2:4])
        assert orders.of(directory, directory.children) is order, "sorted again"
        directory.listed_at += 1  # listed anew
        assert orders.of(directory, directory.children) is not order
