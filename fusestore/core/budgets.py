"""`Budgets`: the two limits a write meets — dirty data and the cache disk's room.

Dirty data (changed, not yet in the store) is held under `--dirty-limit`: writers wait
while the flusher uploads (`wait_for_dirty_space`). File data never eats into the room
kept on the cache disk for the journal and index: clean data gives way first
(`evict`), then a write waits a little for unlinked files still being closed, then
fails with ENOSPC (`wait_for_disk_room`).

Everything runs on the trio thread; eviction's file removals go to a worker thread,
one disk job at a time (the limiter the persister shares).
"""

from __future__ import annotations

import errno
import logging

import trio

from ..cache import Content, ContentStore, Journal, room
from ..stores.base import MiB
from ..writeback.staging import PART_SIZE
from .errors import fs_error
from .handles import Handles
from .nodes import Node
from .settings import MountSettings
from .uploadqueue import UploadQueue

log = logging.getLogger(__name__)

#: How far a writer's own file may take dirty data past the limit (see wait_for_dirty_space).
STAGE_CHUNK = 2 * PART_SIZE
#: How long a write that finds the cache disk full waits for the space of unlinked files
#: still being closed: the kernel sends a close's RELEASE after close() has returned, so
#: `rm` right after ENOSPC can reach us before the release that gives the room back.
ROOM_WAIT = 3.0


class Budgets:
    """The dirty-data budget and the cache disk's room. Owns who waits for which (the
    events writers wait on, and how many wait for dirty space) and the turn evictions
    take. `wait_for_dirty_space`, `evict` and `wait_for_disk_room` yield; the rest is
    synchronous and cheap."""

    def __init__(
        self,
        settings: MountSettings,
        contents: ContentStore,
        journal: Journal,
        flusher: UploadQueue,
        disk_work: trio.CapacityLimiter,
        handles: Handles,
    ) -> None:
        self.settings = settings
        self.contents = contents
        self.journal = journal
        self.flusher = flusher
        self._disk_work = disk_work
        self.handles = handles
        #: how long a write on a full disk waits for such a file's release (`ROOM_WAIT`)
        self.room_wait = ROOM_WAIT
        self.dirty_space = trio.Event()
        self.space_wanted = 0  # writers waiting for dirty space
        self._making_room = trio.Lock()
        self._room_freed = trio.Event()  # set (and renewed) when an unlinked file's data goes
        #: clean contents evicted since the mount started, and their bytes (status, metrics)
        self.evictions = 0
        self.evicted_bytes = 0

    # -- dirty data -----------------------------------------------------------------------

    def dirty_bytes(self) -> int:
        """Changed data not yet in the store (parts of staged uploads are)."""
        return self.contents.dirty_bytes - self.flusher.staged_bytes()

    async def wait_for_dirty_space(self, node: Node) -> None:
        """Backpressure: wait while changed data not yet in the store exceeds the limit.

        A writer's own file is let through by up to one chunk (`STAGE_CHUNK`), so that
        it can always finish: meanwhile the flusher uploads other files and sends the full
        parts of big files still open ahead as a staged upload, which takes them off the
        dirty bytes. Dirty data so stays below the limit plus a chunk per writer.
        """
        while True:
            content = node.content
            own = 0
            if content is not None and content.dirty:
                staged = self.flusher.staged.get(content)
                own = content.size - (staged.staged_bytes if staged is not None else 0)
            if self.dirty_bytes() - min(own, STAGE_CHUNK) <= self.settings.dirty_limit:
                return
            if not self.space_wanted:
                log.debug(
                    "dirty data at the limit: %.1f MiB not in the store (limit %.1f MiB); writers wait",
                    self.dirty_bytes() / MiB,
                    self.settings.dirty_limit / MiB,
                )
            self.space_wanted += 1
            try:
                self.flusher.hurry()
                event = self.dirty_space = trio.Event() if self.dirty_space.is_set() else self.dirty_space
                await event.wait()
            finally:
                self.space_wanted -= 1

    def dirty_space_freed(self) -> None:
        self.dirty_space.set()

    # -- the cache disk -------------------------------------------------------------------

    async def evict(self, size: int = 0) -> None:
        """Evict clean data, least recently used first, until the cache is back under
        `--cache-size` and `size` more bytes fit on the cache disk above its floor of
        free space (or nothing clean is left to evict); measures the free space before and
        after. The eviction pass (every 2 s, with `size` 0) and writes short of room both
        come here. Evictions take turns, each seeing the room the one before made.
        Worker thread: the file removals (one disk job at a time)."""
        async with self._making_room:
            self.contents.room.measure()
            victims = self.contents.evict_candidates(size)
            if victims:
                self.evictions += len(victims)
                self.evicted_bytes += sum(victim.present_bytes() for victim in victims)
                await trio.to_thread.run_sync(ContentStore.remove_files, victims, limiter=self._disk_work)
                self.contents.forget(victims)
                self.contents.room.measure()

    async def wait_for_disk_room(self, size: int) -> None:
        """ENOSPC for data that would eat into the room kept for the journal and index:
        with a full disk even an unlink could not be journaled, and nothing could free it.
        Clean data gives way first; then, while unlinked files still open hold dirty
        data, wait up to `room_wait` for their release. Yields only when the disk is full.
        Worker thread: an eviction's file removals (see `evict`)."""
        deadline = trio.current_time() + self.room_wait
        if not self.disk_has_room(size):
            await self.evict(size)
        while not self.disk_has_room(size):
            if trio.current_time() >= deadline or not self.handles.unlinked_data_open():
                kept = f"keeping {room.DISK_RESERVE // MiB} MiB for the journal"
                raise fs_error(errno.ENOSPC, f"the cache disk is full ({kept})")
            with trio.move_on_at(deadline):
                await self._room_freed.wait()

    def disk_has_room(self, size: int) -> bool:
        return self.contents.room.has_room(size)

    def discard_unlinked(self, content: Content) -> None:
        """Drop the dirty data of a file nobody can reach any more, and wake writers
        waiting for the room."""
        self.contents.discard(content)
        self.journal.drop_unlinked(content.id)
        self._room_freed.set()
        self._room_freed = trio.Event()
