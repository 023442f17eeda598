"""Staged uploads: the parts of a large file still being written, sent ahead of time.

When dirty space runs short, the flusher uploads the full parts of big files that are
still open as parts of a multipart upload that stays open; their bytes then no longer
count as dirty. The upload is completed when the file itself is uploaded, so the object
appears at once and whole, like any other upload. A write into a part already sent
takes that part back (it is sent again), which a generation number per part detects even
while the part is in flight.

`StagedUpload` is the plain record of one such upload; `Stager` sends its parts, completes
or aborts it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from ..cache import Content, ContentStore
from ..core.nodes import Kind, Node
from ..stores import CompletedPart, Store, StoreError
from ..stores.base import MiB
from .host import WritebackHost
from .landings import NOT_LANDED, TOKEN, Landings
from .queue import JobQueue
from .storecalls import StoreCalls
from .unfinished import JournaledUploads

log = logging.getLogger(__name__)

#: The smallest part of every upload the flusher makes, whole or staged: boto3's own
#: default. Fewer requests than S3's 5 MiB minimum (256 MiB to moto: parts 1.7 → 1.4 s),
#: and 4 in flight per upload stay a small share of the daemon's memory (16 MiB parts
#: were no faster).
PART_SIZE = 8 * MiB


def staged_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """A staged upload starts before the last write, so it carries no times: the object's
    own time (its completion) stands for its mtime, ctime and atime."""
    return {name: value for name, value in metadata.items() if name not in _TIMES}


_TIMES = ("mtime", "ctime", "atime")


class PartsChanged(ValueError):
    """A staged upload's part changed while it was sent: send it again (soon)."""


def upload_part_size(store: Store, size: int) -> int:
    """Parts for an object of `size` bytes: the store's preferred part size or else
    PART_SIZE, larger where the store's limit on the number of parts needs it."""
    if store.preferred_part_size is not None:
        return store.part_size_for(size)
    return max(PART_SIZE, store.part_size_for(size))


@dataclass(eq=False)
class StagedUpload:
    """A multipart upload of one content to `key`, with the parts sent so far.

    Plain data on the trio thread; `Stager` does the store calls.
    """

    key: str
    upload_id: str
    part_size: int
    #: the file's metadata as sent (without the mtime); the upload carries `token` too
    metadata: dict[str, str]
    token: str
    #: part number -> the part as sent, for parts whose bytes did not change since
    parts: dict[int, CompletedPart] = field(default_factory=dict)
    generations: dict[int, int] = field(default_factory=dict)

    @staticmethod
    def part_size_for(store: Store, size: int) -> int:
        """Parts big enough that the file can still grow eightfold within the part limit."""
        return upload_part_size(store, min(size * 8, store.max_object_size))

    def changed(self, start: int, end: float) -> None:
        """Bytes [start, end) were written or cut off: the parts holding them go again."""
        if end <= start:
            return
        first = start // self.part_size + 1
        last = max(self.generations, default=first) if end == math.inf else math.ceil(end / self.part_size)
        for number in list(self.generations):
            if first <= number <= last:
                self.parts.pop(number, None)
                self.generations[number] += 1

    def generation(self, number: int) -> int:
        return self.generations.setdefault(number, 0)

    def full_parts_missing(self, size: int) -> list[int]:
        """Parts wholly below `size` that were not sent (or changed since)."""
        return [n for n in range(1, size // self.part_size + 1) if n not in self.parts]

    def sent(self, generation: int, part: CompletedPart) -> None:
        """The part went up; it counts unless it changed while it was in flight."""
        if self.generations.get(part.number) == generation:
            self.parts[part.number] = part

    @property
    def staged_bytes(self) -> int:
        return len(self.parts) * self.part_size

    def usable_for(self, key: str, metadata: Mapping[str, str], size: int, store: Store) -> bool:
        """Whether completing this upload gives the object `key` should now hold."""
        return (
            key == self.key
            and dict(metadata) == self.metadata
            and size > 0
            and math.ceil(size / self.part_size) <= store.max_parts
        )

    def parts_to_send(self, size: int) -> list[tuple[int, int, int]]:
        """(number, offset, length) of every part still to send for a file of `size` bytes."""
        count = math.ceil(size / self.part_size)
        todo = []
        for number in range(1, count + 1):
            offset = (number - 1) * self.part_size
            length = min(self.part_size, size - offset)
            if number not in self.parts or length < self.part_size:
                todo.append((number, offset, length))
        return todo

    def missing_parts(self, size: int) -> list[int]:
        """Parts of a file of `size` bytes not sent (or changed since they were)."""
        return [n for n in range(1, math.ceil(size / self.part_size) + 1) if n not in self.parts]

    def completed_parts(self, size: int) -> list[CompletedPart]:
        return [self.parts[n] for n in range(1, math.ceil(size / self.part_size) + 1)]


class Stager:
    """The staged uploads of dirty files (`staged`, by content): their parts sent ahead,
    then completed as the file's upload, or aborted once the file went another way."""

    def __init__(
        self,
        queue: JobQueue,
        host: WritebackHost,
        store: Store,
        calls: StoreCalls,
        contents: ContentStore,
        uploads: JournaledUploads,
        landings: Landings,
        upload_workers: int,
    ) -> None:
        self.queue = queue
        self.host = host
        self.store = store
        self.calls = calls
        self.contents = contents
        self.uploads = uploads
        self.landings = landings
        self.staged: dict[Content, StagedUpload] = {}
        self._part_limiter = trio.CapacityLimiter(upload_workers)
        #: stale staged uploads are being aborted (the loop sets it before `drop_stale`)
        self.cleaning = False

    def staged_bytes(self) -> int:
        """Bytes of dirty files that already went up as parts of a staged upload."""
        return sum(staged.staged_bytes for content, staged in self.staged.items() if content.dirty)

    def written(self, content: Content, start: int, end: float) -> None:
        """Bytes [start, end) of `content` changed (written, or cut off by a truncate)."""
        staged = self.staged.get(content)
        if staged is not None:
            staged.changed(start, end)

    def should_stage(self, node: Node) -> bool:
        """Send parts ahead instead of the whole file: only while writers wait for dirty
        space, for a big file whose data is dirty and that is still open."""
        content = node.content
        return (
            self.host.space_wanted > 0
            and node.opens > 0
            and node.data_dirty
            and node.kind is Kind.FILE
            and content is not None
            and content.dirty
            and content.size >= 2 * StagedUpload.part_size_for(self.store, content.size)
        )

    async def stage(self, node: Node, key: str) -> None:
        """Start (or go on with) the staged upload of `node` to `key`: its full parts.

        Worker thread: the multipart start and each part, in StoreCalls slots."""
        content = node.content
        assert content is not None
        metadata = staged_metadata(node.posix_attrs().to_metadata())
        staged = self.staged.get(content)
        if staged is not None and not staged.usable_for(key, metadata, content.size, self.store):
            del self.staged[content]
            await self.abort(staged)
            staged = None
        if staged is None:
            part_size = StagedUpload.part_size_for(self.store, content.size)
            await self.calls.run(self.uploads.starting, key)
            # Its completion is the upload of the file: it carries a token of its own.
            token = self.landings.begin(key, node)
            try:
                upload_id = await self.calls.run(self.store.start_multipart, key, {**metadata, TOKEN: token})
            except BaseException:
                self.uploads.abandoned(key, None)  # the store may have started it all the same
                self.landings.end(token)
                raise
            self.uploads.started(key, upload_id)
            staged = self.staged[content] = StagedUpload(key, upload_id, part_size, dict(metadata), token)
        todo = staged.full_parts_missing(content.size)
        await self.host.fetch_base(node, content)  # a change to an existing object: its other bytes first
        async with trio.open_nursery() as nursery:
            for number in todo:
                nursery.start_soon(self._send_part, staged, content, number, staged.part_size)
        self.queue.schedule(node)
        self.queue.notify()

    async def _send_part(self, staged: StagedUpload, content: Content, number: int, length: int) -> None:
        """Worker thread: the part's read and PUT, in one StoreCalls slot."""
        async with self._part_limiter:
            generation = staged.generation(number)
            offset = (number - 1) * staged.part_size
            part = await self.calls.run(self._read_and_put_part, staged, content, number, offset, length)
            staged.sent(generation, part)

    def _read_and_put_part(
        self, staged: StagedUpload, content: Content, number: int, offset: int, length: int
    ) -> CompletedPart:
        """Worker thread: blocking (reads the cache file, sends the part)."""
        with open(content.path, "rb") as source:
            data = os.pread(source.fileno(), length, offset)
        if len(data) != length:
            raise ValueError(f"{staged.key!r}: the cache file changed size while it was read")
        return self.store.put_part(staged.key, staged.upload_id, number, data)

    async def finish(
        self, staged: StagedUpload, content: Content, size: int, conditions: Mapping[str, Any]
    ) -> str:
        """Send the parts still missing and complete the upload (on `conditions`, see
        `Uploader.write_conditions`): the object appears whole. Aborted (and no longer
        staged) on any failure but PartsChanged.

        Worker thread: the parts and the completion, in StoreCalls slots."""
        try:
            async with trio.open_nursery() as nursery:
                for number, _offset, length in staged.parts_to_send(size):
                    nursery.start_soon(self._send_part, staged, content, number, length)
            if staged.missing_parts(size):
                # Written again while its parts were in flight (the file is still open):
                # the upload stays staged, and the next attempt sends those parts again.
                raise PartsChanged(f"{staged.key!r} changed while its parts were sent")
            complete = partial(
                self.store.complete_multipart,
                staged.key,
                staged.upload_id,
                staged.completed_parts(size),
                **conditions,
            )
            etag = await self.calls.run(complete)
        except PartsChanged:
            raise  # still staged: its sent parts still count
        except BaseException as exc:
            if self.staged.get(content) is staged:
                del self.staged[content]
            with trio.CancelScope(shield=True):
                # The completion may have landed all the same (its answer lost).
                await self.abort(staged, maybe_landed=not isinstance(exc, NOT_LANDED))
            raise
        self.uploads.ended(staged.key, staged.upload_id)
        return etag  # its token ends with the file's record (`landings.landed`)

    async def abort(self, staged: StagedUpload, *, maybe_landed: bool = False) -> None:
        """Abort a staged upload; one that cannot be aborted now stays in the journal.
        `maybe_landed`: its completion was sent and may have landed.

        Worker thread: the abort, in one StoreCalls slot."""
        if maybe_landed:
            self.landings.doubt(staged.token)
        else:
            self.landings.end(staged.token)  # aborted or not, it never completes
        try:
            with trio.move_on_after(self.calls.io_timeout):
                await self.calls.run(self.store.abort_multipart, staged.key, staged.upload_id)
                self.uploads.ended(staged.key, staged.upload_id)
                return
            log.warning("could not abort the staged upload of %r in time (tried again later)", staged.key)
        except StoreError as exc:
            log.warning("could not abort the staged upload of %r (tried again later): %s", staged.key, exc)
        self.uploads.abandoned(staged.key, staged.upload_id)

    def stale(self, content: Content) -> bool:
        """The content of a staged upload was removed or is no longer dirty."""
        return not content.dirty or not self.contents.is_dirty(content)

    def any_stale(self) -> bool:
        return any(self.stale(content) for content in self.staged)

    async def drop_stale(self) -> None:
        """Abort staged uploads whose file was removed or uploaded another way.

        Worker thread: each abort, in one StoreCalls slot."""
        try:
            for content, staged in list(self.staged.items()):
                if self.stale(content) and self.staged.get(content) is staged:
                    del self.staged[content]
                    await self.abort(staged)
        finally:
            self.cleaning = False
            self.queue.notify()
