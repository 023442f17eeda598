"""The gs:// driver's translation of the Google Cloud SDK's exceptions into store errors.

`Translator.errors` is the one place where `google.api_core.exceptions`, the transport's
(`requests`, `google.auth`) and the SDK's own failures become `StoreError` subclasses, each
with a one-line message that names the bucket or key and never a credential.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NoReturn

import google.auth.exceptions as gauth
import requests
from google.api_core import exceptions as gapi
from google.cloud.storage import exceptions as media

from .errors import (
    AccessDenied,
    AlreadyExists,
    InvalidKey,
    NotFound,
    PreconditionFailed,
    QuotaExceeded,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
)

#: Messages are cut to this many characters: the SDK's can hold whole response bodies.
_LONGEST = 300


def one_line(exc: BaseException) -> str:
    """`exc`'s message on one line, cut short: the SDK's span several lines."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= _LONGEST else text[: _LONGEST - 1] + "…"


class Translator:
    """Maps SDK exceptions for one bucket at one endpoint. Immutable, thread-safe."""

    def __init__(self, bucket: str, endpoint: str) -> None:
        self.bucket = bucket
        self.endpoint = endpoint

    @contextlib.contextmanager
    def errors(
        self,
        key: str | None,
        *,
        condition: str | None = None,
        bucket_404: bool = False,
        target: str | None = None,
    ) -> Iterator[None]:
        """Translate what the block raises. `condition` is the write condition the request
        carried ("match" or "none-match"), to name a 412 right; `bucket_404`: a 404 can only
        mean the bucket (a listing, an insert); `target`: the key a write creates, named
        when the service refuses it (400)."""
        try:
            yield
        except StoreError:
            raise
        except gapi.RetryError as exc:  # retried until the deadline: what failed last counts
            if not isinstance(exc.cause, Exception):
                raise StoreUnavailable(f"{self.endpoint} did not answer: {one_line(exc)}", key=key) from exc
            with self.errors(key, condition=condition, bucket_404=bucket_404, target=target):
                raise exc.cause from exc
        except gapi.GoogleAPICallError as exc:
            self.raise_api_error(exc, key, condition=condition, bucket_404=bucket_404, target=target)
        except (gauth.RefreshError, gauth.DefaultCredentialsError) as exc:
            raise AccessDenied(
                f"no usable Google credentials for bucket {self.bucket!r} ({one_line(exc)}); set "
                "GOOGLE_APPLICATION_CREDENTIALS, the store option credentials_file, or run "
                "`gcloud auth application-default login`",
                key=key,
            ) from exc
        except (gauth.TransportError, requests.exceptions.RequestException, ConnectionError) as exc:
            raise StoreUnavailable(
                f"cannot reach {self.endpoint} for bucket {self.bucket!r}: {one_line(exc)}", key=key
            ) from exc
        except media.DataCorruption as exc:
            raise StoreUnavailable(f"{self.endpoint}: a transfer arrived damaged: {one_line(exc)}") from exc
        except media.InvalidResponse as exc:
            status = exc.response.status_code if exc.response is not None else 0
            self.raise_status(status, one_line(exc), key, condition=condition, bucket_404=bucket_404, exc=exc)

    def raise_api_error(
        self,
        exc: gapi.GoogleAPICallError,
        key: str | None,
        *,
        condition: str | None = None,
        bucket_404: bool = False,
        target: str | None = None,
    ) -> NoReturn:
        status = int(exc.code or 0)
        if target is not None and status == 400:
            raise InvalidKey(f"{self.endpoint} does not accept the key {target!r} ({one_line(exc)})") from exc
        self.raise_status(status, one_line(exc), key, condition=condition, bucket_404=bucket_404, exc=exc)

    def raise_status(
        self,
        status: int,
        text: str,
        key: str | None,
        *,
        condition: str | None = None,
        bucket_404: bool = False,
        exc: BaseException | None = None,
    ) -> NoReturn:
        """Raise the store error for an HTTP `status` answered to a request on `key`."""
        where = f" ({key!r})" if key else ""
        if status == 404 and bucket_404:
            raise StoreNotFound(
                f"bucket {self.bucket!r} does not exist at {self.endpoint}; create it or fix the URL"
            ) from exc
        if status == 404:
            raise NotFound(f"no such object{where}", key=key) from exc
        if status == 412:
            if condition == "none-match":
                raise AlreadyExists(f"object exists{where}", key=key) from exc
            raise PreconditionFailed(f"generation changed{where}", key=key) from exc
        if status in (401, 403):
            raise AccessDenied(
                f"{self.endpoint} refused access to bucket {self.bucket!r} ({text}); check that "
                "these credentials may use it (IAM roles on the bucket)",
                key=key,
            ) from exc
        if status == 413:
            raise QuotaExceeded(f"{text}{where}", key=key) from exc
        if status in (408, 429) or status >= 500:
            raise StoreUnavailable(f"{self.endpoint} is unavailable: {text}", key=key) from exc
        raise StoreError(f"{self.endpoint}: {text}{where}", key=key) from exc
