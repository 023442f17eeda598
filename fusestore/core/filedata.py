"""`FileData`: the data of open files — read, write, truncate, flush and fsync.

A file's data lives in a `Content` (a sparse cache file and a bitmap of the blocks it
holds): blocks it lacks are fetched (`Fetcher`), writes go into it once the dirty-data
and disk budgets let them, and each change is journaled and handed to the flusher. A
write the cache disk cannot store is settled by `lostwrites`.

Everything runs on the trio thread. Cache-file pread/pwrite stay inline (fast); the GETs
of missing blocks and the fsyncs go to worker threads (methods that do say so with
`Worker thread:`).
"""

from __future__ import annotations

import errno
import logging
import math
import time
from collections.abc import Callable

from ..cache import BLOCK_SIZE, Content, ContentStore, Journal
from ..stores import NotFound, PreconditionFailed
from . import lostwrites
from .budgets import Budgets
from .errors import fs_error
from .fetcher import Fetcher
from .handles import FileHandle, Handles
from .journaling import Journaling
from .kernelnames import KernelNames
from .listings import Listings
from .nodes import Node, now_ns
from .persister import Persister
from .settings import MountSettings
from .uploadqueue import UploadQueue

log = logging.getLogger(__name__)

#: How long a write that could not be stored waits for the kernel to drop the file's name
#: (see `_lost_write`) before it reports the error anyway.
KERNEL_WAIT = 2.0
#: Blocks a write that needs its block's old bytes streams on past it, in the background.
#: The upload of the changed file needs the whole object anyway, and random writes into
#: an object would otherwise cost one GET each (fio into 64 MiB: 64 GETs, 1.5 s on moto).
WRITE_FETCH_AHEAD = 64


def writes_settled(node: Node) -> None:
    """A flush, fsync or close: the kernel has sent every page it held of the file
    first, and the writer is told it is kept (see `Content.settle`)."""
    if node.content is not None:
        node.content.settle()


class FileData:
    """Reads and writes through file handles. Owns no table of its own: handles are the
    `Handles` table's, contents the content store's; what it keeps per handle is the
    read-ahead window. `clean_content` gives a node's clean content (the file system's
    rule for which content a node reads: handed in, see the core's rules)."""

    def __init__(
        self,
        settings: MountSettings,
        contents: ContentStore,
        journal: Journal,
        fetcher: Fetcher,
        flusher: UploadQueue,
        handles: Handles,
        budgets: Budgets,
        persister: Persister,
        journaling: Journaling,
        listings: Listings,
        kernel: KernelNames,
        clean_content: Callable[[Node], Content],
    ) -> None:
        self.settings = settings
        self.contents = contents
        self.journal = journal
        self.fetcher = fetcher
        self.flusher = flusher
        self.handles = handles
        self.budgets = budgets
        self.persister = persister
        self.journaling = journaling
        self.listings = listings
        self.kernel = kernel
        self.clean_content = clean_content

    async def read(self, fh: int, offset: int, size: int) -> bytes:
        """Worker thread: the GETs of blocks not cached yet (StoreCalls)."""
        handle = self.handles.file(fh)
        node = handle.node
        content = handle.content
        if content is None:
            content = handle.content = node.content or self.clean_content(node)
            content.pins += 1
        if offset >= content.size:
            return b""
        if offset == handle.next_offset:
            handle.window = min(handle.window * 2, max(1, self.settings.read_ahead_max // BLOCK_SIZE))
        else:
            handle.window = 1
        handle.next_offset = offset + size
        first = offset // BLOCK_SIZE
        last = (min(offset + size, content.size) - 1) // BLOCK_SIZE
        try:
            await self.fetcher.ensure(content, first, last - first + 1, ahead=handle.window)
        except (NotFound, PreconditionFailed):
            # The version this handle opened is no longer in the store, and what it wants
            # of it is not cached: ESTALE rather than bytes of two versions.
            if content.source is not None and content.source == (node.remote_key, node.etag):
                self.listings.object_changed(node)
            raise PreconditionFailed(
                f"{node.path()}: changed or removed in the store since it was opened here"
            ) from None
        if handle.window > 1:
            # Keep the stream a window ahead of a sequential reader.
            self.fetcher.prefetch(content, last + 1, handle.window)
        content.atime = time.time()
        return content.read(offset, size)

    async def fetch_base(self, node: Node, content: Content) -> None:
        """Before `node`'s changed `content` goes up: bring the bytes of the version it
        changed that the cache lacks.

        Should another client have replaced or deleted that version meanwhile, the bytes
        never cached here cannot be had any more: they stay zeros, said in the log, and the
        change goes up under the usual rules (next to their version as a conflict copy, or
        at the key again after a delete). Everything written here is kept.
        Worker thread: the GETs (StoreCalls)."""
        try:
            await self.fetcher.fetch_all(content)
        except (NotFound, PreconditionFailed) as exc:
            lost = [
                (first * BLOCK_SIZE, min(content.size, (first + count) * BLOCK_SIZE))
                for first, count in content.missing_runs(0, content.size)
            ]
            content.present |= content.base_mask()
            log.error(
                "%s: the version it changed is no longer in the store (%s); bytes %s of it were "
                "never cached here and are zeros in what goes up",
                node.path(),
                exc,
                ", ".join(f"{start}-{end}" for start, end in lost),
            )
            self.journaling.record_if_room(node)

    async def content_for_write(self, node: Node) -> Content:
        """The node's content, made dirty (it then belongs to the node, not the index)."""
        await self.budgets.wait_for_dirty_space(node)
        content = node.content
        if content is None:
            content = node.content = self.clean_content(node)
        if not content.dirty:
            self._make_dirty(content)
        return content

    def _make_dirty(self, content: Content) -> None:
        """`content` is about to hold the node's changes. A cached copy leaves the index
        now, but a record names it only once the change is journaled (after a fetch's
        awaits, or up to 2 s later): meanwhile the journal notes that it holds no change
        to keep, as for a file removed while open, so a restart after a kill deletes it
        rather than take it for lost changes (a record naming it wins over the note)."""
        if content.indexed:
            try:
                self.journal.add_unlinked(content.id)
            except OSError as exc:  # a full disk: at worst a restart keeps it in lost+found
                log.info("%s: not noted in the journal: %s", content.id, exc)
        self.contents.make_dirty(content)

    async def truncate(self, node: Node, size: int, fh: int | None = None) -> None:
        """Worker thread: the GET of the block the new end cuts, when not cached."""
        handle = self.handles.find(fh)
        content = handle.content if isinstance(handle, FileHandle) and handle.content else None
        content = content or await self.content_for_write(node)
        if not content.dirty:
            self._make_dirty(content)
            node.content = content
        boundary = content.boundary_block(min(size, content.size))
        if boundary is not None:
            await self.fetcher.ensure(content, *boundary)
        self.journaling.before_cut(node, content, size)  # nothing yields from here to the record
        content.truncate(size)
        self.persister.written(content)
        self.flusher.written(content, size, math.inf)
        node.size = size
        node.modified(now_ns())
        if node.attached:
            self.journaling.changed(node, data=True)

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        """Worker thread: the GETs of the old bytes of blocks written in part, and an
        eviction's file removals when the disk is short (see `Budgets.evict`)."""
        handle = self.handles.file(fh)
        node = handle.node
        end = offset + len(data)
        if data and not lostwrites.writable_part(handle, offset, data):
            raise fs_error(errno.ENOSPC, "an earlier write could not be stored")
        content = await self.content_for_write(node)
        if handle.content is not content:
            if handle.content is not None:
                handle.content.pins -= 1
            content.pins += 1
            handle.content = content
        # A block the write covers only partly must hold the store's bytes first, or the
        # rest of it would read as zeros once the write marks it present.
        for block in sorted({offset // BLOCK_SIZE, max(offset, end - 1) // BLOCK_SIZE}):
            low, high = block * BLOCK_SIZE, min((block + 1) * BLOCK_SIZE, content.base_size)
            if low < high and not content.present >> block & 1 and not (offset <= low and end >= high):
                await self.fetcher.ensure(content, block, 1, ahead=WRITE_FETCH_AHEAD)
        base = content.base_mask()
        first_present = content.present & base
        written, error = await self._store(handle, content, offset, data)
        if written:
            self.persister.written(content)
            self.flusher.written(content, offset, offset + written)
            node.size = content.size
            node.modified(now_ns())
            if node.attached:
                # The journal learns at once of blocks written over the store's (a crash
                # must not refetch over them); a restart finds the rest in the cache file.
                fetch_changed = first_present != content.present & base
                self.journaling.changed(node, data=True, journal=not node.data_dirty or fetch_changed)
        if error is not None:
            await self._lost_write(handle, content, offset + written, end, error)
            raise error
        if written < end - offset:
            raise fs_error(errno.ENOSPC, "an earlier write could not be stored")
        return written

    async def _store(
        self, handle: FileHandle, content: Content, offset: int, data: bytes
    ) -> tuple[int, OSError | None]:
        """Write `data` into `content`, clean data giving way when the disk is short. The
        disk may still refuse what the estimate said would fit (another program took it):
        then evict once more and try again, once. Returns how many bytes were stored (fewer
        when a loss meanwhile put the rest past what `handle` may write), and the error
        that stopped the rest (None: no error). Worker thread: see `Budgets.evict`."""
        view = memoryview(data)
        stored = 0
        retried = False
        while stored < len(view) and lostwrites.writable_part(handle, offset + stored, view[stored:]):
            try:
                await self.budgets.wait_for_disk_room(len(view) - stored)
            except OSError as exc:
                return stored, exc
            # Nothing yields from here to the write: while this one waited, another write
            # of the file may have failed and cut it (this one may not land past the cut),
            # or an upload may have made the content clean.
            part = lostwrites.writable_part(handle, offset + stored, view[stored:])
            if not part:
                break
            if not content.dirty:
                self._make_dirty(content)
            try:
                stored += content.write(offset + stored, part)
            except OSError as exc:
                if exc.errno != errno.ENOSPC or retried:
                    return stored, exc
                retried = True
                await self.budgets.evict(len(view) - stored)
        return stored, None

    async def _lost_write(
        self, handle: FileHandle, content: Content, start: int, end: int, error: OSError
    ) -> None:
        """Bytes [start, end) written through `handle` could not be stored: settle the
        loss (see `lostwrites`), and have the kernel drop the name before the error
        reaches the writer's fsync or close, unless that takes long (the kernel could be
        waiting for this very request). Yields. Worker thread: the kernel is told there."""
        node = handle.node
        handles = [h for h in self.handles.files() if h.node is node]
        loss = lostwrites.settle(
            handle,
            handles,
            content,
            start,
            end,
            error,
            lambda size: self.journaling.before_cut(node, content, size),
        )
        if loss.cut:
            self.persister.written(content)
            self.flusher.written(content, node.size, math.inf)
            if node.attached:
                # Recorded at once: a record of the longer file (a persist's, fsync's size)
                # would otherwise stand, and a crash now would leave a cache file shorter
                # than its record, which a restart sets aside as damaged.
                self.journaling.changed(node, data=True, journal=False)
                self.journaling.record_if_room(node)
        parent = node.parent
        if not (loss.new_inode and node.attached and parent is not None and self.kernel.forget):
            return
        await self.kernel.forget_within([(parent.ino, node.name)], KERNEL_WAIT)

    def flush(self, fh: int) -> None:
        handle = self.handles.file(fh)
        writes_settled(handle.node)
        if handle.node.attached and handle.node.pending:
            self.flusher.schedule(handle.node)
            self.journaling.record_if_room(handle.node, timestamps_later=True)

    async def fsync(self, fh: int) -> None:
        """Return once the file's changes survive a crash of this machine (`--fsync=local`)
        or are in the store (`--fsync=remote`). Worker thread: the fsyncs (see `persist`)."""
        node = self.handles.file(fh).node
        writes_settled(node)
        if node.attached:
            self.journaling.record(node, timestamps_later=True, size_now=True)
        await self.persister.persist(essential_only=True, recorded=node if node.attached else None)
        if self.settings.fsync == "remote":
            await self.flusher.wait_uploaded(node)
