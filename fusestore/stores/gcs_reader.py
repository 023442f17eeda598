"""A ranged media download from GCS as an `ObjectReader`: the response streamed off the
socket, never held whole in memory, and `readinto` filling the caller's buffer in place.

Every method blocks on the socket (bounded by the store's read timeout).
"""

from __future__ import annotations

import http.client
from typing import Any

import requests
import urllib3.exceptions

from .base import ObjectReader
from .errors import StoreUnavailable


class GCSReader(ObjectReader):
    """The body of one streamed GET (None: no bytes to read). Not thread-safe: one
    reader each. `length` is what the response promised (Content-Length), checked so that
    a connection closed early is an error and not a shorter object."""

    def __init__(
        self, endpoint: str, key: str, response: requests.Response | None, length: int | None
    ) -> None:
        self._endpoint, self._key = endpoint, key
        self._response = response
        self._left = length
        raw: Any = None if response is None else response.raw
        # The http.client response under urllib3's: read from it directly, for both read
        # and readinto, so the two never disagree about what was consumed, and readinto
        # lands in the caller's buffer without urllib3's intermediate bytes objects.
        # A body urllib3 would decode (Content-Encoding) is read through urllib3.
        direct = getattr(raw, "_fp", None)
        encoded = response is not None and response.headers.get("Content-Encoding", "identity") != "identity"
        self._direct: Any = direct if isinstance(direct, http.client.HTTPResponse) and not encoded else None
        self._raw: Any = raw

    def read(self, size: int = -1) -> bytes:
        if self._response is None:
            return b""
        source = self._direct if self._direct is not None else self._raw
        data: bytes = self._call(source.read, None if size < 0 else size)
        self._count(len(data), size != 0)
        return data

    def readinto(self, buffer: memoryview) -> int:
        if self._response is None:
            return 0
        if self._direct is None:
            return super().readinto(buffer)
        count: int = self._call(self._direct.readinto, buffer)
        self._count(count, len(buffer) > 0)
        return count

    def _count(self, count: int, asked: bool) -> None:
        if self._left is None:
            return
        self._left -= count
        if asked and not count and self._left > 0:
            raise StoreUnavailable(
                f"cannot reach {self._endpoint}: the download broke {self._left} bytes short", key=self._key
            )

    def _call(self, method: Any, argument: Any) -> Any:
        try:
            return method(argument)
        except (OSError, http.client.HTTPException, requests.exceptions.RequestException) as exc:
            raise StoreUnavailable(
                f"cannot reach {self._endpoint}: the download broke: {exc!r}", key=self._key
            ) from exc
        except urllib3.exceptions.HTTPError as exc:  # ProtocolError, ReadTimeoutError
            raise StoreUnavailable(
                f"cannot reach {self._endpoint}: the download broke: {exc!r}", key=self._key
            ) from exc

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None
