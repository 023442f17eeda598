"""`LinkView`: where the tree shows a linked store (`--link /p=URL`), read-only.

Free while nothing is linked: a node's key is only worked out when a store is linked.
Everything runs on the trio thread; only linking and unlinking a store yield.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable

from ..stores import Store
from ..stores.links import LinkedStores, link_path
from .errors import fs_error
from .namespace import Namespace
from .nodes import Node


def in_link(stores: LinkedStores | None, where: str | Node) -> bool:
    """Whether a key (or a node's) is a linked store's path or lies below one (read-only
    there). Free while nothing is linked: a node's key is only worked out when needed."""
    if stores is None or not stores.links:
        return False
    return stores.link_of(where if isinstance(where, str) else where.key) is not None


def linked_stores(store: Store) -> LinkedStores | None:
    """The stores linked into the tree, when the mount's store carries them."""
    return store if isinstance(store, LinkedStores) else None


class LinkView:
    """The linked stores of a mount, as the namespace sees them: which keys are in one
    (read-only there), and which renames cross into or out of one."""

    def __init__(
        self, stores: LinkedStores | None, ns: Namespace, relinked: Callable[[str], Awaitable[None]]
    ) -> None:
        #: the stores linked into the tree, when the mount's store carries them
        self.stores = stores
        self.ns = ns
        #: makes the tree at a key anew once it comes from another store (`Listings.relinked`)
        self.relinked = relinked

    def in_link(self, where: str | Node) -> bool:
        """See the module's `in_link`."""
        return in_link(self.stores, where)

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

    async def link_store(self, path: str, store: Store) -> str:
        """Show `store` read-only at `path` from now on; returns the link's key. Refused
        (ValueError) where local changes not uploaded yet or open files would be hidden.
        Worker thread: the kernel is told to forget the names on the way."""
        if self.stores is None:
            raise ValueError("this mount cannot link stores")
        key = link_path(path)
        existing = self.ns.node_at(key)
        if existing is not None and self.ns.has_local_work(existing, readers=True):
            raise ValueError(f"/{key} holds changes not uploaded yet, or open files")
        self.stores.add(key, store)
        await self.relinked(key)
        return key

    async def unlink_store(self, path: str) -> Store:
        """Stop showing the store linked at `path` (what the mount's own store holds there
        shows again); returns that store, for the caller to close. Worker thread: as
        `link_store`."""
        if self.stores is None:
            raise ValueError("this mount cannot link stores")
        link = self.stores.remove(path)
        await self.relinked(link.path)
        return link.store
