"""`Persister`: what makes the cache survive a power cut, and keeps its disk in order.

Every `PERSIST_INTERVAL` (and at each fsync, for what it needs) the cache files written
since the last persist, their directory, the index's and the journal's logs are
fsynced, after the journal records left to a persist are written in one transaction.
Besides: empty cache files made ahead for new contents (spares), and the eviction pass,
which keeps the cache under `--cache-size` and a floor of free space on its disk.

The loops run on the trio thread; every fsync, spare-file and eviction job goes to a
worker thread, one disk job at a time (one limiter, shared with the budgets' evictions).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import diskcache
import trio

from ..cache import Content, ContentStore, Journal, writeout
from .budgets import Budgets
from .journaling import Journaling
from .nodes import Node

log = logging.getLogger(__name__)

#: Seconds between two fsyncs of what changed in the cache, when nobody calls fsync.
PERSIST_INTERVAL = 2.0
#: Cache files made durable together (each open at once: well below any fd limit).
FSYNC_BATCH = 256


class Persister:
    """Owns the set of cache files written since the last persist and the spare-file
    wakeup. `persist` and the loops yield; `written` is synchronous and cheap."""

    def __init__(
        self,
        contents: ContentStore,
        journal: Journal,
        journaling: Journaling,
        budgets: Budgets,
        disk_work: trio.CapacityLimiter,
    ) -> None:
        self.contents = contents
        self.journal = journal
        self.journaling = journaling
        self.budgets = budgets
        self._disk_work = disk_work
        self._unsynced: set[Content] = set()  # cache files written since the last persist
        self._spares_low = trio.Event()  # set (and renewed) when the spare cache files run low
        self.contents.on_spares_low = lambda: self._spares_low.set()

    def close(self, nodes: Iterable[Node], index: diskcache.Cache) -> None:
        """Persist what the next mount reuses (the spare files go), and close the cache
        files, the index and the journal. Call after the flusher stopped."""
        self.contents.drop_spares()
        self.contents.save_all()
        self.contents.close_files()  # else a process that mounts again keeps them all
        for node in nodes:
            if node.jid is not None:
                self.journaling.record(node)
        index.close()  # first (a checkpoint: durable), as in `persist`
        self.journal.close()

    def written(self, content: Content) -> None:
        """`content`'s cache file changed: the next persist makes it durable."""
        self._unsynced.add(content)

    async def persist(self, essential_only: bool = False, recorded: Node | None = None) -> None:
        """Make all pending work so far survive a power cut: fsync the cache files written
        since the last call, their directory and the journal. `essential_only` (fsync's):
        new timestamps alone may wait for the next full call. `recorded`: a node whose
        record the caller has just written or left to a full persist (see
        `Journaling.record_unjournaled`).
        Worker thread: the fsyncs (one disk job at a time)."""
        self.journaling.record_unjournaled(timestamps_later=essential_only, recorded=recorded)
        paths = [content.path for content in self._unsynced]
        new_names = any(content.new_file for content in self._unsynced)
        for content in self._unsynced:
            content.new_file = False
        self._unsynced.clear()
        if paths or self.journal.needs_sync(hints=not essential_only) or self.contents.index_needs_sync():
            await trio.to_thread.run_sync(
                self._fsync_files, paths, new_names, not essential_only, limiter=self._disk_work
            )

    def _fsync_files(self, paths: list[Path], new_names: bool, hints: bool) -> None:
        """Worker thread: runs there whole (blocking). `hints`: see `Journal.save_node`."""
        for first in range(0, len(paths), FSYNC_BATCH):
            self._fsync_batch(paths[first : first + FSYNC_BATCH])
        if new_names:
            self.contents.sync_names()
        self.contents.sync_index()  # first: see `ContentStore.sync_index`
        self.journal.sync(hints=hints)

    @staticmethod
    def _fsync_batch(paths: list[Path]) -> None:
        fds = []
        try:
            for path in paths:
                try:
                    fds.append(os.open(path, os.O_RDONLY))
                except FileNotFoundError:
                    continue  # discarded meanwhile: nothing to keep
            if len(fds) > 1:
                for fd in fds:
                    writeout.start_writeout(fd)  # then one journal commit covers most of them
            for fd in fds:
                os.fdatasync(fd)  # the data and the size; the rest is the journal's
        finally:
            for fd in fds:
                os.close(fd)

    async def persist_loop(self) -> None:
        """Persist every `PERSIST_INTERVAL` (long-lived). Worker thread: see `persist`."""
        while True:
            await trio.sleep(PERSIST_INTERVAL)
            try:
                await self.persist()
            except OSError as exc:
                log.error("cannot make the cache durable: %s", exc)

    async def keep_spare_files(self) -> None:
        """Make empty cache files ahead for new contents (see ContentStore.new); long-lived.
        Worker thread: making the files (one disk job at a time)."""
        while True:
            wanted = self.contents.spares_wanted()
            if wanted:
                try:
                    spares = await trio.to_thread.run_sync(
                        self.contents.make_spares, wanted, limiter=self._disk_work
                    )
                except OSError as exc:  # no inode left? New contents make their own meanwhile.
                    log.debug("cannot make spare cache files: %s", exc)
                    await trio.sleep(PERSIST_INTERVAL)
                    continue
                self.contents.add_spares(spares)
            await self._spares_low.wait()
            self._spares_low = trio.Event()

    async def evict_loop(self, interval: float) -> None:
        """The eviction pass every `interval` seconds (long-lived), which also measures
        the cache disk's free space anew. Worker thread: see `Budgets.evict`."""
        failing = ""
        while True:
            await trio.sleep(interval)
            try:
                await self.budgets.evict()
            except OSError as exc:
                # The cache disk cannot be used (its directory removed under the mount?):
                # said once per kind of failure; the pass goes on, and so does the mount.
                if str(exc) != failing:
                    failing = str(exc)
                    log.warning("the eviction pass cannot use the cache disk: %s", exc)
            else:
                failing = ""
