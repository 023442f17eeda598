"""`--negative-ttl`: how long a name found absent stays absent, for the kernel (the
negative entry's timeout) and for the mount (a lookup past it lists the directory
again); unset, the metadata TTL decides, as it always did."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from fusestore.stores import StoreUnavailable

from .conftest import Env

pytestmark = pytest.mark.trio

TTL = 600.0


async def test_a_name_absent_longer_than_the_negative_ttl_is_asked_for_again(
    env: Env, virtual_clock: MockClock
) -> None:
    env.put("d/here", b"x")
    async with env.mount(metadata_ttl=TTL, negative_ttl=5.0, deadline=3 * TTL) as fs:
        d = await fs.lookup(1, "d")
        assert d is not None and await fs.lookup(d.ino, "late") is None
        assert fs.listings.absence_timeout(d) == 5.0, "the kernel keeps the miss for the negative TTL"
        lists = len(env.called("list"))
        env.put("d/late", b"made by another client")
        await trio.sleep(4.0)
        assert await fs.lookup(d.ino, "late") is None, "inside the negative TTL: no request"
        assert len(env.called("list")) == lists
        await trio.sleep(1.5)
        assert fs.listings.absence_timeout(d) == 5.0
        late = await fs.lookup(d.ino, "late")
        assert late is not None and late.size == len(b"made by another client")
        assert len(env.called("list")) == lists + 1, "one LIST of the directory"
        assert await fs.lookup(d.ino, "here") is not None
        assert len(env.called("list")) == lists + 1, "a name that exists costs nothing"
        await trio.sleep(TTL / 2)
        assert fs.listings.absence_timeout(d) == 5.0, "never past the listing's time left"
        await trio.sleep(TTL / 2 - 1)
        assert 0 < fs.listings.absence_timeout(d) <= 1.0


async def test_without_it_absence_lasts_the_metadata_ttl(env: Env, virtual_clock: MockClock) -> None:
    env.put("d/here", b"x")
    async with env.mount(metadata_ttl=TTL, deadline=3 * TTL) as fs:
        d = await fs.lookup(1, "d")
        assert d is not None and await fs.lookup(d.ino, "late") is None
        assert fs.listings.absence_timeout(d) == pytest.approx(TTL, abs=1e-6)  # float rounding of the clock
        env.put("d/late", b"made by another client")
        await trio.sleep(TTL - 1)
        assert await fs.lookup(d.ino, "late") is None
        await trio.sleep(2)
        assert await fs.lookup(d.ino, "late") is not None


async def test_while_the_store_is_down_the_older_listing_stands(env: Env, virtual_clock: MockClock) -> None:
    env.put("d/here", b"x")
    async with env.mount(metadata_ttl=TTL, negative_ttl=1.0, io_timeout=5.0) as fs:
        d = await fs.lookup(1, "d")
        assert d is not None and await fs.lookup(d.ino, "late") is None
        await trio.sleep(2)
        lists = len(env.called("list"))

        def down(*args: object) -> None:
            raise StoreUnavailable("test: the store does not answer")

        listing = env.store.list
        env.store.list = down  # type: ignore[method-assign]
        try:
            with trio.fail_after(30):
                assert await fs.lookup(d.ino, "late") is None, "absent, as the last listing said: no EIO"
            assert await fs.lookup(d.ino, "here") is not None
        finally:
            env.store.list = listing  # type: ignore[method-assign]
        assert len(env.called("list")) == lists
        env.put("d/late", b"x")
        await trio.sleep(2)
        assert await fs.lookup(d.ino, "late") is not None, "asked again once the store answers"
