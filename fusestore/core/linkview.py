"""`LinkView`: where the tree shows a linked store (`--link /p=URL`), read-only.

Free while nothing is linked: a node's key is only worked out when a store is linked.
Everything here is synchronous and runs on the trio thread.
"""

from __future__ import annotations

import errno

from ..stores import Store
from ..stores.links import Link, LinkedStores, link_path
from .errors import fs_error
from .namespace import Namespace
from .nodes import Node


class LinkView:
    """The linked stores of a mount, as the namespace sees them: which keys are in one
    (read-only there), and which renames cross into or out of one."""

    def __init__(self, store: Store, ns: Namespace) -> None:
        #: the stores linked into the tree, when the mount's store carries them
        self.stores = store if isinstance(store, LinkedStores) else None
        self.ns = ns

    def in_link(self, where: str | Node) -> bool:
        """Whether a key (or a node's) is a linked store's path or lies below one (read-only
        there). Free while nothing is linked: a node's key is only worked out when needed."""
        if self.stores is None or not self.stores.links:
            return False
        return self.stores.link_of(where if isinstance(where, str) else where.key) is not None

    def writable(self, where: str | Node) -> None:
        """EROFS for a key (or node) in a linked store; free while nothing is linked."""
        if self.in_link(where):
            key = where if isinstance(where, str) else where.key
            raise fs_error(errno.EROFS, f"/{key} is in a read-only linked store")

    def check_rename(self, old_key: str, new_key: str) -> None:
        """A rename within a linked store is EROFS; into or out of one, or of a directory
        holding one, EXDEV (as between two file systems: `mv` then copies)."""
        if self.stores is None or not self.stores.links:
            return
        old_in, new_in = self.in_link(old_key), self.in_link(new_key)
        if old_in and new_in:
            raise fs_error(errno.EROFS, "renames inside a read-only linked store")
        if old_in or new_in or any(path.startswith(old_key + "/") for path in self.stores.links):
            raise fs_error(errno.EXDEV, "a linked store is another file system")

    def add(self, path: str, store: Store) -> str:
        """Show `store` at `path` from now on; returns the link's key. Refused (ValueError)
        where local changes not uploaded yet or open files would be hidden. The caller
        then makes the tree there anew (`Listings.relinked`)."""
        if self.stores is None:
            raise ValueError("this mount cannot link stores")
        key = link_path(path)
        existing = self.ns.node_at(key)
        if existing is not None and self.ns.has_local_work(existing, readers=True):
            raise ValueError(f"/{key} holds changes not uploaded yet, or open files")
        self.stores.add(key, store)
        return key

    def remove(self, path: str) -> Link:
        """Stop showing the store linked at `path`; the caller makes the tree there anew."""
        if self.stores is None:
            raise ValueError("this mount cannot link stores")
        return self.stores.remove(path)
