"""What the drivers of a cloud service's buckets share (s3://, az://, gs://): their URL,
`SCHEME://NAME[/PREFIX]`, their count of requests, and (az://, gs://, whose services have
no S3-style multipart API) the multipart contract served by an object of their own.

Nothing here touches the network or blocks for long, but the multipart calls, which
block as the uploads object's do.
"""

from __future__ import annotations

import builtins
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import SplitResult, quote

from .base import Body, CompletedPart, PendingUpload
from .errors import InvalidStoreURL


@dataclass(frozen=True)
class BucketURL:
    """How one scheme names a bucket (`noun`: "bucket", "container") and where its
    credentials go instead of the URL (`credentials`, for the error)."""

    scheme: str
    noun: str
    credentials: str

    def split(self, url: SplitResult) -> tuple[str, str]:
        """The bucket and the prefix a parsed URL names; InvalidStoreURL, in one line, for
        one with credentials in it or no bucket."""
        scheme = f"{self.scheme}://"
        if "@" in url.netloc:
            article = "an" if self.scheme[0] in "aefhilmnorsx" else "a"  # "an s3://", "a gs://"
            raise InvalidStoreURL(f"credentials do not go in {article} {scheme} URL; use {self.credentials}")
        if not url.netloc:
            name = self.noun.upper()
            raise InvalidStoreURL(
                f"no {self.noun} in the URL '{scheme}{url.path}'; "
                f"write {scheme}{name} or {scheme}{name}/PREFIX"
            )
        return url.netloc, url.path

    def render(self, bucket: str, prefix: str, query: str) -> str:
        """The URL of `bucket` below `prefix`, with the options' query (`to_url`)."""
        base = f"{self.scheme}://{bucket}/{quote(prefix)}".rstrip("/")
        return f"{base}?{query}" if query else base


class RequestCounts:
    """Requests sent, by kind (the service's operation names), counted from many threads.
    `add` and `snapshot` never block for long."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, kind: str, count: int = 1) -> None:
        with self._lock:
            self._counts[kind] += count

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class Uploads(Protocol):
    """A driver's multipart uploads, built on what its service offers instead (Azure's
    staged blocks, GCS's composed objects): `Store`'s multipart contract, method by method."""

    def start(self, key: str, metadata: Mapping[str, str] | None) -> str: ...

    def put_part(self, key: str, upload_id: str, number: int, body: Body) -> CompletedPart: ...

    def complete(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[CompletedPart],
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str: ...

    def abort(self, key: str, upload_id: str) -> None: ...

    def pending(self, prefix: str) -> builtins.list[PendingUpload]: ...


class UploadsBy:
    """A `Store` mixin (listed before `Store`) whose multipart methods are its `uploads`'."""

    uploads: Uploads

    def start_multipart(self, key: str, metadata: Mapping[str, str] | None = None) -> str:
        return self.uploads.start(key, metadata)

    def put_part(self, key: str, upload_id: str, number: int, body: Body) -> CompletedPart:
        return self.uploads.put_part(key, upload_id, number, body)

    def complete_multipart(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[CompletedPart],
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        return self.uploads.complete(key, upload_id, parts, if_match=if_match, if_none_match=if_none_match)

    def abort_multipart(self, key: str, upload_id: str) -> None:
        self.uploads.abort(key, upload_id)

    def list_multipart(self, prefix: str = "") -> builtins.list[PendingUpload]:
        return self.uploads.pending(prefix)
