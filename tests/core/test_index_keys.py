"""The index's and journal's keys are encoded exactly as diskcache encodes them (caches
written before stay readable), also by the direct encoding of short string tuples."""

from __future__ import annotations

import pickle
import pickletools
from pathlib import Path
from typing import Any

import diskcache
import pytest
import trio
from trio.testing import MockClock

from fusestore.cache.keydisk import KeyCachingDisk, short_str_tuple

from .conftest import Env, listdir

KEYS: list[Any] = [
    ("meta", "d/file.jpg"),
    ("meta", ""),
    ("listing", ""),
    ("listing", "a/b/"),
    ("node", "0123456789abcdef"),
    ("meta", "é/名前/\U0001f600"),
    ("meta", "bad\udcff\udc80name"),  # a name kept with surrogateescape
    ("meta", "x" * 255),
    ("meta", "x" * 256),
    ("meta", "é" * 128),
    ("a",),
    ("a", "b", "c"),
    ("a", "b", "c", "d"),
    (),
    ("meta", 5),
    ("meta", b"bytes"),
    ("meta", ("nested",)),
]


def reference(key: Any) -> bytes:
    return pickletools.optimize(pickle.dumps(key, protocol=pickle.HIGHEST_PROTOCOL))


def test_short_string_tuples_are_encoded_as_diskcache_does(tmp_path: Path) -> None:
    assert pickle.HIGHEST_PROTOCOL == 5
    disk = KeyCachingDisk(str(tmp_path), pickle_protocol=pickle.HIGHEST_PROTOCOL)
    plain = diskcache.Disk(str(tmp_path), pickle_protocol=pickle.HIGHEST_PROTOCOL)
    direct = 0
    for key in KEYS:
        encoded = short_str_tuple(key)
        if encoded is not None:
            direct += 1
            assert encoded == reference(key), key
        ours, raw = disk.put(key)
        theirs, their_raw = plain.put(key)
        assert (bytes(ours), raw) == (bytes(theirs), their_raw), key
    assert direct == 10


def test_an_index_written_with_diskcache_alone_is_read_back(tmp_path: Path) -> None:
    with diskcache.Cache(str(tmp_path / "c")) as cache:
        for i, key in enumerate(KEYS):
            cache.set(key, i)
    with diskcache.Cache(str(tmp_path / "c"), disk=KeyCachingDisk) as cache:
        for i, key in enumerate(KEYS):
            assert cache.get(key) == i, key


@pytest.mark.trio
async def test_a_listing_that_carries_metadata_writes_no_index_entry_for_none(env: Env) -> None:
    """Plain objects listed with their (empty) metadata cost no index write each, nor do
    objects with fusestore's own names (the next listing brings them again); another
    tool's names are remembered, and all show the same attributes again."""
    env.put("d/plain", b"x")
    env.put("d/owned", b"y", {"mode": "33184", "uid": "7", "gid": "8"})
    env.put("d/tagged", b"z", {"mode": "33184", "color": "blue"})
    async with env.mount(flusher=False) as fs:
        d = await fs.lookup(1, "d")
        assert d is not None
        children = await fs.listings.children(d)
        assert fs.index.get(("meta", "d/plain")) is None
        assert fs.index.get(("meta", "d/owned")) is None
        assert fs.index.get(("meta", "d/tagged")) is not None
        plain, owned = children["plain"], children["owned"]
        assert (plain.perm, plain.uid, plain.attrs_guessed) == (fs.defaults.file_perm, fs.defaults.uid, False)
        assert (owned.perm, owned.uid, owned.gid) == (0o640, 7, 8)
        heads = len(env.called("head"))
        assert await fs.lookup(d.ino, "plain") is plain
        assert len(env.called("head")) == heads


@pytest.mark.trio
async def test_a_listing_remembered_by_an_older_version_is_used_inside_its_ttl(env: Env) -> None:
    """Older caches remember a listing as (objects, prefixes), kept for the TTL alone."""
    env.put("d/a", b"x")
    async with env.mount(flusher=False) as fs:
        assert sorted(await listdir(fs, "d")) == ["a"]
        objects, prefixes, _ = fs.listings.remembered_listing("d/") or ([], [], 0)
    env.put("d/b", b"y")  # the listing remembered predates it
    async with env.mount(flusher=False) as fs:
        fs.index.set(("listing", "d/"), (objects, prefixes), expire=fs.settings.metadata_ttl)
        lists = len(env.called("list"))
        assert sorted(await listdir(fs, "d")) == ["a"]
        assert len(env.called("list")) == lists, "served from the index"


@pytest.mark.trio
async def test_a_remount_inside_the_ttl_lists_nothing_and_past_it_lists_again(
    env: Env, virtual_clock: MockClock
) -> None:
    """The index at scale's promise, small: every directory listed by one mount is served
    to the next from the remembered listing while it is younger than the TTL."""
    for i in range(2500):  # three LIST pages
        env.put(f"big/f{i:04d}", b"x" * (i % 7))
    env.put("small/a", b"a")
    async with env.mount(flusher=False, metadata_ttl=60.0) as fs:
        first = {name: node.size for name, node in (await listdir(fs, "big")).items()}
        assert sorted(await listdir(fs, "small")) == ["a"]
    lists = len(env.called("list"))
    async with env.mount(flusher=False, metadata_ttl=60.0, deadline=120) as fs:
        again = {name: node.size for name, node in (await listdir(fs, "big")).items()}
        assert sorted(await listdir(fs, "small")) == ["a"]
        assert len(env.called("list")) == lists, "no LIST inside the TTL"
        assert again == first
        await trio.sleep(61)
        assert len(await listdir(fs, "big")) == 2500
        assert len(env.called("list")) > lists, "listed again past the TTL"
