"""Walks read ahead: once a walk (`find`, `ls -R`, `du`) opens a directory's sub-directories
in order, the next ones are listed in the background before it gets there, on stores whose
listings wait on a server; each directory is still listed once, a directory opened on its
own lists nothing else, and a listing read ahead that fails costs nobody an error."""

from __future__ import annotations

import pytest
import trio

from fusestore.core.filesystem import Filesystem
from fusestore.core.listings import AHEAD_WAIT
from fusestore.core.readahead import READ_AHEAD
from fusestore.stores import StoreUnavailable

from .conftest import Env, listdir

pytestmark = pytest.mark.trio

SUBDIRS = [f"d{i:02d}" for i in range(8)]


def _plant(env: Env) -> None:
    for sub in SUBDIRS:
        for name in ("a", "b"):
            env.put(f"top/{sub}/{name}", b"x")


def _lists_of(env: Env, prefix: str) -> int:
    return sum(1 for args in env.called("list") if args[0] == prefix)


async def _open(fs: Filesystem, path: str) -> None:
    """opendir + releasedir, as a walk does (the listing runs in the mount's background)."""
    node = fs.ns.node_at(path)
    assert node is not None, path
    fh = await fs.opendir(node.ino)
    fs.releasedir(fh)


async def _listed(fs: Filesystem, path: str) -> None:
    """Wait for the listing of `path` in flight, if any, to end."""
    node = fs.ns.node_at(path)
    assert node is not None
    await fs.listings.refresh(node)


def _being_listed(fs: Filesystem) -> set[str]:
    return {node.key for node in fs.listings._refreshing}


async def test_a_walk_lists_the_next_directories_ahead_and_each_once(env: Env) -> None:
    _plant(env)
    env.store.lists_ahead = True  # as S3's
    async with env.mount() as fs:
        await fs.listings.refresh(fs.ns.root)
        await _open(fs, "top")
        await _listed(fs, "top")
        await _open(fs, "top/d00")
        # The walk's next READ_AHEAD directories are being listed: not one beyond them.
        assert _being_listed(fs) >= {f"top/{sub}" for sub in SUBDIRS[1 : 1 + READ_AHEAD]}
        assert f"top/{SUBDIRS[1 + READ_AHEAD]}" not in _being_listed(fs)
        for sub in SUBDIRS:
            await _listed(fs, f"top/{sub}")
            await _open(fs, f"top/{sub}")
            await _listed(fs, f"top/{sub}")
            assert sorted(fs.ns.node_at(f"top/{sub}").children) == ["a", "b"]  # type: ignore[union-attr]
        for sub in SUBDIRS:
            assert _lists_of(env, f"top/{sub}/") == 1, sub


async def test_a_directory_opened_on_its_own_lists_nothing_else(env: Env) -> None:
    _plant(env)
    env.store.lists_ahead = True
    async with env.mount() as fs:
        await fs.listings.refresh(fs.ns.root)
        await _open(fs, "top")
        await _listed(fs, "top")
        await _open(fs, "top/d04")  # `cd top/d04`: the one before it was never listed
        await _listed(fs, "top/d04")
        await trio.testing.wait_all_tasks_blocked()
        assert _being_listed(fs) == set()
        assert [args[0] for args in env.called("list") if args[0].startswith("top/d")] == ["top/d04/"]


async def test_a_store_that_lists_by_itself_is_not_read_ahead(env: Env) -> None:
    """The memory store (and a file store listing in its own process) builds listings
    with this process's own CPU: listed ahead, they would only take the interpreter from
    the walk."""
    _plant(env)
    assert not env.store.lists_ahead
    async with env.mount() as fs:
        await fs.listings.refresh(fs.ns.root)
        await _open(fs, "top")
        await _listed(fs, "top")
        await _open(fs, "top/d00")
        assert _being_listed(fs) <= {"top/d00"}
        await _listed(fs, "top/d00")
        assert [args[0] for args in env.called("list") if args[0].startswith("top/d")] == ["top/d00/"]


async def test_a_listing_read_ahead_that_fails_costs_nobody_an_error(env: Env) -> None:
    _plant(env)
    env.store.lists_ahead = True
    real_list = env.store.list
    failing = {"top/d01/"}

    def listing(prefix: str, *args: object, **kwargs: object) -> object:
        if prefix in failing:
            raise StoreUnavailable("test: no answer for this one")
        return real_list(prefix, *args, **kwargs)  # type: ignore[arg-type]

    env.store.list = listing  # type: ignore[method-assign]
    async with env.mount(io_timeout=0.2) as fs:
        await fs.listings.refresh(fs.ns.root)
        await _open(fs, "top")
        await _listed(fs, "top")
        await _open(fs, "top/d00")
        with pytest.raises(StoreUnavailable):
            await _listed(fs, "top/d01")  # the one read ahead failed, and ended
        failing.clear()  # the store answers again by the time the walk gets there
        await _open(fs, "top/d01")
        await _listed(fs, "top/d01")
        assert sorted(fs.ns.node_at("top/d01").children) == ["a", "b"]  # type: ignore[union-attr]


async def test_a_big_directory_read_ahead_takes_one_page_until_the_walk_gets_there(
    env: Env, virtual_clock: trio.testing.MockClock
) -> None:
    """A walk that stops short costs one page of each directory read ahead, not the whole
    of a directory of a million entries: the rest is listed only when the walk arrives,
    and a read-ahead nobody claims stops after `AHEAD_WAIT` (the directory lists anew)."""
    for sub in ("d00", "d01", "d02"):
        for i in range(7):
            env.put(f"top/{sub}/f{i}", b"x")
    env.store.lists_ahead = True
    real_list = env.store.list

    def small_pages(
        prefix: str, delimiter: str | None = "/", token: str | None = None, max_keys: int = 1000
    ) -> object:
        return real_list(prefix, delimiter, token, 3)

    env.store.list = small_pages  # type: ignore[method-assign,assignment]
    async with env.mount(deadline=600) as fs:
        await fs.listings.refresh(fs.ns.root)
        await _open(fs, "top")
        await _listed(fs, "top")
        await _open(fs, "top/d00")
        await trio.sleep(1)
        assert _lists_of(env, "top/d01/") == 1  # its first page, and it waits
        assert _lists_of(env, "top/d02/") == 1
        with trio.fail_after(AHEAD_WAIT / 2):
            read = await listdir(fs, "top/d01")  # the walk arrives: the rest follows
        assert sorted(read) == [f"f{i}" for i in range(7)]
        assert _lists_of(env, "top/d01/") == 3
        await trio.sleep(AHEAD_WAIT + 1)  # nobody came for d02: its listing stopped
        assert _being_listed(fs) == set()
        assert _lists_of(env, "top/d02/") == 1
        await _open(fs, "top/d02")
        await _listed(fs, "top/d02")
        assert _lists_of(env, "top/d02/") == 4  # listed anew, whole
        assert sorted(fs.ns.node_at("top/d02").children) == [f"f{i}" for i in range(7)]  # type: ignore[union-attr]


async def test_a_walk_on_remembered_listings_merges_nothing_ahead(env: Env) -> None:
    """After a remount inside the TTL every directory is in the index: there is no LIST to
    wait for, so nothing is read ahead (merging ahead would only hold more entries)."""
    _plant(env)
    env.store.lists_ahead = True
    async with env.mount() as fs:
        await fs.listings.refresh(fs.ns.root)
        for path in ["top", *(f"top/{sub}" for sub in SUBDIRS)]:
            await _open(fs, path)
            await _listed(fs, path)
    lists = len(env.called("list"))
    async with env.mount() as fs:
        await fs.listings.refresh(fs.ns.root)
        await _open(fs, "top")
        await _open(fs, "top/d00")
        assert _being_listed(fs) == set()
        assert fs.ns.node_at("top/d01").listed_at == float("-inf")  # type: ignore[union-attr]
        await _open(fs, "top/d01")
        assert sorted(fs.ns.node_at("top/d01").children) == ["a", "b"]  # type: ignore[union-attr]
    assert len(env.called("list")) == lists  # all of it from the index
