"""One file's data in the cache: a sparse local file plus the set of blocks that are present.

A content mirrors one version of an object (clean) or a file being changed (dirty). Bytes
at or past `base_size` never come from the store (they are written locally or are zeros),
so only blocks below `base_size` can be missing.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from .room import DiskRoom
from .snapshot import Snapshot

log = logging.getLogger(__name__)

BLOCK_SIZE = 1024 * 1024


class Content:
    """A sparse file whose logical size is always the file's size on disk.

    Methods do small, bounded disk work inline (pread/pwrite/ftruncate of the page
    cache); none of them blocks on the network. Not thread-safe: it belongs to the trio
    thread, with two exceptions. An uploader thread may pread from `path` concurrently;
    the `snapshot` it reads by is torn before any change that reaches its bytes. And a
    fetch's worker thread writes the store's bytes of missing blocks (`store_fetched`)
    through a descriptor of its own, block by block under `file_lock`, which the trio
    thread holds too while it writes or truncates: whichever comes first, a local write is
    never overwritten and bytes past a truncation never come back.
    """

    def __init__(self, content_id: str, path: Path, size: int, base_size: int, present: int = 0) -> None:
        self.id = content_id
        self.path = path
        #: the running total of dirty bytes this content counts in (set by its store)
        self.tally: list[int] | None = None
        #: the running count of open cache files this content counts in (set by its store)
        self.open_files: list[int] | None = None
        #: the count of events that may have made contents of its store evictable, which
        #: its last unpin adds to (set by its store)
        self.evictable_changes: list[int] | None = None
        #: the free space of the cache disk, told of every byte written (set by its store)
        self.room: DiskRoom | None = None
        #: a clean copy of a version the store no longer holds (a newer one of its key
        #: landed, or the key was deleted), kept only for the handles still reading it:
        #: `drop` (set by its store) removes it at its last unpin, unless dirty by then
        self.superseded = False
        self.drop: Callable[[Content], None] | None = None
        self._size = size
        self.base_size = base_size
        self.present = present
        #: the object version (key, etag) missing blocks are fetched from
        self.source: tuple[str, str] | None = None
        self.dirty = False
        self._pins = 0
        #: under a path the user pinned (`fusestore pin`): never evicted
        self.kept = False
        self.atime = 0.0
        #: the cache file was created since its directory was last fsynced
        self.new_file = False
        #: no cache file exists yet (a brand-new content): the first use creates it
        self.absent = False
        #: the index may hold an entry for it (False only while it surely holds none)
        self.indexed = True
        #: discarded or evicted: its cache file is gone and must not come back
        self.removed = False
        self._fd: int | None = None
        #: held around every local write and truncation of the file, with their change of
        #: `present`, which a fetch's worker thread could race (see the class)
        self.file_lock = threading.Lock()
        #: byte ranges [start, end) below `size` and past the base that no write of the
        #: current burst has filled yet (a write past the end makes one; the kernel may
        #: send a file's pages out of order), disjoint and sorted. A burst ends at the
        #: file's flush, fsync or upload (`settle`): the kernel has sent every page by
        #: then, so a hole left is one the program made (a sparse file). In memory only.
        self.holes: list[tuple[int, int]] = []
        #: the size at the end of the last burst: reported kept to the writer (close,
        #: fsync) or uploaded. A lost write never makes the file shorter than this.
        self.settled_size = 0
        #: the snapshots uploads are reading (each told of every change before it is made)
        self._snapshots: list[Snapshot] = []

    @property
    def pins(self) -> int:
        """Open handles (and fetches for pins) using it: never evicted while any."""
        return self._pins

    @pins.setter
    def pins(self, value: int) -> None:
        released = value == 0 and self._pins > 0
        if released and self.evictable_changes is not None:
            self.evictable_changes[0] += 1
        self._pins = value
        if released and self.superseded and not self.dirty and self.drop is not None:
            self.drop(self)

    @property
    def size(self) -> int:
        return self._size

    @size.setter
    def size(self, value: int) -> None:
        if self.tally is not None:
            self.tally[0] += value - self._size
        self._size = value

    # -- the file -----------------------------------------------------------------

    @property
    def fd(self) -> int:
        """The cache file, opened (and made, for a new content) on first use."""
        if self._fd is None and self.removed:
            raise FileNotFoundError(errno.ENOENT, "the cache file was removed", str(self.path))
        if self._fd is None and self.absent:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            self.absent = False
            self.new_file = True
            self.adopt_fd(fd)
        if self._fd is None:
            made = False
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self.new_file = made = True
            self._opened(fd)
            found = os.fstat(fd).st_size
            if found < self.size and not made:
                raise self._damaged(found)  # kept open: reads of what it still holds go on
            if found != self.size:
                os.ftruncate(fd, self.size)
        assert self._fd is not None
        return self._fd

    def _opened(self, fd: int) -> None:
        self._fd = fd
        if self.open_files is not None:
            self.open_files[0] += 1

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def adopt_fd(self, fd: int) -> None:
        """Use `fd`, open on an empty file at `path` whose name is already durable."""
        self._opened(fd)
        if self.size:
            os.ftruncate(fd, self.size)

    def ensure_file(self) -> None:
        """Create the cache file (sized) if nothing has touched it yet."""
        _ = self.fd

    def close(self) -> None:
        """Close the cache file (the next use opens it again)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if self.open_files is not None:
                self.open_files[0] -= 1

    def remove(self) -> None:
        """Delete the cache file for good: a use after this (a fetch still under way for a
        file removed or replaced meanwhile) fails with FileNotFoundError rather than
        make the file again, which would leave a file nothing names after a crash."""
        self.removed = True
        self.close()
        self.path.unlink(missing_ok=True)

    # -- blocks -------------------------------------------------------------------

    def _base_blocks(self) -> int:
        return -(-self.base_size // BLOCK_SIZE)

    def base_mask(self) -> int:
        """The bits of `present` that matter after a restart: the blocks below
        `base_size` (every block past it is local, and the cache file's size says how many
        there are)."""
        return (1 << self._base_blocks()) - 1

    def mark_local_tail(self) -> None:
        """Mark every block past the base present (they never come from the store): a
        restart learns only the base's blocks from the journal."""
        self.present |= ((1 << -(-self.size // BLOCK_SIZE)) - 1) & ~self.base_mask()

    def complete(self) -> bool:
        """Whether every byte is local (nothing left to fetch from the store)."""
        wanted = self.base_mask()
        return self.present & wanted == wanted

    def missing_runs(self, offset: int, length: int) -> Iterator[tuple[int, int]]:
        """Runs of missing blocks overlapping [offset, offset+length), as (first, count)."""
        end = min(offset + length, self.base_size, self.size)
        if end <= offset:
            return
        block, last = offset // BLOCK_SIZE, (end - 1) // BLOCK_SIZE
        run_start = None
        while block <= last:
            if not self.present >> block & 1:
                if run_start is None:
                    run_start = block
            elif run_start is not None:
                yield run_start, block - run_start
                run_start = None
            block += 1
        if run_start is not None:
            yield run_start, last + 1 - run_start

    def fetch_span(self, first: int, count: int) -> tuple[int, int]:
        """Byte range (start, length) of the store's data for blocks [first, first+count)."""
        start = first * BLOCK_SIZE
        end = min((first + count) * BLOCK_SIZE, self.base_size, self.size)
        return start, max(0, end - start)

    def store_fetched(self, first: int, data: bytes | memoryview) -> int:
        """Write the store's bytes `data`, from block `first` on, into the cache file
        (made already: `ensure_file`) where its blocks are still missing; returns the
        bytes written, for `fetched` to mark the blocks present.

        May run in a worker thread. It opens the file for itself (the content may close its
        own descriptor meanwhile, and the number go to another file), never makes it (a
        removed content's file stays gone: nothing is written), and writes each block under
        `file_lock`: one written locally meanwhile (present) is skipped, and nothing goes
        past a truncation (the bytes there are zeros for good).
        """
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return 0  # removed meanwhile: nothing to keep
        view = memoryview(data)  # slices without copies
        written = 0
        try:
            for i in range(-(-len(data) // BLOCK_SIZE)):
                block = first + i
                with self.file_lock:
                    limit = min(self.size, self.base_size) - block * BLOCK_SIZE
                    if limit > 0 and not self.present >> block & 1:
                        chunk = view[i * BLOCK_SIZE : (i + 1) * BLOCK_SIZE][:limit]
                        written += os.pwrite(fd, chunk, block * BLOCK_SIZE)
        finally:
            os.close(fd)
        return written

    def fetched(self, first: int, count: int, written: int) -> None:
        """Mark blocks [first, first+count) present once `store_fetched` wrote them
        (`written` bytes; trio thread). A block the file was cut below meanwhile is past
        the base: local, zeros until written."""
        if self.room is not None:
            self.room.spent(written)
        end = min(first + count, -(-self.size // BLOCK_SIZE))
        if end > first:
            self.present |= ((1 << (end - first)) - 1) << first

    def present_bytes(self) -> int:
        """Bytes of local data this content accounts for in the cache size."""
        if self.complete():
            return self.size
        return min(self.size, self.present.bit_count() * BLOCK_SIZE)

    # -- reading and writing --------------------------------------------------------

    def stored_or_held(self) -> int:
        """Bytes `du` counts for the file: the base whole (the store holds it, zeros and
        all: an object has no holes) and, past it, the 1 MiB blocks the cache holds (a
        hole a program left there is held nowhere yet). Arithmetic on the bitmap only."""
        tail = self.present >> self.base_size // BLOCK_SIZE  # the base's last block: at most once more
        return min(self.size, self.base_size + tail.bit_count() * BLOCK_SIZE)

    def read(self, offset: int, length: int) -> bytes:
        """Local bytes; the caller has fetched the blocks the range needs. EIO when the
        cache file is shorter than the file (cut short by something else: never zeros)."""
        length = max(0, min(length, self.size - offset))
        data = os.pread(self.fd, length, offset) if length else b""
        if len(data) < length:
            raise self._damaged(os.fstat(self.fd).st_size)
        return data

    def _damaged(self, found: int) -> OSError:
        log.error(
            "cache file %s holds %d bytes, %d expected: damaged by something else; "
            "reads of what it lost fail with EIO",
            self.path,
            found,
            self.size,
        )
        return OSError(errno.EIO, "the cache file was cut short", str(self.path))

    def snapshot(self) -> Snapshot:
        """The bytes as they are now, for an upload to read and check (close it after)."""
        snapshot = Snapshot(self.size, self._snapshots)
        self._snapshots.append(snapshot)
        return snapshot

    def _changing(self, start: int) -> None:
        """The bytes from `start` on are about to change: before, so that an upload thread
        that reads the new bytes finds its snapshot torn when it checks."""
        for snapshot in self._snapshots:
            snapshot.touched(start)

    def write(self, offset: int, data: bytes | memoryview) -> int:
        """Write local bytes; the caller has fetched partially overwritten missing blocks.

        Returns how many bytes were stored: fewer than asked when the disk ran full
        part-way (OSError only when none could be)."""
        if data:
            self._changing(offset)
        fd = self.fd
        with self.file_lock:
            written = os.pwrite(fd, data, offset)
            self._wrote(offset, len(data), written)
        return written

    def _wrote(self, offset: int, length: int, written: int) -> None:
        """The bookkeeping of a write (under `file_lock`: its blocks are present before a
        fetch's thread can look)."""
        if self.room is not None:
            self.room.spent(written)
        end = offset + written
        if written and offset > self.size:
            self._holes_add(self.size, offset)
        if self.holes:
            self._holes_fill(offset, end)
        if end > self.size:
            self.size = end
        first, last = offset // BLOCK_SIZE, (end - 1) // BLOCK_SIZE if written else -1
        if written < length and end % BLOCK_SIZE and end < self.base_size:
            # The disk stopped part-way through a block the caller did not fetch (the
            # write was to cover it whole): the rest of it is still the store's bytes,
            # to be fetched, not zeros.
            last -= 1
        for block in range(first, last + 1):
            self.present |= 1 << block

    def settle(self) -> None:
        """The burst of writes ended (flush, fsync, upload): the kernel has sent all its
        pages, the writer was told the file is kept as it is. A hole left is the program's
        own, and a later loss never cuts the file below its size now."""
        self.holes = []
        self.settled_size = self.size

    def now_stored(self) -> None:
        """The store now holds exactly these bytes: they are the base from now on."""
        self.base_size = self.size
        self.settle()

    def _holes_add(self, start: int, end: int) -> None:
        self.holes.append((start, end))  # past every byte so far: sorted still

    def _holes_fill(self, start: int, end: int) -> None:
        kept = []
        for low, high in self.holes:
            if high <= start or low >= end:
                kept.append((low, high))
                continue
            if low < start:
                kept.append((low, start))
            if high > end:
                kept.append((end, high))
        self.holes = kept

    def lost_write(self, start: int, end: int) -> tuple[int, int]:
        """Bytes [start, end) of a write the kernel had accepted could not be stored.

        Returns (size, limit): the size the file keeps, and the end past which writes
        sent before the loss must not take it. Where the lost bytes would have replaced
        bytes the file holds (the store's, or written before), the write simply did not
        happen: the file keeps those. Where they would have filled a hole or grown the
        file, nothing may stand in for them: the file ends at the first such byte, and
        later writes of the same burst may not grow it past there, so no zeros ever
        stand in the middle for what was lost. Never below the base or the settled size
        (bytes the store holds, or the writer was told are kept)."""
        floor = max(self.base_size, self.settled_size)
        for low, high in self.holes:
            if low < end and high > start:
                cut = min(max(low, start, floor), self.size)
                return cut, cut
        if start >= self.size:
            return self.size, start
        return self.size, self.size

    def truncate(self, size: int) -> None:
        """Set the size; the caller has fetched the block that holds the new end.

        Bytes past the new end are gone for good: blocks wholly past it are dropped from
        the base, so growing again shows zeros rather than the store's old bytes.
        """
        self._changing(min(size, self.size))
        fd = self.fd
        with self.file_lock:
            os.ftruncate(fd, size)
            self.size = size
            self.holes = [(low, min(high, size)) for low, high in self.holes if low < size]
            self.settled_size = min(self.settled_size, size)
            if size < self.base_size:
                self.base_size = size
            self.present &= (1 << -(-size // BLOCK_SIZE)) - 1

    def boundary_block(self, size: int) -> tuple[int, int] | None:
        """The missing block holding byte `size`, which must be fetched before truncating."""
        if size % BLOCK_SIZE == 0:
            return None
        for run in self.missing_runs(size - 1, 1):
            return run
        return None
