"""The S3 driver's request log: at DEBUG, one line per HTTP request (each attempt of a
call that botocore retries is a request of its own), written once its answer came or it
failed:

    store request: op=PutObject key='photos/a.jpg' status=200 bytes=5242880 ms=41.3 attempt=1

- `op`: the S3 API operation; `key`: the object's key, or the listing's prefix (`-`
  when the request names neither, such as a batch delete).
- `status`: the HTTP status, with the S3 error code when there is one (`404:NoSuchKey`),
  or the exception that stopped the request before an answer (`ConnectTimeoutError`).
- `bytes`: the body sent plus the body announced in the answer (`Content-Length`).
- `ms`: from sending to the answer's headers (a GET's body streams after).
- `attempt`: botocore's attempt number (1, then 2, 3, ... for its retries).

Nothing else of a request is written, so no line carries a secret: not the headers
(`Authorization`, the signature, the security token, SSE-C keys), not the URL's query
(a presigned URL's signature), and no parameter but the key or prefix.

Handlers run in the thread making the call; a request's send and its answer are seen by
the same thread, so where it started is kept per thread. They cost a level check when
DEBUG is off.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger("fusestore.stores.s3")

#: Where the key of a call is kept in botocore's request context.
_KEY = "fusestore_key"


class RequestLog:
    """Registers on one botocore client's events and writes one line per request."""

    def __init__(self) -> None:
        self._sending = threading.local()

    def register(self, events: Any) -> None:
        events.register("before-parameter-build.s3", self._note_key)
        events.register("before-send.s3", self._sent)
        events.register("response-received.s3", self._answered)

    def _note_key(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        key = params.get("Key", params.get("Prefix"))
        context[_KEY] = key if isinstance(key, str) else None

    def _sent(self, request: Any, **_: Any) -> None:
        if not log.isEnabledFor(logging.DEBUG):
            return
        self._sending.started = time.monotonic()
        self._sending.size = _size(request.headers.get("Content-Length"))

    def _answered(
        self,
        context: dict[str, Any],
        exception: BaseException | None = None,
        response_dict: dict[str, Any] | None = None,
        parsed_response: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not log.isEnabledFor(logging.DEBUG):
            return
        started = getattr(self._sending, "started", None)
        sent = getattr(self._sending, "size", 0)
        self._sending.started = None
        elapsed = 0.0 if started is None else (time.monotonic() - started) * 1000
        received = 0
        if response_dict is not None:
            status = str(response_dict.get("status_code", "?"))
            received = _size((response_dict.get("headers") or {}).get("content-length"))
            code = ((parsed_response or {}).get("Error") or {}).get("Code")
            if code and code != status:  # a HEAD's error has no body: its code is the status
                status += f":{code}"
        else:
            status = type(exception).__name__ if exception is not None else "no-answer"
        key = context.get(_KEY)
        attempt = (context.get("retries") or {}).get("attempt", 1)
        operation = kwargs.get("event_name", "").rpartition(".")[2] or "?"
        log.debug(
            "store request: op=%s key=%s status=%s bytes=%d ms=%.1f attempt=%s",
            operation,
            repr(key) if key is not None else "-",
            status,
            sent + received,
            elapsed,
            attempt,
        )


def _size(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0
