"""A GET's body as an `ObjectReader`: bytes read beside boto3's copies where possible,
short bodies told from ends, and the store's download rate held.

Every method blocks on the socket (bounded by the store's read timeout), and on the
rate's token bucket when `max_download_rate` is set.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from .base import ObjectReader
from .errors import StoreUnavailable
from .ratelimit import TokenBucket

#: The driver's translation of boto3's exceptions for one key (`S3Store._errors`).
Translate = Callable[[str], AbstractContextManager[None]]


class S3Reader(ObjectReader):
    """The body of one GET (None: no bytes to read). Not thread-safe: one reader each."""

    def __init__(
        self,
        endpoint: str,
        errors: Translate,
        key: str,
        body: Any,
        length: int | None = None,
        rate: TokenBucket | None = None,
    ) -> None:
        self._endpoint, self._errors, self._rate = endpoint, errors, rate
        self._key, self._body = key, body
        self._direct: Any = None  # the HTTP response under the body, once readinto uses it
        self._read_any = False
        self._left = length  # bytes the response promised and has not delivered yet

    def read(self, size: int = -1) -> bytes:
        if self._body is None:
            return b""
        if self._direct is not None:  # past boto3's byte count: stay beside it
            data: bytes = self._direct_call(self._direct.read, None if size < 0 else size)
            self._count(len(data), size != 0)
        else:
            self._read_any = True
            with self._errors(self._key):
                data = self._body.read(None if size < 0 else size)
        self._pace(len(data))
        return data

    def readinto(self, buffer: memoryview) -> int:
        """Straight from the socket into `buffer`. boto3's `read` goes through urllib3,
        which copies every chunk twice into new bytes objects: for a cold read of a big
        file that was most of the download thread's time (256 MiB: about 0.1 s)."""
        if self._body is None:
            return 0
        if self._direct is None:
            raw = getattr(getattr(self._body, "_raw_stream", None), "_fp", None)
            if self._read_any or not isinstance(raw, http.client.HTTPResponse):
                return super().readinto(buffer)  # a body we cannot bypass: the copying way
            self._direct = raw
        count: int = self._direct_call(self._direct.readinto, buffer)
        self._count(count, len(buffer) > 0)
        self._pace(count)
        return count

    def _pace(self, count: int) -> None:
        # Taken after the bytes came: the socket's own buffer is the burst, and a reader
        # that waits here stops reading, so TCP slows the sender to the rate.
        if self._rate is not None:
            self._rate.take(count)

    def _count(self, count: int, asked: bool) -> None:
        # http.client takes a connection closed early for the body's end; boto3 checks
        # the length, and so must we: a short read would pass for a shorter object.
        if self._left is None:
            return
        self._left -= count
        if asked and not count and self._left > 0:
            raise StoreUnavailable(
                f"cannot reach {self._endpoint}: the download broke {self._left} bytes short",
                key=self._key,
            )

    def _direct_call(self, method: Callable[[Any], Any], argument: Any) -> Any:
        try:
            return method(argument)
        except (OSError, http.client.HTTPException) as exc:
            raise StoreUnavailable(
                f"cannot reach {self._endpoint}: the download broke: {exc!r}", key=self._key
            ) from exc

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None
