"""Write-back: brings the store up to date with the cache, in the background.

A node is uploaded `writeback_delay` seconds after its last change (rewrites in between
coalesce), by at most `upload_workers` concurrent jobs. A file whose object moved (rename)
is copied server-side; a file whose data changed is uploaded from its cache file (multipart
when large). Keys to delete go in batches. Failures are retried with exponential backoff,
forever: nothing is dropped; but a key the store refuses for good (InvalidKey) is parked
(see `parked`) until the node changes. `sync_all` returns once nothing else is pending.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from ..cache import Content, Snapshot, SourceChanged
from ..core.nodes import Kind, Node
from ..stores import (
    AlreadyExists,
    CompletedPart,
    InvalidKey,
    NotFound,
    ObjectInfo,
    PreconditionFailed,
    StoreError,
    StoreUnavailable,
)
from .conditions import probe_conditions, probe_key
from .landings import NOT_LANDED, TOKEN, Landing, Landings
from .markers import marker_source, write_marker
from .parked import Parked
from .staging import StagedUpload, upload_part_size
from .storecalls import StoreTimeout
from .unfinished import JournaledUploads

if TYPE_CHECKING:
    from ..core.filesystem import Filesystem

log = logging.getLogger(__name__)

MAX_BACKOFF = 60.0
DELETE_BATCH = 1000
#: Keys to delete are sent once no new one has come for this long (or once the oldest has
#: waited the writeback delay or BURST_MAX_HOLD, the longer), so that `rm -rf` of a big
#: tree is one request per 1000 keys.
DELETE_GATHER = 1.0
#: ... or, while deletes have been coming for a while, for this share of that while: a long
#: `rm -rf` that stalls (a loaded machine) should not have each stall send a small batch.
DELETE_GATHER_SHARE = 0.5
#: ... and while the copies of a rename are still going, up to this long.
MOVE_GATHER = 30.0
#: A burst of new files: this many within this many seconds (see `Burst`).
BURST_FILES = 40
BURST_WINDOW = 0.5
#: The longest an upload that is due waits for a burst to pause.
BURST_MAX_HOLD = 15.0
#: Seconds a staged upload's object mtime (its completion) may differ from the file's.
MTIME_SLACK = 2.0


def staged_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """A staged upload starts before the last write, so it carries no mtime: the object's
    own time (its completion) stands for it."""
    return {name: value for name, value in metadata.items() if name != "mtime"}


def _put_body(store: Any, key: str, *, body: bytes, metadata: Mapping[str, str], **conditions: Any) -> str:
    """`store.put` with the key first, as `Flusher._send` calls an upload (blocking)."""
    etag: str = store.put(key, body, metadata, **conditions)
    return etag


class PartsChanged(ValueError):
    """A staged upload's part changed while it was sent: send it again (soon)."""


class LandedLate(ValueError):
    """An upload's condition failed on an earlier upload of this mount's that the store
    took late: the file is now based on it; upload again (soon)."""


class Conflict(Exception):
    """The store's object at a key is no longer the one our change was based on."""


class Flusher:
    """The upload queue and its workers.

    `schedule`, `forget`, `wake` and `hurry` are synchronous and cheap (called from file
    system operations). `run` is the long-lived task; `sync_all` waits (yields) until
    the queue is empty.
    """

    def __init__(self, fs: Filesystem) -> None:
        self.fs = fs
        self.settings = fs.settings
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
        #: uploads that found another client's version at the key (each kept both)
        self.conflicts = 0
        self.names = fs.ns.conflict_names
        #: whether the store honours If-Match / If-None-Match (None: not probed yet; see
        #: `conditions`), and what the probe said
        self.conditions_honoured: bool | None = None
        self.conditions_note = "not probed yet (nothing uploaded)"
        self._probe_lock = trio.Lock()
        #: wall-clock time each node waiting or uploading first became due (for `status`)
        self.dirty_since: dict[Node, float] = {}
        #: bytes uploaded so far (for progress rates)
        self.uploaded_bytes = 0
        self._busy_keys = fs.ns.writing  # listings must not trust what is in flight
        self._deleting = False
        self._deletes_due = 0.0
        #: how many deletes the namespace had been given when last looked at, and since
        #: when the oldest unsent one waits (None: none waits)
        self._deletes_seen = fs.ns.deletes_added
        self._deletes_waiting_since: float | None = None
        self._deletes_last_added = -math.inf
        self._wakeup = trio.Event()
        self._progress = trio.Event()
        self._urgent = False
        opened = fs.journaled_at_open
        self.uploads = JournaledUploads(fs.journal, fs.store, opened.uploads)
        self.landings = Landings(fs.journal, fs.ns, opened.landings)
        self._recovering = False
        self.staged: dict[Content, StagedUpload] = {}
        self._part_limiter = trio.CapacityLimiter(self.settings.upload_workers)
        self._cleaning_staged = False
        self._burst = Burst()
        #: when the loop, waiting, wakes by itself (-inf while it runs or has not started)
        self._sleeping_until = -math.inf

    # -- called by the file system --------------------------------------------------------

    def schedule(self, node: Node, delay: float | None = None) -> None:
        """Upload `node` after `delay` (default: the writeback delay) unless it changes again."""
        if self.parked.held(node):
            return  # unchanged since the store refused its key: it would refuse it again
        wait = self.settings.writeback_delay if delay is None else delay
        if self._urgent and node not in self.failures:
            wait = 0
        now = _now()
        if node not in self.due and node not in self.running:
            self._burst.note(now)
        self._set_due(node, now + wait)
        self.dirty_since.setdefault(node, time.time())
        if now + wait < self._sleeping_until:
            # Only then: the loop would find nothing to do before it wakes anyway, and a
            # burst of new files (3-4 changes each) woke it for every change.
            self.wake()

    def _set_due(self, node: Node, when: float) -> None:
        earlier = self.due.get(node, math.inf) > when
        self.due[node] = when
        if earlier:
            heapq.heappush(self._queue, (when, next(self._order), node))

    def forget(self, node: Node) -> None:
        self.due.pop(node, None)
        self.dirty_since.pop(node, None)
        self.failures.pop(node, None)
        self.parked.forget(node)
        self._notify()
        self.wake()  # a staged upload of its data may have to be aborted

    def wake(self) -> None:
        self._wakeup.set()

    def hurry(self) -> None:
        """Everything due now (dirty space is short, or a sync was asked for)."""
        now = _now()
        for node, when in list(self.due.items()):
            if node not in self.failures and when > now:
                self._set_due(node, now)
        self.wake()

    def _notify(self) -> None:
        self._progress.set()
        self._progress = trio.Event()
        self.fs.dirty_space_freed()

    # -- state ------------------------------------------------------------------------

    def idle(self) -> bool:
        return (
            not self.due
            and not self.running
            and not self.fs.ns.deletes
            and not self._deleting
            and not any(self._stale(content) for content in self.staged)
            and not self._cleaning_staged
            and not self._recovery_wanted()
            and not self._recovering
        )

    def pending(self) -> tuple[int, int]:
        """Files (and directories, keys to delete) still to reconcile, and dirty bytes."""
        nodes = set(self.due) | self.running
        dirty = sum(n.size for n in nodes if n.data_dirty)
        leftovers = len(self.landings.unsettled) + self.uploads.orphans()
        return len(nodes) + len(self.fs.ns.deletes) + leftovers, dirty

    def progress(self) -> dict[str, Any]:
        """What is left to upload, for status and progress bars (cheap: no I/O)."""
        count, size = self.pending()
        oldest = min(self.dirty_since.values(), default=None)
        return {
            "dirty_items": count,
            "dirty_bytes": size,
            "oldest_dirty_age": None if oldest is None else max(0.0, time.time() - oldest),
            "uploads_in_flight": len(self.running),
            "deletes_pending": len(self.fs.ns.deletes),
            "failed_attempts": self.failed_attempts,
            "conflicts": self.conflicts,
            "conflict_copies": self.conflict_copies(),
            "not_uploadable": self.parked.count(),
            "conditional_writes": self.conditions_note,
            "uploaded_bytes": self.uploaded_bytes,
        }

    def conflict_copies(self, at_most: int = 100) -> list[str]:
        """Conflict copies in the directories this mount listed (made here or by other
        hosts), as paths: what is left to reconcile by hand."""
        found = sorted(
            "/" + prefix + name for prefix, names in self.fs.ns.conflict_copies.items() for name in names
        )
        return found[:at_most]

    async def sync_all(self, progress_every: float = 5.0) -> None:
        """Return once the store holds everything; logs progress while it waits."""
        self._urgent = True
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
            self._urgent = False

    # -- the worker loop ------------------------------------------------------------------

    def _recovery_wanted(self) -> bool:
        return bool(self.landings.unsettled) or self.uploads.orphans() > 0

    async def _recover(self) -> None:
        """Settle the uploads whose answer never came and abort the multipart uploads left
        unfinished (by a killed daemon: all of them at the mount; by lost answers or failed
        aborts later), before anything else is uploaded: the next upload of a file must
        know what the store holds of it. Waits for the store while it does not answer."""
        self._recovering = True
        try:
            while self._recovery_wanted():
                try:
                    for landing in self.landings.to_settle():
                        await self._settle(landing)
                    await self.uploads.abort_orphans(self.fs.calls)
                except StoreUnavailable:
                    await self.fs.calls.wait_online()
                    await trio.sleep(0.5)
        finally:
            self._recovering = False
            self._notify()
            self.wake()

    async def _settle(self, landing: Landing) -> None:
        """Find out whether an upload whose answer never came landed (one HEAD), and if so
        make it the base of the file still at its key, or delete it (see `landings`)."""
        key = landing.key
        await self._claim(key)  # no upload of the key meanwhile
        try:
            await self._settle_claimed(landing)
        finally:
            self._busy_keys.discard(key)

    async def _settle_claimed(self, landing: Landing) -> None:
        fs = self.fs
        key = landing.key
        try:
            info: ObjectInfo | None = await fs.calls.run(fs.store.head, key)
        except NotFound:
            info = None
        except StoreUnavailable:
            raise
        except StoreError as exc:
            log.warning("%r: could not learn whether an upload whose answer never came landed: %s", key, exc)
            info = None
        if landing.token not in self.landings.unsettled:
            return  # settled meanwhile
        if not landing.carried_by(info):
            # Nothing of it landed (or another client wrote since): what the directory
            # shows there must come from a new listing.
            parent = fs.ns.node_at(key.rpartition("/")[0])
            if parent is not None and parent.is_dir:
                parent.listed_at = float("-inf")
            fs.forget_listing(key)
            self.landings.not_there(landing.token)
            return
        assert info is not None
        node = fs.ns.node_at(key)
        with fs.journal.batch():
            if node is not None and landing.sent_by(node):
                log.info("%s: an upload whose answer never came landed; the next replaces it", node.path())
                self._based_on_own(node, key, info)
            else:
                log.info("%r: an upload whose answer never came did land; no file needs it now", key)
                fs.object_unneeded(key)
            fs.forget_listing(key)
            self.landings.end(landing.token)

    def _based_on_own(self, node: Node, key: str, info: ObjectInfo) -> None:
        """`node`, to be uploaded to `key`, is based from now on on the object `info` there,
        an upload of this mount's own: its next upload replaces it, conditioned on it."""
        fs = self.fs
        old = node.remote_key
        if old is not None and old != key:
            fs.ns.release_remote(node)
            fs.object_unneeded(old)
        node.remote_key, node.etag, node.remote_size = key, info.etag, info.size
        node.overwrites = None
        content = node.content
        if content is not None and content.source is not None:
            # Its blocks never written here are the same in the landed object.
            content.source = (key, info.etag)
        fs.ns.store_changed(node)
        fs.record(node)

    async def wait_uploaded(self, node: Node) -> None:
        """Yield until the store holds `node` as it is now or later (fsync=remote).

        StoreTimeout once the store has been down for longer than the I/O timeout: the
        change stays in the journal and goes up when the store is back.
        """
        calls = self.fs.calls
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
        self._deletes_due = now
        self.wake()

    async def _resume_after_outages(self) -> None:
        calls = self.fs.calls
        while True:
            await calls.wait_offline()
            await calls.wait_online()
            self.retry_now()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._resume_after_outages)
            task_status.started()
            await self._recover()
            while True:
                now = _now()
                if self._recovery_wanted() and not self._recovering:
                    self._recovering = True
                    nursery.start_soon(self._recover)
                # Nothing is uploaded while recovering: a file's next upload must know
                # what the store holds of its last one.
                next_due = math.inf if self._recovering else self._start_due_jobs(nursery, now)
                deletes_due = self._next_delete_time(now)
                if self.fs.ns.deletes and not self._deleting and deletes_due <= now:
                    self._deleting = True
                    nursery.start_soon(self._delete_batch)
                if not self._cleaning_staged and any(self._stale(content) for content in self.staged):
                    self._cleaning_staged = True
                    nursery.start_soon(self._drop_stale_staging)
                if self.fs.ns.deletes and not self._deleting:
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
        node still running) are looked at again when a job ends and wakes the loop."""
        queue, blocked = self._queue, []
        next_due = math.inf
        # While files are being made in a burst (tar, cp -r, a build), uploads wait until
        # it pauses: they would take CPU from it (the store's client holds our GIL and,
        # with a local server, the store itself shares the cores), and the burst's end
        # comes sooner. Not for long: a file due for BURST_MAX_HOLD starts anyway, and all
        # do when space is short or a sync is asked for.
        held = not self._urgent and not self.fs.space_wanted and self._burst.going(now)
        while queue:
            when, _, node = queue[0]
            due = self.due.get(node)
            if due != when:
                heapq.heappop(queue)
                if due is not None and due > when:  # postponed since: wait for its new time
                    heapq.heappush(queue, (due, next(self._order), node))
                continue  # else started or forgotten since, or an earlier entry exists
            if len(self.running) >= self.settings.upload_workers:
                break
            if when > now:
                next_due = when
                break
            # `now < when + hold`, not `when > now - hold`: the same sum as the wake time, or
            # rounding could hold a node at the very time the loop wakes for it (a busy loop).
            if held and now < when + BURST_MAX_HOLD and node not in self.failures:
                next_due = min(self._burst.quiet_at(), when + BURST_MAX_HOLD)
                break
            entry = heapq.heappop(queue)
            if node in self.running:
                blocked.append(entry)
                continue
            del self.due[node]
            self.running.add(node)
            nursery.start_soon(self._job, node)
        for entry in blocked:
            heapq.heappush(queue, entry)
        return next_due

    def _next_delete_time(self, now: float) -> float:
        """When the pending deletes are to be sent: once they stop coming for a moment (more
        are likely on the way; the longer they have been coming, the longer the moment), at
        once when they fill a batch, at the latest a writeback delay after the oldest."""
        added = self.fs.ns.deletes_added
        if added != self._deletes_seen:
            self._deletes_seen = added
            self._deletes_last_added = now
            if self._deletes_waiting_since is None:
                self._deletes_waiting_since = now
        if not self.fs.ns.deletes:
            self._deletes_waiting_since = None
            return math.inf
        since = now if self._deletes_waiting_since is None else self._deletes_waiting_since
        if len(self.fs.ns.deletes) >= DELETE_BATCH:
            gathered = now
        elif self._moves_under_way():
            # Each copy of a renamed tree frees its source key: wait for the lot (they are
            # all due at once when hurried).
            gathered = since + max(MOVE_GATHER, self.settings.writeback_delay)
        elif self._urgent:
            gathered = now
        else:
            coming_for = self._deletes_last_added - since
            quiet = max(DELETE_GATHER, DELETE_GATHER_SHARE * coming_for)
            # A bulk delete's keys wait for it as new files wait for a burst (BURST_MAX_HOLD):
            # the writeback delay alone would cut a slow `rm -rf` into a batch every 2 s.
            longest = max(self.settings.writeback_delay, BURST_MAX_HOLD)
            gathered = min(self._deletes_last_added + quiet, since + longest)
        return max(self._deletes_due, gathered)

    def _moves_under_way(self) -> bool:
        """Whether copies whose sources are then deleted are queued or running."""
        return any(
            node in self.running or (node in self.due and node not in self.failures)
            for node in self.fs.ns.moving_from.values()
        )

    async def _job(self, node: Node) -> None:
        version, key = node.version, node.key
        try:
            await self._reconcile(node)
        except InvalidKey as exc:
            if node.attached and node.version == version and node.key == key:
                self.failures.pop(node, None)
                self.parked.park(node, key, version, str(exc))
                self.fs.record_if_room(node)  # the reason goes in its journal record
            else:
                self._retry_later(node, exc)  # changed or moved meanwhile: try as it is now
        except (StoreError, OSError, ValueError) as exc:
            self._retry_later(node, exc)
        except Exception as exc:
            log.exception("unexpected error while uploading %s", node.path())
            self._retry_later(node, exc)
        else:
            self.failures.pop(node, None)
        finally:
            self.running.discard(node)
            if node not in self.due:
                self.dirty_since.pop(node, None)
            self._notify()
            self.wake()

    def _retry_later(self, node: Node, exc: Exception) -> None:
        self.failed_attempts += 1
        count = self.failures[node] = self.failures.get(node, 0) + 1
        delay = min(MAX_BACKOFF, 0.5 * 2 ** (count - 1))
        if isinstance(exc, ValueError):  # the file changed while it was read: just go again
            delay = 0.1
        elif isinstance(exc, StoreUnavailable) and not self.fs.calls.online:
            # Said once by StoreCalls; the store's return brings it back (retry_now).
            delay = MAX_BACKOFF
            log.debug("upload of %s waits for the store: %s", node.path(), exc)
        else:
            log.warning("upload of %s failed (attempt %d, next in %.1fs): %s", node.path(), count, delay, exc)
        if node.attached:
            self._set_due(node, _now() + delay)

    # -- one node ---------------------------------------------------------------------------

    async def _claim(self, key: str) -> None:
        while key in self._busy_keys:
            await self._progress.wait()
        self._busy_keys.add(key)

    async def _reconcile(self, node: Node) -> None:
        if not node.attached:
            return
        if node.is_dir:
            await self._reconcile_dir(node)
            return
        if not node.pending:
            self.fs.record(node)
            return
        key = node.key
        # The key first, then the way: while this job waited for the key, the job holding
        # it may have made its object another node's copy source (a copy landing there).
        await self._claim(key)
        try:
            if not self._still_at(node, key):
                return  # renamed or removed while it waited: its change made it due again
            if not await self._clear_way(node, key):
                return
            if self._should_stage(node):
                await self._stage(node, key)
            else:
                await self._upload(node, key)
        finally:
            self._busy_keys.discard(key)

    @staticmethod
    def _still_at(node: Node, key: str) -> bool:
        """Whether `node` is still in the tree at `key`. A job takes its key when it starts
        and yields before it sends (waiting for the key, fetching): a node renamed or
        removed meanwhile must not be written there (its bytes would land at a name it no
        longer has, conditioned as if it never had an object there, or after its delete)."""
        return node.attached and node.object_key == key

    async def _clear_way(self, node: Node, key: str) -> bool:
        """Make sure no other node still needs the object at `key` as its source.

        Returns False when `node` must wait for the other one's move first (it is
        rescheduled); a blocker that cannot move soon (deleted while open, itself
        waiting, or parked: the store refuses its new key) is given its own local copy
        of the data instead.
        """
        blocker = self.fs.ns.moving_from.get(key)
        if blocker is None or blocker is node:
            return True
        moving_on = self.fs.ns.moving_from.get(blocker.object_key)
        waits_itself = blocker.attached and moving_on not in (None, blocker)
        if blocker.attached and not waits_itself and not self.parked.held(blocker):
            self.schedule(blocker, delay=0)
            self.schedule(node, delay=0.05)
            return False
        if blocker in self.running:
            self.schedule(node, delay=0.05)
            return False
        if blocker.is_dir:
            # A marker's data are its attributes: read (raising while the store does not
            # answer, as a fetch does), then written by a put.
            if blocker.attrs_guessed:
                await self.fs._head_attrs(blocker, may_replace=False)
            if not self._still_at(node, key):
                return False  # renamed or removed meanwhile: nothing is to be written at `key`
            if self.fs.ns.moving_from.get(key) is not blocker:
                return True
            blocker.meta_dirty = True
        else:
            content = blocker.content or self.fs._clean_content(blocker)
            await self.fs.fetch_all(content)
            if not self._still_at(node, key):
                return False  # renamed or removed meanwhile: nothing is to be written at `key`
            if self.fs.ns.moving_from.get(key) is not blocker:
                return True
            if not content.dirty:
                self.fs.contents.make_dirty(content)
            blocker.content = content
            blocker.data_dirty = True
        self.fs.ns.release_remote(blocker)  # no delete: `node` is about to overwrite the key
        node.overwrites = key  # the object there is one this mount let go of: no condition
        self.fs.record_if_room(node)
        if blocker.attached:
            self.fs.record(blocker)
            self.schedule(blocker, delay=0)
        return True

    async def _upload(self, node: Node, key: str) -> None:
        # A copy (a rename) is recognised by its source's etag too: an object whose
        # metadata is not known here is copied with its own, which holds no token.
        copy_of = None if node.data_dirty or node.remote_key is None else node.etag
        with self.landings.attempt(key, node, copy_of) as token:
            await self._upload_as(node, key, token)

    async def _upload_as(self, node: Node, key: str, token: str) -> None:
        """Upload `node` to `key`, carrying `token` (see `landings`)."""
        fs = self.fs
        version, data_version = node.version, node.data_version
        metadata = node.posix_attrs().to_metadata()
        fs.ns.drop_delete(key)
        content: Content | None = None
        mtime_lost = False
        kept_unknown_metadata = False
        body: bytes | None = None
        moved_from: tuple[str, str] | None = None  # a copy's source object
        landed = token  # the token of what lands: a staged upload carries its own
        if node.kind is Kind.SYMLINK and (node.data_dirty or node.remote_key is None):
            body = node.target.encode("utf-8", "surrogateescape")
            size = len(body)
            put = partial(_put_body, fs.store, body=body, metadata={**metadata, TOKEN: token})
            try:
                etag = await self._send(node, key, put, token)
            except Conflict:
                await self._keep_both(node, key, put, size, version, data_version)
                return
        elif node.data_dirty or node.remote_key is None:
            content = node.content
            if content is None:
                content = node.content = fs.contents.new()
                fs.contents.make_dirty(content)
            await fs.fetch_base(node, content)
            if self.due.get(node, -math.inf) > _now() or not self._still_at(node, key):
                # Changed since it fell due (its job starts a moment later, and fetching
                # yields): it goes up a write-back delay after that change, not in the middle
                # of a rewrite (truncated and not yet written again), and at its new name.
                return
            content.ensure_file()  # an empty new file has none until written
            # What goes up is the file at this instant: its bytes (the snapshot: an upload
            # that finds it torn stores nothing), its size and attributes, and the version
            # it is marked clean at. Nothing yields in between.
            version, data_version = node.version, node.data_version
            metadata = node.posix_attrs().to_metadata()
            snapshot = content.snapshot()
            size = snapshot.size
            staged = self.staged.get(content)
            put = partial(
                self._put_content, content=content, snapshot=snapshot, metadata={**metadata, TOKEN: token}
            )
            try:
                if staged is not None and staged.usable_for(key, staged_metadata(metadata), size, fs.store):
                    # Still listed while it completes: its sent parts are not dirty data.
                    finish = partial(self._finish_staged, staged, content, size)
                    etag = await self._send(node, key, put, staged.token, first=finish)
                    if self.staged.get(content) is staged:
                        del self.staged[content]
                    metadata, landed = staged.metadata, staged.token
                    # The object's mtime is its completion time; one set apart from the last
                    # write (utimens, `cp -p`) is written by a copy onto itself afterwards.
                    mtime_lost = abs(node.mtime_ns / 1e9 - time.time()) > MTIME_SLACK
                else:
                    if staged is not None:
                        del self.staged[content]
                        await self._abort_staged(staged)
                    etag = await self._send(node, key, put, token)
            except Conflict:
                await self._keep_both(node, key, put, size, version, data_version)
                return
            except SourceChanged:
                # Written again during the upload (which stored nothing): the write has
                # made the node due again, as any change does.
                self.schedule(node)
                return
            finally:
                snapshot.close()
            self.uploaded_bytes += size
        else:
            source = node.remote_key
            # Attributes never read from the object (a listing does not carry them) are
            # the object's own: the copy keeps them.
            kept_unknown_metadata = node.attrs_guessed
            # The same bytes: another tool's metadata names still describe them.
            metadata = node.posix_attrs().to_metadata(fs.ns.stored_metadata(node))
            copied_metadata = None if kept_unknown_metadata else {**metadata, TOKEN: token}
            seen = ObjectInfo(source, node.remote_size, node.etag or "", 0.0)
            moved_from = (source, seen.etag)
            try:
                try:
                    etag = await fs.calls.run(
                        partial(fs.store.copy, source, key, copied_metadata, expect=seen)
                    )
                except PreconditionFailed:
                    if not node.attached:
                        # Removed during the copy: its source was let go then, and this
                        # mount may have written a new file there since. Nothing is kept.
                        return
                    log.warning(
                        "%s: changed in the store by another client; moving its new version", node.path()
                    )
                    moved_from = None  # other bytes than those the cache mirrors
                    etag = await fs.calls.run(fs.store.copy, source, key, copied_metadata)
            except NotFound:
                if node.remote_key == source:
                    log.error(
                        "%s: its object %r vanished from the store before it could be moved",
                        node.path(),
                        source,
                    )
                    fs.ns.release_remote(node)
                    node.data_dirty = True  # upload whatever the cache has
                raise
            size = node.remote_size

        if not kept_unknown_metadata:
            fs.index.set(("meta", key), (etag, metadata))
        fs.ns.store_changed(node)
        fs.forget_listing(key)
        old = node.remote_key
        if old is not None and old != key:
            fs.ns.release_remote(node)
            fs.object_unneeded(old)
        node.remote_key, node.etag, node.remote_size = key, etag, size
        if moved_from is not None and node.content is not None and node.content.source == moved_from:
            # The bytes it mirrors are at `key` now: its source may be overwritten or deleted
            # from here on (a change made during the copy fetches what it lacks from `key`).
            node.content.source = (key, etag)
        if node.attached:
            fs.ns.track_move(node)  # renamed meanwhile: the object at `key` is its copy source
        elif node.opens:
            fs.ns.track_move(node)  # removed meanwhile, still open: deleted at its last close
        else:
            fs._release_object(node)  # removed meanwhile: what was just written must go
        if content is not None and content.source is None:
            content.source = (key, etag)
        in_place = node.attached and node.key == key
        if in_place and node.version == version:
            node.data_dirty = node.meta_dirty = False
            if content is None and node.content is not None and not node.content.dirty:
                content = node.content
            if content is not None:
                self._uploaded_clean(node, content, key, etag)
            node.meta_dirty = mtime_lost
        elif in_place and content is not None and node.data_version == data_version:
            # Only attributes changed during the upload (the kernel's mtime at a close, a
            # chmod): the data is in the store, and the attributes follow with a copy of
            # the object onto itself, not a new upload of all of it.
            node.data_dirty = False
            self._uploaded_clean(node, content, key, etag)
            node.meta_dirty = True
        with fs.journal.batch():
            fs.record(node)
            # In the record's transaction: a landing no record explains would be taken
            # for an object no file needs after a crash (see `landings`).
            self.landings.landed(key, landed)
        if node.pending:
            self.schedule(node)

    @staticmethod
    def _write_conditions(node: Node, key: str) -> dict[str, Any]:
        """What an upload of `node` to `key` may replace: the version its change was based
        on (If-Match), nothing (If-None-Match: a new file), or whatever is there (an
        object this mount itself meant to replace: a file removed or renamed over here)."""
        if node.remote_key == key:
            return {"if_match": node.etag} if node.etag else {}
        if node.overwrites == key:
            return {}
        return {"if_none_match": True}

    async def _send(
        self,
        node: Node,
        key: str,
        put: Callable[..., str],
        token: str,
        first: Callable[[Mapping[str, Any]], Awaitable[str]] | None = None,
    ) -> str:
        """The etag of uploading `node` to `key` with `put(key, **conditions)` (blocking,
        run in a worker thread), or with `first(conditions)` when given (the completion of
        a staged upload), on the condition that the store still holds what the change was
        based on. A remote delete does not stop it: our changed data creates the object
        again (with `put`). Raises Conflict when another client put its own version there.
        An object carrying `token` is this very upload, landed although the condition
        then failed (a retry after its answer was lost): the upload succeeded."""
        fs = self.fs
        conditions = self._write_conditions(node, key)
        if not conditions:
            self.landings.unconditioned(token)  # see `Landings.landed`
        try:
            await self._check_conditions(key, conditions)
            if first is not None:
                return await first(conditions)
            etag: str = await fs.calls.run(partial(put, key, **conditions))
            return etag
        except (NotFound, PreconditionFailed, AlreadyExists) as exc:
            landed = await self._landed_etag(key, token, node)
            if landed is not None:
                return landed
            if not isinstance(exc, NotFound):
                raise Conflict(key) from None
            if "if_match" not in conditions:
                raise
            log.warning(
                "%s: deleted in the store by another client; this mount's changes create it again",
                node.path(),
            )
            try:
                await self._check_conditions(key, {"if_none_match": True})
                etag = await fs.calls.run(partial(put, key, if_none_match=True))
                return etag
            except AlreadyExists:
                landed = await self._landed_etag(key, token, node)
                if landed is not None:
                    return landed
                raise Conflict(key) from None

    async def _landed_etag(self, key: str, token: str, node: Node) -> str | None:
        """The etag of the object at `key` if it is the upload carrying `token` (one HEAD).
        LandedLate if it is an earlier upload of this mount's, taken by the store after
        this mount found it missing (see `landings`): `node` is then based on it."""
        fs = self.fs
        try:
            info = await fs.calls.run(fs.store.head, key)
        except NotFound:
            return None
        if (info.metadata or {}).get(TOKEN) != token:
            late = self.landings.late_at(key, info)
            if late is None:
                return None
            log.info("%r: an earlier upload of this mount landed late; the next replaces it", key)
            with fs.journal.batch():
                if late.sent_by(node) or node.remote_key == key:
                    # Its own, or one it replaced since (an unconditioned upload the store
                    # finished after a newer one): the cache holds every byte this upload
                    # sends (`fetch_base` ran), so its next try is based on what is there.
                    self._based_on_own(node, key, info)
                else:
                    node.overwrites = key  # another file's, which this mount let go of
                    fs.record(node)
                self.landings.end(late.token)
            raise LandedLate(f"{key!r}: an earlier upload of this mount landed late")
        log.info("%r: the store took this upload although its answer was lost", key)
        return info.etag

    async def _check_conditions(self, key: str, conditions: Mapping[str, Any]) -> None:
        """Where the store ignores write conditions, check them here just before the
        upload (one HEAD), raising what the store would have: NotFound, AlreadyExists or
        PreconditionFailed. The store is probed once, before the first conditioned upload."""
        if not conditions:
            return
        if self.conditions_honoured is None:
            await self._probe_conditions()
        if self.conditions_honoured:
            return
        try:
            info = await self.fs.calls.run(self.fs.store.head, key)
        except NotFound:
            if "if_match" in conditions:
                raise
            return
        if conditions.get("if_none_match"):
            raise AlreadyExists(f"{key!r} exists", key=key)
        if info.etag != conditions.get("if_match"):
            raise PreconditionFailed(f"etag of {key!r} changed", key=key)

    async def _probe_conditions(self) -> None:
        async with self._probe_lock:
            if self.conditions_honoured is not None:
                return
            key = probe_key(self.names.host)
            # Journaled before its first PUT: should the daemon die during the probe, the
            # next mount deletes the object (and this one, should the probe fail).
            self.fs.journal.add_delete(key)
            try:
                try:
                    honoured = await self.fs.calls.run(probe_conditions, self.fs.store, key)
                except BaseException:
                    self.fs.ns.add_delete(key)
                    raise
                self.fs.journal.drop_delete(key)  # the probe deleted it
            except StoreUnavailable:
                raise  # the upload is tried again later, and the probe with it
            except StoreError as exc:
                self.conditions_honoured = False
                self.conditions_note = f"could not be probed ({exc}): a HEAD before each upload checks"
                log.warning("conditional writes %s", self.conditions_note)
                return
            self.conditions_honoured = honoured
            if honoured:
                self.conditions_note = "honoured by the store"
                log.info("the store honours conditional writes (If-Match, If-None-Match)")
            else:
                self.conditions_note = "IGNORED by the store: a HEAD before each upload checks"
                log.warning(
                    "the store ignores If-Match and If-None-Match: each upload is checked with a HEAD "
                    "just before it instead, and another client's write landing between the two "
                    "is replaced"
                )

    async def _keep_both(
        self, node: Node, key: str, put: Callable[..., str], size: int, version: int, data_version: int
    ) -> None:
        """Another client changed `key` since this mount read it: theirs stays at the key,
        ours goes next to it (create-only, with `put`: the node at `version`) as a conflict
        copy, and the mount shows theirs from now on."""
        fs = self.fs
        attempt = 1
        while True:
            copy_key = self.names.key(key, time.time(), attempt)
            try:
                copy_etag: str = await fs.calls.run(partial(put, copy_key, if_none_match=True))
                break
            except AlreadyExists:
                attempt += 1
        self.conflicts += 1
        log.warning(
            "%s: changed in the store by another client since this mount read it; theirs stays at %r, "
            "this mount's version is kept as %r",
            node.path(),
            key,
            copy_key,
        )
        try:
            info = await fs.calls.run(fs.store.head, key)
        except NotFound:
            info = None  # gone again meanwhile: our version goes back to the key as well
        if info is None or node.data_version != data_version or not node.attached or node.key != key:
            # Written, moved or removed meanwhile: the next upload decides again (a change
            # made since is based on the same old version, and is kept as a copy of its own),
            # after the write-back delay as any change: not at once, or it would catch a file
            # being rewritten between its truncation and its new bytes.
            fs.forget_listing(copy_key)
            if info is None:
                fs.ns.release_remote(node)
            if node.attached:
                self.schedule(node)
            return
        content = node.content
        if content is not None and content.dirty:
            self._uploaded_clean(node, content, copy_key, copy_etag)
        attributes_changed = node.version != version
        await fs.adopt_remote_version(node, info, copy_key, copy_etag, size)
        if attributes_changed:
            # Only attributes changed meanwhile (the kernel's mtime at a close, a chmod):
            # they follow onto the copy (a copy of it onto itself), rather than a second
            # conflict copy of the same bytes.
            node.meta_dirty = True
            fs.record(node)
            self.schedule(node)

    def _uploaded_clean(self, node: Node, content: Content, key: str, etag: str) -> None:
        """`content` is what the store now holds at `key`: clean, cached under its etag."""
        content.now_stored()
        self.fs.contents.register_clean(content, key, etag)
        if not content.pins:
            node.content = None

    # -- staged uploads of large files still being written ---------------------------------

    def staged_bytes(self) -> int:
        """Bytes of dirty files that already went up as parts of a staged upload."""
        return sum(staged.staged_bytes for content, staged in self.staged.items() if content.dirty)

    def written(self, content: Content, start: int, end: float) -> None:
        """Bytes [start, end) of `content` changed (written, or cut off by a truncate)."""
        staged = self.staged.get(content)
        if staged is not None:
            staged.changed(start, end)

    def _should_stage(self, node: Node) -> bool:
        """Send parts ahead instead of the whole file: only while writers wait for dirty
        space, for a big file whose data is dirty and that is still open."""
        content = node.content
        return (
            self.fs.space_wanted > 0
            and node.opens > 0
            and node.data_dirty
            and node.kind is Kind.FILE
            and content is not None
            and content.dirty
            and content.size >= 2 * StagedUpload.part_size_for(self.fs.store, content.size)
        )

    async def _stage(self, node: Node, key: str) -> None:
        fs = self.fs
        content = node.content
        assert content is not None
        metadata = staged_metadata(node.posix_attrs().to_metadata())
        staged = self.staged.get(content)
        if staged is not None and not staged.usable_for(key, metadata, content.size, fs.store):
            del self.staged[content]
            await self._abort_staged(staged)
            staged = None
        if staged is None:
            part_size = StagedUpload.part_size_for(fs.store, content.size)
            await fs.calls.run(self.uploads.starting, key)
            # Its completion is the upload of the file: it carries a token of its own.
            token = self.landings.begin(key, node)
            try:
                upload_id = await fs.calls.run(fs.store.start_multipart, key, {**metadata, TOKEN: token})
            except BaseException:
                self.uploads.abandoned(key, None)  # the store may have started it all the same
                self.landings.end(token)
                raise
            self.uploads.started(key, upload_id)
            staged = self.staged[content] = StagedUpload(key, upload_id, part_size, dict(metadata), token)
        todo = staged.full_parts_missing(content.size)
        await fs.fetch_base(node, content)  # a change to an existing object: its other bytes first
        async with trio.open_nursery() as nursery:
            for number in todo:
                nursery.start_soon(self._send_part, staged, content, number, staged.part_size)
        self.schedule(node)
        self._notify()

    async def _send_part(self, staged: StagedUpload, content: Content, number: int, length: int) -> None:
        async with self._part_limiter:
            generation = staged.generation(number)
            offset = (number - 1) * staged.part_size
            part = await self.fs.calls.run(self._read_and_put_part, staged, content, number, offset, length)
            staged.sent(generation, part)

    def _read_and_put_part(
        self, staged: StagedUpload, content: Content, number: int, offset: int, length: int
    ) -> CompletedPart:
        """Blocking; runs in a worker thread."""
        with open(content.path, "rb") as source:
            data = os.pread(source.fileno(), length, offset)
        if len(data) != length:
            raise ValueError(f"{staged.key!r}: the cache file changed size while it was read")
        return self.fs.store.put_part(staged.key, staged.upload_id, number, data)

    async def _finish_staged(
        self, staged: StagedUpload, content: Content, size: int, conditions: Mapping[str, Any]
    ) -> str:
        """Send the parts still missing and complete the upload (on `conditions`, see
        `_write_conditions`): the object appears whole. Aborted (and no longer staged) on
        any failure but PartsChanged."""
        fs = self.fs
        try:
            async with trio.open_nursery() as nursery:
                for number, _offset, length in staged.parts_to_send(size):
                    nursery.start_soon(self._send_part, staged, content, number, length)
            if staged.missing_parts(size):
                # Written again while its parts were in flight (the file is still open):
                # the upload stays staged, and the next attempt sends those parts again.
                raise PartsChanged(f"{staged.key!r} changed while its parts were sent")
            complete = partial(
                fs.store.complete_multipart,
                staged.key,
                staged.upload_id,
                staged.completed_parts(size),
                **conditions,
            )
            etag = await fs.calls.run(complete)
        except PartsChanged:
            raise  # still staged: its sent parts still count
        except BaseException as exc:
            if self.staged.get(content) is staged:
                del self.staged[content]
            with trio.CancelScope(shield=True):
                # The completion may have landed all the same (its answer lost).
                await self._abort_staged(staged, maybe_landed=not isinstance(exc, NOT_LANDED))
            raise
        self.uploads.ended(staged.key, staged.upload_id)
        return etag  # its token ends with the file's record (`landings.landed`)

    async def _abort_staged(self, staged: StagedUpload, *, maybe_landed: bool = False) -> None:
        """Abort a staged upload; one that cannot be aborted now stays in the journal.
        `maybe_landed`: its completion was sent and may have landed."""
        if maybe_landed:
            self.landings.doubt(staged.token)
        else:
            self.landings.end(staged.token)  # aborted or not, it never completes
        try:
            with trio.move_on_after(self.fs.calls.io_timeout):
                await self.fs.calls.run(self.fs.store.abort_multipart, staged.key, staged.upload_id)
                self.uploads.ended(staged.key, staged.upload_id)
                return
            log.warning("could not abort the staged upload of %r in time (tried again later)", staged.key)
        except StoreError as exc:
            log.warning("could not abort the staged upload of %r (tried again later): %s", staged.key, exc)
        self.uploads.abandoned(staged.key, staged.upload_id)

    def _stale(self, content: Content) -> bool:
        """The content of a staged upload was removed or is no longer dirty."""
        return not content.dirty or not self.fs.contents.is_dirty(content)

    async def _drop_stale_staging(self) -> None:
        """Abort staged uploads whose file was removed or uploaded another way."""
        try:
            for content, staged in list(self.staged.items()):
                if self._stale(content) and self.staged.get(content) is staged:
                    del self.staged[content]
                    await self._abort_staged(staged)
        finally:
            self._cleaning_staged = False
            self._notify()

    def _put_content(
        self,
        key: str,
        content: Content,
        snapshot: Snapshot,
        metadata: Mapping[str, str],
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        """Upload `snapshot` of a cache file, whole or not at all (SourceChanged).
        Blocking; runs in a worker thread."""
        store = self.fs.store
        with open(content.path, "rb") as source:
            return store.put_file(
                key,
                source,
                snapshot.size,
                metadata,
                if_match=if_match,
                if_none_match=if_none_match,
                part_size=upload_part_size(store, snapshot.size),
                tracker=self.uploads,
                check=snapshot.check,
            )

    async def _reconcile_dir(self, node: Node) -> None:
        fs = self.fs
        work = fs.marker_work(node)
        if work == "put":
            key = node.prefix
            if not await self._clear_way(node, key):
                return
            source = marker_source(node)
            stored = fs.index.get(("meta", source)) if source is not None else None
            metadata = node.posix_attrs().to_metadata(stored[1] if stored else None)
            write = partial(write_marker, fs.store, key, metadata, source, node.attrs_guessed)
            version = node.version
            await self._claim(key)
            try:
                fs.ns.drop_delete(key)
                etag, written = await fs.calls.run(write)
            finally:
                self._busy_keys.discard(key)
            if written is not None:
                fs.index.set(("meta", key), (etag, written))
            fs.ns.store_changed(node)
            fs.forget_listing(key)
            if node.attached and node.prefix == key:
                moved_from = fs.ns.release_remote(node)
                if moved_from is not None and moved_from != key:
                    fs.ns.add_delete(moved_from)  # copied: the old marker goes, as a file's source
                node.marker_key, node.overwrites = key, None
                if node.version == version:
                    node.meta_dirty = False
                else:  # changed while the marker was written: write it again
                    self.schedule(node, delay=0)
            else:
                # Removed or moved while the marker was written: it belongs to whichever
                # directory now has that name, or goes.
                other = fs.ns.node_at(key[:-1])
                fs.ns.add_delete(key)
                if other is not None and other.is_dir:
                    fs.reclaim_marker(other)
                    fs.record(other)
                    self.schedule(other, delay=0)
        elif work == "delete":
            # Only once something below holds the prefix in the store, or the directory
            # would vanish for other clients meanwhile.
            if any(
                sub is not node and (sub.pending or (sub.is_dir and fs.marker_work(sub) == "put"))
                for sub in node.walk()
            ):
                self.schedule(node, delay=0.2)
                return
            fs._leave_key(node, node.prefix)
            marker = fs.ns.release_remote(node)
            assert marker is not None
            fs.ns.add_delete(marker)
        fs.record(node)

    async def _delete_batch(self) -> None:
        fs = self.fs
        try:
            keys = []
            for key in sorted(fs.ns.deletes):
                if key in self._busy_keys or key in fs.ns.moving_from:
                    continue
                node = fs.ns.node_at(key.rstrip("/"))
                if key.endswith("/"):
                    if node is not None and node.is_dir and fs.marker_wanted(node):
                        fs.reclaim_marker(node)  # wanted again: kept, with new attributes
                        fs.record(node)
                        self.schedule(node, delay=0)
                        continue
                elif node is not None and not node.is_dir:
                    fs.ns.drop_delete(key)  # a new file is written there anyway
                    continue
                keys.append(key)
                if len(keys) >= DELETE_BATCH:
                    break
            if not keys:
                self._deletes_due = _now() + 0.5  # each waits for a move or upload first
                return
            self._busy_keys.update(keys)
            try:
                await fs.calls.run(fs.store.delete_many, keys)
            except StoreError as exc:
                self.failed_attempts += 1
                log.warning("deleting %d key(s) failed, will retry: %s", len(keys), exc)
                self._deletes_due = _now() + 1.0
                return
            finally:
                self._busy_keys.difference_update(keys)
            self._deletes_waiting_since = None
            with fs.journal.batch(), fs.index.transact():
                for key in keys:
                    fs.ns.store_changed(deleted=key)
                    fs.forget_listing(key)
                    fs.ns.drop_delete(key)
                    fs.index.delete(("meta", key))  # a remembered marker must not outlive it
            # Deletes held up meanwhile are part of the same run: the next gathering starts now.
            self._deletes_last_added = max(self._deletes_last_added, _now())
        finally:
            self._deleting = False
            self._notify()
            self.wake()


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


def _now() -> float:
    try:
        return trio.current_time()
    except RuntimeError:
        return -math.inf  # scheduled before trio runs (the journal's replay): due at once
