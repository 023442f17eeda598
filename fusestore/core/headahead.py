"""`HeadReadAhead`: the metadata of small objects read before a program looks them up.

A lookup of an object small enough to be a symlink or a special file reads its metadata
first (one HEAD, `Listings.head_due`). `stat` of many such files, or a program opening
them one after another, sends the lookups one at a time, and each would wait for its own
HEAD in turn while the store could answer several at once. When a lookup that needs a
HEAD is of the entry right after one the kernel looked up (in name order, a listing's),
the HEADs of the next `AHEAD` entries that need one, and that the kernel holds no inode
of, go out in the background, and each of their lookups waits for its HEAD rather than
sending another (or sends none, when it came back before); the lookup after those finds
its predecessor looked up and starts the next `AHEAD`. A program that stops costs at most
`AHEAD` HEADs it did not need; a lookup alone, or out of order, costs its own HEAD only.

Runs on the trio thread; the HEADs go through the store calls (worker threads).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from ..stores import StoreError
from .nodes import Node
from .readahead import EntryOrders

log = logging.getLogger(__name__)

#: Entries whose metadata is read ahead of an in-order lookup: HEADs in flight at once.
AHEAD = 8


class HeadReadAhead:
    """Reads metadata for lookups (`head`), ahead of them when they go in order.

    `read` is the metadata read of one node (best effort, `Listings.head_attrs`), `due`
    whether a node's lookup needs one. A directory's sorted names come from `EntryOrders`
    (entries made here since its listing are never due: their attributes are known). `head`
    may yield; the rest never does.
    """

    def __init__(
        self, read: Callable[[Node], Awaitable[None]], due: Callable[[Node], bool], depth: int = AHEAD
    ) -> None:
        self.read, self.due, self.depth = read, due, depth
        #: node -> set once the HEAD read ahead for it ended (then `in_flight` forgets it)
        self.in_flight: dict[Node, trio.Event] = {}
        self.orders = EntryOrders()

    async def head(self, node: Node, nursery: trio.Nursery | None) -> None:
        """Read `node`'s metadata for its lookup (the caller found it due): wait for its HEAD
        read ahead, or send one; and start the next entries' when lookups go in order."""
        if nursery is not None:
            for entry in self.ahead(node):
                started = self.in_flight[entry] = trio.Event()
                nursery.start_soon(self._read_ahead, entry, started)
        event = self.in_flight.get(node)
        if event is not None:
            await event.wait()
            if not self.due(node):
                return  # read (a HEAD that failed leaves it due: this lookup tries itself)
        await self.read(node)

    def ahead(self, node: Node) -> list[Node]:
        """The entries after `node` to read ahead now, if the kernel looked up the entry
        just before it in its directory."""
        parent = node.parent
        if self.depth <= 0 or parent is None or not parent.children:
            return []
        entries = parent.children
        order = self.orders.of(parent, entries)
        at = self.orders.position(order, node.name)
        if not at:
            return []  # not listed, or the first: no order to follow yet
        # In order: the kernel looked the entry before it up (a lookup of an entry read
        # ahead sends no HEAD and does not come here, so "the last lookup" would miss it).
        before = entries.get(order.names[at - 1])
        if before is None or not before.lookups:
            return []
        chosen = []
        for name in order.names[at + 1 : at + 1 + self.depth]:
            entry = entries.get(name)
            # Not one the kernel holds (a listing's readdirplus gave it): a HEAD finding a
            # symlink listed as a file replaces its node, and the kernel must learn that
            # from the request that needs it (ESTALE), not keep a stale inode.
            if entry is not None and not entry.lookups and entry not in self.in_flight and self.due(entry):
                chosen.append(entry)
        return chosen

    async def _read_ahead(self, node: Node, event: trio.Event) -> None:
        try:
            await self.read(node)
        except (StoreError, OSError) as exc:
            log.debug("%s: metadata not read ahead: %s", node.path(), exc)
        finally:
            del self.in_flight[node]
            event.set()
