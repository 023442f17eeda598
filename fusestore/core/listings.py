"""`Listings`: what the mount knows of the store's tree, and for how long.

A directory is listed (one paged LIST, a worker thread call per page) when first needed
and again once its listing is older than `--metadata-ttl`; a lookup of one known file in a big
directory is revalidated with a HEAD instead. While the mount serves, a listing runs in its
background and is merged page by page as the pages come (`ListingRun`): directory handles
read each page as it arrives, and what the listing did not show goes only once it is
complete. Complete listings are remembered in the index for the TTL (the next mount may
use them), unless the flusher changed the store while one was taken. What other clients
changed (versions replaced or deleted) is taken here: their cached data goes, and the
kernel forgets the names that lead elsewhere now. See docs/architecture.md, "Namespace
and listings" and "Freshness".

Everything runs on the trio thread; the LISTs and HEADs go to worker threads through
`StoreCalls` (methods that do say so with `Worker thread:`).
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import diskcache
import trio

from ..cache import ContentStore
from ..cache.pins import Pins
from ..stores import NotFound, ObjectInfo, Store, StoreError, StoreUnavailable
from ..stores.links import LinkedStores
from ..stores.posix import SYMLINK_MAX
from .errors import fs_error
from .fetcher import Fetcher
from .headahead import HeadReadAhead
from .journaling import Journaling
from .kernelnames import KernelNames
from .linkview import in_link
from .listingrun import ListingRun
from .namespace import ListingMerge, Namespace
from .nodes import Kind, Node
from .pinning import fetch_whole
from .readahead import READ_AHEAD, WalkReadAhead
from .settings import MountSettings
from .uploadqueue import UploadQueue

if TYPE_CHECKING:
    from ..writeback.storecalls import StoreCalls

log = logging.getLogger(__name__)

#: Entries one LIST request returns: up to this many, re-listing a directory whose listing
#: expired costs one request for all its names; beyond it, a lookup of one known file
#: revalidates that file alone with a HEAD.
LIST_PAGE = 1000
#: Seconds a remembered listing is kept past the TTL: what a directory showed last, for
#: while the store is down (a directory compacted since, or the next mount's).
STALE_LISTING_KEPT = 7 * 24 * 3600.0
#: How long a listing read ahead of a walk (`WalkReadAhead`) that has more than one page
#: waits after its first for the walk to get there, before it stops (a later opendir
#: lists the directory anew): a walk that stopped short costs one LIST a directory.
AHEAD_WAIT = 60.0
#: The first item of a remembered listing kept as columns (`pack_listing`).
LISTING_COLUMNS = "columns-1"


def pack_listing(
    prefix: str, objects: list[ObjectInfo], prefixes: list[str], taken: float
) -> tuple[object, ...]:
    """A listing as the index keeps it: a column per field of plain values, names without
    the directory's prefix. Pickling an ObjectInfo per object cost as much CPU as the
    merge of a cold walk (0.6 s at 150,000 entries); the columns cost a tenth of it."""
    base = prefix if all(info.key.startswith(prefix) for info in objects) else ""
    cut = len(base)
    return (
        LISTING_COLUMNS,
        base,
        [info.key[cut:] for info in objects],
        [info.size for info in objects],
        [info.etag for info in objects],
        [info.mtime for info in objects],
        [info.metadata for info in objects],
        prefixes,
        taken,
    )


def unpack_listing(
    value: object, expires: float | None, ttl: float
) -> tuple[list[ObjectInfo], list[str], float] | None:
    """(objects, prefixes, time taken) of a remembered listing, in this format or an older
    cache's (a list of ObjectInfo, with or without the time; without it, kept for the TTL
    alone); None for anything else."""
    if not isinstance(value, tuple):
        return None
    if len(value) == 9 and value[0] == LISTING_COLUMNS:
        _, base, names, sizes, etags, mtimes, metadata, prefixes, taken = value
        objects = [
            ObjectInfo(base + name, size, etag, mtime, meta)
            for name, size, etag, mtime, meta in zip(names, sizes, etags, mtimes, metadata, strict=True)
        ]
        return objects, prefixes, taken
    if len(value) == 3:
        objects, prefixes, taken = value
        return objects, prefixes, taken
    if len(value) == 2:
        objects, prefixes = value
        return objects, prefixes, (expires or 0.0) - ttl
    return None


class Listings:
    """Listings and freshness of the tree. Owns the listings in flight (one per
    directory: later callers share its outcome) and the set of remembered listings this
    mount dropped from the index. `children`, `refresh`, `child`, `checked_child` and
    `load_tree` yield; the rest is synchronous and cheap."""

    def __init__(
        self,
        settings: MountSettings,
        ns: Namespace,
        index: diskcache.Cache,
        calls: StoreCalls,
        store: Store,
        contents: ContentStore,
        pins: Pins,
        fetcher: Fetcher,
        kernel: KernelNames,
        journaling: Journaling,
        flusher: UploadQueue,
        links: LinkedStores | None,
    ) -> None:
        self.settings = settings
        self.ns = ns
        self.index = index
        self.calls = calls
        self.store = store
        self.contents = contents
        self.pins = pins
        self.fetcher = fetcher
        self.kernel = kernel
        self.journaling = journaling
        self.flusher = flusher
        self.links = links
        self._refreshing: dict[Node, ListingRun] = {}
        self.read_ahead = WalkReadAhead(READ_AHEAD if store.lists_ahead else 0)
        self.head_ahead = HeadReadAhead(self.head_attrs, self.head_due)
        #: prefixes whose remembered listing is gone from the index (see `drop_listing`)
        self._listings_dropped: set[str] = set()
        #: where a pinned file's new version is fetched (set while the mount serves)
        self.nursery: trio.Nursery | None = None

    # -- freshness ----------------------------------------------------------------------

    def being_listed(self, directory: Node) -> bool:
        """Whether a listing of `directory` is under way (its pages still merging in)."""
        return directory in self._refreshing

    def fresh(self, directory: Node) -> bool:
        return time.monotonic() - directory.listed_at < self.settings.metadata_ttl

    def _listed_or_listing(self, directory: Node) -> bool:
        return directory in self._refreshing or self.fresh(directory)

    def entry_timeout(self, node: Node) -> float:
        """How long the kernel may keep `node`'s name without asking again: until the
        listing or HEAD that last confirmed it is older than the TTL, so that no name the
        kernel caches outlives what we know. Names with local changes are ours: the TTL.
        A name listed without its metadata under `exact_attrs`: 0 (its next use HEADs)."""
        parent = node.parent
        if parent is None:
            return self.settings.metadata_ttl
        return self.entry_timeouts(parent)(node)[0]

    def entry_timeouts(self, directory: Node) -> Callable[[Node], tuple[float, float]]:
        """(`entry_timeout`, `attr_timeout`) of the entries of `directory`, with what they
        share worked out once: the half of a warm readdir's time went to working it out
        per entry (a key built for each, a clock read)."""
        ttl = self.settings.metadata_ttl
        exact = self.settings.exact_attrs
        prefix = directory.prefix
        now = time.monotonic()
        listed_at = directory.listed_at
        by_listing = min(ttl, max(0.0, listed_at + ttl - now))
        attr_timeout = self.attr_timeout

        def timeouts(node: Node) -> tuple[float, float]:
            if node.pending_under(prefix):
                return ttl, attr_timeout(node)
            if exact and node.attrs_guessed:
                return 0.0, 0.0
            checked_at = node.checked_at
            if checked_at <= listed_at:
                return by_listing, ttl
            return min(ttl, max(0.0, checked_at + ttl - now)), ttl

        return timeouts

    def absence_timeout(self, parent: Node) -> float:
        """How long the kernel may remember that a name is absent from `parent`: the time
        left of the listing that showed it absent, at most `--negative-ttl`."""
        ttl = self.settings.metadata_ttl
        left = min(ttl, max(0.0, parent.listed_at + ttl - time.monotonic()))
        negative = self.settings.negative_ttl
        return left if negative is None else min(left, negative)

    def absence_known(self, parent: Node) -> bool:
        """Whether `parent`'s listing is recent enough to say a name is absent (younger
        than `--negative-ttl`), or one being listed will say."""
        negative = self.settings.negative_ttl
        return (
            negative is None
            or parent in self._refreshing
            or time.monotonic() - parent.listed_at < negative
            or not self.calls.online  # the older listing is all there is
        )

    def attr_timeout(self, node: Node) -> float:
        """How long the kernel may keep `node`'s attributes: with `exact_attrs`, not at
        all while they are guessed (a directory listing hands the kernel each entry with
        its attributes, without the HEAD its lookup sends)."""
        return 0.0 if node.attrs_guessed and self.settings.exact_attrs else self.settings.metadata_ttl

    def head_due(self, node: Node) -> bool:
        """Whether a lookup or getattr of `node` reads its metadata first (one HEAD): with
        `exact_attrs` whenever a listing did not carry it; always for an object small
        enough to be a symlink or special file, so that a path through one resolves, and
        for a directory, whose marker's attributes no listing of its parent carries (see
        docs/semantics.md). A walk's readdirplus entries send no lookup, so no HEAD."""
        if not node.attrs_guessed:
            return False
        return (
            self.settings.exact_attrs or node.is_dir or (node.kind is Kind.FILE and node.size <= SYMLINK_MAX)
        )

    # -- listing ------------------------------------------------------------------------

    async def children(self, directory: Node) -> dict[str, Node]:
        """The entries of a directory, listed from the store when older than the TTL.
        Worker thread: the LIST, when one is due (see `refresh`)."""
        if not self.fresh(directory):
            await self.refresh(directory)
        assert directory.children is not None
        return directory.children

    async def listing(self, directory: Node) -> ListingRun | None:
        """For a directory handle: the listing in flight whose pages it reads as they
        come (started here when due), or None when the directory's children are what there
        is to read (listed within the TTL, a remembered listing, the store down after an
        older listing; or, while the mount does not serve, listed now to the end).
        Worker thread: the LISTs, when the listing runs in this request (see `refresh`).
        A walk's next directories start listing in the background (`WalkReadAhead`)."""
        if self.nursery is not None and self.calls.online:
            for sibling in self.read_ahead.ahead(directory, self._listed_or_listing):
                self._start(sibling, ahead=True)
        if self.fresh(directory):
            return None
        if self.nursery is None:
            await self.refresh(directory)
            return None
        run = self._refreshing.get(directory)
        return run.claim() if run is not None else self._start(directory)

    async def refresh(self, directory: Node) -> None:
        """List `directory` again, to the end (one listing at a time per directory: later
        callers share it). Raises StoreUnavailable when a directory never listed cannot
        be listed: its names are unknown, and none may be reported absent for that.
        Worker thread: each LIST page, its own call, bounded by the I/O timeout alone: a
        listing that keeps making progress is never cut short. The listing runs in the
        mount's background while it serves (a request cancelled meanwhile leaves it
        going), else in this request."""
        while True:
            run = self._refreshing.get(directory)
            if run is not None:
                run.claim()
            else:
                run = self._start(directory)
                if run is None:
                    return
                if self.nursery is None:
                    await self._list(run)
            await run.ended.wait()
            if not run.interrupted:
                run.raise_failure()
            if run.complete or directory.listed_at > float("-inf") or not directory.attached:
                return
            # Cancelled with the request that ran it, or the directory moved: list again.

    def _start(self, directory: Node, *, ahead: bool = False) -> ListingRun | None:
        """A listing of `directory` begun (in the background while the mount serves), or
        None when none is to be made: the store is down and an older listing stands, or
        the index remembers a listing from within the TTL (merged here, at once). One
        `ahead` of a walk stops after its first page unless claimed within `AHEAD_WAIT`."""
        if not directory.attached:
            return None  # removed: its entries are what it holds
        if ahead and ("listing", directory.prefix) in self.index:
            return None  # remembered: nothing to wait for, the walk merges it when it gets there
        listed_before = directory.listed_at > float("-inf")
        if listed_before and not self.calls.online:
            return None  # the store is down: what was listed before beats a wait and EIO
        prefix = directory.prefix
        remembered = self.remembered_listing(prefix)
        if remembered is not None:
            objects, prefixes, age = remembered
            fresh = age < self.settings.metadata_ttl
            if fresh or not listed_before:
                # From earlier in the TTL (by this mount or the last one): as old as when it
                # was taken. Older: what the directory showed last, which beats EIO while
                # the store is down, and stands should the listing below fail.
                since = self.ns.listing_started()
                try:
                    self.ns.merge_listing(directory, objects, prefixes, since=since)
                    directory.listed_at -= age
                    self._merged(directory)
                finally:
                    self.ns.listing_ended()
                if fresh or not self.calls.online:
                    return None
                listed_before = True
        merge = ListingMerge(directory, prefix, self.ns.listing_started())
        run = self._refreshing[directory] = ListingRun(merge, patient=not listed_before, ahead=ahead)
        if self.nursery is not None:
            self.nursery.start_soon(self._list, run)
        return run

    async def _list(self, run: ListingRun) -> None:
        """Take `run`'s listing page by page, each merged as it comes (additively: nothing
        goes before the last page), then the removals, and the listing remembered. A page
        the store does not give ends the run: with a failure where the directory was never
        listed, else quietly (the older listing stands). Worker thread: each LIST page."""
        merge = run.merge
        directory, prefix = merge.directory, merge.prefix
        # Kept for the index only while the listing may be remembered (nothing changed).
        kept: tuple[list[ObjectInfo], list[str]] | None = ([], [])
        token: str | None = None
        try:
            while True:
                try:
                    page = await self.calls.list_page(prefix, "/", token, patient=run.patient)
                except StoreUnavailable as exc:
                    if run.patient:
                        run.end(failure=exc)
                    else:
                        log.info("%s: keeping the older listing: %s", directory.path(), exc)
                        run.end()
                    return
                except (StoreError, OSError) as exc:
                    run.end(failure=exc)
                    return
                if not directory.attached or directory.prefix != prefix:
                    run.end()  # moved or removed: the pages to come are another place's
                    return
                run.add(self.ns.merge_page(merge, page.objects, page.prefixes))
                self.take_remote_changes()
                if kept is not None and self._rememberable(prefix, merge.since):
                    kept[0].extend(page.objects)
                    kept[1].extend(page.prefixes)
                else:
                    kept = None
                if page.next_token is None:
                    break
                token = page.next_token
                if not run.claimed.is_set():
                    # Read ahead of a walk, and big: the rest only for a walk that gets here.
                    with trio.move_on_after(AHEAD_WAIT):
                        await run.claimed.wait()
                    if not run.claimed.is_set():
                        run.end()
                        return
            self.ns.finish_merge(merge)
            if kept is not None:
                self.remember_listing(prefix, kept, merge.since)
            self._merged(directory)
            run.end(complete=True)
        except Exception as exc:
            # A bug: the readers get EIO, and the mount goes on.
            log.exception("%s: the listing failed", directory.path())
            run.end(failure=fs_error(errno.EIO, f"listing {directory.path()} failed: {exc}"))
        finally:
            self.ns.listing_ended()
            if self._refreshing.get(directory) is run:
                del self._refreshing[directory]
            if not run.ended.is_set():
                # Cancelled: the mount is stopping, or the request that ran it went.
                run.end(failure=StoreUnavailable("the listing was interrupted"), interrupted=True)

    def _merged(self, directory: Node) -> None:
        """After a complete listing of `directory` was merged."""
        self.take_remote_changes()
        if self.journaling.marker_work(directory) is not None:
            self.journaling.record(directory)
            self.flusher.schedule(directory)

    def seed_listing(self, directory: Node, objects: list[ObjectInfo], prefixes: list[str]) -> None:
        """Take a complete listing of `directory` made before the mount started (the
        store's probe), as if it had just been listed."""
        since = self.ns.listing_started()
        try:
            self.ns.merge_listing(directory, objects, prefixes, since=since)
            self.take_remote_changes()
            self.remember_listing(directory.prefix, (objects, prefixes), since)
        finally:
            self.ns.listing_ended()

    async def load_tree(self, directory: Node) -> None:
        """List everything below a directory (one recursive listing), so a rename moves it
        all, or a pin fetches it all. Worker thread: each LIST page, its own call (the
        I/O timeout bounds each page, not the listing)."""
        prefix = directory.prefix
        since = self.ns.listing_started()
        try:
            objects, _ = await self.calls.list_all(prefix, None)
            if directory.prefix != prefix:
                raise fs_error(errno.EAGAIN, "the directory moved during the rename")
            # Merged before the listing counts as ended: until then the namespace keeps
            # the deletes that landed while it was taken, which it still shows.
            self._merge_tree(directory, prefix, objects, since)
        finally:
            self.ns.listing_ended()
        self.take_remote_changes()

    def _merge_tree(self, directory: Node, prefix: str, objects: list[ObjectInfo], since: int) -> None:
        """Merge a recursive listing of `prefix` (taken at `since`) into the loaded
        directories at and below `directory`."""
        # Group by the directory each key sits in, then merge top-down.
        by_dir: dict[str, tuple[list[ObjectInfo], set[str]]] = {prefix: ([], set())}
        for info in objects:
            rel = info.key[len(prefix) :]
            parts = rel.split("/")
            for depth in range(len(parts)):
                here = prefix + "".join(p + "/" for p in parts[:depth])
                entry = by_dir.setdefault(here, ([], set()))
                if depth == len(parts) - 1:
                    entry[0].append(info)
                else:
                    entry[1].add(here + parts[depth] + "/")
        for here in sorted(by_dir, key=lambda p: p.count("/")):
            node = self.ns.node_at(here.rstrip("/"))
            if node is None or not node.is_dir or not directory.is_ancestor_of(node):
                continue
            objs, subs = by_dir[here]
            self.ns.merge_listing(node, objs, sorted(subs), since=since)
            self.remember_listing(here, (objs, sorted(subs)), since)

    # -- remembered listings --------------------------------------------------------------

    def remember_listing(self, prefix: str, listing: tuple[list[ObjectInfo], list[str]], since: int) -> None:
        """Keep a listing (the next mount too may use it: for the TTL as fresh, then a
        week as what the directory showed last while the store is down), unless the flusher
        changed the store while it was taken: it may predate that change. Listings of a
        linked store are not kept: the next mount may link another store there, or none."""
        if self._rememberable(prefix, since):
            objects, prefixes = listing
            expire = self.settings.metadata_ttl + STALE_LISTING_KEPT
            packed = pack_listing(prefix, objects, prefixes, time.time())
            self.index.set(("listing", prefix), packed, expire=expire)
            self._listings_dropped.discard(prefix)

    def remembered_listing(self, prefix: str) -> tuple[list[ObjectInfo], list[str], float] | None:
        """The listing of `prefix` the index remembers, and its age in seconds."""
        value, expires = self.index.get(("listing", prefix), expire_time=True)
        listing = unpack_listing(value, expires, self.settings.metadata_ttl)
        if listing is None:
            return None
        objects, prefixes, taken = listing
        return objects, prefixes, max(0.0, time.time() - taken)

    def _rememberable(self, prefix: str, since: int) -> bool:
        return self.ns.store_seq == since and not in_link(self.links, prefix.rstrip("/"))

    def forget_listing(self, key: str) -> None:
        """The store changed at `key`: remembered listings of every directory above it are
        stale (a put or delete deep down can make a prefix appear or vanish at each level)."""
        parts = key.rstrip("/").split("/")
        for depth in range(len(parts)):
            self.drop_listing("".join(part + "/" for part in parts[:depth]))

    def drop_listing(self, prefix: str) -> None:
        """Forget the remembered listing of `prefix` (an index delete, skipped when this
        mount already dropped it and remembered none since: `rm` of 1000 files is 1000
        changes to one directory)."""
        if prefix not in self._listings_dropped:
            self.index.delete(("listing", prefix))
            self._listings_dropped.add(prefix)

    # -- other clients' changes -----------------------------------------------------------

    def take_remote_changes(self) -> None:
        """After the namespace took other clients' changes: drop the cached data of the
        versions they replaced or deleted (unless a handle still reads it: then at its
        release), and have the kernel forget the names that lead elsewhere now (in the
        background: the kernel may wait for the very request that found the change)."""
        stale, self.ns.stale_objects = self.ns.stale_objects, []
        for key, etag in stale:
            self.contents.forget_object(key, etag)
            if self.pins.covers(key) and self.nursery is not None:
                self.nursery.start_soon(self._fetch_pinned, key)
        names, self.ns.stale_names = self.ns.stale_names, []
        self.kernel.forget_soon(names)

    async def _fetch_pinned(self, key: str) -> None:
        """A pinned file changed in the store: bring its new version (best effort: the
        next `fusestore pin` of it tries again). Worker thread: the GETs (StoreCalls)."""
        node = self.ns.node_at(key)
        if node is None or node.kind is not Kind.FILE or node.pending:
            return
        try:
            await fetch_whole(self.fetcher, node)
        except (StoreError, OSError) as exc:
            log.info("%s: the new version of this pinned file was not fetched: %s", node.path(), exc)

    def object_changed(self, node: Node) -> None:
        """A read found `node`'s object changed or gone before its listing expired: list
        its directory at the next lookup, and have the kernel look the name up again, so
        that opening the file again shows what the store holds now."""
        parent = node.parent
        if not node.attached or node.pending or parent is None:
            return
        parent.listed_at = float("-inf")
        node.checked_at = float("-inf")
        self.drop_listing(parent.prefix)
        self.ns.stale_names.append((parent.ino, node.name))
        self.take_remote_changes()

    async def relinked(self, key: str) -> None:
        """What is at `key` now comes from another store (a store linked or unlinked
        there): forget the tree there and every listing that showed it or not, and make
        the kernel look the name up again. Worker thread: the kernel is told there."""
        node = self.ns.node_at(key)
        if node is not None:
            for sub in node.walk():
                if sub.is_dir:
                    self.drop_listing(sub.prefix)
            self.ns.let_go(node)
        self.forget_listing(key)
        # Every directory on the way lists again, and the kernel forgets each name on the
        # way (it may hold one as absent).
        above: Node | None = self.ns.root
        for name in key.split("/"):
            if above is None or above.children is None:
                break
            above.listed_at = float("-inf")
            self.ns.stale_names.append((above.ino, name))
            above = above.children.get(name)
        # Told before the caller hears back: its next path walk must find the new tree.
        names, self.ns.stale_names = self.ns.stale_names, []
        self.take_remote_changes()
        if self.kernel.forget is not None:
            await self.kernel.forget_now(names)

    # -- lookups of one name -------------------------------------------------------------

    async def child(self, parent: Node, name: str) -> Node | None:
        """The entry `name` of `parent`, or None. Worker thread: the LIST, when one is
        due. A name a page of the listing in flight showed is answered at once; any other
        waits for the listing's end (it may be in a page to come)."""
        run = self._refreshing.get(parent)
        if run is not None and name in run.merge.seen and parent.children is not None:
            return parent.children.get(name)
        children = await self.children(parent)
        node = children.get(name)
        if node is None and not self.absence_known(parent):
            # Absent from a listing older than --negative-ttl: asked again. The listing the
            # index remembers is no younger, so it goes; the older one stands should the
            # store fail to answer.
            self.drop_listing(parent.prefix)
            parent.listed_at = min(parent.listed_at, time.monotonic() - self.settings.metadata_ttl)
            node = (await self.children(parent)).get(name)
        return node

    async def checked_child(self, parent: Node, name: str) -> Node | None:
        """`child`, revalidated the cheaper way once the TTL has passed: a directory of
        more than one listing page is not listed again for a lookup of a file it is known
        to hold; that file alone is revalidated with a HEAD. Worker thread: the LIST or
        HEAD, when one is due."""
        children = parent.children
        if children is None or self.fresh(parent) or len(children) <= LIST_PAGE:
            return await self.child(parent, name)
        node = children.get(name)
        if node is None or node.is_dir or node.pending or not self.calls.online:
            return await self.child(parent, name)
        if time.monotonic() - node.checked_at < self.settings.metadata_ttl:
            return node
        key, etag = node.remote_key, node.etag
        assert key is not None
        try:
            info = await self.calls.attempt(self.store.head, key)
        except NotFound:
            return await self.child(parent, name)  # gone, or a directory now: the listing says
        except StoreUnavailable as exc:
            log.info("%s: not revalidated: %s", node.path(), exc)
            return node
        if node.attached and node.remote_key == key and node.etag == etag and not node.pending:
            self.take_head(node, info)
        return children.get(name)

    def check_kind(self, node: Node) -> None:
        """ESTALE for a request on `node` once a HEAD found its object to be of another
        type (a symlink listed as a file): the kernel then looks the name up again and
        finds the new node (open, stat, exec and chmod do; see `take_head`)."""
        if not node.attached and node.parent is not None and node.parent.children is not None:
            fresh = node.parent.children.get(node.name)
            if fresh is not None and fresh.kind is not node.kind:
                raise fs_error(errno.ESTALE, f"{fresh.path()} is a {fresh.kind.value}")

    def take_head(self, node: Node, info: ObjectInfo, may_replace: bool = True) -> None:
        """What a HEAD of clean `node`'s object found: its attributes; or that it is of
        another type than listed (a symlink shown as a small file), or another client's
        version: then a new node shows it (unless a handle here may still write to this
        one), and `node` is unlinked."""
        if info.etag == node.etag and self.ns.kind_of(info) is node.kind:
            self.ns.apply_object(node, info)
            node.checked_at = time.monotonic()
        elif (may_replace or info.etag == node.etag) and not node.writers:
            # A new inode: the kernel cannot change the type of one it knows, nor drop
            # the size and pages it cached of another version.
            if info.etag == node.etag:
                found, listed = self.ns.kind_of(info).value, node.kind.value
                log.info("%s is a %s, not a %s as listed: a new inode shows it", node.path(), found, listed)
            fresh = self.ns.replace_with_object(node, info)
            fresh.checked_at = time.monotonic()
            self.take_remote_changes()

    async def head_for_lookup(self, node: Node) -> None:
        """`head_attrs` for a lookup, read ahead of lookups in name order (`HeadReadAhead`).
        Worker thread: the HEADs (StoreCalls)."""
        await self.head_ahead.head(node, self.nursery if self.calls.online else None)

    async def head_attrs(self, node: Node, *, may_replace: bool = True) -> None:
        """Read the POSIX attributes a listing did not carry (one HEAD, remembered).

        Best effort: while the store does not answer, the guessed attributes stay (and
        are asked for again later); no getattr fails or waits long for them. Another
        client's version found meanwhile replaces `node` (see `take_head`) where
        `may_replace`. Worker thread: the HEAD (StoreCalls)."""
        if not self.calls.online:
            return
        try:
            await self.head(node, may_replace)
        except StoreUnavailable as exc:
            log.info("%s: attributes not read: %s", node.path(), exc)

    async def head(self, node: Node, may_replace: bool) -> None:
        if node.is_dir:
            marker = node.source_key or node.prefix  # a marker still to be moved: its source
            try:
                info = await self.calls.attempt(self.store.head, marker)
            except NotFound:
                pass
            else:
                if (node.source_key or node.prefix) == marker and not node.meta_dirty:
                    self.ns.apply_marker(node, info)
            node.attrs_guessed = False
            return
        key, etag = node.remote_key, node.etag
        if key is None or node.pending:
            node.attrs_guessed = False
            return
        try:
            info = await self.calls.attempt(self.store.head, key)
        except NotFound:
            node.attrs_guessed = False
            return
        if node.remote_key == key and node.etag == etag and not node.pending and node.attached:
            self.take_head(node, info, may_replace)
        node.attrs_guessed = False

    async def read_attrs(self, node: Node) -> None:
        """Read the attributes a listing did not carry; raises while the store does not
        answer, and never replaces `node`.

        Worker thread: the HEAD, in one StoreCalls slot."""
        await self.head(node, may_replace=False)
