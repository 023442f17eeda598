"""`KeyOwnership`: which node owns which key in the store, and when an object must go.

A key is owned by the node named there; a node that leaves a key before its upload
replaced the older object there deletes that object; an object no node needs any more is
deleted unless a file still to be uploaded will replace it. Everything here is
synchronous, on the trio thread: it changes the namespace's pending deletes and nodes'
`overwrites`, and wakes the flusher for deletes.
"""

from __future__ import annotations

from collections.abc import Callable

from .namespace import Namespace
from .nodes import Node
from .uploadqueue import UploadQueue


class KeyOwnership:
    """The bookkeeping of keys taken, left and released, shared by the POSIX operations
    and by what the write-back reports back (`Landed`)."""

    def __init__(self, ns: Namespace, flusher: UploadQueue, record_if_room: Callable[[Node], None]) -> None:
        self.ns = ns
        self.flusher = flusher
        self.record_if_room = record_if_room

    def placed(self, node: Node) -> None:
        """A new node now names its key: nothing pending may delete that key any more."""
        if node.is_dir:
            # A file deleted at the same name must still go: only its marker is reclaimed.
            self.reclaim_marker(node)
        else:
            self.take_key(node)

    def take_key(self, node: Node) -> None:
        """A file (or a marker to move) now names its key: a delete pending there becomes
        the overwrite of its upload."""
        key = node.object_key
        node.overwrites = key if self.ns.drop_delete(key) else None

    def leave_key(self, node: Node, key: str) -> None:
        """A file (or a marker to move) leaves `key` before its upload replaced the older
        object there: delete that."""
        if node.overwrites == key and node.source_key != key:
            self.ns.add_delete(key)
            self.flusher.wake()
        node.overwrites = None

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

    def release_object(self, node: Node) -> None:
        """`node` no longer needs its object: delete it unless something else will be written there."""
        etag = None if node.is_dir else node.etag
        key = self.ns.release_remote(node)
        if key is not None:
            self.object_unneeded(key, etag)

    def object_unneeded(self, key: str, etag: str | None = None) -> None:
        """No node needs the object at `key` (the version `etag`, where known) any more. It
        is deleted, unless a file named `key` is still to be uploaded: then that upload
        replaces it, and should the file leave the key first, the file's leaving deletes
        it (`leave_key`)."""
        other = self.ns.node_at(key)
        if other is None or other.is_dir:
            self.ns.add_delete(key, etag)
            self.flusher.wake()
        elif other.remote_key != key:
            other.overwrites = key
            self.record_if_room(other)

    def drop_marker(self, directory: Node) -> None:
        """A removed directory's marker goes (also one it was still to be moved from)."""
        marker = self.ns.release_remote(directory)
        if marker is not None:
            self.ns.add_delete(marker)
            self.flusher.wake()
