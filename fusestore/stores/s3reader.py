"""A GET's body as an `ObjectReader`: bytes read beside boto3's copies where possible
(`HTTPBody`, which also tells short bodies from ends), and the store's download rate held.

Every method blocks on the socket (bounded by the store's read timeout), and on the
rate's token bucket when `max_download_rate` is set.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from .base import ObjectReader
from .httpbody import HTTPBody
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
        self._direct: HTTPBody | None = None  # the response under the body, once readinto uses it
        self._read_any = False
        self._left = length  # bytes the response promised

    def read(self, size: int = -1) -> bytes:
        if self._body is None:
            return b""
        if self._direct is not None:  # past boto3's byte count: stay beside it
            data = self._direct.read(size)
        else:
            self._read_any = True
            with self._errors(self._key):
                data = self._body.read(None if size < 0 else size)
        self._pace(len(data))
        return data

    def readinto(self, buffer: memoryview) -> int:
        """Straight from the socket into `buffer` (see `HTTPBody`)."""
        if self._body is None:
            return 0
        if self._direct is None:
            raw = getattr(getattr(self._body, "_raw_stream", None), "_fp", None)
            if self._read_any or not isinstance(raw, http.client.HTTPResponse):
                return super().readinto(buffer)  # a body we cannot bypass: the copying way
            # boto3's body closes the response.
            self._direct = HTTPBody(self._endpoint, self._key, raw, self._left, close=lambda: None)
        count = self._direct.readinto(buffer)
        self._pace(count)
        return count

    def _pace(self, count: int) -> None:
        # Taken after the bytes came: the socket's own buffer is the burst, and a reader
        # that waits here stops reading, so TCP slows the sender to the rate.
        if self._rate is not None:
            self._rate.take(count)

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None
