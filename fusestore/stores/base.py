"""The store driver contract: what every driver offers, in one abstract class.

Every method here is synchronous and may block on the network or the disk for as long as
the backend takes: callers on the trio thread run them through `trio.to_thread.run_sync`
with a capacity limiter. Drivers are thread-safe: one instance serves many worker threads.

Keys are relative to the store's root (see `keys.KeySpace`). Failures are raised only as
`errors.StoreError` subclasses.
"""

from __future__ import annotations

import builtins
import logging
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO, ClassVar, NamedTuple, Protocol, Self
from urllib.parse import SplitResult

from .errors import AlreadyExists, NotFound, PreconditionFailed, QuotaExceeded, StoreError
from .keys import KeySpace
from .options import Option

log = logging.getLogger(__name__)

MiB = 1024 * 1024
GiB = 1024 * MiB
TiB = 1024 * GiB

#: What `put_file` and `read` accept as an object's contents.
Body = bytes | bytearray | memoryview | BinaryIO


@dataclass(frozen=True)
class ObjectInfo:
    """One object as the store reports it.

    `mtime` is the store's own last-modified time (epoch seconds); the POSIX mtime a
    file shows lives in `metadata` (see `posix.py`). `metadata` is None where the
    operation that produced this info does not return it (S3 listings).
    """

    key: str
    size: int
    etag: str
    mtime: float
    metadata: Mapping[str, str] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ListPage:
    """One page of a listing: objects and common prefixes (see `Store.list` for order).

    `next_token` is None on the last page; otherwise pass it back to `list` for the next.
    Prefixes end with the delimiter.
    """

    objects: list[ObjectInfo]
    prefixes: list[str]
    next_token: str | None


class PendingUpload(NamedTuple):
    """A multipart upload that was started and neither completed nor aborted."""

    key: str
    upload_id: str
    initiated: float


class UploadTracker(Protocol):
    """Told about each multipart upload `put_file` makes, so that one interrupted by a
    crash can be found and aborted later. Called from the uploading thread."""

    def starting(self, key: str) -> None:
        """A multipart upload to `key` is about to be started."""

    def started(self, key: str, upload_id: str) -> None:
        """It was started with this id."""

    def ended(self, key: str, upload_id: str) -> None:
        """It was completed or aborted: the store keeps nothing of it."""

    def abandoned(self, key: str, upload_id: str | None) -> None:
        """It failed and could not be aborted, or (None) its start failed: the store may
        keep an upload nobody will finish."""


class CompletedPart(NamedTuple):
    """A part as the store acknowledged it, to be named again when the upload completes."""

    number: int
    etag: str
    #: The part's CRC32 (base64) where the store checks one, else "".
    checksum: str = ""


@dataclass(frozen=True)
class StoreStats:
    """Capacity as far as the store knows it; None where it cannot tell (S3)."""

    total_bytes: int | None = None
    free_bytes: int | None = None
    used_bytes: int | None = None


class ObjectReader(ABC):
    """A byte stream over (a range of) one object. Use it as a context manager."""

    @abstractmethod
    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all that is left when negative); b"" at the end. Blocks."""

    def readinto(self, buffer: memoryview) -> int:
        """Read up to len(buffer) bytes into `buffer`; how many (0 at the end). Blocks.
        Drivers override it where they can fill the buffer without an intermediate copy."""
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(MiB):
            yield chunk


class BytesReader(ObjectReader):
    """An ObjectReader over bytes already in memory."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size < 0 else min(len(self._view), self._pos + size)
        chunk = bytes(self._view[self._pos : end])
        self._pos = end
        return chunk

    def readinto(self, buffer: memoryview) -> int:
        end = min(len(self._view), self._pos + len(buffer))
        count = end - self._pos
        buffer[:count] = self._view[self._pos : end]
        self._pos = end
        return count

    def close(self) -> None:
        self._view = memoryview(b"")


def read_body(body: Body) -> bytes:
    """The whole of `body` as bytes (reads a file object from its current position)."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    return body.read()


def check_write_conditions(
    key: str, current_etag: str | None, if_match: str | None, if_none_match: bool
) -> None:
    """Raise as a conditional write must when the object at `key` has `current_etag`
    (None: no object). For drivers that check conditions themselves, under their lock."""
    if if_match is not None and if_none_match:
        raise ValueError("if_match and if_none_match exclude each other")
    if if_none_match and current_etag is not None:
        raise AlreadyExists(f"object exists: {key!r}", key=key)
    if if_match is not None:
        if current_etag is None:
            raise NotFound(f"no such object: {key!r}", key=key)
        if current_etag != if_match:
            raise PreconditionFailed(f"etag of {key!r} changed", key=key)


class Store(ABC):
    """A driver: one backend (bucket, directory, memory) confined to an optional prefix.

    Subclasses set `scheme` and `options`, implement the abstract methods, and build
    themselves from a URL in `from_url`. Opening a store never touches the network or
    the backend; the first call does.

    Multipart limits (`min_part_size`, `max_part_size`, `max_parts`) describe the
    backend; `put_file` uses them to pick part sizes so any object up to
    `max_object_size` fits. `preferred_part_size` is the user's choice, where a driver
    takes one: uploads use it instead of their own defaults.
    """

    scheme: ClassVar[str]
    options: ClassVar[Mapping[str, Option]] = {}
    #: Whether `list` returns user metadata with each object (S3 does not).
    list_has_metadata: ClassVar[bool] = True
    #: Whether a walk's next directories are listed ahead of it (`core.readahead`): for
    #: stores whose listings wait on a server or another process (the file store's
    #: listing helper). A listing built by this process's own CPU only takes the
    #: interpreter from the walk.
    lists_ahead: bool = False

    min_part_size: ClassVar[int] = 5 * MiB
    max_part_size: ClassVar[int] = 5 * GiB
    max_parts: ClassVar[int] = 10_000
    max_object_size: ClassVar[int] = 5 * TiB
    #: The part size the user chose (None: the uploader's own), grown where an object
    #: would not fit in `max_parts` parts.
    preferred_part_size: int | None = None

    def __init__(self, prefix: str = "") -> None:
        self.keys = KeySpace(prefix)

    # -- construction -----------------------------------------------------------------

    @classmethod
    @abstractmethod
    def from_url(cls, url: SplitResult, options: Mapping[str, Any]) -> Self:
        """The store a parsed URL names, with options from its query and the caller.

        Raises `errors.InvalidStoreURL` for a URL or option this driver cannot use.
        """

    @abstractmethod
    def to_url(self) -> str:
        """A URL that `open_store` turns back into an equal store (options included)."""

    def close(self) -> None:  # noqa: B027 - most drivers hold nothing to release
        """Release connections and files. The store must not be used afterwards."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.to_url()}>"

    @property
    def writable(self) -> bool:
        """False for a store configured to refuse every write (a mount of it is read-only).
        Never blocks."""
        return True

    # -- reading ----------------------------------------------------------------------

    @abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Size, etag, mtime and metadata of one object. NotFound when absent."""

    @abstractmethod
    def list(
        self,
        prefix: str = "",
        delimiter: str | None = "/",
        token: str | None = None,
        max_keys: int = 1000,
    ) -> ListPage:
        """One page of the objects whose keys start with `prefix`.

        With a delimiter, keys that contain it after the prefix are rolled up into
        common prefixes, and both lists are in UTF-8 byte order. Without one, every key
        comes exactly once over the pages (in byte order on AWS and the local drivers;
        some servers walk a tree instead). A prefix nothing is under is an empty page.
        """

    @abstractmethod
    def open_range(
        self, key: str, start: int = 0, length: int | None = None, etag: str | None = None
    ) -> ObjectReader:
        """A stream of `length` bytes from `start` (to the end when None).

        A range past the end yields no bytes. With `etag`, PreconditionFailed unless the
        object still has that etag; NotFound when absent.
        """

    def get_range(
        self, key: str, start: int = 0, length: int | None = None, etag: str | None = None
    ) -> bytes:
        """`open_range`, read whole."""
        with self.open_range(key, start, length, etag) as reader:
            return reader.read()

    def iter_objects(self, prefix: str = "", delimiter: str | None = None) -> Iterator[ObjectInfo]:
        """Every object under `prefix`, page after page (recursive by default)."""
        token: str | None = None
        while True:
            page = self.list(prefix, delimiter, token)
            yield from page.objects
            if page.next_token is None:
                return
            token = page.next_token

    def probe(self) -> None:
        """Check that the store exists and the credentials work (one cheap request).

        Raises StoreNotFound, AccessDenied or StoreUnavailable with a message saying
        what is wrong.
        """
        self.list("", "/", None, 1)

    # -- writing ----------------------------------------------------------------------

    @abstractmethod
    def put(
        self,
        key: str,
        body: Body,
        metadata: Mapping[str, str] | None = None,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        """Store `body` at `key` in one request, atomically; returns the new etag.

        `if_match`: only replace the object whose etag is that (PreconditionFailed
        otherwise, NotFound when it is gone). `if_none_match`: only create
        (AlreadyExists when an object is there).
        """

    @abstractmethod
    def start_multipart(self, key: str, metadata: Mapping[str, str] | None = None) -> str:
        """Begin a multipart upload; returns its upload id. Nothing appears at `key` yet."""

    @abstractmethod
    def put_part(self, key: str, upload_id: str, number: int, body: Body) -> CompletedPart:
        """Upload part `number` (1-based); returns what completing the upload must name.
        NotFound: no such upload."""

    @abstractmethod
    def complete_multipart(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[CompletedPart],
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        """Join the parts into the object at `key`, atomically; returns its etag.

        Conditions as for `put`. On failure the upload stays pending (abort it).
        """

    @abstractmethod
    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Discard an upload and its parts. An unknown upload is fine (already gone)."""

    @abstractmethod
    def list_multipart(self, prefix: str = "") -> builtins.list[PendingUpload]:
        """Uploads under `prefix` that were started and neither completed nor aborted."""

    @abstractmethod
    def copy(
        self,
        src: str,
        dst: str,
        metadata: Mapping[str, str] | None = None,
        *,
        expect: ObjectInfo | None = None,
    ) -> str:
        """Server-side copy of `src` to `dst`; returns the new etag.

        `metadata` None keeps the source's metadata; otherwise it replaces it.
        NotFound when `src` is absent. `expect` is the source as the caller last saw it
        (its size and etag): a driver need not look the source up first, and the copy
        fails with PreconditionFailed when the source's etag is no longer `expect.etag`.
        """

    @abstractmethod
    def delete_many(self, keys: Iterable[str], etags: Mapping[str, str] | None = None) -> None:
        """Delete every key (absent keys are fine). StoreError names any that failed.

        A key given an etag in `etags` is deleted only while the object there is that
        version: one put there since (another client's) stays, and that is no error."""

    def delete(self, key: str) -> None:
        self.delete_many([key])

    @abstractmethod
    def stat_store(self) -> StoreStats:
        """Capacity and use, where the backend knows them."""

    def request_counts(self) -> dict[str, int]:
        """Requests sent to the backend so far, by kind (S3: by API operation); empty
        where the driver does not count them. Thread-safe, never blocks."""
        return {}

    # -- whole-file uploads -----------------------------------------------------------

    def part_size_for(self, size: int) -> int:
        """The part size for an object of `size` bytes: the preferred or else the minimum
        part size, grown in whole MiB just enough that the object fits in `max_parts` parts."""
        if size > self.max_object_size:
            raise QuotaExceeded(
                f"object of {size} bytes is larger than the store's limit of {self.max_object_size} bytes"
            )
        needed = math.ceil(size / self.max_parts)
        part = max(self.preferred_part_size or self.min_part_size, math.ceil(needed / MiB) * MiB)
        return min(part, self.max_part_size)

    def put_file(
        self,
        key: str,
        source: BinaryIO,
        size: int,
        metadata: Mapping[str, str] | None = None,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
        multipart_threshold: int = 64 * MiB,
        part_size: int | None = None,
        concurrency: int = 4,
        tracker: UploadTracker | None = None,
        check: Callable[[], None] | None = None,
    ) -> str:
        """Upload the first `size` bytes of the open file `source` to `key`.

        Below `multipart_threshold` this is one `put` of bytes read into memory (so at most
        that many bytes per concurrent call); above it a multipart upload whose
        parts go up `concurrency` at a time and which is aborted on any failure, so the
        key holds the complete new object or whatever it held before, never a part; the
        `tracker` hears of each multipart upload, for the case where the process dies
        before it could abort one. `check` is called once every byte was read and before
        the object is committed (the PUT sent, the upload completed); what it raises
        stores nothing. Returns the new etag. Blocks for the whole transfer.
        """
        fd = source.fileno()
        if size < multipart_threshold:
            data = os.pread(fd, size, 0)
            if len(data) != size:
                raise ValueError(f"{key!r}: the source holds {len(data)} bytes, not {size}")
            if check is not None:
                check()
            return self.put(key, data, metadata, if_match=if_match, if_none_match=if_none_match)

        part_size = part_size or self.part_size_for(size)
        count = max(1, math.ceil(size / part_size))
        if tracker is not None:
            tracker.starting(key)
        try:
            upload_id = self.start_multipart(key, metadata)
        except BaseException:
            if tracker is not None:
                tracker.abandoned(key, None)  # the store may have started it all the same
            raise
        if tracker is not None:
            tracker.started(key, upload_id)
        try:

            def send(number: int) -> CompletedPart:
                offset = (number - 1) * part_size
                length = min(part_size, size - offset)
                data = os.pread(fd, length, offset)
                if len(data) != length:
                    raise ValueError(f"{key!r}: the source ended before {size} bytes")
                return self.put_part(key, upload_id, number, data)

            with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
                parts = list(pool.map(send, range(1, count + 1)))
            if check is not None:
                check()
            etag = self.complete_multipart(
                key, upload_id, parts, if_match=if_match, if_none_match=if_none_match
            )
        except BaseException:
            try:
                self.abort_multipart(key, upload_id)
            except StoreError as exc:
                log.warning("could not abort multipart upload of %r: %s", key, exc)
                if tracker is not None:
                    tracker.abandoned(key, upload_id)
            else:
                if tracker is not None:
                    tracker.ended(key, upload_id)
            raise
        if tracker is not None:
            tracker.ended(key, upload_id)
        return etag
