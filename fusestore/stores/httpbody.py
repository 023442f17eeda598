"""`HTTPBody`: the body of one HTTP response as an `ObjectReader`, read off the socket.

The S3, Azure and GCS SDKs all end in urllib3 over http.client. urllib3's `read` copies
each chunk twice into new bytes objects (for a cold read of a big file, most of the
download thread's time), and the SDKs' own downloaders buffer more still (Azure's reads
its first 32 MiB into memory). So where nothing decodes the body on the way, the drivers
read the http.client response under it directly: `read` streams, and `readinto` fills the
caller's buffer from the socket without another copy.

Every method blocks on the socket, bounded by the store's read timeout.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable
from typing import Any

import urllib3.exceptions

from .base import ObjectReader
from .errors import StoreUnavailable

#: What a broken download raises from the socket, http.client or urllib3 (a read of a
#: response closed meanwhile: ValueError).
_BROKEN = (OSError, http.client.HTTPException, ValueError, urllib3.exceptions.HTTPError)


class HTTPBody(ObjectReader):
    """The body of one response: `stream` is urllib3's response or http.client's (None:
    no bytes to read), `length` what the response promised (Content-Length; None: not
    said). A connection closed before `length` bytes is StoreUnavailable, never a
    shorter object. `close` releases the response (default: the stream's own close).
    Not thread-safe: one reader each."""

    def __init__(
        self,
        endpoint: str,
        key: str,
        stream: Any,
        length: int | None,
        close: Callable[[], None] | None = None,
    ) -> None:
        self._endpoint, self._key = endpoint, key
        self._stream = stream
        self._left = length
        self._close = close if close is not None or stream is None else stream.close
        direct = stream if isinstance(stream, http.client.HTTPResponse) else getattr(stream, "_fp", None)
        encoding = "" if stream is None else stream.headers.get("content-encoding") or ""
        plain = encoding.lower() in ("", "identity")  # else urllib3 decodes it: read through it
        self._direct: Any = direct if plain and isinstance(direct, http.client.HTTPResponse) else None

    def _wanted(self, size: int) -> int | None:
        """How much a read of `size` may take (None: all there is); 0: nothing left."""
        if self._stream is None or (self._left is not None and self._left <= 0):
            return 0
        if self._left is None:
            return None if size < 0 else size
        return self._left if size < 0 else min(size, self._left)

    def read(self, size: int = -1) -> bytes:
        want = self._wanted(size)
        if want == 0:
            return b""
        source = self._direct if self._direct is not None else self._stream
        data: bytes = self._call(source.read, want)
        self._count(len(data))
        return data

    def readinto(self, buffer: memoryview) -> int:
        want = self._wanted(len(buffer))
        if want == 0:
            return 0
        target = buffer if want is None else buffer[:want]
        if self._direct is None:
            return super().readinto(target)
        count: int = self._call(self._direct.readinto, target)
        self._count(count)
        return count

    def _count(self, count: int) -> None:
        if self._left is None:
            return
        self._left -= count
        if not count and self._left > 0:
            raise StoreUnavailable(
                f"cannot reach {self._endpoint}: the download broke {self._left} bytes short", key=self._key
            )

    def _call(self, method: Callable[[Any], Any], argument: Any) -> Any:
        try:
            return method(argument)
        except _BROKEN as exc:
            raise StoreUnavailable(
                f"cannot reach {self._endpoint}: the download broke: {exc!r}", key=self._key
            ) from exc

    def close(self) -> None:
        if self._stream is not None:
            self._stream = None
            if self._close is not None:
                self._close()
