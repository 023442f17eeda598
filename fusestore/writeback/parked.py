"""Changes the store refuses for good: files and directories whose key it cannot hold.

An upload that fails with InvalidKey (a name this server cannot address, such as one
holding a newline on moto; a key too long) fails the same way every time: retried, it
held every unmount until its timeout. Such a node is *parked* instead: logged once, its
change kept in the cache and the journal (its record carries the reason, and `fusestore
cache show` lists it as not uploadable), and left alone by the flusher until it changes
or moves (a write, a chmod, or a rename to a name the store takes makes it eligible
again); the next mount tries it once more. A sync does not wait for it, and the daemon
then exits 1, naming it.

Not parked: AccessDenied. It is seldom about one key (expired or rotated credentials, a
bucket policy) and usually clears while mounted, so it is retried like an outage, and
bounded by the unmount timeout.

Every method is synchronous and cheap (no I/O): called on the trio thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..core.nodes import Node

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Parking:
    reason: str
    key: str
    version: int


class Parked:
    """The parked nodes of one mount, with why each was refused."""

    def __init__(self) -> None:
        self._nodes: dict[Node, _Parking] = {}

    def park(self, node: Node, key: str, version: int, reason: str) -> None:
        """`node`, as it was at `version` under `key`, cannot be uploaded (logged once)."""
        self._nodes[node] = _Parking(reason, key, version)
        log.error(
            "%r cannot be uploaded: %s; it is kept in the cache (fusestore cache show lists it) "
            "until it is renamed or changed",
            node.path(),
            reason,
        )

    def held(self, node: Node) -> bool:
        """Whether `node` stays parked: it was, and has neither changed nor moved since
        (if it has, it is released)."""
        parking = self._nodes.get(node)
        if parking is None:
            return False
        if node.attached and node.version == parking.version and node.key == parking.key:
            return True
        del self._nodes[node]
        return False

    def reason(self, node: Node) -> str | None:
        """Why `node` is parked (what its journal record keeps), or None."""
        parking = self._nodes.get(node)
        return parking.reason if parking is not None and self.held(node) else None

    def count(self) -> int:
        """How many nodes are still parked."""
        return sum(1 for node in list(self._nodes) if self.held(node))

    def forget(self, node: Node) -> None:
        self._nodes.pop(node, None)

    def lines(self) -> list[str]:
        """One line per node still parked: its path (quoted: it may hold a newline) and why."""
        held = [node for node in list(self._nodes) if self.held(node)]
        return sorted(f"{node.path()!r}: {self._nodes[node].reason}" for node in held)
