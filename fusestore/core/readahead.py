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

from .nodes import Node

#: Sibling directories listed ahead of a walk: enough to keep the store busy while the
#: one before is merged and read; each costs one listing should the walk stop short.
READ_AHEAD = 2
#: Parents whose order of sub-directories is kept (a walk's path from the top, roughly).
ORDERS_KEPT = 16


class WalkReadAhead:
    """Names the sibling directories to list next when a walk reaches a directory.

    A directory opened is taken for a step of a walk when it is its parent's first
    sub-directory in name order, or the one before it is listed (or being listed): then
    the next `depth` sub-directories that are neither come out of `ahead`. A directory
    opened on its own (`cd` somewhere in the middle) names none. The order of a parent's
    sub-directories is worked out once per change of its entries, for the last
    `ORDERS_KEPT` parents. Never blocks or yields.
    """

    def __init__(self, depth: int = READ_AHEAD) -> None:
        self.depth = depth
        #: parent's inode -> (its entry count and listing time when sorted, the names of
        #: its sub-directories)
        self._orders: OrderedDict[int, tuple[tuple[int, float], list[str]]] = OrderedDict()

    def ahead(self, directory: Node, listed: Callable[[Node], bool]) -> list[Node]:
        """The directories to list now that `directory` is opened (`listed`: whether one
        is listed within the TTL or being listed)."""
        parent = directory.parent
        if self.depth <= 0 or parent is None or not parent.children or not directory.attached:
            return []
        siblings = parent.children
        names = self._order(parent, siblings)
        at = bisect.bisect_left(names, directory.name)
        if at == len(names) or names[at] != directory.name:
            return []
        if at > 0:
            before = siblings.get(names[at - 1])
            if before is None or not listed(before):
                return []
        chosen: list[Node] = []
        for name in names[at + 1 : at + 1 + self.depth]:
            sibling = siblings.get(name)
            if sibling is not None and sibling.is_dir and not listed(sibling):
                chosen.append(sibling)
        return chosen

    def _order(self, parent: Node, siblings: dict[str, Node]) -> list[str]:
        stamp = (len(siblings), parent.listed_at)
        kept = self._orders.get(parent.ino)
        if kept is not None and kept[0] == stamp:
            self._orders.move_to_end(parent.ino)
            return kept[1]
        names = sorted(name for name, node in siblings.items() if node.is_dir)
        self._orders[parent.ino] = (stamp, names)
        if len(self._orders) > ORDERS_KEPT:
            self._orders.popitem(last=False)
        return names
