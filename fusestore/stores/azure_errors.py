"""The az:// driver's error translation: `azure.core.exceptions` to `StoreError` subclasses,
the write conditions whose failures it names, and its count of requests by REST operation.
Never blocks, never touches the network.

Messages are one line each and name the account and container; they never carry what
the service sent beyond its error code (its messages span lines and repeat the request).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any, NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from .errors import (
    AccessDenied,
    AlreadyExists,
    InvalidKey,
    KeyTooLong,
    NotFound,
    PreconditionFailed,
    QuotaExceeded,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
    connection_reason,
)
from .service import RequestCounts

_DENIED_CODES = {
    "AuthenticationFailed",
    "AuthorizationFailure",
    "AuthorizationPermissionMismatch",
    "AuthorizationResourceTypeMismatch",
    "AuthorizationSourceIPMismatch",
    "AuthorizationProtocolMismatch",
    "InsufficientAccountPermissions",
    "AccountIsDisabled",
    "NoAuthenticationInformation",
    "InvalidAuthenticationInfo",
}
_UNAVAILABLE_CODES = {"ServerBusy", "InternalError", "OperationTimedOut"}
log = logging.getLogger("fusestore.stores.azure")

#: Where a request's operation and start are kept in the SDK's pipeline context.
_STARTED = "fusestore_started"
_INVALID_NAME = {"InvalidResourceName", "InvalidUri", "OutOfRangeInput"}


def error_code(exc: HttpResponseError) -> str:
    """The service's error code (`x-ms-error-code`), or ""."""
    code = getattr(exc, "error_code", None)
    code = getattr(code, "value", code)  # the SDK's StorageErrorCode enum
    response: Any = exc.response
    if not code and response is not None:
        code = response.headers.get("x-ms-error-code")
    return str(code or "")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def etag_of(raw: str | None) -> str:
    """ETags in one form, quoted (the SDK gives them quoted in some answers, bare in others)."""
    raw = (raw or "").removeprefix("W/")
    return raw if raw.startswith('"') else f'"{raw}"'


def conditions(if_match: str | None, if_none_match: bool) -> tuple[dict[str, Any], str | None]:
    """The SDK's keyword arguments for a write condition, and its name for `ErrorMap`."""
    if if_match is not None and if_none_match:
        raise ValueError("if_match and if_none_match exclude each other")
    if if_match is not None:
        return {"etag": if_match, "match_condition": MatchConditions.IfNotModified}, "match"
    if if_none_match:
        return {"match_condition": MatchConditions.IfMissing}, "none-match"
    return {}, None


class ErrorMap:
    """Translates the SDK's exceptions for one store (its account, container, endpoint)."""

    def __init__(self, account: str, container: str, endpoint: str, source: str) -> None:
        self.account, self.container, self.endpoint, self.source = account, container, endpoint, source

    @property
    def where(self) -> str:
        return f"container {self.container!r} of storage account {self.account!r} at {self.endpoint}"

    @property
    def where_short(self) -> str:
        return f"container {self.container!r} of storage account {self.account!r}"

    @contextlib.contextmanager
    def translate(self, key: str | None, *, condition: str | None = None) -> Iterator[None]:
        """Raise store errors for the SDK's. `condition` names the write condition a
        request carried ("match" or "none-match"), so that a 412 or 409 reads right."""
        try:
            yield
        except ClientAuthenticationError as exc:
            if exc.status_code is None:  # no answer refused it: no token could be had
                raise AccessDenied(
                    f"no credential for storage account {self.account!r} ({first_line(exc)}); set "
                    "AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY or account_key_file, "
                    "AZURE_STORAGE_SAS_TOKEN or sas_token_file, or sign in to Entra ID",
                    key=key,
                ) from exc
            self._denied(exc, key, error_code(exc))
        except HttpResponseError as exc:
            self.raise_for(exc, key, condition)
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise StoreUnavailable(
                f"cannot reach {self.endpoint} for {self.where_short}: {connection_reason(exc)}", key=key
            ) from exc

    def raise_for(self, exc: HttpResponseError, key: str | None, condition: str | None) -> NoReturn:
        status = exc.status_code or 0
        code = error_code(exc)
        where = f" ({key!r})" if key else ""
        if code == "ContainerNotFound":
            raise StoreNotFound(f"{self.where} does not exist; create the container or fix the URL") from exc
        if status == 412 or code in ("ConditionNotMet", "SourceConditionNotMet"):
            if condition == "none-match":
                raise AlreadyExists(f"object exists{where}", key=key) from exc
            raise PreconditionFailed(f"etag changed{where}", key=key) from exc
        if code == "BlobAlreadyExists" or (status == 409 and condition == "none-match"):
            raise AlreadyExists(f"object exists{where}", key=key) from exc
        if status == 404 or code in ("BlobNotFound", "CannotVerifyCopySource"):
            raise NotFound(f"no such object{where}", key=key) from exc
        if code == "InvalidBlockList":
            raise NotFound(f"no such upload, or a part of it is missing{where}", key=key) from exc
        if status in (401, 403) or code in _DENIED_CODES:
            self._denied(exc, key, code)
        if code == "RequestBodyTooLarge" or status == 413:
            raise QuotaExceeded(f"too large for {self.endpoint}{where}", key=key) from exc
        if code in _INVALID_NAME:
            if key is not None and len(key.encode("utf-8", "surrogatepass")) > 1024:
                raise KeyTooLong(f"key too long{where}", key=key) from exc
            raise InvalidKey(f"{self.endpoint} does not accept the key{where} ({code})", key=key) from exc
        if status >= 500 or status in (408, 429) or code in _UNAVAILABLE_CODES:
            raise StoreUnavailable(
                f"{self.endpoint} is unavailable: {status} {code}".rstrip(), key=key
            ) from exc
        raise StoreError(f"{self.endpoint}: {status} {code}{where}".rstrip(), key=key) from exc

    def _denied(self, exc: BaseException, key: str | None, code: str) -> NoReturn:
        reason = f" ({code})" if code else f": {first_line(exc)}"
        raise AccessDenied(
            f"{self.where} refused the credentials from {self.source}{reason}; "
            "check the account key, SAS token or role assignment",
            key=key,
        ) from exc


def operation(method: str, url: str, headers: Any) -> str:
    """The Blob service REST operation an HTTP request is."""
    query = parse_qs(urlsplit(url).query)
    comp = query.get("comp", [""])[0]
    container_level = query.get("restype", [""])[0] == "container"
    if comp == "batch":
        return "BlobBatch"
    if comp == "list":
        return "ListBlobs" if container_level else "ListContainers"
    if container_level:
        return {
            "PUT": "CreateContainer",
            "DELETE": "DeleteContainer",
        }.get(method, "GetContainerProperties")
    if comp == "block":
        return "PutBlock"
    if comp == "blocklist":
        return "PutBlockList" if method == "PUT" else "GetBlockList"
    if comp == "metadata":
        return "SetBlobMetadata" if method == "PUT" else "GetBlobMetadata"
    if comp:
        return f"{method}:{comp}"
    if method == "PUT":
        return "CopyBlob" if "x-ms-copy-source" in headers else "PutBlob"
    return {"GET": "GetBlob", "HEAD": "GetBlobProperties", "DELETE": "DeleteBlob"}.get(method, method)


class RequestCounter:
    """Counts each HTTP request (every attempt) by operation, the SDK's `raw_request_hook`;
    at DEBUG, `answered` (its `raw_response_hook`) writes one line per answered request:

        store request: op=PutBlob key='photos/a.jpg' status=201 ms=12.3

    with the service's error code after the status where there is one (`404:BlobNotFound`).
    Only the operation, the key (the blob's name below the container) and the answer are
    written: never a header or the URL's query, where keys and SAS signatures travel.
    Thread-safe; never blocks."""

    def __init__(self, container: str) -> None:
        self._requests = RequestCounts()
        self._container = f"/{container}/"

    def __call__(self, request: Any) -> None:
        http = request.http_request
        name = operation(http.method, http.url, http.headers)
        request.context[_STARTED] = (name, time.monotonic())
        self._requests.add(name)

    def answered(self, response: Any) -> None:
        if not log.isEnabledFor(logging.DEBUG):
            return
        name, started = response.context.get(_STARTED, ("?", time.monotonic()))
        status = str(response.http_response.status_code)
        code = response.http_response.headers.get("x-ms-error-code")
        if code:
            status += f":{code}"
        _, found, key = unquote(urlsplit(response.http_request.url).path).partition(self._container)
        log.debug(
            "store request: op=%s key=%s status=%s ms=%.1f",
            name,
            repr(key) if found and key else "-",
            status,
            (time.monotonic() - started) * 1000,
        )

    def counts(self) -> dict[str, int]:
        return self._requests.snapshot()
