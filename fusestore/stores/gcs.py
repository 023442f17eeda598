"""`gs://bucket[/prefix]`: Google Cloud Storage, through the official SDK (google-cloud-storage).

Objects are native: key `dir/file.txt` below the prefix is `gs://bucket/prefix/dir/file.txt`,
readable and writable by every other GCS tool. An object's version is its **generation**:
it is the etag this driver reports, and every condition names it (`ifGenerationMatch`,
0 for create-only; `ifSourceGenerationMatch` for copies; reads of one generation).

Credentials: a service-account JSON file (`credentials_file`), else Application Default
Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's login, the metadata server); none
for an `anonymous` store (public buckets, read-only) or an emulator (an `endpoint` over
plain http, or `STORAGE_EMULATOR_HOST`, as the SDK does). They never go into the URL,
the log or a message.

One SDK client per store, created at the first request (opening a store touches no
network), on a connection pool of `max_connections`. Multipart uploads are temporary
objects composed at completion (`gcs_uploads`); a download's body is an `httpbody.HTTPBody`; the
SDK's exceptions become store errors in `gcs_errors`.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Self
from urllib.parse import SplitResult, quote, urlencode

# The SDK by its full name, first: where it is missing (or a test hides it), this import
# fails naming it, and the registry says which extra installs it.
import google.cloud.storage  # noqa: F401
import requests
from google.api_core import exceptions as gapi
from google.cloud.storage.retry import DEFAULT_RETRY

from .base import (
    Body,
    GiB,
    ListPage,
    MiB,
    ObjectInfo,
    Store,
    StoreStats,
    TiB,
    read_body,
)
from .errors import (
    AccessDenied,
    InvalidKey,
    InvalidStoreURL,
    NotFound,
    PreconditionFailed,
    StoreError,
)
from .gcs_client import GOOGLE_ENDPOINT, endpoint_from_env, make_client
from .gcs_deletes import Deleter
from .gcs_errors import Translator, one_line
from .gcs_uploads import MAX_PARTS, RESERVED, UploadArea
from .httpbody import HTTPBody
from .keys import KeySpace, check_metadata
from .options import Option, options_query, parse_options
from .service import BucketURL, RequestCounts, UploadsBy

log = logging.getLogger(__name__)

# GCS bucket names: 3-63 characters (up to 222 with dots), lower case, digits, - _ .
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_ENDPOINT = re.compile(r"^https?://[^/?#\s]+/?$", re.IGNORECASE)
_CONTENT_TYPE = "application/octet-stream"
#: How long `probe` retries transient failures: it answers at startup, quickly.
PROBE_RETRY_SECONDS = 5.0


#: gs://BUCKET[/PREFIX]
URL = BucketURL("gs", "bucket", "GOOGLE_APPLICATION_CREDENTIALS or the store option credentials_file")


class GCSStore(UploadsBy, Store):
    """A bucket, optionally confined to a prefix. Thread-safe; every method makes one or
    more HTTP requests and blocks until they finish (bounded by the timeouts and
    `retry_timeout`)."""

    scheme = "gs"
    options: ClassVar[Mapping[str, Option]] = {
        "project": Option(str, None, "Google Cloud project (default: the credentials' own)"),
        "endpoint": Option(str, None, "API endpoint, e.g. an emulator's http://127.0.0.1:4443"),
        "credentials_file": Option(str, None, "service-account JSON key file (default: ADC)"),
        "anonymous": Option(bool, False, "no credentials (public buckets); read-only"),
        "read_only": Option(bool, False, "refuse every write with AccessDenied"),
        "key_prefix": Option(str, "", "show only the names at the top that begin with this (a view)"),
        "max_connections": Option(int, 16, "HTTP connection pool size (match the workers)"),
        "connect_timeout": Option(float, 10.0, "seconds to wait for a connection"),
        "read_timeout": Option(float, 60.0, "seconds to wait for a response"),
        "retry_timeout": Option(float, 15.0, "seconds one call keeps retrying transient failures"),
    }
    list_has_metadata = True
    lists_ahead = True
    #: Parts are objects of their own and compose takes any size: 5 MiB is the
    #: uploader's default only (fewer, larger requests), not a limit of the service.
    min_part_size = 5 * MiB
    max_part_size = 5 * GiB
    max_parts = MAX_PARTS
    max_object_size = 5 * TiB

    def __init__(self, bucket: str, prefix: str = "", **options: Any) -> None:
        super().__init__(prefix)
        if not _BUCKET.match(bucket):
            raise InvalidStoreURL(
                f"not a valid bucket name: {bucket!r} (3-222 lower-case letters, digits, dots, dashes, "
                "underscores)"
            )
        self.bucket_name = bucket
        self.config = parse_options(self.scheme, self.options, options)
        self.keys = KeySpace(prefix, self.config["key_prefix"])
        if self.config["max_connections"] < 1:
            raise InvalidStoreURL("max_connections must be at least 1")
        endpoint = self.config["endpoint"]
        if endpoint is not None and not _ENDPOINT.match(endpoint):
            raise InvalidStoreURL(
                f"not an endpoint URL: {endpoint!r}; write http(s)://HOST[:PORT], e.g. http://127.0.0.1:4443"
            )
        path = self.config["credentials_file"]
        if path is not None:
            if self.config["anonymous"]:
                raise InvalidStoreURL("anonymous and credentials_file exclude each other")
            path = self.config["credentials_file"] = os.path.abspath(os.path.expanduser(path))
            if not os.path.isfile(path) or not os.access(path, os.R_OK):
                raise InvalidStoreURL(f"credentials_file {path} cannot be read")
        self._timeout = (self.config["connect_timeout"], self.config["read_timeout"])
        self._retry = DEFAULT_RETRY.with_timeout(self.config["retry_timeout"])
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._requests = RequestCounts()
        self.deleter = Deleter(self)
        self.uploads = UploadArea(self)

    @classmethod
    def from_url(cls, url: SplitResult, options: Mapping[str, Any]) -> Self:
        return cls(*URL.split(url), **options)

    def to_url(self) -> str:
        return URL.render(self.bucket_name, self.keys.prefix, options_query(self.options, self.config))

    @property
    def endpoint(self) -> str:
        """Where requests go: the option, else STORAGE_EMULATOR_HOST, else Google's."""
        return self.config["endpoint"] or endpoint_from_env() or GOOGLE_ENDPOINT

    @property
    def _emulated(self) -> bool:
        # Google serves its API over https only: an http endpoint is an emulator.
        return self.endpoint.lower().startswith("http://")

    @property
    def writable(self) -> bool:
        return not self.config["read_only"] and not self.config["anonymous"]

    def _writable(self) -> None:
        if self.config["read_only"]:
            raise AccessDenied(f"{self.to_url()} is read-only")
        if self.config["anonymous"]:
            raise AccessDenied(f"{self.to_url()} is anonymous, so read-only")

    # -- client and bookkeeping --------------------------------------------------------

    @property
    def translator(self) -> Translator:
        return Translator(self.bucket_name, self.endpoint)

    @property
    def client(self) -> Any:
        """The SDK client, created on first use (no network until then)."""
        if self._client is None:
            with self._client_lock, self.translator.errors(None):
                if self._client is None:
                    self._client = make_client(self.config, self.endpoint, emulated=self._emulated)
        return self._client

    @property
    def bucket(self) -> Any:
        return self.client.bucket(self.bucket_name)

    def count(self, operation: str, n: int = 1) -> None:
        """Note `n` requests of a JSON API operation (objects.get, ...)."""
        self._requests.add(operation, n)

    def request_counts(self) -> dict[str, int]:
        return self._requests.snapshot()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def full(self, key: str) -> str:
        """The object name for `key`; InvalidKey for the reserved name at any depth."""
        full = self.keys.full(key)
        if RESERVED in key.split("/"):
            raise InvalidKey(f"the name {RESERVED} is reserved by the gs:// driver: {key!r}", key=key)
        return full

    def errors(self, key: str | None, **how: Any) -> contextlib.AbstractContextManager[None]:
        return self.translator.errors(key, **how)

    def call_options(self) -> dict[str, Any]:
        return {"retry": self._retry, "timeout": self._timeout}

    def info(self, key: str, blob: Any) -> ObjectInfo:
        return ObjectInfo(
            key,
            int(blob.size or 0),
            str(blob.generation),
            blob.updated.timestamp(),
            dict(blob.metadata or {}),
        )

    def generation(self, key: str, etag: str) -> int:
        """The generation an etag names. An etag that is none (not a number) matches no
        object: PreconditionFailed, or NotFound when the object is gone."""
        try:
            value = int(etag)
        except ValueError:
            value = -1
        if value <= 0:
            self.head(key)  # NotFound when absent
            raise PreconditionFailed(f"generation of {key!r} changed", key=key)
        return value

    def changed_or_gone(self, key: str, exc: StoreError) -> StoreError:
        """What a failed condition on `key` means: NotFound when the object is gone,
        else PreconditionFailed (a 412 says one or the other; one GET tells which)."""
        try:
            self.head(key)
        except NotFound as gone:
            return gone
        return (
            exc
            if isinstance(exc, PreconditionFailed)
            else PreconditionFailed(f"generation of {key!r} changed", key=key)
        )

    # -- reading ----------------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo:
        full = self.full(key)
        self.count("objects.get")
        with self.errors(key):
            blob = self.bucket.get_blob(full, **self.call_options())
        if blob is None:
            raise NotFound(f"no such object: {key!r}", key=key)
        return self.info(key, blob)

    def _visible(self, name: str) -> bool:
        return name != self.keys.prefix and RESERVED not in name[len(self.keys.prefix) :].split("/")

    def list(
        self,
        prefix: str = "",
        delimiter: str | None = "/",
        token: str | None = None,
        max_keys: int = 1000,
    ) -> ListPage:
        full_prefix = self.keys.full_prefix(prefix)
        page_token, last_prefix = _decode_token(token)
        self.count("objects.list")
        with self.errors(prefix or None, bucket_404=True):
            listing = self.client.list_blobs(
                self.bucket_name,
                prefix=full_prefix,
                delimiter=delimiter or None,
                page_token=page_token,
                max_results=max(1, min(max_keys, 1000)),
                **self.call_options(),
            )
            page = next(listing.pages)  # one request
            blobs = list(page)
            found = sorted(page.prefixes)
            next_token = listing.next_page_token
        objects = [self.info(self.keys.relative(b.name), b) for b in blobs if self._visible(b.name)]
        objects.sort(key=lambda o: o.key)
        # A page's prefixes lie in its range on GCS; an emulator may give every prefix of
        # the rest of the listing on each page: each is kept the first time only.
        prefixes = [self.keys.relative(p) for p in found if p > last_prefix and self._visible(p)]
        if found:
            last_prefix = max(last_prefix, found[-1])
        return ListPage(objects, prefixes, _encode_token(next_token, last_prefix))

    def probe(self) -> None:
        """One listing of at most one object, retried only briefly: StoreNotFound for a
        missing bucket, AccessDenied for refused credentials, StoreUnavailable for an
        endpoint that does not answer."""
        self.count("objects.list")
        with self.errors(None, bucket_404=True):
            listing = self.client.list_blobs(
                self.bucket_name,
                prefix=self.keys.full_prefix(""),
                delimiter="/",
                max_results=1,
                retry=DEFAULT_RETRY.with_timeout(min(PROBE_RETRY_SECONDS, self.config["retry_timeout"])),
                timeout=(min(self._timeout[0], PROBE_RETRY_SECONDS), self._timeout[1]),
            )
            next(listing.pages)

    def open_range(
        self, key: str, start: int = 0, length: int | None = None, etag: str | None = None
    ) -> HTTPBody:
        full = self.full(key)
        generation = None if etag is None else self.generation(key, etag)
        if length == 0:
            info = self.head(key)
            if etag is not None and info.etag != etag:
                raise PreconditionFailed(f"generation of {key!r} changed", key=key)
            return HTTPBody(self.endpoint, key, None, 0)
        query: dict[str, Any] = {"alt": "media"}
        if generation is not None:
            # That generation, or nothing: on a bucket without versioning an older one is
            # gone (404); with versioning the condition refuses a generation no longer live.
            query.update(generation=generation, ifGenerationMatch=generation)
        url = (
            f"{self.client._connection.API_BASE_URL}/download/storage/v1/b/{quote(self.bucket_name, safe='')}"
            f"/o/{quote(full, safe='')}?{urlencode(query)}"
        )
        headers = {"Accept-Encoding": "identity"}
        if start or length is not None:
            end = "" if length is None else str(start + length - 1)
            headers["Range"] = f"bytes={start}-{end}"
        response = self._download(key, url, headers)
        if response.status_code == 416:  # the range starts at or past the end
            response.close()
            return HTTPBody(self.endpoint, key, None, 0)
        if response.status_code in (404, 412):
            text = one_line(gapi.from_http_response(response))  # type: ignore[no-untyped-call]
            response.close()
            if generation is None:
                raise NotFound(f"no such object: {key!r}", key=key)
            raise self.changed_or_gone(
                key, PreconditionFailed(f"generation of {key!r} changed: {text}", key=key)
            )
        if not 200 <= response.status_code < 300:
            error = gapi.from_http_response(response)  # type: ignore[no-untyped-call]
            response.close()
            self.translator.raise_api_error(error, key)
        size = response.headers.get("Content-Length")
        length = int(size) if size and size.isdigit() else None
        return HTTPBody(self.endpoint, key, response.raw, length, close=response.close)

    def _download(self, key: str, url: str, headers: dict[str, str]) -> requests.Response:
        """The streamed GET, retried on transient failures until it answers."""

        def attempt() -> requests.Response:
            self.count("objects.get")
            response: requests.Response = self.client._http.get(
                url, headers=headers, stream=True, timeout=self._timeout
            )
            if response.status_code == 429 or response.status_code >= 500:
                error = gapi.from_http_response(response)  # type: ignore[no-untyped-call]
                response.close()
                raise error  # retried by the policy, translated after the last attempt
            return response

        with self.errors(key):
            return self._retry(attempt)()  # type: ignore[no-any-return]

    # -- writing ----------------------------------------------------------------------

    def put(
        self,
        key: str,
        body: Body,
        metadata: Mapping[str, str] | None = None,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        full = self.full(key)
        meta = check_metadata(dict(metadata or {}))
        self._writable()
        condition, generation = self.condition(key, if_match, if_none_match)
        data = read_body(body)
        blob = self.bucket.blob(full)
        blob.metadata = meta
        self.count("objects.insert")
        try:
            with self.errors(key, condition=condition, bucket_404=True, target=key):
                blob.upload_from_string(
                    data, content_type=_CONTENT_TYPE, if_generation_match=generation, **self.call_options()
                )
        except PreconditionFailed as exc:
            raise self.changed_or_gone(key, exc) from None
        return str(blob.generation)

    def condition(self, key: str, if_match: str | None, if_none_match: bool) -> tuple[str | None, int | None]:
        """(what the condition is called, the ifGenerationMatch it sends)."""
        if if_match is not None and if_none_match:
            raise ValueError("if_match and if_none_match exclude each other")
        if if_match is not None:
            return "match", self.generation(key, if_match)
        if if_none_match:
            return "none-match", 0
        return None, None

    def copy(
        self,
        src: str,
        dst: str,
        metadata: Mapping[str, str] | None = None,
        *,
        expect: ObjectInfo | None = None,
    ) -> str:
        full_src, full_dst = self.full(src), self.full(dst)
        meta = None if metadata is None else check_metadata(dict(metadata))
        self._writable()
        generation = None
        if expect is not None and expect.key == src:
            generation = self.generation(src, expect.etag)
        # With a generation, the source is that generation (404 once it is replaced, on
        # servers that skip the condition) and the condition guards it where kept.
        source = self.bucket.blob(full_src, generation=generation)
        target = self.bucket.blob(full_dst)
        if meta is not None:
            target.metadata = meta
            target.content_type = _CONTENT_TYPE
        token: str | None = None
        try:
            with self.errors(src, condition="match", target=dst):
                while True:
                    self.count("objects.rewrite")
                    token, _, _ = target.rewrite(
                        source, token=token, if_source_generation_match=generation, **self.call_options()
                    )
                    if token is None:
                        break
        except (NotFound, PreconditionFailed) as exc:
            if generation is None:
                raise NotFound(f"no such object: {src!r}", key=src) from None
            raise self.changed_or_gone(src, exc) from None
        if meta == {} and target.metadata:
            self._clear_metadata(dst, target)
        return str(target.generation)

    def _clear_metadata(self, key: str, blob: Any) -> None:
        """Take every custom metadata entry off `blob`'s generation: a rewrite given none
        keeps the source's. An update (not a patch) replaces the whole resource: a patch's
        null entries are removed on GCS but kept as empty values by emulators."""
        blob.metadata = {}
        self.count("objects.update")
        with self.errors(key):
            blob.update(if_generation_match=blob.generation, **self.call_options())

    def delete_many(self, keys: Iterable[str], etags: Mapping[str, str] | None = None) -> None:
        keys = builtins.list(keys)
        names = [self.full(k) for k in keys]
        self._writable()
        generations: dict[str, int] = {}
        for key, name in zip(keys, names, strict=True):
            etag = (etags or {}).get(key)
            if etag is not None:
                # An etag that names no generation matches no object: that one is kept.
                generations[name] = int(etag) if etag.isdigit() and int(etag) > 0 else -1
        names = [name for name in names if generations.get(name, 0) >= 0]
        self.delete_names(names, generations)

    def delete_names(self, names: builtins.list[str], generations: Mapping[str, int] | None = None) -> None:
        """Delete objects by name, absent ones fine, those in `generations` only at that
        generation (see `gcs_deletes`)."""
        self.deleter.delete(names, generations or {})

    def stat_store(self) -> StoreStats:
        return StoreStats()  # GCS has no capacity to report


def _encode_token(page_token: str | None, last_prefix: str) -> str | None:
    if page_token is None:
        return None
    return base64.urlsafe_b64encode(json.dumps([page_token, last_prefix]).encode()).decode()


def _decode_token(token: str | None) -> tuple[str | None, str]:
    if not token:
        return None, ""
    try:
        page_token, last_prefix = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a listing token of this store: {token[:40]!r}") from exc
    return str(page_token), str(last_prefix)
