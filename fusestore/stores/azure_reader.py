"""The body of one Get Blob as an `ObjectReader`, read straight from the HTTP response.

The SDK's own downloader (`download_blob`) reads its first 32 MiB into memory before it
returns, and copies every later chunk twice: no stream. The driver sends the Get Blob
through the SDK's generated client instead (same pipeline: credentials, retries,
counting) and keeps the response's socket stream, so `read` streams and `readinto` fills
the caller's buffer from the socket without another copy.

Every method blocks on the socket, bounded by the store's read timeout.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable
from typing import Any

from .base import ObjectReader
from .errors import StoreUnavailable


class AzureReader(ObjectReader):
    """The body of one response (None: no bytes to read), `length` bytes long.
    Not thread-safe: one reader each."""

    def __init__(self, endpoint: str, key: str, response: Any, length: int) -> None:
        self._endpoint, self._key = endpoint, key
        self._response = response  # azure-core's HttpResponse, or None
        self._left = length
        raw = getattr(getattr(response, "internal_response", None), "raw", None)
        self._raw: Any = raw  # urllib3's response, under requests'
        fp = getattr(raw, "_fp", None)
        # Straight from http.client where nothing decodes the body on the way.
        plain = raw is not None and not raw.headers.get("content-encoding")
        self._direct: Any = fp if plain and isinstance(fp, http.client.HTTPResponse) else None
        if response is not None and raw is None:
            raise TypeError("the HTTP transport gives no stream of the response")

    def read(self, size: int = -1) -> bytes:
        if self._response is None or self._left <= 0:
            return b""
        want = self._left if size < 0 else min(size, self._left)
        if want == 0:
            return b""
        source = self._direct if self._direct is not None else self._raw
        data: bytes = self._call(source.read, want)
        self._count(len(data))
        return data

    def readinto(self, buffer: memoryview) -> int:
        if self._response is None or self._left <= 0 or not len(buffer):
            return 0
        target = buffer[: min(len(buffer), self._left)]
        if self._direct is None:
            return super().readinto(target)
        count: int = self._call(self._direct.readinto, target)
        self._count(count)
        return count

    def _count(self, count: int) -> None:
        # A connection closed early reads as the body's end: that must not pass for a
        # shorter object.
        self._left -= count
        if not count and self._left > 0:
            raise StoreUnavailable(
                f"cannot reach {self._endpoint}: the download broke {self._left} bytes short", key=self._key
            )

    def _call(self, method: Callable[[Any], Any], argument: Any) -> Any:
        try:
            return method(argument)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise StoreUnavailable(
                f"cannot reach {self._endpoint}: the download broke: {exc!r}", key=self._key
            ) from exc
        except Exception as exc:  # urllib3's protocol errors
            if type(exc).__module__.startswith("urllib3"):
                raise StoreUnavailable(
                    f"cannot reach {self._endpoint}: the download broke: {exc!r}", key=self._key
                ) from exc
            raise

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None
