"""`memory://NAME[/prefix]`: objects in this process's memory, for tests and experiments.

Stores opened with the same NAME share one backend for the life of the process, so a test
can "remount" and find its objects again; `memory://` with no name is a fresh, private one.
"""

from __future__ import annotations

import bisect
import builtins
import functools
import hashlib
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self
from urllib.parse import SplitResult

from .base import (
    Body,
    BytesReader,
    CompletedPart,
    ListPage,
    ObjectInfo,
    ObjectReader,
    PendingUpload,
    Store,
    StoreStats,
    check_write_conditions,
    read_body,
)
from .errors import (
    AccessDenied,
    InvalidStoreURL,
    NotFound,
    PreconditionFailed,
    QuotaExceeded,
    StoreError,
)
from .keys import KeySpace, check_metadata
from .listing import Candidate, page_from
from .options import Option, options_query, parse_options


@dataclass
class _Object:
    data: bytes
    metadata: dict[str, str]
    etag: str
    mtime: float

    def info(self, key: str) -> ObjectInfo:
        return ObjectInfo(key, len(self.data), self.etag, self.mtime, dict(self.metadata))


@dataclass
class _Upload:
    key: str
    metadata: dict[str, str]
    initiated: float
    parts: dict[int, tuple[str, bytes]] = field(default_factory=dict)


class _Objects(dict[str, _Object]):
    """The objects by key, which also knows its keys in byte order. The order is brought
    up to date when asked: a listing sorts only the keys added since the last one (merged
    with the sorted rest in linear time), not the whole store on every page."""

    def __init__(self) -> None:
        super().__init__()
        self._sorted: list[str] = []
        self._added: list[str] = []
        self._removed = False

    def __setitem__(self, key: str, value: _Object) -> None:
        if key not in self:
            self._added.append(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._removed = True

    def pop(self, key: str, *default: Any) -> Any:
        self._removed = True
        return super().pop(key, *default)

    def sorted_keys(self) -> list[str]:
        """Every key, in order (a list shared until the next change: do not modify)."""
        if self._added or self._removed:
            kept = [key for key in self._sorted if key in self] if self._removed else list(self._sorted)
            kept += {key: None for key in self._added if key in self}  # once each, in the store
            kept.sort()  # two sorted runs: timsort merges them in linear time
            if self._removed:
                kept = [key for i, key in enumerate(kept) if not i or kept[i - 1] != key]
            self._sorted, self._added, self._removed = kept, [], False
        return self._sorted


class _Backend:
    """The shared state behind every store opened with one name; guarded by `lock`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects = _Objects()
        self.uploads: dict[str, _Upload] = {}

    def used(self) -> int:
        return sum(len(o.data) for o in self.objects.values())


_named: dict[str, _Backend] = {}
_named_lock = threading.Lock()


def _etag(data: bytes) -> str:
    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'


class MemoryStore(Store):
    """A store held in a dict. Thread-safe; every method is fast and never blocks long."""

    scheme = "memory"
    options: ClassVar[Mapping[str, Option]] = {
        "read_only": Option(bool, False, "refuse every write with AccessDenied"),
        "capacity": Option(int, 0, "bytes the store may hold (0: unlimited)"),
        "key_prefix": Option(str, "", "show only the names at the top that begin with this (a view)"),
    }
    min_part_size = 1  # no backend limit; tests use tiny parts

    def __init__(
        self,
        name: str = "",
        prefix: str = "",
        *,
        read_only: bool = False,
        capacity: int = 0,
        key_prefix: str = "",
    ) -> None:
        super().__init__(prefix)
        self.keys = KeySpace(prefix, key_prefix)
        self.name = name
        self.read_only = read_only
        self.capacity = capacity
        if name:
            with _named_lock:
                self._backend = _named.setdefault(name, _Backend())
        else:
            self._backend = _Backend()

    @classmethod
    def from_url(cls, url: SplitResult, options: Mapping[str, Any]) -> Self:
        if ":" in url.netloc or "@" in url.netloc:
            raise InvalidStoreURL(
                f"memory:// URLs name a store, memory://NAME[/prefix], not {url.geturl()!r}"
            )
        values = parse_options(cls.scheme, cls.options, options)
        return cls(url.netloc, url.path, **values)

    def to_url(self) -> str:
        query = options_query(
            self.options,
            {"read_only": self.read_only, "capacity": self.capacity, "key_prefix": self.keys.name_filter},
        )
        base = f"memory://{self.name}/{self.keys.prefix}".rstrip("/")
        return f"{base}?{query}" if query else base

    @classmethod
    def forget(cls, name: str) -> None:
        """Drop the named backend and everything in it."""
        with _named_lock:
            _named.pop(name, None)

    def _writable(self) -> None:
        if self.read_only:
            raise AccessDenied(f"{self.to_url()} is read-only")

    def _check_room(self, adding: int, replacing: str | None) -> None:
        if not self.capacity:
            return
        old = self._backend.objects.get(replacing) if replacing else None
        if self._backend.used() - (len(old.data) if old else 0) + adding > self.capacity:
            raise QuotaExceeded(f"memory store {self.name!r} is full ({self.capacity} bytes)")

    def _commit(
        self, full: str, data: bytes, metadata: dict[str, str], if_match: str | None, if_none_match: bool
    ) -> str:
        """Put under the backend lock, after checking the conditions. Caller holds lock."""
        current = self._backend.objects.get(full)
        check_write_conditions(full, None if current is None else current.etag, if_match, if_none_match)
        self._check_room(len(data), full)
        etag = _etag(data)
        self._backend.objects[full] = _Object(data, metadata, etag, time.time())
        return etag

    def _get(self, full: str) -> _Object:
        try:
            return self._backend.objects[full]
        except KeyError:
            raise NotFound(f"no such object: {full!r}", key=full) from None

    # -- reading ----------------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo:
        full = self.keys.full(key)
        with self._backend.lock:
            return self._get(full).info(key)

    def list(
        self,
        prefix: str = "",
        delimiter: str | None = "/",
        token: str | None = None,
        max_keys: int = 1000,
    ) -> ListPage:
        full_prefix = self.keys.full_prefix(prefix)
        objects = self._backend.objects

        def seek(first: str) -> Iterator[Candidate]:
            keys = objects.sorted_keys()
            index = bisect.bisect_left(keys, max(self.keys.prefix + first, full_prefix))
            for i in range(index, len(keys)):
                full = keys[i]
                if not full.startswith(full_prefix):
                    return
                key = self.keys.relative(full)
                yield key, functools.partial(objects[full].info, key)

        with self._backend.lock:  # the page is built at once: a consistent view, and quick
            return page_from(seek, prefix, delimiter, token, max_keys)

    def open_range(
        self, key: str, start: int = 0, length: int | None = None, etag: str | None = None
    ) -> ObjectReader:
        full = self.keys.full(key)
        with self._backend.lock:
            obj = self._get(full)
        if etag is not None and obj.etag != etag:
            raise PreconditionFailed(f"etag of {key!r} changed", key=key)
        end = len(obj.data) if length is None else start + length
        return BytesReader(obj.data[start:end])

    # -- writing ----------------------------------------------------------------------

    def put(
        self,
        key: str,
        body: Body,
        metadata: Mapping[str, str] | None = None,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        full = self.keys.full(key)
        meta = check_metadata(dict(metadata or {}))
        self._writable()
        data = read_body(body)
        with self._backend.lock:
            return self._commit(full, data, meta, if_match, if_none_match)

    def start_multipart(self, key: str, metadata: Mapping[str, str] | None = None) -> str:
        full = self.keys.full(key)
        meta = check_metadata(dict(metadata or {}))
        self._writable()
        upload_id = uuid.uuid4().hex
        with self._backend.lock:
            self._backend.uploads[upload_id] = _Upload(full, meta, time.time())
        return upload_id

    def _upload(self, full: str, upload_id: str) -> _Upload:
        upload = self._backend.uploads.get(upload_id)
        if upload is None or upload.key != full:
            raise NotFound(f"no multipart upload {upload_id!r} for {full!r}", key=full)
        return upload

    def put_part(self, key: str, upload_id: str, number: int, body: Body) -> CompletedPart:
        full = self.keys.full(key)
        data = read_body(body)
        etag = _etag(data)
        with self._backend.lock:
            self._upload(full, upload_id).parts[number] = (etag, data)
        return CompletedPart(number, etag)

    def complete_multipart(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[CompletedPart],
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        full = self.keys.full(key)
        with self._backend.lock:
            upload = self._upload(full, upload_id)
            chunks = []
            for part in parts:
                stored = upload.parts.get(part.number)
                if stored is None or stored[0] != part.etag:
                    raise StoreError(f"part {part.number} of {full!r} was not uploaded", key=full)
                chunks.append(stored[1])
            etag = self._commit(full, b"".join(chunks), upload.metadata, if_match, if_none_match)
            del self._backend.uploads[upload_id]
            return etag

    def abort_multipart(self, key: str, upload_id: str) -> None:
        full = self.keys.full(key)
        with self._backend.lock:
            upload = self._backend.uploads.get(upload_id)
            if upload is not None and upload.key == full:
                del self._backend.uploads[upload_id]

    def list_multipart(self, prefix: str = "") -> builtins.list[PendingUpload]:
        full_prefix = self.keys.full_prefix(prefix)
        with self._backend.lock:
            return sorted(
                PendingUpload(self.keys.relative(u.key), upload_id, u.initiated)
                for upload_id, u in self._backend.uploads.items()
                if u.key.startswith(full_prefix)
            )

    def copy(
        self,
        src: str,
        dst: str,
        metadata: Mapping[str, str] | None = None,
        *,
        expect: ObjectInfo | None = None,
    ) -> str:
        full_src, full_dst = self.keys.full(src), self.keys.full(dst)
        meta = None if metadata is None else check_metadata(dict(metadata))
        self._writable()
        with self._backend.lock:
            source = self._get(full_src)
            if expect is not None and source.etag != expect.etag:
                raise PreconditionFailed(f"etag of {src!r} changed", key=src)
            new_meta = dict(source.metadata) if meta is None else meta
            return self._commit(full_dst, source.data, new_meta, None, False)

    def delete_many(self, keys: Iterable[str], etags: Mapping[str, str] | None = None) -> None:
        keys = list(keys)
        fulls = [self.keys.full(k) for k in keys]
        self._writable()
        etags = etags or {}
        with self._backend.lock:
            objects = self._backend.objects
            for key, full in zip(keys, fulls, strict=True):
                wanted = etags.get(key)
                present = objects.get(full)
                if present is not None and (wanted is None or present.etag == wanted):
                    del objects[full]

    def stat_store(self) -> StoreStats:
        with self._backend.lock:
            used = self._backend.used()
        if not self.capacity:
            return StoreStats(used_bytes=used)
        return StoreStats(self.capacity, max(0, self.capacity - used), used)
