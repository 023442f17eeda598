"""What the drivers of a cloud service's buckets share (s3://, az://, gs://): their URL,
`SCHEME://NAME[/PREFIX]`, and their count of requests.

Nothing here touches the network or blocks for long.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from urllib.parse import SplitResult, quote

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
