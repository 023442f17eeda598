"""Writing over a key another node still moves from.

A rename is uploaded as a copy from the old key; until that copy lands, the old object is
the moved node's source (`Namespace.moving_from`), and nothing may be written over it.
`MoveSources.clear_way` lets an upload to such a key wait for the move, or, when the
move cannot come soon, gives the moving node a local copy of its data first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..cache import ContentStore
from ..core.namespace import Namespace
from ..core.nodes import Node
from .host import WritebackHost

if TYPE_CHECKING:
    from .queue import JobQueue


def still_at(node: Node, key: str) -> bool:
    """Whether `node` is still in the tree at `key`. A job takes its key when it starts
    and yields before it sends (waiting for the key, fetching): a node renamed or
    removed meanwhile must not be written there (its bytes would land at a name it no
    longer has, conditioned as if it never had an object there, or after its delete)."""
    return node.attached and node.object_key == key


class MoveSources:
    """Clears the way for an upload to a key that is another node's move source."""

    def __init__(self, queue: JobQueue, host: WritebackHost, ns: Namespace, contents: ContentStore) -> None:
        self.queue = queue
        self.host = host
        self.ns = ns
        self.contents = contents

    async def clear_way(self, node: Node, key: str) -> bool:
        """Make sure no other node still needs the object at `key` as its source.

        Returns False when `node` must wait for the other one's move first (it is
        rescheduled); a blocker that cannot move soon (deleted while open, itself
        waiting, or parked: the store refuses its new key) is given its own local copy
        of the data instead.

        Worker thread: the blocker's missing blocks (GETs) or attributes (a HEAD), in
        StoreCalls slots.
        """
        ns, host, queue = self.ns, self.host, self.queue
        blocker = ns.moving_from.get(key)
        if blocker is None or blocker is node:
            return True
        moving_on = ns.moving_from.get(blocker.object_key)
        waits_itself = blocker.attached and moving_on not in (None, blocker)
        if blocker.attached and not waits_itself and not queue.parked.held(blocker):
            queue.schedule(blocker, delay=0)
            queue.schedule(node, delay=0.05)
            return False
        if blocker in queue.running:
            queue.schedule(node, delay=0.05)
            return False
        if blocker.is_dir:
            # A marker's data are its attributes: read (raising while the store does not
            # answer, as a fetch does), then written by a put.
            if blocker.attrs_guessed:
                await host.read_attrs(blocker)
            if not still_at(node, key):
                return False  # renamed or removed meanwhile: nothing is to be written at `key`
            if ns.moving_from.get(key) is not blocker:
                return True
            blocker.meta_dirty = True
        else:
            content = blocker.content or host.clean_content(blocker)
            await host.fetch_all(content)
            if not still_at(node, key):
                return False  # renamed or removed meanwhile: nothing is to be written at `key`
            if ns.moving_from.get(key) is not blocker:
                return True
            if not content.dirty:
                self.contents.make_dirty(content)
            blocker.content = content
            blocker.data_dirty = True
        ns.release_remote(blocker)  # no delete: `node` is about to overwrite the key
        node.overwrites = key  # the object there is one this mount let go of: no condition
        host.record_if_room(node)
        if blocker.attached:
            host.record(blocker)
            queue.schedule(blocker, delay=0)
        return True
