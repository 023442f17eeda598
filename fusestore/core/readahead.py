"""`WalkReadAhead`: the directories a walk opens next, named before it gets there.

`find`, `ls -R`, `du`, `tar`, `cp -r` and `rsync` open a directory's sub-directories one
after another, in the order readdir gave them. Listed one at a time, each waits for its
own LIST (or, on a `file://` store, its directory scan) while the daemon's other thread
idles; listed a few ahead, the store's time and the merging of the pages before overlap.
On a cold `find` of 150,000 entries in 100 directories this was the larger part of the
walk's time (see docs/architecture.md, "Read-ahead of walks").

Everything here runs on the trio thread and is cheap: a bisect per directory opened.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .nodes import Node

#: Sibling directories listed ahead of a walk: enough to keep the store busy while the
#: one before is merged and read; each costs one listing should the walk stop short.
READ_AHEAD = 2
#: Directories whose order of entries is kept (a walk's path from the top, roughly).
ORDERS_KEPT = 16


@dataclass(eq=False)
class Order:
    """The sorted names of a directory's entries as of one listing of it."""

    stamp: tuple[int, float]
    names: list[str]


class EntryOrders:
    """The sorted names of directories' entries that `select` takes, for read-aheads that
    follow a program going through them in name order. Worked out once per listing of a
    directory (its entries' dict and listing time), for the last `ORDERS_KEPT` directories:
    entries made here since are not in it (nothing of theirs waits on the store). Never
    blocks or yields; sorting is linear-logarithmic in the entries, once per listing."""

    def __init__(self, select: Callable[[Node], bool] | None = None) -> None:
        self.select = select
        self._orders: OrderedDict[int, Order] = OrderedDict()

    def of(self, directory: Node, entries: dict[str, Node]) -> Order:
        """`directory`'s order (`entries`: its children)."""
        stamp = (id(entries), directory.listed_at)
        order = self._orders.get(directory.ino)
        if order is not None and order.stamp == stamp:
            self._orders.move_to_end(directory.ino)
            return order
        select = self.select
        names = sorted(name for name, node in entries.items() if select is None or select(node))
        order = self._orders[directory.ino] = Order(stamp, names)
        self._orders.move_to_end(directory.ino)
        if len(self._orders) > ORDERS_KEPT:
            self._orders.popitem(last=False)
        return order

    @staticmethod
    def position(order: Order, name: str) -> int | None:
        """Where `name` is in `order` (None: not there)."""
        at = bisect.bisect_left(order.names, name)
        return at if at < len(order.names) and order.names[at] == name else None


class WalkReadAhead:
    """Names the sibling directories to list next when a walk reaches a directory.

    A directory opened is taken for a step of a walk when it is its parent's first
    sub-directory in name order, or the one before it is listed (or being listed): then
    the next `depth` sub-directories that are neither come out of `ahead`. A directory
    opened on its own (`cd` somewhere in the middle) names none. Never blocks or yields.
    """

    def __init__(self, depth: int = READ_AHEAD) -> None:
        self.depth = depth
        self.orders = EntryOrders(lambda node: node.is_dir)

    def ahead(self, directory: Node, listed: Callable[[Node], bool]) -> list[Node]:
        """The directories to list now that `directory` is opened (`listed`: whether one
        is listed within the TTL or being listed)."""
        parent = directory.parent
        if self.depth <= 0 or parent is None or not parent.children or not directory.attached:
            return []
        siblings = parent.children
        order = self.orders.of(parent, siblings)
        at = self.orders.position(order, directory.name)
        if at is None:
            return []
        if at > 0:
            before = siblings.get(order.names[at - 1])
            if before is None or not listed(before):
                return []
        chosen: list[Node] = []
        for name in order.names[at + 1 : at + 1 + self.depth]:
            sibling = siblings.get(name)
            if sibling is not None and sibling.is_dir and not listed(sibling):
                chosen.append(sibling)
        return chosen
