"""Keys to delete, sent in batches: when to send them, and one batch's request.

The namespace holds the keys still to delete (`Namespace.deletes`); they are gathered
while more keep coming (an `rm -rf` of a big tree is one request per 1000 keys) and sent
by the `Flusher`'s loop when `next_time` says so.
"""

from __future__ import annotations

import logging
import math

from ..core.namespace import Namespace
from ..stores import Store, StoreError
from .host import WritebackHost
from .queue import JobQueue, now
from .storecalls import StoreCalls

log = logging.getLogger(__name__)

DELETE_BATCH = 1000
#: Keys to delete are sent once no new one has come for this long (or once the oldest has
#: waited the writeback delay or the queue's `burst_max_hold`, the longer), so that
#: `rm -rf` of a big tree is one request per 1000 keys.
DELETE_GATHER = 1.0
#: ... or, while deletes have been coming for a while, for this share of that while: a long
#: `rm -rf` that stalls (a loaded machine) should not have each stall send a small batch.
DELETE_GATHER_SHARE = 0.5
#: ... and while the copies of a rename are still going, up to this long; once they all
#: landed, no more keys of theirs are coming: the batch goes at once.
MOVE_GATHER = 30.0


class DeleteBatches:
    """When the pending deletes go, and the batch request (`send`, one at a time: the
    loop sets `sending` before it starts one)."""

    def __init__(
        self, queue: JobQueue, host: WritebackHost, ns: Namespace, store: Store, calls: StoreCalls
    ) -> None:
        self.queue = queue
        self.host = host
        self.ns = ns
        self.store = store
        self.calls = calls
        #: a batch is being sent
        self.sending = False
        self._due = 0.0
        #: how many deletes the namespace had been given when last looked at, and since
        #: when the oldest unsent one waits (None: none waits)
        self._seen = ns.deletes_added
        self._waiting_since: float | None = None
        self._last_added = -math.inf
        #: the keys waiting were gathered for copies of a rename, which have all landed
        #: when none is under way any more
        self._after_moves = False

    def retry_now(self, at: float) -> None:
        """A failed batch may go again at once (the store is back)."""
        self._due = at

    def next_time(self, at: float) -> float:
        """When the pending deletes are to be sent: once they stop coming for a moment (more
        are likely on the way; the longer they have been coming, the longer the moment), at
        once when they fill a batch, at the latest a writeback delay after the oldest."""
        added = self.ns.deletes_added
        if added != self._seen:
            self._seen = added
            self._last_added = at
            if self._waiting_since is None:
                self._waiting_since = at
        if not self.ns.deletes:
            self._waiting_since = None
            self._after_moves = False
            return math.inf
        since = at if self._waiting_since is None else self._waiting_since
        queue = self.queue
        if len(self.ns.deletes) >= DELETE_BATCH:
            gathered = at
        elif self.moves_under_way():
            # Each copy of a renamed tree frees its source key: wait for the lot (they
            # start at once, as many at a time as the store has connections).
            self._after_moves = True
            gathered = since + max(MOVE_GATHER, queue.settings.writeback_delay)
        elif queue.urgent or self._after_moves:
            # The last copy landed: the keys did not stop coming, they were all there.
            gathered = at
        else:
            coming_for = self._last_added - since
            quiet = max(DELETE_GATHER, DELETE_GATHER_SHARE * coming_for)
            # A bulk delete's keys wait for it as new files wait for a burst (burst_max_hold):
            # the writeback delay alone would cut a slow `rm -rf` into a batch every 2 s.
            longest = max(queue.settings.writeback_delay, queue.burst_max_hold)
            gathered = min(self._last_added + quiet, since + longest)
        return max(self._due, gathered)

    def moves_under_way(self) -> bool:
        """Whether copies whose sources are then deleted are queued or running."""
        queue = self.queue
        return any(
            node in queue.running or (node in queue.due and node not in queue.failures)
            for node in self.ns.moving_from.values()
        )

    async def send(self) -> None:
        """Delete up to DELETE_BATCH keys in one request; a failure is tried again later.

        Worker thread: the request, in one StoreCalls slot."""
        ns, host, queue = self.ns, self.host, self.queue
        try:
            keys = []
            for key in sorted(ns.deletes):
                if key in queue.busy_keys or key in ns.moving_from:
                    continue
                node = ns.node_at(key.rstrip("/"))
                if key.endswith("/"):
                    if node is not None and node.is_dir and host.marker_wanted(node):
                        host.reclaim_marker(node)  # wanted again: kept, with new attributes
                        host.record(node)
                        queue.schedule(node, delay=0)
                        continue
                elif node is not None and not node.is_dir:
                    ns.drop_delete(key)  # a new file is written there anyway
                    continue
                keys.append(key)
                if len(keys) >= DELETE_BATCH:
                    break
            if not keys:
                self._due = now() + 0.5  # each waits for a move or upload first
                return
            queue.busy_keys.update(keys)
            # Each of the version this mount knew there: one another client put since stays.
            etags = {key: etag for key in keys if (etag := ns.deletes.get(key)) is not None}
            try:
                await self.calls.run(self.store.delete_many, keys, etags)
            except StoreError as exc:
                queue.failed_attempts += 1
                log.warning("deleting %d key(s) failed, will retry: %s", len(keys), exc)
                self._due = now() + 1.0
                return
            finally:
                queue.busy_keys.difference_update(keys)
            self._waiting_since = None
            self._after_moves = False
            host.keys_deleted(keys)
            # Deletes held up meanwhile are part of the same run: the next gathering starts now.
            self._last_added = max(self._last_added, now())
        finally:
            self.sending = False
            queue.notify()
            queue.wake()
