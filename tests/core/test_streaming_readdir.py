"""readdir streams: the first entries of a big directory reach the kernel as the first
listing page arrives, every name comes once with cookies that stay valid whatever
happens meanwhile (pages arriving, local creates and deletes, a refresh of the listing),
and a listing cut short removes nothing a complete one showed.

The kernel is played by `Kernel` (the FUSE adapter with `readdir_reply` replaced by a
buffer of a given size); the store's LISTs of `big/` come through `Pages`, which answers
only the pages the test allowed, so what exists when is decided by the test, not by
timing."""

from __future__ import annotations

import errno
import threading
import time
from typing import Any

import pyfuse3
import pytest
import trio

from fusestore.core.filesystem import Filesystem
from fusestore.service import fuse_ops
from fusestore.service.fuse_ops import FuseOperations
from fusestore.stores import StoreUnavailable

from .conftest import Env, ino_of, listdir, write_file

pytestmark = pytest.mark.trio

PAGE = 10  # entries per LIST page
NAMES = [f"f{i:03d}" for i in range(6 * PAGE)]


class Pages:
    """LISTs of `big/` return PAGE entries each, and only as many pages as the test
    allowed: a page beyond that waits in its worker thread until allowed, or fails once
    the store is `broken` (as one that is down does)."""

    def __init__(self, env: Env, allowed: int = 1) -> None:
        self.cond = threading.Condition()
        self.allowed = allowed
        self.asked = 0
        self.answered = 0
        self.broken = False
        #: time.monotonic() of each page asked
        self.asked_at: list[float] = []
        real = env.store.list

        def listing(
            prefix: str, delimiter: str | None = "/", token: str | None = None, max_keys: int = 1000
        ) -> Any:
            if prefix != "big/":
                return real(prefix, delimiter, token, max_keys)
            with self.cond:
                self.asked += 1
                self.asked_at.append(time.monotonic())
                if not self.cond.wait_for(lambda: self.answered < self.allowed or self.broken, timeout=20):
                    raise StoreUnavailable("test: this page was never allowed")
                if self.broken:
                    raise StoreUnavailable("test: the store stopped answering")
                self.answered += 1
            return real(prefix, delimiter, token, min(max_keys, PAGE))

        env.store.list = listing  # type: ignore[method-assign]

    def allow(self, pages: int = 1) -> None:
        with self.cond:
            self.allowed += pages
            self.cond.notify_all()

    def open(self) -> None:
        self.allow(10**6)

    def answer_now(self) -> None:
        """Let every page the store was asked be answered (the pages after it wait)."""
        with self.cond:
            self.allowed = max(self.allowed, self.asked)
            self.cond.notify_all()

    def stop_answering(self) -> None:
        with self.cond:
            self.broken = True
            self.cond.notify_all()

    async def wait_asked(self, pages: int) -> None:
        with trio.fail_after(5):
            while self.asked < pages:
                await trio.sleep(0.005)


class Buffer:
    """One readdir request's reply: room for `room` entries."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.entries: list[tuple[str, int, int]] = []


def reply(token: Buffer, name: bytes, attrs: Any, next_id: int) -> bool:
    if len(token.entries) == token.room:
        return False
    token.entries.append((name.decode(), attrs.st_ino, next_id))
    return True


class Kernel:
    """The kernel's side of directory reading: opendir, readdir requests resuming from a
    cookie with a buffer of `room` entries, releasedir."""

    def __init__(self, fs: Filesystem, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(fuse_ops.pyfuse3, "readdir_reply", reply)
        self.ops = FuseOperations(fs)
        fs.kernel.forget = None  # no kernel to tell

    async def opendir(self, ino: int) -> int:
        return await self.ops.opendir(ino, None)  # type: ignore[arg-type]

    async def read(self, fh: int, cookie: int, room: int = 1000) -> list[tuple[str, int, int]]:
        """One readdir request: (name, inode, cookie of the next entry) for each entry."""
        buffer = Buffer(room)
        await self.ops.readdir(fh, cookie, buffer)  # type: ignore[arg-type]
        return buffer.entries

    async def read_rest(self, fh: int, cookie: int, room: int = 1000) -> list[tuple[str, int, int]]:
        """Requests from `cookie` until one comes back empty (the end of the directory)."""
        entries: list[tuple[str, int, int]] = []
        while batch := await self.read(fh, cookie, room):
            entries += batch
            cookie = batch[-1][2]
        return entries

    async def releasedir(self, fh: int) -> None:
        await self.ops.releasedir(fh)


def names_of(entries: list[tuple[str, int, int]]) -> list[str]:
    return [name for name, _, _ in entries if name not in (".", "..")]


def fill(env: Env, names: list[str] = NAMES) -> None:
    for name in names:
        env.put(f"big/{name}", b"x")


async def test_the_first_page_reaches_the_reader_before_the_rest_is_listed(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(env)
    pages = Pages(env, allowed=1)
    try:
        async with env.mount() as fs:
            kernel = Kernel(fs, monkeypatch)
            big = await ino_of(fs, "big")
            # `ls | head -1`: one request, then the handle goes; no later page exists yet.
            with trio.fail_after(5):
                fh = await kernel.opendir(big)
                first = await kernel.read(fh, 0)
                await kernel.releasedir(fh)
            assert [name for name, _, _ in first] == [".", "..", *NAMES[:PAGE]]
            assert pages.answered == 1
            # The listing goes on without a reader, and the next one shares it.
            pages.open()
            assert sorted(await listdir(fs, "big")) == NAMES
            assert pages.asked == len(NAMES) // PAGE, "one listing, whoever read it"
    finally:
        pages.open()


async def test_lookups_of_names_already_listed_do_not_wait_for_the_rest(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(env)
    pages = Pages(env, allowed=1)
    try:
        async with env.mount() as fs:
            kernel = Kernel(fs, monkeypatch)
            big = await ino_of(fs, "big")
            with trio.fail_after(5):
                fh = await kernel.opendir(big)
                assert names_of(await kernel.read(fh, 0)) == NAMES[:PAGE]
                # `stat` of a name the first page gave: answered now.
                listed = await fs.lookup(big, NAMES[3])
                assert listed is not None and listed.name == NAMES[3]
            assert pages.answered == 1
            # A name no page gave yet may exist or not: its lookup waits for the listing.
            with trio.move_on_after(0.2) as waited:
                await fs.lookup(big, NAMES[-1])
            assert waited.cancelled_caught
            pages.open()
            with trio.fail_after(5):
                later = await fs.lookup(big, NAMES[-1])
                assert later is not None
                assert await fs.lookup(big, "missing") is None
            await kernel.releasedir(fh)
    finally:
        pages.open()


async def test_every_name_once_with_stable_cookies_while_the_directory_changes(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handle on a streaming listing: cookies stay valid across requests of any size,
    pages arriving between them, local creates and deletes, and a refresh of the listing
    by another opendir; the sequence holds every name once, local names included."""
    fill(env)
    pages = Pages(env, allowed=10**6)
    try:
        async with env.mount(writeback_delay=3600.0, metadata_ttl=0.3) as fs:
            kernel = Kernel(fs, monkeypatch)
            big = await ino_of(fs, "big")
            assert sorted(await listdir(fs, "big")) == NAMES
            # Local changes the store does not have yet: a new file, a delete.
            await write_file(fs, "big/new-local", b"new")
            await fs.unlink(big, "f005")
            # Another client changes the store.
            others = [f"g{i:03d}" for i in range(2 * PAGE)]
            for name in others:
                env.put(f"big/{name}", b"y")
            env.store._backend.objects.pop("big/f057")  # another client's delete
            await trio.sleep(0.4)  # the listing expires
            with pages.cond:
                pages.allowed = pages.answered + 1

            fh = await kernel.opendir(big)
            got = await kernel.read(fh, 0, room=3)
            assert names_of(got) == NAMES[:1]
            await kernel.read(fh, got[-1][2], room=0)  # a request the buffer takes nothing of
            got += await kernel.read(fh, got[-1][2], room=4)
            assert names_of(got) == NAMES[:5]  # f005 was removed here
            await fs.unlink(big, "f008")  # listed in a page merged, not given yet: answered at once
            async with trio.open_nursery() as nursery:
                # A create waits for the listing (its name might be in a page to come).
                nursery.start_soon(write_file, fs, "big/during", b"d")
                step, refreshed = 2, False
                while batch := await kernel.read(fh, got[-1][2], room=step):
                    got += batch
                    step = step % 5 + 1
                    if pages.answered == pages.allowed:
                        pages.allow()
                    if len(got) >= 30 and not refreshed:
                        # Meanwhile another opendir, after the TTL: a new listing, which
                        # must not disturb this handle's sequence.
                        refreshed = True
                        pages.open()
                        with trio.fail_after(5):
                            while fs.listings._refreshing:
                                await trio.sleep(0.01)
                        await trio.sleep(0.4)
                        other = await kernel.opendir(big)
                        await kernel.read_rest(other, 0, room=7)
                        await kernel.releasedir(other)
            listed = names_of(got)
            expected = sorted({*NAMES, *others, "new-local", "during"} - {"f005", "f008", "f057"})
            assert sorted(listed) == expected
            assert len(listed) == len(set(listed)), "a name given twice"
            # A kernel resuming from any cookie it was handed gets the rest, as before.
            after = {cookie: index for index, (_, _, cookie) in enumerate(got)}
            for cookie in (got[2][2], got[17][2], got[40][2], got[-2][2]):
                again = await kernel.read_rest(fh, cookie, room=6)
                assert again == got[after[cookie] + 1 :], cookie
            await kernel.releasedir(fh)
    finally:
        pages.open()


@pytest.mark.parametrize("hang", [True, False], ids=["hangs", "fails"])
async def test_a_store_that_stops_answering_mid_listing(
    env: Env, monkeypatch: pytest.MonkeyPatch, hang: bool
) -> None:
    """Never listed: the entries given stay given, the next request gets EIO after the
    I/O timeout, nothing is remembered; the next listing, once the store answers, is whole."""
    fill(env)
    pages = Pages(env, allowed=1)
    try:
        async with env.mount(io_timeout=1.0) as fs:
            kernel = Kernel(fs, monkeypatch)
            big = await ino_of(fs, "big")
            fh = await kernel.opendir(big)
            first = await kernel.read(fh, 0)
            assert names_of(first) == NAMES[:PAGE]
            await pages.wait_asked(2)
            if not hang:
                pages.stop_answering()
            with pytest.raises(pyfuse3.FUSEError) as failed:
                await kernel.read(fh, first[-1][2])
            assert failed.value.errno == errno.EIO
            waited = time.monotonic() - pages.asked_at[1]
            assert 0.9 <= waited < 5, waited
            await kernel.releasedir(fh)
            assert fs.index.get(("listing", "big/")) is None
            # What the page said is kept; nothing is said absent.
            directory = fs.directory(big)
            assert directory.children is not None and sorted(directory.children) == NAMES[:PAGE]
            with pytest.raises(StoreUnavailable):
                await fs.lookup(big, "missing")

            with pages.cond:
                pages.broken = False
            pages.open()
            assert sorted(await listdir(fs, "big")) == NAMES
            assert fs.index.get(("listing", "big/")) is not None, "a complete listing is remembered"
    finally:
        pages.open()


async def test_a_refresh_cut_short_removes_nothing(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Listed before: a refresh that stops mid-way keeps every entry the last complete
    listing showed (no EIO: what was listed before is shown), and removes what another
    client deleted only once a listing completes."""
    fill(env)
    pages = Pages(env, allowed=10**6)
    try:
        async with env.mount(io_timeout=1.0, metadata_ttl=0.3) as fs:
            kernel = Kernel(fs, monkeypatch)
            big = await ino_of(fs, "big")
            assert sorted(await listdir(fs, "big")) == NAMES
            gone = {"f000", "f001", "f033"}
            for name in gone:
                env.store._backend.objects.pop(f"big/{name}")  # another client's deletes
            await trio.sleep(0.4)
            with pages.cond:
                pages.allowed = pages.answered + 1
            fh = await kernel.opendir(big)
            got = await kernel.read_rest(fh, 0, room=4)
            assert sorted(names_of(got)) == NAMES, "the last complete listing's names, each once"
            assert len(names_of(got)) == len(NAMES)
            await kernel.releasedir(fh)
            directory = fs.directory(big)
            assert directory.children is not None and sorted(directory.children) == NAMES
            remembered = fs.listings.remembered_listing("big/")
            assert remembered is not None and remembered[2] >= 0.3, "only the older, stale listing"

            pages.open()
            await trio.sleep(0.4)
            assert sorted(await listdir(fs, "big")) == sorted(set(NAMES) - gone)
    finally:
        pages.open()


async def test_concurrent_opendirs_share_one_listing(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    fill(env)
    pages = Pages(env, allowed=0)
    try:
        async with env.mount() as fs:
            kernel = Kernel(fs, monkeypatch)
            big = await ino_of(fs, "big")
            results: dict[int, list[str]] = {}

            async def reader(n: int) -> None:
                fh = await kernel.opendir(big)
                results[n] = names_of(await kernel.read_rest(fh, 0, room=3 + n))
                await kernel.releasedir(fh)

            async with trio.open_nursery() as nursery:
                for n in range(3):
                    nursery.start_soon(reader, n)
                nursery.start_soon(listdir, fs, "big")
                for asked in range(1, len(NAMES) // PAGE + 1):
                    await pages.wait_asked(asked)
                    pages.answer_now()
            assert results == {n: NAMES for n in range(3)}
            assert pages.asked == len(NAMES) // PAGE
    finally:
        pages.open()


@pytest.mark.parametrize("background", [True, False], ids=["served", "inline"])
async def test_a_cancelled_listing_leaves_nothing_a_later_one_cannot_fix(
    env: Env, monkeypatch: pytest.MonkeyPatch, background: bool
) -> None:
    """The request that started a listing is interrupted after its first page: the
    listing goes on in the background (or, without one, the next request lists anew),
    no task or listing is left behind, and the directory ends as the store holds it."""
    fill(env)
    pages = Pages(env, allowed=10**6)
    try:
        async with env.mount(flusher=background, metadata_ttl=0.3) as fs:
            kernel = Kernel(fs, monkeypatch)
            big = await ino_of(fs, "big")
            assert sorted(await listdir(fs, "big")) == NAMES
            gone = {"f002", "f044"}
            for name in gone:
                env.store._backend.objects.pop(f"big/{name}")
            env.put("big/f100", b"z")
            await trio.sleep(0.4)
            with pages.cond:
                pages.allowed = pages.answered + 1
            asked = pages.asked
            with trio.CancelScope() as scope:

                async def interrupt() -> None:
                    await pages.wait_asked(asked + 2)
                    scope.cancel()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(interrupt)
                    fh = await kernel.opendir(big)
                    await kernel.read_rest(fh, 0)
            assert scope.cancelled_caught
            pages.open()
            expected = sorted(set(NAMES) - gone | {"f100"})
            assert sorted(await listdir(fs, "big")) == expected
            with trio.fail_after(5):
                while fs.listings._refreshing:
                    await trio.sleep(0.01)
            assert fs.ns._listings == 0, "every listing ended"
            assert sorted(fs.directory(big).children or {}) == expected
    finally:
        pages.open()


async def test_unmounting_during_a_listing_ends_it(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    fill(env)
    pages = Pages(env, allowed=1)
    try:
        with trio.fail_after(5):
            async with env.mount() as fs:
                kernel = Kernel(fs, monkeypatch)
                fh = await kernel.opendir(await ino_of(fs, "big"))
                assert names_of(await kernel.read(fh, 0)) == NAMES[:PAGE]
                await pages.wait_asked(2)
        assert not fs.listings._refreshing
    finally:
        pages.open()


async def test_a_reader_waiting_when_the_mount_stops_serving_gets_eio(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(env)
    pages = Pages(env, allowed=1)
    try:
        async with env.mount(sync=False) as fs:
            kernel = Kernel(fs, monkeypatch)
            fh = await kernel.opendir(await ino_of(fs, "big"))
            first = await kernel.read(fh, 0)
            await pages.wait_asked(2)
            failed: list[int] = []

            async def reader() -> None:
                with pytest.raises(pyfuse3.FUSEError) as raised:
                    await kernel.read(fh, first[-1][2])
                failed.append(raised.value.errno)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await trio.sleep(0.05)  # (before or after the stop: EIO either way)
                assert fs.listings.nursery is not None
                fs.listings.nursery.cancel_scope.cancel()  # the mount stops serving
            assert failed == [errno.EIO], "the rest of the listing is unknown: not an end"
            assert not fs.listings._refreshing and fs.ns._listings == 0
            await kernel.releasedir(fh)
    finally:
        pages.open()


async def test_compaction_leaves_a_directory_being_listed_alone(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ls | head -1` leaves the listing running in the background; the kernel then
    forgets the entries it was given. Dropping them meanwhile would leave the directory
    listed without its first pages once the later ones come."""
    fill(env)
    pages = Pages(env, allowed=1)
    try:
        async with env.mount() as fs:
            kernel = Kernel(fs, monkeypatch)
            big = await ino_of(fs, "big")
            fh = await kernel.opendir(big)
            first = await kernel.read(fh, 0)
            await kernel.releasedir(fh)
            await pages.wait_asked(2)
            await kernel.ops.forget([(ino, 1) for name, ino, _ in first if name not in (".", "..")])
            await fs.compaction.sweep()
            pages.open()
            assert sorted(await listdir(fs, "big")) == NAMES
            # And once the listing is complete, what it showed is droppable as before.
            assert await fs.compaction.sweep() >= 0
            assert sorted(await listdir(fs, "big")) == NAMES
    finally:
        pages.open()
