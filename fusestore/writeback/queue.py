"""The upload queue: which node is due when, which are uploading, and who holds a key.

A node is due `writeback_delay` seconds after its last change (rewrites in between
coalesce: its due time moves, the queue gains no entry); a node only moved (a rename of
a file whose data did not change: a server-side copy) after `MOVE_DELAY`. While new
files are made in a burst (`Burst`), uploads wait for it to pause, up to `burst_max_hold`. Everything here is
synchronous, cheap and on the trio thread; the loop that starts the jobs is the
`Flusher`'s.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time

import trio

from ..core.nodes import Node
from .host import WritebackHost, WritebackSettings
from .parked import Parked
from .recent import RecentEvents

#: A burst of new files: this many within this many seconds (see `Burst`).
BURST_FILES = 40
BURST_WINDOW = 0.5
#: The longest an upload that is due waits for a burst to pause.
BURST_MAX_HOLD = 15.0
#: A node only moved is due this long after its last change (or the writeback delay if
#: shorter): its copy has no data to coalesce, and a moment still makes one copy of
#: `mv a b && mv b c`.
MOVE_DELAY = 0.1


def now() -> float:
    """trio's clock: what due times are measured on."""
    try:
        return trio.current_time()
    except RuntimeError:
        return -math.inf  # scheduled before trio runs (the journal's replay): due at once


def only_moved(node: Node) -> bool:
    """Whether all a job of `node` has to send is a server-side copy of its object to its
    new key: a file or symlink renamed here whose data did not change here (attributes
    may have: the copy carries them). Such a job sends no data from this host and takes
    little of its CPU, and there are no bytes whose rewrites a wait would coalesce.
    Synchronous and cheap."""
    if node.is_dir or node.data_dirty or not node.attached:
        return False
    remote = node.remote_key
    return remote is not None and remote != node.key


class JobQueue:
    """Due times, running jobs, failures, and the keys being written.

    `schedule`, `forget`, `wake` and `hurry` are synchronous and cheap (called from file
    system operations); `claim` waits (yields) for a key another job holds.
    """

    def __init__(self, settings: WritebackSettings, host: WritebackHost, busy_keys: set[str]) -> None:
        self.settings = settings
        self.host = host
        self.due: dict[Node, float] = {}
        #: (time, order, node), a heap holding for every node in `due` an entry no later
        #: than its due time: pushed only when a node's due time comes or moves earlier,
        #: and pushed again at its due time when an earlier entry surfaces (so a burst of
        #: small files is no O(n²) scan, and a file written a million times no million
        #: entries)
        self._queue: list[tuple[float, int, Node]] = []
        self._order = itertools.count()
        self.running: set[Node] = set()
        self.failures: dict[Node, int] = {}
        self.failed_attempts = 0
        #: nodes whose key the store refuses for good: not retried until they change
        self.parked = Parked()
        #: the last failures, conflicts and refusals, for `status`
        self.recent = RecentEvents()
        #: wall-clock time each node waiting or uploading first became due (for `status`)
        self.dirty_since: dict[Node, float] = {}
        #: keys being written or deleted (shared with the namespace: listings must not
        #: trust what is in flight)
        self.busy_keys = busy_keys
        #: a sync was asked for: everything goes at once
        self.urgent = False
        #: the longest an upload that is due waits for a burst of new files to pause
        self.burst_max_hold = BURST_MAX_HOLD
        self._wakeup = trio.Event()
        self._progress = trio.Event()
        self._burst = Burst()
        #: when the loop, waiting, wakes by itself (-inf while it runs or has not started)
        self._sleeping_until = -math.inf

    @property
    def entries(self) -> int:
        """Entries in the queue's heap: at least one per due node, seldom more."""
        return len(self._queue)

    def schedule(self, node: Node, delay: float | None = None) -> None:
        """Upload `node` after `delay` (default: the writeback delay, or `MOVE_DELAY` for a
        node only moved) unless it changes again."""
        if self.parked.held(node):
            return  # unchanged since the store refused its key: it would refuse it again
        moved = delay is None and only_moved(node)
        wait = self.settings.writeback_delay if delay is None else delay
        if moved:
            wait = min(wait, MOVE_DELAY)
        if self.urgent and node not in self.failures:
            wait = 0
        at = now()
        if node not in self.due and node not in self.running and not moved:
            # A renamed tree is no burst of new files: its copies take little CPU here.
            self._burst.note(at)
        self._set_due(node, at + wait)
        self.dirty_since.setdefault(node, time.time())
        if at + wait < self._sleeping_until:
            # Only then: the loop would find nothing to do before it wakes anyway, and a
            # burst of new files (3-4 changes each) woke it for every change.
            self.wake()

    def _set_due(self, node: Node, when: float) -> None:
        earlier = self.due.get(node, math.inf) > when
        self.due[node] = when
        if earlier:
            heapq.heappush(self._queue, (when, next(self._order), node))

    def holds(self, node: Node) -> bool:
        """Whether `node` has a job: due, running, failed or parked."""
        return (
            node in self.due
            or node in self.running
            or node in self.failures
            or node in self.dirty_since
            or self.parked.reason(node) is not None
        )

    def forget(self, node: Node) -> None:
        self.due.pop(node, None)
        self.dirty_since.pop(node, None)
        self.failures.pop(node, None)
        self.parked.forget(node)
        self.notify()
        self.wake()  # a staged upload of its data may have to be aborted

    def wake(self) -> None:
        self._wakeup.set()

    def hurry(self) -> None:
        """Everything due now (dirty space is short, or a sync was asked for)."""
        at = now()
        for node, when in list(self.due.items()):
            if node not in self.failures and when > at:
                self._set_due(node, at)
        self.wake()

    def notify(self) -> None:
        """Something was uploaded, deleted or given up: those waiting look again."""
        self._progress.set()
        self._progress = trio.Event()
        self.host.dirty_space_freed()

    async def claim(self, key: str) -> None:
        """Hold `key` for one job (waits while another holds it); `busy_keys.discard` frees it."""
        while key in self.busy_keys:
            await self._progress.wait()
        self.busy_keys.add(key)


class Burst:
    """Tells whether new files are being made in a burst: at least BURST_FILES of them
    within the last BURST_WINDOW seconds (counted in two half windows). Cheap: O(1)."""

    def __init__(self) -> None:
        self._half = -math.inf  # start of the current half window
        self._count = 0  # new files in it
        self._before = 0  # ... and in the half before it
        self._last = -math.inf

    def note(self, now: float) -> None:
        half = BURST_WINDOW / 2
        if now - self._half >= half:
            self._before = self._count if now - self._half < 2 * half else 0
            self._half, self._count = now, 0
        self._count += 1
        self._last = now

    def going(self, now: float) -> bool:
        # The same sum as `quiet_at`: a burst going at its quiet time would wake no one.
        return now < self.quiet_at() and self._count + self._before >= BURST_FILES

    def quiet_at(self) -> float:
        """When the burst counts as over if no new file comes."""
        return self._last + BURST_WINDOW / 2
