"""POSIX operations on the cache, independent of FUSE.

`Filesystem` is what `fuse_ops` calls: every method takes inode numbers, names and file
handles, raises `OSError` with a POSIX errno (or a `StoreError`, which maps to one), and
touches only the local cache unless it must ask the store (a directory not listed yet, data
not cached yet). Changes are recorded in the journal and handed to the flusher.

Every method runs on the trio thread; those that may wait for the store or for dirty
space are `async` and yield while they do.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import stat
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from ..cache import BLOCK_SIZE, CacheDir, Content, ContentStore, Journal, room
from ..cache.journal import Records
from ..cache.pins import Pins
from ..cache.recovery import LOST_FOUND, LostFound, open_index
from ..cache.writeout import start_writeout
from ..stores import NotFound, ObjectInfo, PreconditionFailed, Store, StoreError, StoreUnavailable
from ..stores.base import MiB
from ..stores.links import LinkedStores, link_path
from ..stores.posix import SYMLINK_MAX
from ..writeback.conflicts import DEFAULT_TEMPLATE, ConflictNames
from ..writeback.flusher import Flusher
from ..writeback.host import Uploaded
from ..writeback.staging import PART_SIZE
from ..writeback.storecalls import StoreCalls
from . import lostwrites
from .fetcher import Fetcher
from .namespace import NAME_MAX, Defaults, Namespace
from .nodes import Kind, Node, now_ns

log = logging.getLogger(__name__)

#: What the file system reports as its size when the store does not know (S3): 1 PiB.
UNKNOWN_CAPACITY = 2**50
#: How far a writer's own file may take dirty data past the limit (see wait_for_dirty_space).
STAGE_CHUNK = 2 * PART_SIZE
#: How long a write that finds the cache disk full waits for the space of unlinked files
#: still being closed: the kernel sends a close's RELEASE after close() has returned, so
#: `rm` right after ENOSPC can reach us before the release that gives the room back.
ROOM_WAIT = 3.0
#: How long a write that could not be stored waits for the kernel to drop the file's name
#: (see `_lost_write`) before it reports the error anyway.
KERNEL_WAIT = 2.0
#: Seconds between two fsyncs of what changed in the cache, when nobody calls fsync.
PERSIST_INTERVAL = 2.0
#: Blocks a write that needs its block's old bytes streams on past it, in the background.
#: The upload of the changed file needs the whole object anyway, and random writes into
#: an object would otherwise cost one GET each (fio into 64 MiB: 64 GETs, 1.5 s on moto).
WRITE_FETCH_AHEAD = 64
#: Cache files made durable together (each open at once: well below any fd limit).
FSYNC_BATCH = 256
#: Entries one LIST request returns: up to this many, re-listing a directory whose listing
#: expired costs one request for all its names; beyond it, a lookup of one known file
#: revalidates that file alone with a HEAD.
LIST_PAGE = 1000


def fs_error(code: int, detail: str = "") -> OSError:
    return OSError(code, os.strerror(code) + (f": {detail}" if detail else ""))


@dataclass
class MountSettings:
    """The tunables of one mount (command-line options)."""

    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    umask: int = 0o022
    metadata_ttl: float = 60.0
    #: how conflict copies are named (see `conflicts.ConflictNames`)
    conflict_name: str = DEFAULT_TEMPLATE
    writeback_delay: float = 2.0
    cache_size: int = 10 * 1024 * MiB
    dirty_limit: int = 2 * 1024 * MiB
    upload_workers: int = 4
    store_connections: int = 16
    read_ahead_max: int = 64 * MiB
    #: seconds a kernel request waits for the store before it fails with EIO
    io_timeout: float = 30.0
    #: "local": fsync returns once the change is durable in the cache; "remote": once the
    #: store holds it
    fsync: str = "local"
    #: a new file at least this big is due at its last close (0: never)
    upload_at_close: int = 16 * MiB
    #: HEAD an object on its first lookup when the listing did not say its attributes
    #: (else they stay the listing's until the file is changed)
    exact_attrs: bool = False


@dataclass
class FileHandle:
    node: Node
    content: Content | None
    writable: bool
    next_offset: int = 0  # where a sequential reader reads next
    window: int = 1  # readahead, in blocks
    #: the node's generation when opened: the kernel inode this descriptor belongs to
    generation: int = 0
    #: the file end past which this descriptor may not write, once a write of its kernel
    #: inode could not be stored (see `_lost_write`)
    limit: int | None = None


@dataclass
class DirHandle:
    node: Node
    entries: list[tuple[str, Node]]


@dataclass
class _ListingRun:
    """One listing of a directory in flight, and how it ended (for those waiting on it)."""

    done: trio.Event = field(default_factory=trio.Event)
    failure: StoreUnavailable | None = None


class Filesystem:
    """The mounted tree. See the module docstring for the calling rules."""

    def __init__(self, store: Store, cache: CacheDir, settings: MountSettings) -> None:
        self.store = store
        #: the stores linked into the tree (read-only), when the mount's store carries them
        self.links = store if isinstance(store, LinkedStores) else None
        self.cache = cache
        self.settings = settings
        # The journal first, every record read: a damaged one refuses the mount (raises
        # JournalDamaged) before anything changes. `replay` takes these records.
        self.journal = Journal(cache.path / "journal")
        try:
            self.journaled_at_open = self.journal.read_all()
            self.index, damage = open_index(cache.path / "index")
        except BaseException:
            self.journal.close()
            raise
        #: the index was unreadable and made anew (the data files it named are unknown)
        self.index_rebuilt = damage is not None
        self.lost_found = LostFound(cache.path / LOST_FOUND)
        owned = frozenset(self.journaled_at_open.content_ids())
        self.contents = ContentStore(cache.data_dir, self.index, settings.cache_size, owned)
        self.pins = Pins(self.index)
        self.contents.keeps = self.pins.covers
        self.contents.keep_again()
        self.calls = StoreCalls(store, settings.store_connections, settings.io_timeout)
        self.defaults = Defaults(settings.uid, settings.gid, settings.umask)
        self.ns = Namespace(self.defaults, self.journal, self.index)
        self.ns.conflict_names = ConflictNames(settings.conflict_name)
        self.flusher = Flusher(
            self,  # the `WritebackHost`: what writeback may ask of the core
            store=store,
            calls=self.calls,
            journal=self.journal,
            opened=self.journaled_at_open,
            contents=self.contents,
            ns=self.ns,
            index=self.index,
            settings=settings,
        )
        self._handles: dict[int, FileHandle | DirHandle] = {}
        self._next_fh = 1
        self._refreshing: dict[Node, _ListingRun] = {}
        self.fetcher = Fetcher(self)
        self.dirty_space = trio.Event()
        self.mount_time_ns = now_ns()
        self._capacity: tuple[float, int, int] | None = None
        self._unsynced: set[Content] = set()  # cache files written since the last persist
        #: prefixes whose remembered listing is gone from the index (see `drop_listing`)
        self._listings_dropped: set[str] = set()
        self.space_wanted = 0  # writers waiting for dirty space
        self._unjournaled: set[Node] = set()  # records not written yet (deferred, or the disk was full)
        self._disk_limiter = trio.CapacityLimiter(1)
        self._making_room = trio.Lock()
        #: makes the kernel forget a name in a directory (inode number, name), so that its
        #: next lookup finds the node now there (set by the FUSE layer; blocking, so it is
        #: called in a worker thread)
        self.kernel_forget_name: Callable[[int, str], None] | None = None
        #: where background work of the mount runs (set while `serve` runs)
        self.nursery: trio.Nursery | None = None
        self._kernel_limiter = trio.CapacityLimiter(1)
        self._room_freed = trio.Event()  # set (and renewed) when an unlinked file's data goes
        self._spares_low = trio.Event()  # set (and renewed) when the spare cache files run low
        self.contents.on_spares_low = lambda: self._spares_low.set()

    def close(self) -> None:
        """Persist what the next mount reuses. Call after the flusher stopped."""
        self.contents.drop_spares()
        self.contents.save_all()
        self.contents.close_files()  # else a process that mounts again keeps them all
        for node in self.ns.nodes.values():
            if node.jid is not None:
                self.record(node)
        self.index.close()  # first (a checkpoint: durable), as in `persist`
        self.journal.close()

    # -- journal ----------------------------------------------------------------------

    def record_if_room(self, node: Node, *, timestamps_later: bool = False) -> None:
        """`record`, for callers that cannot fail (close): on a full cache disk the record
        is written by the next `persist` instead (the change itself is in memory and
        goes up as usual). `timestamps_later`: see `record`."""
        try:
            self.record(node, timestamps_later=timestamps_later)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            log.warning("%s: not journaled yet: %s", node.path(), exc.strerror)

    def record(self, node: Node, *, timestamps_later: bool = False, size_now: bool = False) -> None:
        """Write (or drop) the journal record of `node`'s pending work. With
        `timestamps_later` (a close, an fsync), a record that would differ from the last one
        only in its mtime, or in what a restart reads from the cache file (a content's size
        and its blocks past the base), is left to the next full persist, within 2 s (the
        kernel sends a new mtime with the flush of every written file: a transaction per
        new file saved, and an fsync that waits for no journal flush). So the journal
        holds no record a full persist does not sync at once. `size_now` (an fsync): the
        record does hold the size, so that a restart can tell a cache file cut short (a
        file shorter than its record is set aside, never uploaded); a change of the size
        alone is written without making the journal's next sync wait for it."""
        if not node.attached or not self._has_work(node):
            if node.jid is not None:
                self.journal.drop_node(node.jid)
                node.jid = None
                node.journaled = None
            self._unjournaled.discard(node)
            return
        if node.jid is None:
            node.jid = uuid.uuid4().hex
        content = node.content if node.data_dirty else None
        record = {
            "kind": node.kind.value,
            "key": node.key,
            "perm": node.perm,
            "uid": node.uid,
            "gid": node.gid,
            "mtime_ns": node.mtime_ns,
            "size": node.size,
            "remote_key": node.remote_key,
            "etag": node.etag,
            "remote_size": node.remote_size,
            "data_dirty": node.data_dirty,
            "meta_dirty": node.meta_dirty,
            "content": content.id if content else None,
            "base_size": content.base_size if content else 0,
            "present": f"{content.present:x}" if content else "0",
            "target": node.target,
            "explicit": node.explicit,
            "marker_key": node.marker_key,
            "overwrites": node.overwrites,
            # A move copies an object whose attributes were never read with its own metadata.
            "attrs_guessed": node.attrs_guessed,
            "parked": self.flusher.parked.reason(node),  # the store refuses its key: why
        }
        last = node.journaled
        if record == last:
            self._unjournaled.discard(node)
            return  # a close after a write, an fsync after a setattr: nothing new to say
        self._unjournaled.add(node)  # until the record is written (the disk may be full)
        if timestamps_later and last is not None:
            waiting = {"mtime_ns"}
            if node.data_dirty:
                # The meta_dirty a new mtime sets does not count while the data is to be
                # uploaded anyway (the upload carries every attribute).
                waiting.add("meta_dirty")
            if content is not None:
                # A restart takes the size from the cache file and needs only the base's
                # present blocks (`Content.base_mask`): a new file's writes need no
                # transaction of their own.
                mask = content.base_mask()
                if content.present & mask == int(last["present"], 16) & mask:
                    waiting |= {"size", "present"}
            if all(record[name] == last[name] for name in record if name not in waiting):
                if size_now and record["size"] != last["size"]:
                    # Written now for a restart's check of the cache file (`keep_if_cut_short`),
                    # as a hint: made durable by the next full persist, so an fsync still
                    # waits for no journal flush.
                    self.journal.save_node(node.jid, record, hint=True)
                    node.journaled = record
                return
        self.journal.save_node(node.jid, record)
        node.journaled = record
        self._unjournaled.discard(node)

    def _has_work(self, node: Node) -> bool:
        if node.is_dir:
            return self.marker_work(node) is not None
        return node.pending

    def marker_wanted(self, node: Node) -> bool | None:
        """Whether the store should hold a `dir/` marker for a directory; None: unknown yet.
        An explicit directory keeps one (see `Node.explicit`), any other while it is empty."""
        if node is self.ns.root or not node.attached:
            return False
        if node.explicit:
            return True  # the only place its mode and owner can be kept
        if node.listed_at == float("-inf"):
            return None
        # Keys below it that cannot be shown still make the prefix exist in the store.
        return not node.children and not self.ns.hidden.get(node.prefix)

    def marker_work(self, node: Node) -> str | None:
        """ "put" or "delete" when the directory's marker must change, else None."""
        if self.in_link(node):
            return None  # nothing is written to a linked store
        wanted = self.marker_wanted(node)
        if wanted is None:
            return None
        if wanted and (node.marker_key != node.prefix or node.meta_dirty):
            return "put"
        if not wanted and node.marker_key is not None:
            return "delete"
        return None

    def changed(self, node: Node, *, data: bool = False, meta: bool = False, journal: bool = True) -> None:
        """A local change to `node`: journal it and let the flusher upload it later.

        `journal=False` (a change the node's close, fsync or the next persist may record,
        within 2 s): no transaction now, unless the node has no record yet."""
        node.version += 1
        node.ctime_ns = now_ns()
        if data:
            node.data_version += 1
            node.data_dirty = True
        if meta:
            node.meta_dirty = True
        self.flusher.schedule(node)  # first: a journal on a full disk must not stall the upload
        if journal or node.jid is None:
            self.record(node)
        else:
            self._unjournaled.add(node)

    def dir_changed(self, directory: Node) -> None:
        """Entries of `directory` changed: its marker may have to come or go."""
        self.drop_listing(directory.prefix)
        directory.mtime_ns = directory.ctime_ns = now_ns()
        if self.marker_work(directory) is not None:
            self.record(directory)
            self.flusher.schedule(directory)

    def replay(self) -> int:
        """Rebuild pending work from the journal (before the mount is ready). Returns its size."""
        records, deletes = self.journaled_at_open.nodes, self.journaled_at_open.deletes
        # Parents before children, so directories exist when their entries arrive.
        for jid, rec in sorted(records.items(), key=lambda item: item[1]["key"].count("/")):
            try:
                self._replay_node(jid, rec)
            except Exception:
                log.exception(
                    "journal record for %r could not be replayed; it stays in the journal", rec.get("key")
                )
        for key in deletes:
            self.ns.deletes.add(key)
            self.ns._shadow(key, +1)
        return len(records) + len(self.ns.deletes)

    def _replay_node(self, jid: str, rec: dict[str, Any]) -> None:
        if rec["content"] and self.lost_found.keep_if_cut_short(self.cache.data_dir / rec["content"], rec):
            self.journal.drop_node(jid)  # never uploaded as if whole
            return
        *dirs, name = rec["key"].split("/")
        parent = self.ns.root
        for dir_name in dirs:
            assert parent.children is not None
            child = parent.children.get(dir_name)
            if child is None or not child.is_dir:
                child = self.ns.new_node(
                    Kind.DIR,
                    dir_name,
                    parent,
                    self.defaults.dir_perm,
                    self.defaults.uid,
                    self.defaults.gid,
                    now_ns(),
                )
                self.ns.attach(parent, dir_name, child)
            parent = child
        kind = Kind(rec["kind"])
        assert parent.children is not None
        old = parent.children.get(name)
        if old is not None and old.kind is kind and kind is Kind.DIR:
            node = old
            node.perm, node.uid, node.gid, node.mtime_ns = (
                rec["perm"],
                rec["uid"],
                rec["gid"],
                rec["mtime_ns"],
            )
        else:
            if old is not None:
                self.ns.detach(old)
            node = self.ns.new_node(kind, name, parent, rec["perm"], rec["uid"], rec["gid"], rec["mtime_ns"])
            self.ns.attach(parent, name, node)
        node.jid = jid
        node.size = rec["size"]
        node.remote_key, node.etag, node.remote_size = rec["remote_key"], rec["etag"], rec["remote_size"]
        node.data_dirty, node.meta_dirty = rec["data_dirty"], rec["meta_dirty"]
        node.target = rec["target"]
        node.explicit, node.marker_key = rec["explicit"], rec["marker_key"]
        node.overwrites = rec.get("overwrites")
        node.attrs_guessed = rec.get("attrs_guessed", False)
        if kind is Kind.DIR:
            node.listed_at = time.monotonic()
        if rec["content"]:
            path = self.cache.data_dir / rec["content"]
            size = path.stat().st_size if path.exists() else 0
            content = self.contents.adopt(rec["content"], size, rec["base_size"], int(rec["present"], 16))
            if node.remote_key and node.etag:
                content.source = (node.remote_key, node.etag)
            node.content = content
            node.size = size
        self.ns.track_move(node)
        self.flusher.schedule(node, delay=0)

    def account_for_files(self) -> None:
        """After `replay`: data files no record names are removed when surely clean, else
        set aside in lost+found (see `ContentStore.account_for_files`). Blocking (small)."""
        opened, self.journaled_at_open = self.journaled_at_open, Records()
        moved = self.contents.account_for_files(
            opened.content_ids(), self.lost_found, removed=opened.unlinked, index_lost=self.index_rebuilt
        )
        for content_id in opened.unlinked:
            self.journal.drop_unlinked(content_id)
        if moved:
            log.error(
                "%d cache file(s) no journal or index record names were kept in %s (fusestore cache recover)",
                len(moved),
                self.lost_found.path,
            )

    # -- lookups and listings ---------------------------------------------------------

    def node(self, ino: int) -> Node:
        try:
            return self.ns.nodes[ino]
        except KeyError:
            raise fs_error(errno.ENOENT, f"inode {ino}") from None

    def directory(self, ino: int) -> Node:
        node = self.node(ino)
        if not node.is_dir:
            raise fs_error(errno.ENOTDIR)
        return node

    @staticmethod
    def check_name(name: str) -> None:
        if len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise fs_error(errno.ENAMETOOLONG)
        if "/" in name or name in ("", ".", ".."):
            raise fs_error(errno.EINVAL)

    # -- linked stores ----------------------------------------------------------------------

    def in_link(self, where: str | Node) -> bool:
        """Whether a key (or a node's) is a linked store's path or lies below one (read-only
        there). Free while nothing is linked: a node's key is only worked out when needed."""
        if self.links is None or not self.links.links:
            return False
        return self.links.link_of(where if isinstance(where, str) else where.key) is not None

    def _writable(self, where: str | Node) -> None:
        """EROFS for a key (or node) in a linked store; free while nothing is linked."""
        if self.in_link(where):
            key = where if isinstance(where, str) else where.key
            raise fs_error(errno.EROFS, f"/{key} is in a read-only linked store")

    async def link_store(self, path: str, store: Store) -> str:
        """Show `store` read-only at `path` from now on; returns the link's key. Refused
        (ValueError) where local changes not uploaded yet or open files would be hidden."""
        if self.links is None:
            raise ValueError("this mount cannot link stores")
        key = link_path(path)
        existing = self.ns.node_at(key)
        if existing is not None and self.ns.has_local_work(existing, readers=True):
            raise ValueError(f"/{key} holds changes not uploaded yet, or open files")
        self.links.add(key, store)
        await self._relinked(key)
        return key

    async def unlink_store(self, path: str) -> Store:
        """Stop showing the store linked at `path` (what the mount's own store holds there
        shows again); returns that store, for the caller to close."""
        if self.links is None:
            raise ValueError("this mount cannot link stores")
        link = self.links.remove(path)
        await self._relinked(link.path)
        return link.store

    async def _relinked(self, key: str) -> None:
        """What is at `key` now comes from another store: forget the tree there and every
        listing that showed it or not, and make the kernel look the name up again."""
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
        if self.kernel_forget_name is not None:
            await self._forget_kernel_names(names)

    def fresh(self, directory: Node) -> bool:
        return time.monotonic() - directory.listed_at < self.settings.metadata_ttl

    def entry_timeout(self, node: Node) -> float:
        """How long the kernel may keep `node`'s name without asking again: until the
        listing or HEAD that last confirmed it is older than the TTL, so that no name the
        kernel caches outlives what we know. Names with local changes are ours: the TTL."""
        ttl = self.settings.metadata_ttl
        parent = node.parent
        if parent is None or node.pending:
            return ttl
        if node.attrs_guessed and self.settings.exact_attrs:
            return 0.0  # listed without its metadata: the next use looks it up (a HEAD)
        confirmed = max(node.checked_at, parent.listed_at)
        return min(ttl, max(0.0, confirmed + ttl - time.monotonic()))

    def absence_timeout(self, parent: Node) -> float:
        """How long the kernel may remember that a name is absent from `parent`."""
        ttl = self.settings.metadata_ttl
        return min(ttl, max(0.0, parent.listed_at + ttl - time.monotonic()))

    async def children(self, directory: Node) -> dict[str, Node]:
        """The entries of a directory, listed from the store when older than the TTL."""
        if not self.fresh(directory):
            await self.refresh(directory)
        assert directory.children is not None
        return directory.children

    async def refresh(self, directory: Node) -> None:
        """List `directory` again (one listing at a time per directory: later callers
        share its outcome). Raises StoreUnavailable when a directory never listed cannot
        be listed: its names are unknown, and none may be reported absent for that."""
        while (running := self._refreshing.get(directory)) is not None:
            await running.done.wait()
            if running.failure is not None:
                # A new exception each: one raised in many tasks would gather all their tracebacks.
                raise StoreUnavailable(str(running.failure)) from running.failure
            if directory.listed_at > float("-inf"):
                return
            # That listing was cancelled with its request: this caller lists instead.
        listed_before = directory.listed_at > float("-inf")
        if listed_before and not self.calls.online:
            # The store is down: what was listed before beats a wait and EIO.
            return
        listing_run = self._refreshing[directory] = _ListingRun()
        since = self.ns.listing_started()
        try:
            prefix = directory.prefix
            # A listing remembered from earlier in the TTL (by this mount or the last one)
            # is as old as when it was taken, not as when it is used.
            listing, expires = self.index.get(("listing", prefix), expire_time=True)
            taken = None if expires is None else expires - self.settings.metadata_ttl
            if listing is None:
                if listed_before:
                    try:
                        listing = await self.calls.attempt(self._list_all, prefix)
                    except StoreUnavailable as exc:
                        log.info("%s: keeping the older listing: %s", directory.path(), exc)
                        return
                else:
                    try:
                        listing = await self.calls.ask(self._list_all, prefix)
                    except StoreUnavailable as exc:
                        listing_run.failure = exc
                        raise
                self._remember_listing(prefix, listing, since)
            if directory.attached and directory.prefix == prefix:
                objects, prefixes = listing
                self.ns.merge_listing(directory, objects, prefixes, since=since)
                if taken is not None:
                    directory.listed_at -= max(0.0, time.time() - taken)
                self.take_remote_changes()
                if self.marker_work(directory) is not None:
                    self.record(directory)
                    self.flusher.schedule(directory)
        finally:
            self.ns.listing_ended()
            del self._refreshing[directory]
            listing_run.done.set()

    def seed_listing(self, directory: Node, objects: list[ObjectInfo], prefixes: list[str]) -> None:
        """Take a complete listing of `directory` made before the mount started (the
        store's probe), as if it had just been listed."""
        since = self.ns.listing_started()
        try:
            self.ns.merge_listing(directory, objects, prefixes, since=since)
            self.take_remote_changes()
            self._remember_listing(directory.prefix, (objects, prefixes), since)
        finally:
            self.ns.listing_ended()

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
        if names and self.kernel_forget_name is not None and self.nursery is not None:
            self.nursery.start_soon(self._forget_kernel_names, names)

    async def _fetch_pinned(self, key: str) -> None:
        """A pinned file changed in the store: bring its new version (best effort: the
        next `fusestore pin` of it tries again)."""
        from .pinning import fetch_whole

        node = self.ns.node_at(key)
        if node is None or node.kind is not Kind.FILE or node.pending:
            return
        try:
            await fetch_whole(self, node)
        except (StoreError, OSError) as exc:
            log.info("%s: the new version of this pinned file was not fetched: %s", node.path(), exc)

    async def _forget_kernel_names(
        self, names: list[tuple[int, str]], done: trio.Event | None = None
    ) -> None:
        forget = self.kernel_forget_name
        assert forget is not None
        for parent_ino, name in names:
            await trio.to_thread.run_sync(forget, parent_ino, name, limiter=self._kernel_limiter)
        if done is not None:
            done.set()

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

    def _remember_listing(self, prefix: str, listing: tuple[list[ObjectInfo], list[str]], since: int) -> None:
        """Keep a listing for the TTL (the next mount too may use it), unless the flusher
        changed the store while it was taken: it may predate that change. Listings of a
        linked store are not kept: the next mount may link another store there, or none."""
        if self.ns.store_seq == since and not self.in_link(prefix.rstrip("/")):
            self.index.set(("listing", prefix), listing, expire=self.settings.metadata_ttl)
            self._listings_dropped.discard(prefix)

    def _list_all(self, prefix: str) -> tuple[list[ObjectInfo], list[str]]:
        """Every entry directly below `prefix` (blocking; runs in a worker thread)."""
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        token: str | None = None
        while True:
            page = self.store.list(prefix, "/", token)
            objects.extend(page.objects)
            prefixes.extend(page.prefixes)
            if page.next_token is None:
                return objects, prefixes
            token = page.next_token

    async def child(self, parent: Node, name: str) -> Node | None:
        children = await self.children(parent)
        return children.get(name)

    async def _checked_child(self, parent: Node, name: str) -> Node | None:
        """`child`, revalidated the cheaper way once the TTL has passed: a directory of
        more than one listing page is not listed again for a lookup of a file it is known
        to hold; that file alone is revalidated with a HEAD."""
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
            self._take_head(node, info)
        return children.get(name)

    def _take_head(self, node: Node, info: ObjectInfo, may_replace: bool = True) -> None:
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

    def _head_due(self, node: Node) -> bool:
        """Whether a lookup or getattr of `node` reads its metadata first (one HEAD): with
        `exact_attrs` whenever a listing did not carry it, and always for an object small
        enough to be a symlink, so that a path through one resolves (see docs/semantics.md)."""
        if not node.attrs_guessed:
            return False
        return self.settings.exact_attrs or (node.kind is Kind.FILE and node.size <= SYMLINK_MAX)

    def attr_timeout(self, node: Node) -> float:
        """How long the kernel may keep `node`'s attributes: with `exact_attrs`, not at
        all while they are guessed (a directory listing hands the kernel each entry with
        its attributes, without the HEAD its lookup sends)."""
        return 0.0 if node.attrs_guessed and self.settings.exact_attrs else self.settings.metadata_ttl

    async def lookup(self, parent_ino: int, name: str) -> Node | None:
        """The entry `name` (its lookup count raised), or None: it does not exist."""
        parent = self.directory(parent_ino)
        if name == ".":
            node: Node | None = parent
        elif name == "..":
            node = parent.parent or parent
        else:
            if len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
                raise fs_error(errno.ENAMETOOLONG)
            node = await self._checked_child(parent, name)
        if node is not None and self._head_due(node):
            await self.head_attrs(node)
            if not node.attached:  # the HEAD found another client's version, or a symlink
                node = (parent.children or {}).get(name)
        if node is None:
            return None
        node.lookups += 1
        return node

    async def attrs_for_change(self, node: Node) -> None:
        """Before `node`'s attributes or data change here: read what its object holds,
        since the upload writes every attribute, and one never read would be replaced by
        the mount's defaults. Afterwards the node's attributes are the ones to write, even
        if the store did not answer. Should the HEAD find another client's version, the
        change goes on from the one it was based on, and its upload meets the conflict rule."""
        if node.attrs_guessed:
            await self.head_attrs(node, may_replace=False)
            node.attrs_guessed = False
            self._check_kind(node)

    def _check_kind(self, node: Node) -> None:
        """ESTALE for a request on `node` once a HEAD found its object to be of another
        type (a symlink listed as a file): the kernel then looks the name up again and
        finds the new node (open, stat, exec and chmod do; see `_take_head`)."""
        if not node.attached and node.parent is not None and node.parent.children is not None:
            fresh = node.parent.children.get(node.name)
            if fresh is not None and fresh.kind is not node.kind:
                raise fs_error(errno.ESTALE, f"{fresh.path()} is a {fresh.kind.value}")

    async def head_attrs(self, node: Node, *, may_replace: bool = True) -> None:
        """Read the POSIX attributes a listing did not carry (one HEAD, remembered).

        Best effort: while the store does not answer, the guessed attributes stay (and
        are asked for again later); no getattr fails or waits long for them. Another
        client's version found meanwhile replaces `node` (see `_take_head`) where
        `may_replace`."""
        if not self.calls.online:
            return
        try:
            await self._head_attrs(node, may_replace)
        except StoreUnavailable as exc:
            log.info("%s: attributes not read: %s", node.path(), exc)

    async def _head_attrs(self, node: Node, may_replace: bool) -> None:
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
            self._take_head(node, info, may_replace)
        node.attrs_guessed = False

    async def getattr(self, ino: int) -> Node:
        node = self.node(ino)
        if self._head_due(node):
            await self.head_attrs(node)
            self._check_kind(node)
        return node

    def forget(self, ino: int, count: int) -> None:
        node = self.ns.nodes.get(ino)
        if node is None or ino == 1:
            return
        node.lookups = max(0, node.lookups - count)
        self._maybe_free(node)

    def _maybe_free(self, node: Node) -> None:
        if self.ns.maybe_free(node):
            content = node.content
            if content is not None and not node.attached:
                if content.dirty:
                    self._discard_unlinked(content)
                else:  # a clean copy: it stays cached, and is no longer the removed file's
                    self.journal.drop_unlinked(content.id)
            node.content = None

    async def opendir(self, ino: int) -> int:
        directory = self.directory(ino)
        children = await self.children(directory)
        return self._add_handle(DirHandle(directory, sorted(children.items())))

    def readdir(self, fh: int, start: int) -> list[tuple[str, Node, int]]:
        """Entries from position `start`; each comes with the cookie of the next one."""
        handle = self._handle(fh)
        if not isinstance(handle, DirHandle):
            raise fs_error(errno.EBADF)
        return [(name, node, i + 1) for i, (name, node) in enumerate(handle.entries) if i >= start]

    def releasedir(self, fh: int) -> None:
        self._handles.pop(fh, None)

    def _add_handle(self, handle: FileHandle | DirHandle) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = handle
        return fh

    def _handle(self, fh: int) -> FileHandle | DirHandle:
        try:
            return self._handles[fh]
        except KeyError:
            raise fs_error(errno.EBADF) from None

    def file_handle(self, fh: int) -> FileHandle:
        handle = self._handle(fh)
        if not isinstance(handle, FileHandle):
            raise fs_error(errno.EBADF)
        return handle

    # -- creating and removing ----------------------------------------------------------

    async def _new_entry(self, parent_ino: int, name: str, *, directory: bool = False) -> Node:
        parent = self.directory(parent_ino)
        self.check_name(name)
        key = parent.prefix + name
        self._writable(key)
        # KeyTooLong before anything changes (a directory's marker key is one byte longer).
        self.store.keys.full(key + ("/" if directory else ""))
        if await self.child(parent, name) is not None:
            raise fs_error(errno.EEXIST)
        return parent

    def _placed(self, node: Node) -> None:
        """A new node now names its key: nothing pending may delete that key any more."""
        if node.is_dir:
            # A file deleted at the same name must still go: only its marker is reclaimed.
            self.reclaim_marker(node)
        else:
            self._take_key(node)

    def _take_key(self, node: Node) -> None:
        """A file (or a marker to move) now names its key: a delete pending there becomes
        the overwrite of its upload."""
        key = node.object_key
        node.overwrites = key if self.ns.drop_delete(key) else None

    def _leave_key(self, node: Node, key: str) -> None:
        """A file (or a marker to move) leaves `key` before its upload replaced the older
        object there: delete that."""
        if node.overwrites == key and node.source_key != key:
            self.ns.add_delete(key)
            self.flusher.wake()
        node.overwrites = None

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

    def reclaim_marker(self, directory: Node) -> None:
        """A marker still to delete at `directory`'s prefix now belongs to `directory`.

        The store still holds it (with an older directory's attributes), so the directory
        owns it: rewritten while wanted, deleted once not.
        """
        prefix = directory.prefix
        if prefix in self.ns.deletes:
            self.ns.drop_delete(prefix)
            directory.marker_key = prefix
            directory.meta_dirty = True
            directory.version += 1

    async def mkdir(self, parent_ino: int, name: str, mode: int, uid: int, gid: int) -> Node:
        parent = await self._new_entry(parent_ino, name, directory=True)
        perm = stat.S_IMODE(mode)
        node = self.ns.new_node(Kind.DIR, name, parent, perm, uid, gid, now_ns())
        node.listed_at = time.monotonic()  # nothing below it yet: complete
        node.explicit = (perm, uid, gid) != (self.defaults.dir_perm, self.defaults.uid, self.defaults.gid)
        with self.journal.batch():  # the marker it takes over and its record, at once
            self.ns.attach(parent, name, node)
            self._placed(node)
            node.lookups += 1
            self.record(node)
            self.flusher.schedule(node)
            self.dir_changed(parent)
        return node

    async def create(
        self, parent_ino: int, name: str, mode: int, flags: int, uid: int, gid: int
    ) -> tuple[int, Node]:
        parent = await self._new_entry(parent_ino, name)
        node = self.ns.new_node(Kind.FILE, name, parent, stat.S_IMODE(mode), uid, gid, now_ns())
        node.content = self.contents.new()
        self.contents.make_dirty(node.content)
        # The delete of an older object at its key it drops and its record: one transaction,
        # or a kill in between would bring the older object back.
        with self.journal.batch():
            self.ns.attach(parent, name, node)
            self._placed(node)
            node.lookups += 1
            self.changed(node, data=True)
            self.dir_changed(parent)
        return self._open_handle(node, flags), node

    async def symlink(self, parent_ino: int, name: str, target: str, uid: int, gid: int) -> Node:
        parent = await self._new_entry(parent_ino, name)
        node = self.ns.new_node(Kind.SYMLINK, name, parent, 0o777, uid, gid, now_ns())
        node.target = target
        node.size = len(target.encode("utf-8", "surrogateescape"))
        with self.journal.batch():  # as for create
            self.ns.attach(parent, name, node)
            self._placed(node)
            node.lookups += 1
            self.changed(node, data=True)
            self.dir_changed(parent)
        return node

    async def readlink(self, ino: int) -> str:
        node = self.node(ino)
        if node.kind is not Kind.SYMLINK:
            raise fs_error(errno.EINVAL)
        if not node.target and node.remote_key and node.etag and node.size:
            body = await self.calls.ask(self.store.get_range, node.remote_key, 0, None, node.etag)
            node.target = body.decode("utf-8", "surrogateescape")
        return node.target

    async def unlink(self, parent_ino: int, name: str) -> None:
        parent = self.directory(parent_ino)
        node = await self.child(parent, name)
        if node is None:
            raise fs_error(errno.ENOENT)
        if node.is_dir:
            raise fs_error(errno.EISDIR)
        self._writable(node)
        self._remove(node)
        self.dir_changed(parent)

    def _remove(self, node: Node) -> None:
        """Unlink a file or symlink: gone from the tree now, from the store soon."""
        with self.journal.batch():  # its record goes and its key's delete comes at once
            self._remove_now(node)

    def _remove_now(self, node: Node) -> None:
        self._leave_key(node, node.key)
        self.ns.detach(node)
        self.record(node)  # drops its journal record: nothing of it is to be uploaded
        self.flusher.forget(node)
        if node.opens:
            self.ns.track_move(node)  # open handles may still read blocks from its object
            if node.content is not None:
                # No record names its data now, whatever is written to it later through
                # its descriptors: the journal says it holds no lost change.
                self.journal.add_unlinked(node.content.id)
        else:
            self._release_object(node)
            content = node.content
            if content is not None and content.dirty:
                # Nothing can read it any more (no handle, no name): its space comes back
                # now, not when the kernel forgets the inode (rm after ENOSPC must free room).
                self._discard_unlinked(content)
                node.content = None
                node.size = 0
        self._maybe_free(node)

    def _release_object(self, node: Node) -> None:
        """`node` no longer needs its object: delete it unless something else will be written there."""
        key = self.ns.release_remote(node)
        if key is not None:
            self.object_unneeded(key)

    def object_unneeded(self, key: str) -> None:
        """No node needs the object at `key` any more. It is deleted, unless a file named
        `key` is still to be uploaded: then that upload replaces it, and should the file
        leave the key first, the file's leaving deletes it (`_leave_key`)."""
        other = self.ns.node_at(key)
        if other is None or other.is_dir:
            self.ns.add_delete(key)
            self.flusher.wake()
        elif other.remote_key != key:
            other.overwrites = key
            self.record_if_room(other)

    async def rmdir(self, parent_ino: int, name: str) -> None:
        parent = self.directory(parent_ino)
        node = await self.child(parent, name)
        if node is None:
            raise fs_error(errno.ENOENT)
        if not node.is_dir:
            raise fs_error(errno.ENOTDIR)
        self._writable(node)
        await self._check_empty(node)
        self._leave_key(node, node.prefix)
        self.ns.detach(node)
        self._drop_marker(node)
        self.record(node)
        self.flusher.forget(node)
        self._maybe_free(node)
        self.dir_changed(parent)

    def _drop_marker(self, directory: Node) -> None:
        """A removed directory's marker goes (also one it was still to be moved from)."""
        marker = self.ns.release_remote(directory)
        if marker is not None:
            self.ns.add_delete(marker)
            self.flusher.wake()

    async def _check_empty(self, directory: Node) -> None:
        """ENOTEMPTY unless the directory holds nothing, in the store included."""
        await self.refresh(directory)
        if directory.children or self.ns.hidden.get(directory.prefix):
            raise fs_error(errno.ENOTEMPTY)

    # -- rename -------------------------------------------------------------------------

    async def rename(self, old_ino: int, old_name: str, new_ino: int, new_name: str, flags: int) -> None:
        RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
        if flags & RENAME_EXCHANGE:
            raise fs_error(errno.EINVAL, "RENAME_EXCHANGE is not supported")
        old_parent, new_parent = self.directory(old_ino), self.directory(new_ino)
        self.check_name(new_name)
        node = await self.child(old_parent, old_name)
        if node is None:
            raise fs_error(errno.ENOENT)
        self._check_link_rename(node.key, new_parent.prefix + new_name)
        if node.is_ancestor_of(new_parent):
            raise fs_error(errno.EINVAL, "cannot move a directory into itself")
        target = await self.child(new_parent, new_name)
        if target is node:
            return
        if target is not None:
            if flags & RENAME_NOREPLACE:
                raise fs_error(errno.EEXIST)
            if node.is_dir and not target.is_dir:
                raise fs_error(errno.ENOTDIR)
            if target.is_dir and not node.is_dir:
                raise fs_error(errno.EISDIR)
            if target.is_dir:
                await self._check_empty(target)
        self.store.keys.full(new_parent.prefix + new_name + ("/" if node.is_dir else ""))
        if node.is_dir:
            await self._load_tree(node)
        # Everything below was awaited; check again that the names still mean the same.
        if old_parent.children is None or old_parent.children.get(old_name) is not node:
            raise fs_error(errno.ENOENT)
        assert new_parent.children is not None
        if new_parent.children.get(new_name) is not target:
            raise fs_error(errno.EAGAIN, "the target changed during the rename")

        # All of the change in one transaction: a kill leaves all of it or none (the records
        # of the moved nodes, the deletes they leave and take, the target's removal).
        with self.journal.batch():
            self._rename_now(node, target, old_parent, new_parent, new_name)
        self.flusher.wake()

    def _rename_now(
        self, node: Node, target: Node | None, old_parent: Node, new_parent: Node, new_name: str
    ) -> None:
        if target is not None:
            if target.is_dir:
                self._leave_key(target, target.prefix)
                self.ns.detach(target)
                self._drop_marker(target)
                self.record(target)
                self.flusher.forget(target)
                self._maybe_free(target)
            else:
                # Its key is about to be named by `node` again, which drops that delete.
                self._remove(target)
        old_keys = {moved.ino: moved.object_key for moved in node.walk()}
        self.ns.detach(node)
        self.ns.attach(new_parent, new_name, node)
        for moved in node.walk():
            self._leave_key(moved, old_keys[moved.ino])
            if moved.is_dir and (moved.marker_key is None or moved.meta_dirty):
                # No marker to move, or one to write anew with the attributes set here.
                if moved.marker_key != moved.prefix:
                    self._drop_marker(moved)
                self.reclaim_marker(moved)
            else:
                # A file's object, and a kept marker, move by a copy with their own
                # metadata (see `Flusher._reconcile_dir`): no attribute is read first, and
                # none this mount never read is replaced by its defaults.
                self._take_key(moved)
            self.ns.track_move(moved)
            if moved.is_dir:
                self.record(moved)
                self.flusher.schedule(moved)
            else:
                self.changed(moved)
        node.ctime_ns = now_ns()
        self.dir_changed(old_parent)
        self.dir_changed(new_parent)

    async def _load_tree(self, directory: Node) -> None:
        """List everything below a directory (one recursive listing), so a rename moves it all."""
        prefix = directory.prefix
        since = self.ns.listing_started()
        try:
            objects: list[ObjectInfo] = await self.calls.ask(lambda: list(self.store.iter_objects(prefix)))
        finally:
            self.ns.listing_ended()
        if directory.prefix != prefix:
            raise fs_error(errno.EAGAIN, "the directory moved during the rename")
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
            self._remember_listing(here, (objs, sorted(subs)), since)
        self.take_remote_changes()

    # -- attributes ---------------------------------------------------------------------

    def _check_link_rename(self, old_key: str, new_key: str) -> None:
        """A rename within a linked store is EROFS; into or out of one, or of a directory
        holding one, EXDEV (as between two file systems: `mv` then copies)."""
        if self.links is None or not self.links.links:
            return
        old_in, new_in = self.in_link(old_key), self.in_link(new_key)
        if old_in and new_in:
            raise fs_error(errno.EROFS, "renames inside a read-only linked store")
        if old_in or new_in or any(path.startswith(old_key + "/") for path in self.links.links):
            raise fs_error(errno.EXDEV, "a linked store is another file system")

    async def setattr(
        self,
        ino: int,
        *,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        size: int | None = None,
        mtime_ns: int | None = None,
        fh: int | None = None,
    ) -> Node:
        node = self.node(ino)
        self._writable(node)
        await self.attrs_for_change(node)
        if size is not None:
            if node.is_dir:
                raise fs_error(errno.EISDIR)
            await self.truncate(node, size, fh)
        meta = False
        if mode is not None:
            node.perm = stat.S_IMODE(mode)
            meta = True
        if uid is not None:
            node.uid = uid
            meta = True
        if gid is not None:
            node.gid = gid
            meta = True
        if mtime_ns is not None:
            node.mtime_ns = mtime_ns
            meta = True
        if meta:
            if node.is_dir:
                node.explicit = True
                node.meta_dirty = True
                node.version += 1  # a marker upload in flight carries the older attributes
                node.ctime_ns = now_ns()
                self.drop_listing(node.prefix)
                self.record(node)
                self.flusher.schedule(node)
            elif node.attached:
                # The kernel sends a new mtime with every write it flushes; for a file
                # journaled already, the record waits for its close, fsync or the next
                # persist (within 2 s) rather than costing a transaction each time.
                mtime_only = mode is None and uid is None and gid is None and size is None
                self.changed(node, meta=True, journal=not mtime_only)
        return node

    async def truncate(self, node: Node, size: int, fh: int | None = None) -> None:
        handle = self._handles.get(fh) if fh is not None else None
        content = handle.content if isinstance(handle, FileHandle) and handle.content else None
        content = content or await self.content_for_write(node)
        if not content.dirty:
            self._make_dirty(content)
            node.content = content
        boundary = content.boundary_block(min(size, content.size))
        if boundary is not None:
            await self.fetch(content, *boundary)
        content.truncate(size)
        self._unsynced.add(content)
        self.flusher.written(content, size, math.inf)
        node.size = size
        node.mtime_ns = now_ns()
        if node.attached:
            self.changed(node, data=True)

    # -- open files ---------------------------------------------------------------------

    def _open_handle(self, node: Node, flags: int) -> int:
        writable = flags & os.O_ACCMODE != os.O_RDONLY
        content = node.content
        if content is not None:
            content.pins += 1
        node.opens += 1
        node.writers += writable
        return self._add_handle(FileHandle(node, content, writable, generation=node.generation))

    async def open(self, ino: int, flags: int) -> tuple[int, bool]:
        """A file handle, and whether the kernel may keep the pages it cached (it may,
        but after a truncation: another client's version comes as a new inode)."""
        node = self.node(ino)
        if node.is_dir:
            raise fs_error(errno.EISDIR)
        if node.kind is Kind.SYMLINK:
            raise fs_error(errno.ELOOP)
        keep = True
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            self._writable(node)
            await self.attrs_for_change(node)
        elif self._head_due(node):
            await self.head_attrs(node)  # it may be a symlink listed as a file: to follow, not open
            self._check_kind(node)
        if node.content is None:
            node.content = self._clean_content(node)
        fh = self._open_handle(node, flags)
        if flags & os.O_TRUNC and node.size:
            await self.truncate(node, 0, fh)
            keep = False
        return fh, keep

    def _clean_content(self, node: Node) -> Content:
        if node.remote_key is None or node.etag is None:
            content = self.contents.new()
            self.contents.make_dirty(content)
            return content
        return self.contents.clean_for(node.remote_key, node.etag, node.remote_size)

    async def content_for_write(self, node: Node) -> Content:
        """The node's content, made dirty (it then belongs to the node, not the index)."""
        await self.wait_for_dirty_space(node)
        content = node.content
        if content is None:
            content = node.content = self._clean_content(node)
        if not content.dirty:
            self._make_dirty(content)
        return content

    def _make_dirty(self, content: Content) -> None:
        """`content` is about to hold the node's changes. A cached copy leaves the index
        now, but a record names it only once the change is journaled (after a fetch's
        awaits, or up to 2 s later): meanwhile the journal notes that it holds no change
        to keep, as for a file removed while open, so a restart after a kill deletes it
        rather than take it for lost changes (a record naming it wins over the note)."""
        if content.indexed:
            try:
                self.journal.add_unlinked(content.id)
            except OSError as exc:  # a full disk: at worst a restart keeps it in lost+found
                log.info("%s: not noted in the journal: %s", content.id, exc)
        self.contents.make_dirty(content)

    def dirty_bytes(self) -> int:
        """Changed data not yet in the store (parts of staged uploads are)."""
        return self.contents.dirty_bytes - self.flusher.staged_bytes()

    async def wait_for_dirty_space(self, node: Node) -> None:
        """Backpressure: wait while changed data not yet in the store exceeds the limit.

        A writer's own file is let through by up to one chunk (`STAGE_CHUNK`), so that
        it can always finish: meanwhile the flusher uploads other files and sends the full
        parts of big files still open ahead as a staged upload, which takes them off the
        dirty bytes. Dirty data so stays below the limit plus a chunk per writer.
        """
        while True:
            content = node.content
            own = 0
            if content is not None and content.dirty:
                staged = self.flusher.staged.get(content)
                own = content.size - (staged.staged_bytes if staged is not None else 0)
            if self.dirty_bytes() - min(own, STAGE_CHUNK) <= self.settings.dirty_limit:
                return
            if not self.space_wanted:
                log.debug(
                    "dirty data at the limit: %.1f MiB not in the store (limit %.1f MiB); writers wait",
                    self.dirty_bytes() / MiB,
                    self.settings.dirty_limit / MiB,
                )
            self.space_wanted += 1
            try:
                self.flusher.hurry()
                event = self.dirty_space = trio.Event() if self.dirty_space.is_set() else self.dirty_space
                await event.wait()
            finally:
                self.space_wanted -= 1

    def dirty_space_freed(self) -> None:
        self.dirty_space.set()

    async def read(self, fh: int, offset: int, size: int) -> bytes:
        handle = self.file_handle(fh)
        node = handle.node
        content = handle.content
        if content is None:
            content = handle.content = node.content or self._clean_content(node)
            content.pins += 1
        if offset >= content.size:
            return b""
        if offset == handle.next_offset:
            handle.window = min(handle.window * 2, max(1, self.settings.read_ahead_max // BLOCK_SIZE))
        else:
            handle.window = 1
        handle.next_offset = offset + size
        first = offset // BLOCK_SIZE
        last = (min(offset + size, content.size) - 1) // BLOCK_SIZE
        try:
            await self.fetcher.ensure(content, first, last - first + 1, ahead=handle.window)
        except (NotFound, PreconditionFailed):
            # The version this handle opened is no longer in the store, and what it wants
            # of it is not cached: ESTALE rather than bytes of two versions.
            if content.source is not None and content.source == (node.remote_key, node.etag):
                self.object_changed(node)
            raise PreconditionFailed(
                f"{node.path()}: changed or removed in the store since it was opened here"
            ) from None
        if handle.window > 1:
            # Keep the stream a window ahead of a sequential reader.
            self.fetcher.prefetch(content, last + 1, handle.window)
        content.atime = time.time()
        return content.read(offset, size)

    async def fetch(self, content: Content, first: int, count: int) -> None:
        """Return once blocks [first, first+count) are in the cache (brought from the store)."""
        await self.fetcher.ensure(content, first, count)

    async def fetch_all(self, content: Content) -> None:
        for first, count in list(content.missing_runs(0, content.size)):
            await self.fetch(content, first, count)

    async def fetch_base(self, node: Node, content: Content) -> None:
        """Before `node`'s changed `content` goes up: bring the bytes of the version it
        changed that the cache lacks.

        Should another client have replaced or deleted that version meanwhile, the bytes
        never cached here cannot be had any more: they stay zeros, said in the log, and the
        change goes up under the usual rules (next to their version as a conflict copy, or
        at the key again after a delete). Everything written here is kept."""
        try:
            await self.fetch_all(content)
        except (NotFound, PreconditionFailed) as exc:
            lost = [
                (first * BLOCK_SIZE, min(content.size, (first + count) * BLOCK_SIZE))
                for first, count in content.missing_runs(0, content.size)
            ]
            content.present |= content.base_mask()
            log.error(
                "%s: the version it changed is no longer in the store (%s); bytes %s of it were "
                "never cached here and are zeros in what goes up",
                node.path(),
                exc,
                ", ".join(f"{start}-{end}" for start, end in lost),
            )
            self.record_if_room(node)

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        handle = self.file_handle(fh)
        node = handle.node
        end = offset + len(data)
        if data and not lostwrites.writable_part(handle, offset, data):
            raise fs_error(errno.ENOSPC, "an earlier write could not be stored")
        content = await self.content_for_write(node)
        if handle.content is not content:
            if handle.content is not None:
                handle.content.pins -= 1
            content.pins += 1
            handle.content = content
        # A block the write covers only partly must hold the store's bytes first, or the
        # rest of it would read as zeros once the write marks it present.
        for block in sorted({offset // BLOCK_SIZE, max(offset, end - 1) // BLOCK_SIZE}):
            low, high = block * BLOCK_SIZE, min((block + 1) * BLOCK_SIZE, content.base_size)
            if low < high and not content.present >> block & 1 and not (offset <= low and end >= high):
                await self.fetcher.ensure(content, block, 1, ahead=WRITE_FETCH_AHEAD)
        base = content.base_mask()
        first_present = content.present & base
        written, error = await self._store(handle, content, offset, data)
        if written:
            self._unsynced.add(content)
            self.flusher.written(content, offset, offset + written)
            node.size = content.size
            node.mtime_ns = now_ns()
            if node.attached:
                # The journal learns at once of blocks written over the store's (a crash
                # must not refetch over them); a restart finds the rest in the cache file.
                fetch_changed = first_present != content.present & base
                self.changed(node, data=True, journal=not node.data_dirty or fetch_changed)
        if error is not None:
            await self._lost_write(handle, content, offset + written, end, error)
            raise error
        if written < end - offset:
            raise fs_error(errno.ENOSPC, "an earlier write could not be stored")
        return written

    async def _store(
        self, handle: FileHandle, content: Content, offset: int, data: bytes
    ) -> tuple[int, OSError | None]:
        """Write `data` into `content`, clean data giving way when the disk is short. The
        disk may still refuse what the estimate said would fit (another program took it):
        then evict once more and try again, once. Returns how many bytes were stored (fewer
        when a loss meanwhile put the rest past what `handle` may write), and the error
        that stopped the rest (None: no error)."""
        view = memoryview(data)
        stored = 0
        retried = False
        while stored < len(view) and lostwrites.writable_part(handle, offset + stored, view[stored:]):
            try:
                await self._wait_for_disk_room(len(view) - stored)
            except OSError as exc:
                return stored, exc
            # Nothing yields from here to the write: while this one waited, another write
            # of the file may have failed and cut it (this one may not land past the cut),
            # or an upload may have made the content clean.
            part = lostwrites.writable_part(handle, offset + stored, view[stored:])
            if not part:
                break
            if not content.dirty:
                self._make_dirty(content)
            try:
                stored += content.write(offset + stored, part)
            except OSError as exc:
                if exc.errno != errno.ENOSPC or retried:
                    return stored, exc
                retried = True
                await self.evict(len(view) - stored)
        return stored, None

    async def _lost_write(
        self, handle: FileHandle, content: Content, start: int, end: int, error: OSError
    ) -> None:
        """Bytes [start, end) written through `handle` could not be stored: settle the
        loss (see `lostwrites`), and have the kernel drop the name before the error
        reaches the writer's fsync or close, unless that takes long (the kernel could be
        waiting for this very request). Yields."""
        node = handle.node
        handles = [h for h in self._handles.values() if isinstance(h, FileHandle) and h.node is node]
        loss = lostwrites.settle(handle, handles, content, start, end, error)
        if loss.cut:
            self._unsynced.add(content)
            self.flusher.written(content, node.size, math.inf)
            if node.attached:
                # Recorded at once: a record of the longer file (a persist's, fsync's size)
                # would otherwise stand, and a crash now would leave a cache file shorter
                # than its record, which a restart sets aside as damaged.
                self.changed(node, data=True, journal=False)
                self.record_if_room(node)
        parent = node.parent
        if not (loss.new_inode and node.attached and parent is not None and self.kernel_forget_name):
            return
        if self.nursery is not None:  # None: not serving, no kernel to tell
            forgotten = trio.Event()
            self.nursery.start_soon(self._forget_kernel_names, [(parent.ino, node.name)], forgotten)
            with trio.move_on_after(KERNEL_WAIT):
                await forgotten.wait()

    async def evict(self, size: int = 0) -> None:
        """Evict clean data, least recently used first, until the cache is back under
        `--cache-size` and `size` more bytes fit on the cache disk above its floor of
        free space (or nothing clean is left to evict); measures the free space before and
        after. The eviction pass (every 2 s, with `size` 0) and writes short of room both
        come here. Yields while the files are removed (in a worker thread): evictions
        take turns, each seeing the room the one before made."""
        async with self._making_room:
            self.contents.room.measure()
            victims = self.contents.evict_candidates(size)
            if victims:
                await trio.to_thread.run_sync(ContentStore.remove_files, victims, limiter=self._disk_limiter)
                self.contents.forget(victims)
                self.contents.room.measure()

    async def _wait_for_disk_room(self, size: int) -> None:
        """ENOSPC for data that would eat into the room kept for the journal and index:
        with a full disk even an unlink could not be journaled, and nothing could free it.
        Clean data gives way first; then, while unlinked files still open hold dirty
        data, wait up to `ROOM_WAIT` for their release. Yields only when the disk is full."""
        deadline = trio.current_time() + ROOM_WAIT
        if not self._disk_has_room(size):
            await self.evict(size)
        while not self._disk_has_room(size):
            if trio.current_time() >= deadline or not self._unlinked_data_open():
                kept = f"keeping {room.DISK_RESERVE // MiB} MiB for the journal"
                raise fs_error(errno.ENOSPC, f"the cache disk is full ({kept})")
            with trio.move_on_at(deadline):
                await self._room_freed.wait()

    def _disk_has_room(self, size: int) -> bool:
        return self.contents.room.has_room(size)

    def _unlinked_data_open(self) -> bool:
        return any(
            isinstance(handle, FileHandle)
            and not handle.node.attached
            and handle.node.content is not None
            and handle.node.content.dirty
            for handle in self._handles.values()
        )

    def _discard_unlinked(self, content: Content) -> None:
        """Drop the dirty data of a file nobody can reach any more, and wake writers
        waiting for the room."""
        self.contents.discard(content)
        self.journal.drop_unlinked(content.id)
        self._room_freed.set()
        self._room_freed = trio.Event()

    @staticmethod
    def _writes_settled(node: Node) -> None:
        """A flush, fsync or close: the kernel has sent every page it held of the file
        first, and the writer is told it is kept (see `Content.settle`)."""
        if node.content is not None:
            node.content.settle()

    def flush(self, fh: int) -> None:
        handle = self.file_handle(fh)
        self._writes_settled(handle.node)
        if handle.node.attached and handle.node.pending:
            self.flusher.schedule(handle.node)
            self.record_if_room(handle.node, timestamps_later=True)

    async def fsync(self, fh: int) -> None:
        """Return once the file's changes survive a crash of this machine (`--fsync=local`)
        or are in the store (`--fsync=remote`)."""
        node = self.file_handle(fh).node
        self._writes_settled(node)
        if node.attached:
            self.record(node, timestamps_later=True, size_now=True)
        await self.persist(essential_only=True)
        if self.settings.fsync == "remote":
            await self.flusher.wait_uploaded(node)

    # -- durability ---------------------------------------------------------------------

    async def persist(self, essential_only: bool = False) -> None:
        """Make all pending work so far survive a power cut: fsync the cache files written
        since the last call, their directory and the journal (in a worker thread).
        `essential_only` (fsync's): new timestamps alone may wait for the next full call."""
        self._record_unjournaled(timestamps_later=essential_only)
        paths = [content.path for content in self._unsynced]
        new_names = any(content.new_file for content in self._unsynced)
        for content in self._unsynced:
            content.new_file = False
        self._unsynced.clear()
        if paths or self.journal.needs_sync(hints=not essential_only) or self.contents.index_needs_sync():
            await trio.to_thread.run_sync(
                self._fsync_files, paths, new_names, not essential_only, limiter=self._disk_limiter
            )

    def _record_unjournaled(self, *, timestamps_later: bool) -> None:
        """Write the records left to a persist in one transaction: after a burst of new
        files, hundreds of them differ from the last only in size and mtime. Raises
        OSError(ENOSPC) while the disk is full, and then has written none of them."""
        nodes = list(self._unjournaled)
        if not nodes:
            return
        before = [(node, node.jid, node.journaled) for node in nodes]
        try:
            with self.journal.batch():
                for node in nodes:
                    self.record(node, timestamps_later=timestamps_later)
        except BaseException:
            for node, jid, journaled in before:  # rolled back: as if none was written
                node.jid, node.journaled = jid, journaled
                self._unjournaled.add(node)
            raise

    def _fsync_files(self, paths: list[Path], new_names: bool, hints: bool) -> None:
        """Blocking: runs in a worker thread. `hints`: see `Journal.save_node`."""
        for first in range(0, len(paths), FSYNC_BATCH):
            self._fsync_batch(paths[first : first + FSYNC_BATCH])
        if new_names:
            self.contents.sync_names()
        self.contents.sync_index()  # first: see `ContentStore.sync_index`
        self.journal.sync(hints=hints)

    @staticmethod
    def _fsync_batch(paths: list[Path]) -> None:
        fds = []
        try:
            for path in paths:
                try:
                    fds.append(os.open(path, os.O_RDONLY))
                except FileNotFoundError:
                    continue  # discarded meanwhile: nothing to keep
            if len(fds) > 1:
                for fd in fds:
                    start_writeout(fd)  # then one journal commit covers most of them
            for fd in fds:
                os.fdatasync(fd)  # the data and the size; the rest is the journal's
        finally:
            for fd in fds:
                os.close(fd)

    async def _keep_spare_files(self) -> None:
        """Make empty cache files ahead for new contents (see ContentStore.new)."""
        while True:
            wanted = self.contents.spares_wanted()
            if wanted:
                try:
                    spares = await trio.to_thread.run_sync(
                        self.contents.make_spares, wanted, limiter=self._disk_limiter
                    )
                except OSError as exc:  # no inode left? New contents make their own meanwhile.
                    log.debug("cannot make spare cache files: %s", exc)
                    await trio.sleep(PERSIST_INTERVAL)
                    continue
                self.contents.add_spares(spares)
            await self._spares_low.wait()
            self._spares_low = trio.Event()

    async def _persist_loop(self) -> None:
        while True:
            await trio.sleep(PERSIST_INTERVAL)
            try:
                await self.persist()
            except OSError as exc:
                log.error("cannot make the cache durable: %s", exc)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The mount's background work (long-lived): uploads, watching the store while it
        is down, and making the cache durable every few seconds."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.flusher.run)
            await nursery.start(self.calls.watch)
            nursery.start_soon(self._persist_loop)
            nursery.start_soon(self._keep_spare_files)
            # object data streams, and the kernel hears of remote changes, in the background
            self.fetcher.nursery = self.nursery = nursery
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self.fetcher.nursery = self.nursery = None

    async def adopt_remote_version(
        self, node: Node, info: ObjectInfo, copy_key: str, copy_etag: str, copy_size: int
    ) -> None:
        """After a conflict: `node`, whose data is now the object `copy_key` (its content
        already registered clean as that object's), moves to that name (the conflict
        copy), and its old name shows the store's version `info` as a new node.

        A new node (a new inode number), because with the writeback cache the kernel
        trusts its own size of a cached inode over ours: only a new inode shows the other
        version's size. Descriptors open on `node` go on with it, now the conflict copy:
        they read what they read, and what they write goes up to the copy. The kernel is
        told to drop the old name (in a worker thread: it may block).

        Worker thread: the kernel's forgetting of the old name."""
        parent, name = node.parent, node.name
        assert parent is not None and parent.children is not None
        self.flusher.forget(node)
        self.ns.release_remote(node)  # the object at the key is theirs now, not ours to delete
        self.ns.detach(node)
        copy_name = copy_key.rpartition("/")[2]
        self.ns.attach(parent, copy_name, node)
        self.ns.conflict_copies.setdefault(parent.prefix, set()).add(copy_name)
        node.remote_key, node.etag, node.remote_size = copy_key, copy_etag, copy_size
        node.data_dirty = node.meta_dirty = False
        node.overwrites = None
        node.version += 1
        self.record(node)  # drops its journal record: its data is in the store
        fresh = self.ns.node_from_object(parent, name, info)
        self.ns.attach(parent, name, fresh)
        self.ns.store_changed(fresh)
        self.forget_listing(info.key)
        self.forget_listing(copy_key)
        if self.kernel_forget_name is not None:
            await trio.to_thread.run_sync(self.kernel_forget_name, parent.ino, name)

    # -- what writeback asks of the core (the `WritebackHost` protocol) --------------------

    def clean_content(self, node: Node) -> Content:
        """A content for `node`'s object: its cached copy, or a new one to fetch into."""
        return self._clean_content(node)

    async def read_attrs(self, node: Node) -> None:
        """Read the attributes a listing did not carry; raises while the store does not
        answer, and never replaces `node`.

        Worker thread: the HEAD, in one StoreCalls slot."""
        await self._head_attrs(node, may_replace=False)

    def uploaded_clean(self, node: Node, content: Content, key: str, etag: str) -> None:
        """`content` is what the store now holds at `key`: clean, cached under its etag."""
        content.now_stored()
        self.contents.register_clean(content, key, etag)
        if not content.pins:
            node.content = None

    def upload_landed(self, uploaded: Uploaded) -> None:
        """The store took an upload of `node` to `key`: the object it replaced goes, a move
        is tracked (or the object released, for a node removed meanwhile), and the node is
        clean where it did not change meanwhile. The caller journals the node."""
        node, key, etag, size = uploaded.node, uploaded.key, uploaded.etag, uploaded.size
        version, data_version, content = uploaded.version, uploaded.data_version, uploaded.content
        metadata, moved_from, mtime_lost = uploaded.metadata, uploaded.moved_from, uploaded.mtime_lost
        if metadata is not None:  # else the object's own, unknown here, was kept
            self.index.set(("meta", key), (etag, metadata))
        self.ns.store_changed(node)
        self.forget_listing(key)
        old = node.remote_key
        if old is not None and old != key:
            self.ns.release_remote(node)
            self.object_unneeded(old)
        node.remote_key, node.etag, node.remote_size = key, etag, size
        if moved_from is not None and node.content is not None and node.content.source == moved_from:
            # The bytes it mirrors are at `key` now: its source may be overwritten or deleted
            # from here on (a change made during the copy fetches what it lacks from `key`).
            node.content.source = (key, etag)
        if node.attached:
            self.ns.track_move(node)  # renamed meanwhile: the object at `key` is its copy source
        elif node.opens:
            self.ns.track_move(node)  # removed meanwhile, still open: deleted at its last close
        else:
            self._release_object(node)  # removed meanwhile: what was just written must go
        if content is not None and content.source is None:
            content.source = (key, etag)
        in_place = node.attached and node.key == key
        if in_place and node.version == version:
            node.data_dirty = node.meta_dirty = False
            if content is None and node.content is not None and not node.content.dirty:
                content = node.content
            if content is not None:
                self.uploaded_clean(node, content, key, etag)
            node.meta_dirty = mtime_lost
        elif in_place and content is not None and node.data_version == data_version:
            # Only attributes changed during the upload (the kernel's mtime at a close, a
            # chmod): the data is in the store, and the attributes follow with a copy of
            # the object onto itself, not a new upload of all of it.
            node.data_dirty = False
            self.uploaded_clean(node, content, key, etag)
            node.meta_dirty = True

    def based_on_own_upload(self, node: Node, key: str, info: ObjectInfo) -> None:
        """`node`, to be uploaded to `key`, is based from now on on the object `info` there,
        an upload of this mount's own: its next upload replaces it, conditioned on it."""
        old = node.remote_key
        if old is not None and old != key:
            self.ns.release_remote(node)
            self.object_unneeded(old)
        node.remote_key, node.etag, node.remote_size = key, info.etag, info.size
        node.overwrites = None
        content = node.content
        if content is not None and content.source is not None:
            # Its blocks never written here are the same in the landed object.
            content.source = (key, info.etag)
        self.ns.store_changed(node)
        self.record(node)

    def marker_landed(
        self, node: Node, key: str, etag: str, written: Mapping[str, str] | None, version: int
    ) -> Node | None:
        """The marker of directory `node` (at `version`) is written at `key` (with metadata
        `written`; None: its source's). Returns the directory whose marker is to be written
        again at once: `node` changed meanwhile, or the directory that now has its name."""
        if written is not None:
            self.index.set(("meta", key), (etag, written))
        self.ns.store_changed(node)
        self.forget_listing(key)
        if node.attached and node.prefix == key:
            moved_from = self.ns.release_remote(node)
            if moved_from is not None and moved_from != key:
                self.ns.add_delete(moved_from)  # copied: the old marker goes, as a file's source
            node.marker_key, node.overwrites = key, None
            if node.version == version:
                node.meta_dirty = False
                return None
            return node  # changed while the marker was written: write it again
        # Removed or moved while the marker was written: it belongs to whichever
        # directory now has that name, or goes.
        other = self.ns.node_at(key[:-1])
        self.ns.add_delete(key)
        if other is not None and other.is_dir:
            self.reclaim_marker(other)
            self.record(other)
            return other
        return None

    def marker_unwanted(self, node: Node) -> None:
        """Directory `node` needs no marker of its own any more: it goes."""
        self._leave_key(node, node.prefix)
        marker = self.ns.release_remote(node)
        assert marker is not None
        self.ns.add_delete(marker)

    def keys_deleted(self, keys: Sequence[str]) -> None:
        """The store deleted `keys` (one batch)."""
        with self.journal.batch(), self.index.transact():
            for key in keys:
                self.ns.store_changed(deleted=key)
                self.forget_listing(key)
                self.ns.drop_delete(key)
                self.index.delete(("meta", key))  # a remembered marker must not outlive it

    def _written_whole(self, node: Node) -> bool:
        """A big file written anew and closed by its last opener: the write-back delay,
        which lets programs that rewrite small files in bursts coalesce, would only hold
        it back (`--upload-at-close`)."""
        content = node.content
        threshold = self.settings.upload_at_close
        return (
            threshold > 0
            and node.opens == 0
            and node.data_dirty
            and content is not None
            and content.base_size == 0
            and content.size >= threshold
        )

    def release(self, fh: int) -> None:
        handle = self._handles.pop(fh, None)
        if not isinstance(handle, FileHandle):
            return
        node = handle.node
        self._writes_settled(node)
        node.opens -= 1
        node.writers -= handle.writable
        if handle.content is not None:
            handle.content.pins -= 1
        if node.attached:
            if node.pending:
                self.flusher.schedule(node, delay=0 if self._written_whole(node) else None)
                self.record_if_room(node, timestamps_later=True)
            elif node.content is not None and not node.content.dirty and not node.content.pins:
                node.content = None
        elif node.opens == 0:
            content = node.content
            if content is not None and content.dirty:
                self._discard_unlinked(content)
            elif content is not None and content.source is not None and not content.pins:
                # Removed here or changed by another client: nobody reads that version again.
                self.contents.forget_object(*content.source)
            node.content = None
            self._release_object(node)
        self._maybe_free(node)
        self.contents.close_idle_files()

    # -- the file system as a whole --------------------------------------------------------

    async def capacity(self) -> tuple[int, int]:
        """Total and free bytes of the store, where it knows them (remembered for a minute)."""
        cached = self._capacity
        if cached is None or time.monotonic() - cached[0] > 60:
            stats = await self.calls.ask(self.store.stat_store)
            total = stats.total_bytes if stats.total_bytes is not None else UNKNOWN_CAPACITY
            free = stats.free_bytes if stats.free_bytes is not None else total
            cached = self._capacity = (time.monotonic(), total, free)
        return cached[1], cached[2]
