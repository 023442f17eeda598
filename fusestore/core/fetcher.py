"""Bringing object data into the cache: one streamed GET per run of missing blocks.

A reader waits only for the blocks it asked for: each block has its own event, set as
soon as the block is in the cache file, while the same GET goes on streaming the blocks
after it (the read-ahead). Sequential readers so cost few, long requests — what S3
servers serve fastest (moto even slices the whole object for every ranged GET) — and
reading overlaps the download. Streams run in the file system's background nursery once
`serve` runs (before that, and in tests without it, inline).

A `Fetcher` is given what it uses, the store calls, the store and the content store;
it never sees the file system. It runs on the trio thread; the GETs, the reads of their
bodies and the writes of those bytes into the cache file go to worker threads through
`StoreCalls`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from ..cache import BLOCK_SIZE, Content, ContentStore
from ..stores import NotFound, PreconditionFailed, Store, StoreError, StoreUnavailable

if TYPE_CHECKING:
    from ..stores import ObjectReader
    from ..writeback.storecalls import StoreCalls

log = logging.getLogger(__name__)


#: Blocks one GET may cover (the rest of the object, up to this).
MAX_STREAM_BLOCKS = 1024
#: Blocks past a stream's position beyond which a reader's block gets its own stream.
FAR_AHEAD = 8
#: Seconds a stream waits, paused at its limit, for a reader to want more before it ends.
IDLE_STOP = 5.0
#: Blocks read from the store per trip to a worker thread, at most (while readers wait
#: that far ahead).
BLOCKS_PER_READ = 4
#: Seconds a paused stream keeps its buffer: a sequential reader's next requests come
#: within milliseconds, and a buffer made anew each time costs its page faults (the
#: daemon maps buffers this big on their own, see `cli.process`).
BUFFERS_KEPT_PAUSED = 0.5


@dataclass(eq=False)
class Stream:
    """One GET filling blocks [first, end) of a content, in order, but never past `limit`
    (how far readers want it to read ahead): there it pauses, and ends if nobody raises
    the limit within IDLE_STOP. `error` once it failed."""

    first: int
    end: int
    limit: int
    events: dict[int, trio.Event] = field(default_factory=dict)
    error: BaseException | None = None
    wakeup: trio.Event = field(default_factory=trio.Event)
    position: int = 0  # the next block it fills
    filled: bool = False  # it brought a block
    progress_at: float = 0.0  # when it last brought one (trio's clock)

    def want(self, limit: int) -> None:
        if limit > self.limit:
            self.limit = limit
            self.wakeup.set()


def _read_and_store(
    reader: ObjectReader, buffer: memoryview, content: Content, first: int
) -> tuple[int, int, OSError | None]:
    """Fill `buffer` from the stream (fewer bytes at its end), then write them into the
    cache file from block `first` on (`Content.store_fetched`). Returns the bytes read,
    the bytes written and the cache disk's error, if writing failed (the store's errors
    raise). Worker thread: the socket and the page cache."""
    got = 0
    while got < len(buffer):
        count = reader.readinto(buffer[got:])
        if not count:
            break
        got += count
    try:
        return got, content.store_fetched(first, buffer[:got]), None
    except OSError as exc:
        return got, 0, exc


class Fetcher:
    """Streams of object data into contents. `ensure` yields until blocks are present
    (or raises the store's error); everything else is synchronous and cheap."""

    def __init__(self, calls: StoreCalls, store: Store, contents: ContentStore) -> None:
        self.calls = calls
        self.store = store
        self.contents = contents
        self.streams: dict[tuple[str, int], Stream] = {}
        self.nursery: trio.Nursery | None = None
        #: object bytes read from the store since the mount started (status, metrics)
        self.downloaded_bytes = 0

    def in_flight(self, content: Content, block: int) -> bool:
        return (content.id, block) in self.streams

    async def ensure(self, content: Content, first: int, count: int, ahead: int = 0) -> None:
        """Return once blocks [first, first+count) are present. A stream started here also
        brings up to `ahead` blocks past the first missing one."""
        tries: dict[int, int] = {}  # a block still missing after its stream: split off, or a short object
        while True:
            runs = list(content.missing_runs(first * BLOCK_SIZE, count * BLOCK_SIZE))
            if not runs:
                return
            block = runs[0][0]
            stream = self.streams.get((content.id, block))
            limit = max(first + count, block + ahead)
            if stream is not None and block > max(stream.position, stream.first) + max(ahead, FAR_AHEAD):
                self._split(content, stream, block)  # a jump: no need to stream all in between
                stream = None
            if stream is None:
                stream = await self.start(content, block, limit)
                if stream is None:
                    return  # nothing the store could give (no object behind it)
            stream.want(limit)
            event = stream.events.get(block)
            if event is not None:
                await event.wait()
            if not content.present >> block & 1:
                if stream.error is not None:
                    raise stream.error
                tries[block] = tries.get(block, 0) + 1
                if tries[block] >= 3 and not self.in_flight(content, block):
                    raise PreconditionFailed(
                        f"{content.source[0] if content.source else '?'}: the object ended before "
                        "the cache expected (changed in the store meanwhile)"
                    )

    async def fetch_all(self, content: Content) -> None:
        """Return once every block of `content` is present (brought from the store).

        Worker thread: the GETs, through StoreCalls."""
        for first, count in list(content.missing_runs(0, content.size)):
            await self.ensure(content, first, count)

    def prefetch(self, content: Content, first: int, count: int) -> None:
        """A sequential reader will want blocks [first, first+count) next: let the stream
        that brings them read that far ahead, or start one in the background."""
        if self.nursery is None or content.source is None:
            return
        for run_first, run_count in content.missing_runs(first * BLOCK_SIZE, count * BLOCK_SIZE):
            for block in range(run_first, run_first + run_count):
                stream = self.streams.get((content.id, block))
                if stream is not None:
                    stream.want(first + count)
                    return
                new = self._register(content, block, first + count)
                if new is not None:
                    self.nursery.start_soon(self._run, content, new)
                return

    async def start(self, content: Content, first: int, limit: int) -> Stream | None:
        stream = self._register(content, first, limit)
        if stream is None:
            return None
        if self.nursery is not None:
            self.nursery.start_soon(self._run, content, stream)
        else:
            await self._run(content, stream)
        return stream

    def _register(self, content: Content, first: int, limit: int) -> Stream | None:
        """Claim the missing blocks from `first` on that nobody fetches yet, to the end of
        the object (at most MAX_STREAM_BLOCKS); the stream reads up to `limit` for now."""
        if content.source is None:
            return None
        _, available = content.fetch_span(first, MAX_STREAM_BLOCKS)
        last = first + -(-available // BLOCK_SIZE)
        end = first
        while end < last and not content.present >> end & 1 and not self.in_flight(content, end):
            end += 1
        if end == first:
            return None
        stream = Stream(first, end, limit, position=first)
        for block in range(first, end):
            stream.events[block] = trio.Event()
            self.streams[(content.id, block)] = stream
        return stream

    def _split(self, content: Content, stream: Stream, block: int) -> None:
        """End `stream` before `block`: the blocks from there on are for another stream."""
        for rest in range(block, stream.end):
            if self.streams.get((content.id, rest)) is stream:
                del self.streams[(content.id, rest)]
            event = stream.events.pop(rest, None)
            if event is not None:
                event.set()  # waiters look again and find them unclaimed
        stream.end = min(stream.end, block)

    def _done(self, content: Content, stream: Stream, block: int) -> None:
        event = stream.events.pop(block, None)
        if self.streams.get((content.id, block)) is stream:
            del self.streams[(content.id, block)]
        if event is not None:
            event.set()

    async def _run(self, content: Content, stream: Stream) -> None:
        """Fill the stream's blocks in order; a failure mid-way re-opens from the next
        block until the store has been failing, or the stream has brought nothing, for
        the I/O timeout (each GET and each read is bounded by it too: progress, never
        the whole stream)."""
        assert content.source is not None
        key, etag = content.source
        stream.progress_at = trio.current_time()
        try:
            while stream.position < stream.end:
                start, length = content.fetch_span(stream.position, stream.end - stream.position)
                if length <= 0:
                    break
                try:
                    reader = await self.calls.ask(self.store.open_range, key, start, length, etag)
                except (NotFound, PreconditionFailed):
                    if content.source is None or content.source == (key, etag):
                        raise
                    # The object it mirrored was copied meanwhile (its file's move landed)
                    # and may be gone: the copy holds the same bytes.
                    key, etag = content.source
                    continue
                try:
                    failure = await self._copy(content, stream, reader, start + length)
                finally:
                    with trio.CancelScope(shield=True):
                        await trio.to_thread.run_sync(reader.close)
                if failure is None:
                    return  # the stream's end, its idle stop, or a short object (waiters see the gap)
                retry = isinstance(failure, StoreUnavailable | OSError)
                # A store that answers GETs but sends no bytes is never marked down (a
                # read that times out is abandoned, not failed): no block for the I/O
                # timeout ends the stream too, or its readers would wait forever.
                stalled = trio.current_time() - stream.progress_at >= self.calls.io_timeout
                if not retry or stalled or self.calls.down_for() > self.calls.io_timeout:
                    raise failure
                log.debug("%s: the stream broke at block %d, reopening: %s", key, stream.position, failure)
        except (StoreError, OSError) as exc:
            stream.error = exc
        except Exception as exc:
            log.exception("fetching %r failed", key)
            stream.error = StoreError(f"{key}: {exc}")
        finally:
            if stream.filled and not content.dirty:
                self.contents.save(content, key, etag)
            for rest in list(stream.events):
                self._done(content, stream, rest)

    async def _copy(
        self, content: Content, stream: Stream, reader: ObjectReader, stop: int
    ) -> BaseException | None:
        """Bring the blocks of one GET from the stream's position on into the cache file,
        a few per trip to a worker thread, which reads them off the socket and writes
        them (the trio thread meanwhile answers the kernel's reads), never past the
        stream's limit (there it pauses, and ends after IDLE_STOP), until byte `stop`,
        the stream's end or a short read. Returns the store's failure, if one ended it;
        the cache disk's raises (another GET would only fail the same way).

        One buffer, reused: a fresh allocation per trip costs its page faults (a 256 MiB
        cold read: 3 to 8% less time in two A/B runs of 6 each). A stream paused for
        BUFFERS_KEPT_PAUSED lets it go: many readers that stopped part-way (up to
        IDLE_STOP each) would otherwise hold 4 MiB apiece."""
        block = stream.position
        size = max(0, min(BLOCKS_PER_READ * BLOCK_SIZE, stop - block * BLOCK_SIZE))
        buffer: memoryview | None = None
        content.ensure_file()  # the worker writes into it, never makes it
        while block < stream.end:
            if block >= stream.limit and self.nursery is None:
                return None  # inline: nobody could raise the limit while we wait
            if block >= stream.limit:
                stream.wakeup = trio.Event()
                with trio.move_on_after(BUFFERS_KEPT_PAUSED):
                    await stream.wakeup.wait()  # readers asking on, usually
                if block >= stream.limit:
                    buffer = None
                    with trio.move_on_after(IDLE_STOP - BUFFERS_KEPT_PAUSED):
                        await stream.wakeup.wait()
                if block >= stream.limit:
                    return None  # nobody reads on: the rest is fetched when wanted
            # Several blocks per trip to the worker thread while readers are that far
            # behind (a trip costs more than a block).
            count = max(1, min(BLOCKS_PER_READ, stream.limit - block, stream.end - block))
            want = min(count * BLOCK_SIZE, stop - block * BLOCK_SIZE)
            if buffer is None:
                buffer = memoryview(bytearray(size))
            try:
                got, written, disk_error = await self.calls.attempt(
                    _read_and_store, reader, buffer[:want], content, block
                )
            except Exception as exc:
                return exc
            self.downloaded_bytes += got
            if disk_error is not None:
                raise disk_error
            got_blocks = -(-got // BLOCK_SIZE)
            content.fetched(block, got_blocks, written)
            if got:
                stream.filled = True
                stream.progress_at = trio.current_time()
            for filled in range(block, block + got_blocks):
                self._done(content, stream, filled)
            block += got_blocks
            stream.position = block
            if got < want:
                return None
        return None
