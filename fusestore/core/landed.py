"""`Landed`: what the write-back reports back, applied to the core's state.

The write-back (fusestore/writeback/) owns the store traffic; the tree, the journal and
the index are the core's. When an upload, a marker or a batch of deletes lands, the
flusher calls one of these methods (through the `WritebackHost` names the `Filesystem`
binds to them) with the result, and the core's state follows: the node clean where it did
not change meanwhile, the object it replaced released, a move tracked, a marker owned.
Everything here runs on the trio thread, except where a docstring says `Worker thread:`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import diskcache

from ..cache import Content, ContentStore, Journal
from ..stores import ObjectInfo
from ..writeback.host import Uploaded
from .kernelnames import KernelNames
from .namespace import Namespace
from .nodes import Node
from .ownership import KeyOwnership
from .uploadqueue import UploadQueue

log = logging.getLogger(__name__)


class Landed:
    """Applies write-back results to the tree; each method is synchronous unless async,
    and none calls the store."""

    def __init__(
        self,
        ns: Namespace,
        index: diskcache.Cache,
        journal: Journal,
        contents: ContentStore,
        flusher: UploadQueue,
        keys: KeyOwnership,
        kernel: KernelNames,
        record: Callable[[Node], None],
        forget_listing: Callable[[str], None],
        clean_content_of: Callable[[Node], Content],
    ) -> None:
        self.ns = ns
        self.index = index
        self.journal = journal
        self.contents = contents
        self.flusher = flusher
        self.keys = keys
        self.kernel = kernel
        self.record = record
        self.forget_listing = forget_listing
        self.clean_content_of = clean_content_of

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
        if self.kernel.forget is not None:
            await self.kernel.forget_now([(parent.ino, name)])

    def clean_content(self, node: Node) -> Content:
        """A content for `node`'s object: its cached copy, or a new one to fetch into."""
        return self.clean_content_of(node)

    def uploaded_clean(self, node: Node, content: Content, key: str, etag: str) -> None:
        """`content` is what the store now holds at `key`: clean, cached under its etag."""
        content.now_stored()
        self.contents.register_clean(content, key, etag)
        # The index names it now: the journal's note that it holds no change to keep (a
        # cached copy made dirty, see `FileData._make_dirty`) has served, and would stay
        # for the mount's life (one per file rewritten) if not dropped. A note left (a
        # full disk) is harmless: the next mount finds the file named by the index.
        try:
            self.journal.drop_unlinked(content.id)
        except OSError as exc:
            log.info("%s: its note in the journal stays: %s", content.id, exc)
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
        self._rebase(node, key, etag, size)
        if moved_from is not None:
            # The bytes it mirrors are at `key` now: its source may be overwritten or deleted
            # from here on (a change made during the copy fetches what it lacks from `key`),
            # and a cached copy of them is the copy's (the version `key` held before goes).
            self.contents.object_moved(moved_from, key, etag)
            if node.content is not None and node.content.source == moved_from:
                node.content.source = (key, etag)
        if node.attached:
            self.ns.track_move(node)  # renamed meanwhile: the object at `key` is its copy source
        elif node.opens:
            self.ns.track_move(node)  # removed meanwhile, still open: deleted at its last close
        else:
            self.keys.release_object(node)  # removed meanwhile: what was just written must go
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

    def _rebase(self, node: Node, key: str, etag: str, size: int) -> None:
        """`node` is based from now on on the object at `key` (`etag`, `size`): the version
        it was based on at another key is no longer needed (deleted, that version only)."""
        if node.remote_key is not None and node.remote_key != key:
            self.keys.release_object(node)
        node.remote_key, node.etag, node.remote_size = key, etag, size

    def based_on_own_upload(self, node: Node, key: str, info: ObjectInfo) -> None:
        """`node`, to be uploaded to `key`, is based from now on on the object `info` there,
        an upload of this mount's own: its next upload replaces it, conditioned on it."""
        self._rebase(node, key, info.etag, info.size)
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
            self.keys.reclaim_marker(other)
            self.record(other)
            return other
        return None

    def marker_unwanted(self, node: Node) -> None:
        """Directory `node` needs no marker of its own any more: it goes."""
        self.keys.leave_key(node, node.prefix)
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
                self.contents.key_deleted(key)  # a cached copy of it: nothing can ask for it
