"""Write-back: brings the store up to date with the cache, in the background.

A node is uploaded `writeback_delay` seconds after its last change (rewrites in between
coalesce), by at most `upload_workers` concurrent jobs. A file whose object moved (rename)
is copied server-side, at once and by as many jobs as the store has connections (a copy
sends no data from here); a file whose data changed is uploaded from its cache file
(multipart when large). Keys to delete go in batches. Failures are retried with exponential backoff,
forever: nothing is dropped; but a key the store refuses for good (InvalidKey) is parked
(see `parked`) until the node changes. `sync_all` returns once nothing else is pending.

The `Flusher` is the queue (`JobQueue`) and the loop that starts its jobs; each job
is one node's: `uploads` (a file or symlink), `staging` (a big file's parts sent ahead),
`markers` (a directory); `deletes` sends the keys to delete in batches.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from typing import Any

import trio

from ..cache import Content, ContentStore, Journal
from ..cache.diskfull import Index
from ..cache.journal import Records
from ..core.namespace import Namespace
from ..core.nodes import Node
from ..stores import InvalidKey, Store, StoreError, StoreUnavailable
from .conditions import WriteConditions
from .conflicts import ConflictNames
from .deletes import DeleteBatches
from .host import WritebackHost, WritebackSettings
from .landings import Landings
from .markers import MarkerWriter
from .moves import MoveSources, still_at
from .queue import JobQueue, only_moved
from .queue import now as _now
from .staging import StagedUpload, Stager
from .storecalls import StoreCalls, StoreTimeout
from .unfinished import JournaledUploads
from .uploads import Uploader

log = logging.getLogger(__name__)

MAX_BACKOFF = 60.0
#: Uploads of a file that changed while it was read go again at once this many times in
#: a row; past that (a cache file cut short by something else) they back off and warn.
CHANGED_RETRIES = 10
#: Due nodes a look at the queue sets aside while the upload workers are busy, looking
#: for copies behind them (bounded: thousands of due uploads cost no scan per wake-up).
COPY_LOOKAHEAD = 64
#: A store down again this soon after it came back was back only in part (see
#: `_resume_after_outages`).
FLAP_WINDOW = 5.0
#: The store's connections that jobs leave to reads: a kernel request waits on those,
#: and a renamed tree of big files keeps its copies long.
READ_CONNECTIONS = 4


class Flusher(JobQueue):
    """The upload queue and its workers.

    `schedule`, `forget`, `wake` and `hurry` are synchronous and cheap (called from file
    system operations). `run` is the long-lived task; `sync_all` waits (yields) until
    the queue is empty. Built from the pieces of the mount it uploads for (the store, its
    calls, the journal and what it held at the mount, the contents, the namespace, the
    index) and the `WritebackHost` the core implements.
    """

    def __init__(
        self,
        host: WritebackHost,
        *,
        store: Store,
        calls: StoreCalls,
        journal: Journal,
        opened: Records,
        contents: ContentStore,
        ns: Namespace,
        index: Index,
        settings: WritebackSettings,
    ) -> None:
        super().__init__(settings, host, ns.writing)  # listings must not trust what is in flight
        self.store = store
        self.calls = calls
        calls.recent = self.recent  # outages among the failures and conflicts `status` shows
        self.ns = ns
        self.uploads = JournaledUploads(journal, store, opened.uploads)
        self.landings = Landings(journal, ns, opened.landings)
        self._recovering = False
        #: the running jobs started as a server-side copy (`only_moved`): not counted
        #: against `upload_workers`, only against the store's connections
        self.copying: set[Node] = set()
        #: how many jobs run at once: copies up to the store's connections but a few
        self.job_limit = max(settings.upload_workers, int(calls.limiter.total_tokens) - READ_CONNECTIONS)
        #: how many times the loop looked at the queue (each wake-up)
        self.rounds = 0
        self.stager = Stager(
            self, host, store, calls, contents, self.uploads, self.landings, settings.upload_workers
        )
        self.conditions = WriteConditions(store, calls, journal, ns.conflict_names, ns.add_delete)
        self.moves = MoveSources(self, host, ns, contents)
        self.uploader = Uploader(
            self,
            host,
            ns,
            store,
            calls,
            journal,
            contents,
            self.uploads,
            self.landings,
            self.stager,
            self.conditions,
            ns.conflict_names,
        )
        self.markers = MarkerWriter(self, host, ns, index, store, calls, self.moves)
        self.deletes = DeleteBatches(self, host, ns, store, calls)

    # -- what the parts hold, by the names the core and `status` use ------------------------

    @property
    def staged(self) -> dict[Content, StagedUpload]:
        return self.stager.staged

    def staged_bytes(self) -> int:
        """Bytes of dirty files that already went up as parts of a staged upload."""
        return self.stager.staged_bytes()

    def written(self, content: Content, start: int, end: float) -> None:
        """Bytes [start, end) of `content` changed (written, or cut off by a truncate)."""
        self.stager.written(content, start, end)

    @property
    def names(self) -> ConflictNames:
        return self.uploader.names

    @property
    def conflicts(self) -> int:
        """Uploads that found another client's version at the key (each kept both)."""
        return self.uploader.conflicts

    @property
    def uploaded_bytes(self) -> int:
        return self.uploader.uploaded_bytes

    @property
    def conditions_honoured(self) -> bool | None:
        """Whether the store honours If-Match / If-None-Match (None: not probed yet)."""
        return self.conditions.honoured

    @conditions_honoured.setter
    def conditions_honoured(self, honoured: bool | None) -> None:
        self.conditions.honoured = honoured

    @property
    def conditions_note(self) -> str:
        return self.conditions.note

    # -- state ------------------------------------------------------------------------

    def idle(self) -> bool:
        return (
            not self.due
            and not self.running
            and not self.ns.deletes
            and not self.deletes.sending
            and not self.stager.any_stale()
            and not self.stager.cleaning
            and not self._recovery_wanted()
            and not self._recovering
        )

    def pending(self) -> tuple[int, int]:
        """Files (and directories, keys to delete) still to reconcile, and dirty bytes."""
        nodes = set(self.due) | self.running
        dirty = sum(n.size for n in nodes if n.data_dirty)
        leftovers = len(self.landings.unsettled) + self.uploads.orphans()
        return len(nodes) + len(self.ns.deletes) + leftovers, dirty

    def progress(self) -> dict[str, Any]:
        """What is left to upload, for status and progress bars (cheap: no I/O)."""
        count, size = self.pending()
        oldest = min(self.dirty_since.values(), default=None)
        return {
            "dirty_items": count,
            "dirty_bytes": size,
            "oldest_dirty_age": None if oldest is None else max(0.0, time.time() - oldest),
            "uploads_in_flight": len(self.running),
            "deletes_pending": len(self.ns.deletes),
            "failed_attempts": self.failed_attempts,
            "conflicts": self.conflicts,
            "conflict_copies": self.conflict_copies(),
            "conflict_copies_total": sum(len(names) for names in self.ns.conflict_copies.values()),
            "not_uploadable": self.parked.count(),
            "conditional_writes": self.conditions_note,
            "uploaded_bytes": self.uploaded_bytes,
            "uploads": self.uploads_running(),
            "recent_events": self.recent.as_list(),
        }

    def uploads_running(self) -> list[dict[str, Any]]:
        """Each upload in flight: its path, its size and, for a big file sent in parts
        ahead (staged), the bytes already sent (None where not known). At most
        `job_limit` of them (`upload_workers` sending data, the rest copies)."""
        found = []
        for node in self.running:
            content = node.content
            staged = self.stager.staged.get(content) if content is not None else None
            sent = min(staged.staged_bytes, node.size) if staged is not None else None
            found.append({"path": node.path(), "size": node.size, "sent": sent})
        return sorted(found, key=lambda upload: upload["path"])

    def gauges(self) -> tuple[int, float | None]:
        """What is left to upload, counted in O(uploads running) rather than `pending`'s
        pass over every dirty node (metrics take it every second): the items (a node both
        due and running counted once), and the wall-clock time the oldest of them became
        dirty (`dirty_since` is in that order: a node keeps its time until it is clean)."""
        items = len(self.due) + sum(1 for node in self.running if node not in self.due)
        items += len(self.ns.deletes) + len(self.landings.unsettled) + self.uploads.orphans()
        oldest = next(iter(self.dirty_since.values()), None)
        return items, oldest

    def conflict_copies(self, at_most: int = 100) -> list[str]:
        """Conflict copies in the directories this mount listed (made here or by other
        hosts), as paths: what is left to reconcile by hand."""
        found = sorted(
            "/" + prefix + name for prefix, names in self.ns.conflict_copies.items() for name in names
        )
        return found[:at_most]

    async def sync_all(self, progress_every: float = 5.0) -> None:
        """Return once the store holds everything; logs progress while it waits."""
        self.urgent = True
        try:
            last_report = _now()
            while not self.idle():
                self.hurry()
                with trio.move_on_after(1.0):
                    await self._progress.wait()
                if _now() - last_report >= progress_every:
                    count, size = self.pending()
                    log.info("sync: %d item(s) pending, %.1f MiB of data", count, size / 2**20)
                    last_report = _now()
        finally:
            self.urgent = False

    # -- the worker loop ------------------------------------------------------------------

    def _recovery_wanted(self) -> bool:
        return bool(self.landings.unsettled) or self.uploads.orphans() > 0

    async def _recover(self) -> None:
        """Settle the uploads whose answer never came and abort the multipart uploads left
        unfinished (by a killed daemon: all of them at the mount; by lost answers or failed
        aborts later), before anything else is uploaded: the next upload of a file must
        know what the store holds of it. Waits for the store while it does not answer.

        Worker thread: each HEAD and abort, in StoreCalls slots."""
        self._recovering = True
        try:
            while self._recovery_wanted():
                try:
                    for landing in self.landings.to_settle():
                        await self.uploader.settle(landing)
                    await self.uploads.abort_orphans(self.calls)
                except StoreUnavailable:
                    await self.calls.wait_online()
                    await trio.sleep(0.5)
        finally:
            self._recovering = False
            self.notify()
            self.wake()

    async def wait_uploaded(self, node: Node) -> None:
        """Yield until the store holds `node` as it is now or later (fsync=remote).

        StoreTimeout once the store has been down for longer than the I/O timeout: the
        change stays in the journal and goes up when the store is back.
        """
        calls = self.calls
        while node.attached and node.pending:
            reason = self.parked.reason(node)
            if reason is not None:
                raise InvalidKey(f"{node.path()!r}: {reason}", key=node.key)
            if node not in self.running and node not in self.failures:
                self.schedule(node, delay=0)
            if calls.down_for() > calls.io_timeout:
                raise StoreTimeout(
                    f"{node.path()}: the store has not answered for {calls.down_for():.0f}s; "
                    "the change is kept in the cache and uploaded once it is back"
                )
            with trio.move_on_after(1.0):
                await self._progress.wait()

    def retry_now(self) -> None:
        """Everything that failed is due again (the store is back)."""
        now = _now()
        for node in self.failures:
            if node in self.due:
                self._set_due(node, now)
        self.failures.clear()
        self.deletes.retry_now(now)
        self.wake()

    async def _resume_after_outages(self) -> None:
        """Retry every failure when the store answers again (long-lived task). A store
        back only for reads (writes still refused: many in a row take it for down, the
        next read for back) would have them sent again and again at once: a return that
        follows the last one within FLAP_WINDOW waits first, twice as long each time (from
        0.5 s, at most MAX_BACKOFF)."""
        calls = self.calls
        pause = 0.0
        resumed = -math.inf
        while True:
            await calls.wait_offline()
            pause = min(MAX_BACKOFF, max(0.5, 2 * pause)) if _now() - resumed < FLAP_WINDOW else 0.0
            await calls.wait_online()
            await trio.sleep(pause)
            resumed = _now()
            self.retry_now()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The loop (long-lived, on the trio thread): starts each job as it falls due, the
        batched deletes, the recovery of uploads whose answer never came."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._resume_after_outages)
            task_status.started()
            await self._recover()
            while True:
                self.rounds += 1
                now = _now()
                if self._recovery_wanted() and not self._recovering:
                    self._recovering = True
                    nursery.start_soon(self._recover)
                # Nothing is uploaded while recovering: a file's next upload must know
                # what the store holds of its last one.
                next_due = math.inf if self._recovering else self._start_due_jobs(nursery, now)
                deletes_due = self.deletes.next_time(now)
                if self.ns.deletes and not self.deletes.sending and deletes_due <= now:
                    self.deletes.sending = True
                    nursery.start_soon(self.deletes.send)
                if not self.stager.cleaning and self.stager.any_stale():
                    self.stager.cleaning = True
                    nursery.start_soon(self.stager.drop_stale)
                if self.ns.deletes and not self.deletes.sending:
                    next_due = min(next_due, deletes_due)
                self._sleeping_until = next_due
                with trio.move_on_at(next_due):
                    await self._wakeup.wait()
                self._sleeping_until = -math.inf
                self._wakeup = trio.Event()

    def _start_due_jobs(self, nursery: trio.Nursery, now: float) -> float:
        """Start an upload job for each node due by `now`, earliest first, while workers
        are free; returns when the next waiting node falls due (inf: none, or no free
        worker). Nodes that cannot start now (no free worker, or an upload of the same
        node still running) are looked at again when a job ends and wakes the loop.

        At most `upload_workers` jobs send data; a node only moved (a copy in the store)
        does not take one of them: copies run beside, up to `job_limit` jobs in all (the
        store's connections less READ_CONNECTIONS), and are found behind due uploads
        waiting for a worker (up to COPY_LOOKAHEAD of them)."""
        queue, blocked = self._queue, []
        next_due = math.inf
        workers = self.settings.upload_workers
        # While files are being made in a burst (tar, cp -r, a build), uploads wait until
        # it pauses: they would take CPU from it (the store's client holds our GIL and,
        # with a local server, the store itself shares the cores), and the burst's end
        # comes sooner. Not for long: a file due for `burst_max_hold` starts anyway, and all
        # do when space is short or a sync is asked for.
        held = not self.urgent and not self.host.space_wanted and self._burst.going(now)
        while queue:
            when, _, node = queue[0]
            due = self.due.get(node)
            if due != when:
                heapq.heappop(queue)
                if due is not None and due > when:  # postponed since: wait for its new time
                    heapq.heappush(queue, (due, next(self._order), node))
                continue  # else started or forgotten since, or an earlier entry exists
            if len(self.running) >= self.job_limit:
                break
            if when > now:
                next_due = when
                break
            # `now < when + hold`, not `when > now - hold`: the same sum as the wake time, or
            # rounding could hold a node at the very time the loop wakes for it (a busy loop).
            if held and now < when + self.burst_max_hold and node not in self.failures:
                next_due = min(self._burst.quiet_at(), when + self.burst_max_hold)
                break
            entry = heapq.heappop(queue)
            if node in self.running:
                blocked.append(entry)
                continue
            copy = only_moved(node)
            if not copy and len(self.running) - len(self.copying) >= workers:
                blocked.append(entry)  # waits for a worker; a copy behind it need not
                if len(blocked) >= COPY_LOOKAHEAD or not self.ns.moving_from:
                    break  # (every node only moved is a move's, in `moving_from`)
                continue
            del self.due[node]
            self.running.add(node)
            if copy:
                self.copying.add(node)
            nursery.start_soon(self._job, node)
        for entry in blocked:
            heapq.heappush(queue, entry)
        return next_due

    async def _job(self, node: Node) -> None:
        """One node's upload, and what its failure means (backoff, or parked).

        Worker thread: the node's store calls (see `_reconcile`)."""
        version, key = node.version, node.key
        try:
            await self._reconcile(node)
        except InvalidKey as exc:
            if node.attached and node.version == version and node.key == key:
                self.failures.pop(node, None)
                self.parked.park(node, key, version, str(exc))
                self.recent.note("refused", f"{node.path()}: {exc}")
                self.host.record_if_room(node)  # the reason goes in its journal record
            else:
                self._retry_later(node, exc)  # changed or moved meanwhile: try as it is now
        except (StoreError, OSError, ValueError) as exc:
            if node.attached:
                self._retry_later(node, exc)
            else:
                # Removed during its upload (its cache file went with it): nothing is left
                # to upload, so no failure to count or warn of.
                log.debug("upload of %s ended, the file removed meanwhile: %s", node.path(), exc)
        except Exception as exc:
            log.exception("unexpected error while uploading %s", node.path())
            self._retry_later(node, exc)
        else:
            self.failures.pop(node, None)
        finally:
            self.running.discard(node)
            self.copying.discard(node)
            if node not in self.due:
                self.dirty_since.pop(node, None)
            self.notify()
            self.wake()

    def _retry_later(self, node: Node, exc: Exception) -> None:
        self.failed_attempts += 1
        count = self.failures[node] = self.failures.get(node, 0) + 1
        # The doubling stops at the cap: 2.0 ** 1024 overflows a float (days of failures).
        delay = min(MAX_BACKOFF, 0.5 * 2 ** min(count - 1, 16))
        if isinstance(exc, ValueError) and count <= CHANGED_RETRIES:
            delay = 0.1  # the file changed while it was read: just go again
        elif isinstance(exc, StoreUnavailable) and not self.calls.online:
            # Said once by StoreCalls; the store's return brings it back (retry_now).
            delay = MAX_BACKOFF
            log.debug("upload of %s waits for the store: %s", node.path(), exc)
        else:
            log.warning("upload of %s failed (attempt %d, next in %.1fs): %s", node.path(), count, delay, exc)
            self.recent.note("error", f"upload of {node.path()} failed (attempt {count}): {exc}")
        if node.attached:
            self._set_due(node, _now() + delay)

    # -- one node ---------------------------------------------------------------------------

    async def _reconcile(self, node: Node) -> None:
        """Bring the store up to date with `node`: its upload, staged parts or marker.

        Worker thread: the node's store calls, in StoreCalls slots."""
        if not node.attached:
            return
        if node.is_dir:
            await self.markers.reconcile(node)
            return
        if not node.pending:
            self.host.record(node)
            return
        key = node.key
        # The key first, then the way: while this job waited for the key, the job holding
        # it may have made its object another node's copy source (a copy landing there).
        await self.claim(key)
        try:
            if not still_at(node, key):
                return  # renamed or removed while it waited: its change made it due again
            if not await self.moves.clear_way(node, key):
                return
            if self.stager.should_stage(node):
                await self.stager.stage(node, key)
            else:
                await self.uploader.upload(node, key)
        finally:
            self.busy_keys.discard(key)
