"""A store seen through a layer (fault injection, linked stores): the base of such layers.

A layer reports the wrapped store's URL, key space and limits, so a cache made through it
is the same cache as without it, and every method goes to the wrapped store unless the
layer overrides it. Writes pass `check_write` first, for a layer that refuses some.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Self
from urllib.parse import SplitResult

from .base import Body, CompletedPart, ListPage, ObjectInfo, ObjectReader, PendingUpload, Store, StoreStats
from .errors import InvalidStoreURL


class WrappedStore(Store):
    """`inner`, unchanged but where a subclass says otherwise. Blocks as `inner` does."""

    def __init__(self, inner: Store) -> None:
        super().__init__()
        self.inner = inner
        self.keys = inner.keys
        self.scheme = inner.scheme  # type: ignore[misc]
        self.list_has_metadata = inner.list_has_metadata  # type: ignore[misc]
        self.lists_ahead = inner.lists_ahead
        self.min_part_size = inner.min_part_size  # type: ignore[misc]
        self.max_part_size = inner.max_part_size  # type: ignore[misc]
        self.max_parts = inner.max_parts  # type: ignore[misc]
        self.max_object_size = inner.max_object_size  # type: ignore[misc]
        self.preferred_part_size = inner.preferred_part_size

    @property
    def writable(self) -> bool:
        return self.inner.writable

    @classmethod
    def from_url(cls, url: SplitResult, options: Mapping[str, Any]) -> Self:
        raise InvalidStoreURL(f"{cls.__name__} wraps another store; it has no URL of its own")

    def to_url(self) -> str:
        return self.inner.to_url()

    def close(self) -> None:
        self.inner.close()

    def check_write(self, keys: Iterable[str]) -> None:
        """Raise a StoreError when a write to `keys` must not reach the wrapped store."""

    # -- reading ------------------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def list(
        self, prefix: str = "", delimiter: str | None = "/", token: str | None = None, max_keys: int = 1000
    ) -> ListPage:
        return self.inner.list(prefix, delimiter, token, max_keys)

    def open_range(
        self, key: str, start: int = 0, length: int | None = None, etag: str | None = None
    ) -> ObjectReader:
        return self.inner.open_range(key, start, length, etag)

    def probe(self) -> None:
        self.inner.probe()

    def stat_store(self) -> StoreStats:
        return self.inner.stat_store()

    def request_counts(self) -> dict[str, int]:
        return self.inner.request_counts()

    def list_multipart(self, prefix: str = "") -> builtins.list[PendingUpload]:
        return self.inner.list_multipart(prefix)

    # -- writing --------------------------------------------------------------------------

    def put(
        self,
        key: str,
        body: Body,
        metadata: Mapping[str, str] | None = None,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        self.check_write([key])
        return self.inner.put(key, body, metadata, if_match=if_match, if_none_match=if_none_match)

    def start_multipart(self, key: str, metadata: Mapping[str, str] | None = None) -> str:
        self.check_write([key])
        return self.inner.start_multipart(key, metadata)

    def put_part(self, key: str, upload_id: str, number: int, body: Body) -> CompletedPart:
        self.check_write([key])
        return self.inner.put_part(key, upload_id, number, body)

    def complete_multipart(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[CompletedPart],
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        self.check_write([key])
        return self.inner.complete_multipart(
            key, upload_id, parts, if_match=if_match, if_none_match=if_none_match
        )

    def abort_multipart(self, key: str, upload_id: str) -> None:
        self.check_write([key])
        self.inner.abort_multipart(key, upload_id)

    def copy(
        self,
        src: str,
        dst: str,
        metadata: Mapping[str, str] | None = None,
        *,
        expect: ObjectInfo | None = None,
    ) -> str:
        self.check_write([src, dst])
        return self.inner.copy(src, dst, metadata, expect=expect)

    def delete_many(self, keys: Iterable[str], etags: Mapping[str, str] | None = None) -> None:
        keys = builtins.list(keys)
        self.check_write(keys)
        self.inner.delete_many(keys, etags)
