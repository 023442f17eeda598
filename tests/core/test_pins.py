"""Pinned paths: fetched whole, never evicted, readable while the store is down, kept
across remounts; refused up front when they would not fit in the cache."""

from __future__ import annotations

import errno
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from fusestore.cache.pins import PinProgress, PinTooBig
from fusestore.core import pinning
from fusestore.core.filesystem import Filesystem
from fusestore.stores import StoreUnavailable

from .conftest import READS, Env, MiB, pattern, read_path

pytestmark = pytest.mark.trio


def plant(env: Env, folder: str, count: int, size: int) -> dict[str, bytes]:
    files = {f"{folder}/sub{i % 3}/f{i:03}": pattern(size + i, seed=i) for i in range(count)}
    for key, data in files.items():
        env.put(key, data)
    return files


def store_down(env: Env) -> None:
    """Every read of the store fails from now on, as when it is unreachable."""

    def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("test: the store is down")

    for method in READS:
        setattr(env.store, method, down)


def kept(fs: Filesystem) -> set[str]:
    return {key for (key, _etag), content in fs.contents.cached_objects().items() if content.kept}


async def test_a_pinned_folder_is_fetched_whole_and_reads_while_the_store_is_down(env: Env) -> None:
    files = plant(env, "work", 30, 40_000)
    env.put("elsewhere", b"not pinned")
    reports: list[PinProgress] = []

    async def report(progress: PinProgress) -> None:
        reports.append(PinProgress(**progress.as_dict()))

    async with env.mount(flusher=False, io_timeout=1) as fs:
        result = await pinning.pin(fs, "/work/", report)
        assert (result.files_done, result.files_total) == (30, 30) and result.errors == []
        assert result.bytes_total == sum(map(len, files.values())) == result.bytes_fetched
        assert [r.files_done for r in reports] == list(range(1, 31)), "progress after every file"
        assert kept(fs) == set(files)
        assert list(fs.pins) == ["work"]
        store_down(env)
        for key, data in files.items():
            assert await read_path(fs, key) == data, key
        with pytest.raises(StoreUnavailable):
            await read_path(fs, "elsewhere")


async def test_pinned_data_is_never_evicted_and_unpinned_data_is(env: Env) -> None:
    pinned = plant(env, "keep", 4, MiB)
    env.put("big", pattern(3 * MiB))
    async with env.mount(flusher=False, cache_size=5 * MiB) as fs:
        await pinning.pin(fs, "keep")
        assert await read_path(fs, "big") == pattern(3 * MiB)  # the cache is now over its size
        evicted = {c.source[0] for c in fs.contents.evict_candidates() if c.source}
        assert evicted == {"big"}
        with pytest.raises(OSError, match="is not pinned; it is under the pin of /keep"):
            pinning.unpin(fs, "keep/sub0")
        pinning.unpin(fs, "/keep")
        assert kept(fs) == set() and list(fs.pins) == []
        fs.contents.limit = MiB
        evicted = {c.source[0] for c in fs.contents.evict_candidates() if c.source}
        assert evicted == set(pinned), "unpinned: evictable again"


async def test_a_pin_bigger_than_the_cache_is_refused_before_anything_is_fetched(env: Env) -> None:
    plant(env, "small", 2, MiB)
    plant(env, "huge", 6, MiB)
    plant(env, "more", 2, MiB)
    async with env.mount(flusher=False, cache_size=5 * MiB) as fs:
        await pinning.pin(fs, "small")
        gets = len(env.called("open_range")) + len(env.called("get_range"))
        with pytest.raises(PinTooBig) as refused:
            await pinning.pin(fs, "huge")
        assert refused.value.errno == errno.ENOSPC
        assert "cannot pin /huge: it holds 6.0 MiB, and with the 2.0 MiB pinned already" in str(refused.value)
        assert len(env.called("open_range")) + len(env.called("get_range")) == gets
        assert list(fs.pins) == ["small"]
        await pinning.pin(fs, "small")  # pinning the same again counts it once
        await pinning.pin(fs, "more")  # 2 + 2 MiB (plus a few bytes) of 5: it fits
        with pytest.raises(PinTooBig):
            await pinning.pin(fs, "")  # the whole mount: 10 MiB
        await pinning.pin(fs, "more")


async def test_pins_outlast_a_remount_and_a_missing_path_is_named(env: Env) -> None:
    files = plant(env, "p", 3, 1000)
    async with env.mount(flusher=False) as fs:
        await pinning.pin(fs, "p/sub1")
        with pytest.raises(OSError, match="/nothing/here: no such file"):
            await pinning.pin(fs, "nothing/here")
    async with env.mount(flusher=False, cache_size=1) as fs:
        assert list(fs.pins) == ["p/sub1"]
        assert kept(fs) == {"p/sub1/f001"}
        assert fs.contents.evict_candidates() == [], "kept across the remount"
        store_down(env)
        assert await read_path(fs, "p/sub1/f001") == files["p/sub1/f001"]


async def test_a_pinned_file_another_client_replaced_is_fetched_again(
    env: Env, virtual_clock: MockClock
) -> None:
    env.put("docs/a", b"version one")
    async with env.mount(metadata_ttl=0.1) as fs:
        await pinning.pin(fs, "docs")
        env.put("docs/a", b"version two")
        await trio.sleep(0.15)
        assert sorted(await fs.listings.children(await pinning.node_at_path(fs, "docs"))) == ["a"]
        with trio.fail_after(10):  # its new version is fetched in the background
            while True:
                if kept(fs) == {"docs/a"} and fs.ns.node_at("docs/a") is not None:
                    node = fs.ns.node_at("docs/a")
                    assert node is not None
                    content = fs.contents.clean_for("docs/a", node.etag or "", node.size)
                    if content.complete():
                        break
                await trio.sleep(0.02)
        store_down(env)
        assert await read_path(fs, "docs/a") == b"version two"
