"""`MeasuredStore`: a store whose every request is timed and counted by outcome.

The layer sits right above the driver (above fault injection, so injected failures count
as the mount sees them), so a measure is the request itself, in the worker thread that
makes it: never the wait for a free slot of `StoreCalls`. A streamed GET (`open_range`)
is measured until the store answered (its first byte); the bytes it brings are the
fetcher's count. Linked stores (`--link`) are not measured.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from ..stores import Store
from ..stores.base import Body, CompletedPart, ListPage, ObjectInfo, ObjectReader, PendingUpload, StoreStats
from ..stores.errors import (
    AccessDenied,
    AlreadyExists,
    InvalidKey,
    NotFound,
    PreconditionFailed,
    StoreError,
    StoreUnavailable,
)
from ..stores.wrapper import WrappedStore

T = TypeVar("T")

Observe = Callable[[str, str, float], None]

#: An error's outcome label, the first class it is an instance of; "error" else.
OUTCOMES: tuple[tuple[type[BaseException], str], ...] = (
    (NotFound, "not_found"),
    (AlreadyExists, "precondition_failed"),
    (PreconditionFailed, "precondition_failed"),
    (AccessDenied, "access_denied"),
    (InvalidKey, "invalid_key"),
    (StoreUnavailable, "unavailable"),
    (StoreError, "error"),
)


def outcome_of(exc: BaseException | None) -> str:
    """ "ok", or the kind of failure: not_found, precondition_failed, access_denied,
    invalid_key, unavailable (transient: retried), error."""
    if exc is None:
        return "ok"
    for kind, name in OUTCOMES:
        if isinstance(exc, kind):
            return name
    return "error"


class MeasuredStore(WrappedStore):
    """`inner`, with `observe(operation, outcome, seconds)` called after each request
    (in the calling thread; it must be thread-safe). Blocks as `inner` does."""

    def __init__(self, inner: Store, observe: Observe) -> None:
        super().__init__(inner)
        self.observe = observe

    def _measured(self, operation: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            return call(*args, **kwargs)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self.observe(operation, outcome_of(failure), time.perf_counter() - started)

    def head(self, key: str) -> ObjectInfo:
        return self._measured("head", super().head, key)

    def list(
        self, prefix: str = "", delimiter: str | None = "/", token: str | None = None, max_keys: int = 1000
    ) -> ListPage:
        return self._measured("list", super().list, prefix, delimiter, token, max_keys)

    def open_range(
        self, key: str, start: int = 0, length: int | None = None, etag: str | None = None
    ) -> ObjectReader:
        return self._measured("get", super().open_range, key, start, length, etag)

    def probe(self) -> None:
        self._measured("probe", super().probe)

    def stat_store(self) -> StoreStats:
        return self._measured("stat_store", super().stat_store)

    def list_multipart(self, prefix: str = "") -> builtins.list[PendingUpload]:
        return self._measured("list_multipart", super().list_multipart, prefix)

    def put(
        self,
        key: str,
        body: Body,
        metadata: Mapping[str, str] | None = None,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        return self._measured(
            "put", super().put, key, body, metadata, if_match=if_match, if_none_match=if_none_match
        )

    def start_multipart(self, key: str, metadata: Mapping[str, str] | None = None) -> str:
        return self._measured("start_multipart", super().start_multipart, key, metadata)

    def put_part(self, key: str, upload_id: str, number: int, body: Body) -> CompletedPart:
        return self._measured("put_part", super().put_part, key, upload_id, number, body)

    def complete_multipart(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[CompletedPart],
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        return self._measured(
            "complete_multipart",
            super().complete_multipart,
            key,
            upload_id,
            parts,
            if_match=if_match,
            if_none_match=if_none_match,
        )

    def abort_multipart(self, key: str, upload_id: str) -> None:
        self._measured("abort_multipart", super().abort_multipart, key, upload_id)

    def copy(
        self,
        src: str,
        dst: str,
        metadata: Mapping[str, str] | None = None,
        *,
        expect: ObjectInfo | None = None,
    ) -> str:
        return self._measured("copy", super().copy, src, dst, metadata, expect=expect)

    def delete_many(self, keys: Iterable[str], etags: Mapping[str, str] | None = None) -> None:
        self._measured("delete", super().delete_many, keys, etags)
