"""POSIX operations on the cache, independent of FUSE; and the rules of the core.

`Filesystem` is what `service.fuse_ops` calls: every method takes inode numbers, names and
file handles, raises `OSError` with a POSIX errno (or a `StoreError`, which maps to one),
and touches only the local cache unless it must ask the store (a directory not listed
yet, data not cached yet). Changes are recorded in the journal and handed to the flusher.

This module keeps the namespace operations (lookup, create … rename, open and release)
and builds the parts that own the rest of a mount's state, one module each:

  journaling.Journaling    journal records of pending work: written, deferred, replayed
  listings.Listings        listings and freshness: TTLs, LIST and HEAD, remembered
                           listings, other clients' changes
  linkview.LinkView        linked stores: read-only where they show; linked at run time
  handles.Handles          the open files and directories
  budgets.Budgets          dirty data under --dirty-limit, room on the cache disk
  persister.Persister      periodic fsyncs, spare cache files, the eviction pass
  filedata.FileData        data of open files: read, write, truncate, flush, fsync
  kernelnames.KernelNames  names the kernel must forget
  compaction.Compaction    entries that leave memory: forgotten, or past --max-entries
  ownership.KeyOwnership   keys taken, left and released; objects no node needs any more
  landed.Landed            what the write-back reports back (uploads, markers, deletes landed)
  fetcher.Fetcher          object data into the cache (core/pinning.py: pins)
  attributes.Attributes    chmod, chown, utimensat, truncate; extended attributes

Calls go one way: service → core → writeback, cache → stores. Inside the core the
`Filesystem` calls its parts, and a part calls only parts built before it (the order of
`__init__`), never the `Filesystem`; each gets what it uses, not the whole. What calls
back up, and how:
- the write-back (the flusher) calls the `Filesystem` methods its `WritebackHost`
  protocol names (`record`, `upload_landed`, `keys_deleted`, …: most are bound to a
  part, `Landed` above all); the parts see the flusher only as `uploadqueue.UploadQueue`;
- `FileData` is handed `Filesystem._clean_content` (which content a node reads);
- the FUSE layer sets `kernel.forget` (the kernel's `invalidate_entry`).

Threads. Every method here and in the parts runs on the trio thread, and nothing is
locked: state is consistent at every await. Those that may wait (for the store, dirty
space, the disk) are `async` and yield while they do. Work leaves the trio thread in
three ways only:
- store calls, through `StoreCalls` (one limiter of `--store-connections` slots);
- slow disk work, one job at a time (one limiter shared by `Budgets` and `Persister`):
  eviction's file removals, fsyncs of cache files and of the index's and journal's
  logs, spare cache files;
- telling the kernel to forget names (`KernelNames`).
Cache-file pread/pwrite, index look-ups, journal records and the statvfs before a write
stay inline. A part's method whose work (some or all) runs in a worker thread says so in
its docstring, in a sentence beginning `Worker thread:`. Every `async` operation here may
wait for the store that way (a LIST or HEAD through `Listings`, a GET through the
`Fetcher`); those that call the store themselves say so too.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Callable
from typing import Any

import trio

from ..cache import CacheDir, Content, ContentStore, Journal, room
from ..cache.journal import Records
from ..cache.pins import Pins
from ..cache.recovery import LOST_FOUND, LostFound, open_index
from ..stores import Store
from ..writeback.conflicts import ConflictNames
from ..writeback.flusher import Flusher
from ..writeback.storecalls import StoreCalls
from .attributes import Attributes
from .budgets import STAGE_CHUNK as STAGE_CHUNK  # where the write-back's tests look
from .budgets import Budgets
from .compaction import Compaction
from .errors import fs_error
from .fetcher import Fetcher
from .filedata import FileData, writes_settled
from .handles import FileHandle, Handles
from .journaling import Journaling
from .kernelnames import KernelNames
from .landed import Landed
from .linkview import LinkView, linked_stores
from .listings import Listings
from .namespace import NAME_MAX, Defaults, Namespace, check_name
from .nodes import Kind, Node, now_ns
from .ownership import KeyOwnership
from .persister import Persister
from .settings import MountSettings

log = logging.getLogger(__name__)


class Filesystem:
    """The mounted tree. See the module docstring for the calling rules."""

    def __init__(self, store: Store, cache: CacheDir, settings: MountSettings) -> None:
        self.store = store
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
        self.defaults = Defaults(
            settings.uid, settings.gid, settings.umask, settings.file_mode, settings.dir_mode
        )
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
        # The parts, each built after the parts it calls (see the module docstring).
        self.fetcher = Fetcher(self.calls, store, self.contents)
        self.kernel = KernelNames()
        links = linked_stores(store)
        self.handles = Handles()
        self.journaling = Journaling(
            self.journal, self.ns, self.flusher, links, self.contents, self.lost_found
        )
        self.listings = Listings(
            settings,
            self.ns,
            self.index,
            self.calls,
            store,
            self.contents,
            self.pins,
            self.fetcher,
            self.kernel,
            self.journaling,
            self.flusher,
            links,
        )
        self.linked = LinkView(links, self.ns, self.listings.relinked)
        self.compaction = Compaction(
            self.ns, self.handles, self.pins, self.flusher, self.listings.being_listed, self.kernel, settings
        )
        self.ns.entries_loaded = self.compaction.loaded
        disk_work = trio.CapacityLimiter(1)  # slow disk work, one job at a time
        self.budgets = Budgets(settings, self.contents, self.journal, self.flusher, disk_work, self.handles)
        self.persister = Persister(self.contents, self.journal, self.journaling, self.budgets, disk_work)
        self.files = FileData(
            settings,
            self.contents,
            self.journal,
            self.fetcher,
            self.flusher,
            self.handles,
            self.budgets,
            self.persister,
            self.journaling,
            self.listings,
            self.kernel,
            self._clean_content,
        )
        self.keys = KeyOwnership(self.ns, self.flusher, self.journaling.record_if_room)
        self.attributes = Attributes(self.linked, self.listings, self.files, self.journaling, self.flusher)
        self.landed = Landed(
            self.ns,
            self.index,
            self.journal,
            self.contents,
            self.flusher,
            self.keys,
            self.kernel,
            self.journaling.record,
            self.listings.forget_listing,
            self._clean_content,
        )
        # Parts' operations the FUSE layer, flusher, pinning, tests call (no extra call per use).
        self.record = self.journaling.record
        self.attrs_for_change = self.attributes.for_change
        self.record_if_room = self.journaling.record_if_room
        self.marker_wanted = self.journaling.marker_wanted
        self.marker_work = self.journaling.marker_work
        self.changed = self.journaling.changed
        self.child = self.listings.child
        self.load_tree = self.listings.load_tree
        self.forget_listing = self.listings.forget_listing
        self.head_attrs = self.listings.head_attrs
        self.read_attrs = self.listings.read_attrs
        self.dirty_bytes = self.budgets.dirty_bytes
        self.dirty_space_freed = self.budgets.dirty_space_freed
        self.persist = self.persister.persist
        self.fetch_all = self.fetcher.fetch_all
        self.fetch_base = self.files.fetch_base
        self.read = self.files.read
        self.write = self.files.write
        self.truncate = self.files.truncate
        self.flush = self.files.flush
        self.fsync = self.files.fsync
        self.readdir = self.handles.readdir
        self.releasedir = self.compaction.released
        self.link_store = self.linked.link_store
        self.unlink_store = self.linked.unlink_store
        self.reclaim_marker = self.keys.reclaim_marker
        self.object_unneeded = self.keys.object_unneeded
        self.clean_content = self.landed.clean_content
        self.uploaded_clean = self.landed.uploaded_clean
        self.upload_landed = self.landed.upload_landed
        self.based_on_own_upload = self.landed.based_on_own_upload
        self.marker_landed = self.landed.marker_landed
        self.marker_unwanted = self.landed.marker_unwanted
        self.keys_deleted = self.landed.keys_deleted
        self.adopt_remote_version = self.landed.adopt_remote_version

    @property
    def space_wanted(self) -> int:
        """Writers waiting for dirty space (see `Budgets.wait_for_dirty_space`)."""
        return self.budgets.space_wanted

    @property
    def kernel_forget_name(self) -> Callable[[int, str], None] | None:
        """`KernelNames.forget` (set by the FUSE layer): blocking, call it in a worker thread."""
        return self.kernel.forget

    def close(self) -> None:
        """Persist what the next mount reuses, and close the cache (see `Persister.close`).
        Call after the flusher stopped."""
        self.persister.close(self.ns.nodes.values(), self.index)

    def replay(self) -> int:
        """Rebuild pending work from the journal (before the mount is ready). Returns its size."""
        return self.journaling.replay(self.journaled_at_open)

    def account_for_files(self) -> None:
        """After `replay`: data files no record names are removed when surely clean, else
        set aside in lost+found (see `ContentStore.account_for_files`). Blocking (small)."""
        opened, self.journaled_at_open = self.journaled_at_open, Records()
        self.journaling.account_for_files(opened, self.index_rebuilt)

    # -- lookups --------------------------------------------------------------------------

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
            node = await self.listings.checked_child(parent, name)
        if node is not None and self.listings.head_due(node):
            await self.listings.head_for_lookup(node)
            if not node.attached:  # the HEAD found another client's version, or a symlink
                children = parent.children  # none: they were compacted meanwhile
                node = children.get(name) if children else await self.listings.checked_child(parent, name)
        if node is None:
            return None
        node.lookups += 1
        return node

    async def getattr(self, ino: int) -> Node:
        node = self.node(ino)
        if self.listings.head_due(node):
            await self.head_attrs(node)
            self.listings.check_kind(node)
        return node

    def forget(self, ino: int, count: int) -> None:
        node = self.ns.nodes.get(ino)
        if node is None or ino == 1:
            return
        node.lookups = max(0, node.lookups - count)
        self._maybe_free(node)
        self.compaction.forgotten(node)

    def _maybe_free(self, node: Node) -> None:
        if self.ns.maybe_free(node):
            content = node.content
            if content is not None and not node.attached:
                if content.dirty:
                    self.budgets.discard_unlinked(content)
                else:  # a clean copy: it stays cached, and is no longer the removed file's
                    self.journal.drop_unlinked(content.id)
            node.content = None

    async def opendir(self, ino: int) -> int:
        """A handle on the directory; one due for listing streams its pages (`readdir`)."""
        directory = self.directory(ino)
        await self.compaction.opening(directory)  # may wait while past --max-entries
        return self.handles.open_dir(directory, await self.listings.listing(directory))

    # -- creating and removing ----------------------------------------------------------

    async def _new_entry(self, parent_ino: int, name: str, *, directory: bool = False) -> Node:
        parent = self.directory(parent_ino)
        check_name(name)
        key = parent.prefix + name
        self.linked.writable(key)
        # KeyTooLong before anything changes (a directory's marker key is one byte longer).
        self.store.keys.full(key + ("/" if directory else ""))
        if await self.child(parent, name) is not None:
            raise fs_error(errno.EEXIST)
        return parent

    def dir_changed(self, directory: Node) -> None:
        """Entries of `directory` changed: its marker may have to come or go."""
        self.listings.drop_listing(directory.prefix)
        directory.mtime_ns = directory.ctime_ns = directory.entries_changed_ns = now_ns()
        if self.marker_work(directory) is not None:
            self.record(directory)
            self.flusher.schedule(directory)

    async def mkdir(self, parent_ino: int, name: str, mode: int, uid: int, gid: int) -> Node:
        parent = await self._new_entry(parent_ino, name, directory=True)
        perm = stat.S_IMODE(mode)
        node = self.ns.new_node(Kind.DIR, name, parent, perm, uid, gid, now_ns())
        node.listed_at = time.monotonic()  # nothing below it yet: complete
        node.explicit = (perm, uid, gid) != (self.defaults.dir_perm, self.defaults.uid, self.defaults.gid)
        with self.journal.batch():  # the marker it takes over and its record, at once
            self.ns.attach(parent, name, node)
            self.keys.placed(node)
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
            self.keys.placed(node)
            node.lookups += 1
            self.changed(node, data=True)
            self.dir_changed(parent)
        return self.handles.open_file(node, flags), node

    async def symlink(self, parent_ino: int, name: str, target: str, uid: int, gid: int) -> Node:
        return await self.mknod(parent_ino, name, stat.S_IFLNK | 0o777, (uid, gid), target=target)

    async def mknod(
        self, parent_ino: int, name: str, mode: int, owner: tuple[int, int], rdev: int = 0, target: str = ""
    ) -> Node:
        """A new symlink or special file (FIFO, socket, device): an object of no data but
        its target, whose metadata carries its type (and a device's number)."""
        kind = Kind.of_mode(mode)
        if kind is None or kind is Kind.FILE:
            raise fs_error(errno.EINVAL, f"mknod of mode {mode:o}")
        parent = await self._new_entry(parent_ino, name)
        node = self.ns.new_node(kind, name, parent, stat.S_IMODE(mode), *owner, now_ns())
        node.target, node.rdev = target, rdev
        node.size = len(target.encode("utf-8", "surrogateescape"))
        with self.journal.batch():  # as for create
            self.ns.attach(parent, name, node)
            self.keys.placed(node)
            node.lookups += 1
            self.changed(node, data=True)
            self.dir_changed(parent)
        return node

    async def readlink(self, ino: int) -> str:
        """Worker thread: the GET of a target not read yet (StoreCalls)."""
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
        self.linked.writable(node)
        self._remove(node)
        self.dir_changed(parent)

    def _remove(self, node: Node) -> None:
        """Unlink a file or symlink: gone from the tree now, from the store soon."""
        with self.journal.batch():  # its record goes and its key's delete comes at once
            unreachable = self._remove_now(node)
        if unreachable is not None:
            # Only once the journal no longer names it: a journal that cannot commit (a
            # disk filled by another program) fails the unlink with the data still there.
            self.budgets.discard_unlinked(unreachable)

    def _remove_now(self, node: Node) -> Content | None:
        """Returns the dirty data nothing can reach any more, for the caller to discard
        once the change is journaled."""
        unreachable = None
        node.ctime_ns = now_ns()  # its link count fell (an open file shows it)
        self.keys.leave_key(node, node.key)
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
            self.keys.release_object(node)
            content = node.content
            if content is not None and content.dirty:
                # Nothing can read it any more (no handle, no name): its space comes back
                # now, not when the kernel forgets the inode (rm after ENOSPC must free room).
                unreachable = content
                node.content = None
                node.size = 0
        self._maybe_free(node)
        return unreachable

    async def rmdir(self, parent_ino: int, name: str) -> None:
        parent = self.directory(parent_ino)
        node = await self.child(parent, name)
        if node is None:
            raise fs_error(errno.ENOENT)
        if not node.is_dir:
            raise fs_error(errno.ENOTDIR)
        self.linked.writable(node)
        await self._check_empty(node)
        self.keys.leave_key(node, node.prefix)
        self.ns.detach(node)
        self.keys.drop_marker(node)
        self.record(node)
        self.flusher.forget(node)
        self._maybe_free(node)
        self.dir_changed(parent)

    async def _check_empty(self, directory: Node) -> None:
        """ENOTEMPTY unless the directory holds nothing, in the store included."""
        await self.listings.refresh(directory)
        if directory.children or self.ns.hidden.get(directory.prefix):
            raise fs_error(errno.ENOTEMPTY)

    # -- rename -------------------------------------------------------------------------

    async def rename(self, old_ino: int, old_name: str, new_ino: int, new_name: str, flags: int) -> None:
        RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
        if flags & RENAME_EXCHANGE:
            raise fs_error(errno.EINVAL, "RENAME_EXCHANGE is not supported")
        old_parent, new_parent = self.directory(old_ino), self.directory(new_ino)
        check_name(new_name)
        node = await self.child(old_parent, old_name)
        if node is None:
            raise fs_error(errno.ENOENT)
        self.linked.check_rename(node.key, new_parent.prefix + new_name)
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
            await self.load_tree(node)
            # Every key below moves too: the longest must fit at the new name (KeyTooLong).
            self.store.keys.full(new_parent.prefix + new_name + "/" + node.longest_key_below())
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
                self.keys.leave_key(target, target.prefix)
                self.ns.detach(target)
                self.keys.drop_marker(target)
                self.record(target)
                self.flusher.forget(target)
                self._maybe_free(target)
            else:
                # Its key is about to be named by `node` again, which drops that delete.
                self._remove(target)
        old_keys = {moved.ino: moved.object_key for moved in node.walk()}
        node.ctime_ns = now_ns()  # before the records below are written
        self.ns.detach(node)
        self.ns.attach(new_parent, new_name, node)
        for moved in node.walk():
            self.keys.leave_key(moved, old_keys[moved.ino])
            if moved.is_dir and (moved.marker_key is None or moved.meta_dirty):
                # No marker to move, or one to write anew with the attributes set here.
                if moved.marker_key != moved.prefix:
                    self.keys.drop_marker(moved)
                self.keys.reclaim_marker(moved)
            else:
                # A file's object, and a kept marker, move by a copy with their own
                # metadata (see `Flusher._reconcile_dir`): no attribute is read first, and
                # none this mount never read is replaced by its defaults.
                self.keys.take_key(moved)
            self.ns.track_move(moved)
            if moved.is_dir:
                self.record(moved)
                self.flusher.schedule(moved)
            else:
                self.changed(moved)
        self.dir_changed(old_parent)
        self.dir_changed(new_parent)

    # -- attributes ---------------------------------------------------------------------

    async def setattr(self, ino: int, **changes: Any) -> Node:
        """Change `ino`'s attributes (see `Attributes.setattr`)."""
        return await self.attributes.setattr(self.node(ino), **changes)

    # -- open files ---------------------------------------------------------------------

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
            self.linked.writable(node)
            await self.attrs_for_change(node)
        elif self.listings.head_due(node):
            await self.head_attrs(node)  # it may be a symlink listed as a file: to follow, not open
            self.listings.check_kind(node)
        if node.content is None:
            node.content = self._clean_content(node)
        fh = self.handles.open_file(node, flags)
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

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The mount's background work (long-lived): uploads, watching the store while it
        is down, and making the cache durable every few seconds."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.flusher.run)
            await nursery.start(self.calls.watch)
            nursery.start_soon(self.persister.persist_loop)
            nursery.start_soon(self.persister.keep_spare_files)
            nursery.start_soon(self.compaction.run)
            # object data streams, pinned files' new versions come, and the kernel hears
            # of remote changes, in the background
            self.fetcher.nursery = self.listings.nursery = self.kernel.nursery = nursery
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self.fetcher.nursery = self.listings.nursery = self.kernel.nursery = None

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
        handle = self.handles.pop(fh)
        if not isinstance(handle, FileHandle):
            return
        node = handle.node
        writes_settled(node)
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
                self.budgets.discard_unlinked(content)
            elif content is not None and content.source is not None and not content.pins:
                # Removed here or changed by another client: nobody reads that version again.
                self.contents.forget_object(*content.source)
            node.content = None
            self.keys.release_object(node)
        self._maybe_free(node)
        self.contents.close_idle_files()

    # -- the file system as a whole --------------------------------------------------------

    async def capacity(self) -> tuple[int, int]:
        """Total and free bytes for `df`: the store's where it knows them (`StoreCalls.
        capacity`), else the cache disk's. Every write lands on that disk first and fails
        with ENOSPC when it is full, so it is the limit a program writing here meets (and
        a 1 PiB figure would tell `df` nothing). One statvfs, inline."""
        known = await self.calls.capacity()
        if known is not None:
            return known
        free, total = room.disk_space(self.contents.data_dir)
        return total, free
