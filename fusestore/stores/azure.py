"""`az://container[/prefix]`: Azure Blob Storage (block blobs), and Azurite.

Objects are native block blobs: key `dir/file.txt` below the prefix is the blob
`prefix/dir/file.txt` of the container, readable and writable by every other Azure tool.
The POSIX attributes travel as user metadata, under names mapped as `azure_names`
describes (`owner-tag` is stored as `owner_htag`).

One SDK client (`azure-storage-blob`, sync) per store, created at the first request
(opening a store reads only the key or token file an option names), with a connection
pool of `max_connections`, short linear retries and the timeouts of the options. A
Get Blob's body is an `httpbody.HTTPBody`; errors and request counts are `azure_errors`';
the multipart uploads on uncommitted blocks are `azure_uploads`'.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar, Self
from urllib.parse import SplitResult

import requests
from azure.core import MatchConditions
from azure.core.credentials import AzureSasCredential
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobPrefix, BlobServiceClient, LinearRetry
from azure.storage.blob._generated.models import ModifiedAccessConditions

from .azure_auth import Access, resolve
from .azure_deletes import Deleter
from .azure_errors import ErrorMap, RequestCounter, conditions, error_code, etag_of, first_line
from .azure_names import decode_metadata, encode_metadata
from .azure_uploads import Uploads
from .base import (
    Body,
    ListPage,
    MiB,
    ObjectInfo,
    Store,
    StoreStats,
    read_body,
)
from .errors import AccessDenied, InvalidStoreURL, PreconditionFailed, StoreError
from .httpbody import HTTPBody
from .keys import KeySpace, check_metadata
from .options import Option, options_query, parse_options
from .s3params import Size
from .service import BucketURL, UploadsBy

log = logging.getLogger(__name__)

# 3-63 lower-case letters, digits and single dashes, starting and ending with a letter or digit.
_CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")
_ENDPOINT = re.compile(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", re.IGNORECASE)
#: Put Blob takes up to 5000 MiB in one request.
MAX_PUT_BLOB = 5000 * MiB


def _utf8_order(names: list[str]) -> list[str]:
    return sorted(names, key=lambda name: name.encode("utf-8", "surrogatepass"))


#: az://CONTAINER[/PREFIX]
URL = BucketURL(
    "az",
    "container",
    "AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY or account_key_file, a SAS token, or Entra ID",
)


class AzureStore(UploadsBy, Store):
    """A blob container, optionally confined to a prefix. Thread-safe; every method makes
    one or more HTTP requests and blocks until they finish (bounded by the timeouts).

    Credentials, first that applies (never in the URL, a log line or the status):

    1. `AZURE_STORAGE_CONNECTION_STRING` (its account key or SAS), unless the `account`
       option names another account than the string's;
    2. the account key: the file the `account_key_file` option names, else
       `AZURE_STORAGE_KEY` (the account from `account`, else `AZURE_STORAGE_ACCOUNT`);
    3. a SAS token: the file `sas_token_file` names, else `AZURE_STORAGE_SAS_TOKEN`;
    4. `DefaultAzureCredential` (Entra ID: environment, workload or managed identity,
       Azure CLI, ...) where `azure-identity` is installed;
    5. else opening the store fails with one line saying what to set.

    An `anonymous` store uses none and is read-only (public containers).
    """

    scheme = "az"
    options: ClassVar[Mapping[str, Option]] = {
        "account": Option(
            str, None, "storage account name (default: AZURE_STORAGE_ACCOUNT or the connection string's)"
        ),
        "endpoint": Option(
            str, None, "blob service URL (default https://ACCOUNT.blob.core.windows.net), e.g. Azurite's"
        ),
        "anonymous": Option(bool, False, "no credentials (public containers); read-only"),
        "read_only": Option(bool, False, "refuse every write with AccessDenied"),
        "key_prefix": Option(str, "", "show only the names at the top that begin with this (a view)"),
        "account_key_file": Option(str, None, "a file holding the account key"),
        "sas_token_file": Option(str, None, "a file holding a SAS token"),
        "max_connections": Option(int, 16, "HTTP connection pool size (match the workers)"),
        "max_attempts": Option(int, 4, "attempts per request, retries included"),
        "retry_backoff": Option(float, 0.5, "seconds between attempts (with jitter)"),
        "connect_timeout": Option(float, 10.0, "seconds to wait for a connection"),
        "read_timeout": Option(float, 60.0, "seconds to wait for a response"),
        "copy_timeout": Option(float, 3600.0, "seconds to wait for a server-side copy to finish"),
        "part_size": Option(
            Size, None, "block size of multipart uploads, up to 4000M (grown where 50,000 blocks need it)"
        ),
    }
    list_has_metadata = True
    lists_ahead = True

    min_part_size = 1 * MiB
    max_part_size = 4000 * MiB
    max_parts = 50_000
    max_object_size = max_parts * max_part_size  # about 190.7 TiB

    def __init__(self, container: str, prefix: str = "", **options: Any) -> None:
        super().__init__(prefix)
        if not _CONTAINER.match(container):
            raise InvalidStoreURL(
                f"not a valid container name: {container!r} "
                "(3-63 lower-case letters, digits and single dashes)"
            )
        self.container = container
        config = parse_options(self.scheme, self.options, options)
        for name in ("account_key_file", "sas_token_file"):
            if config[name]:
                config[name] = os.path.abspath(os.path.expanduser(config[name]))
        self.config = config
        self.keys = KeySpace(prefix, config["key_prefix"])
        if config["max_connections"] < 1 or config["max_attempts"] < 1:
            raise InvalidStoreURL("max_connections and max_attempts must be at least 1")
        endpoint = config["endpoint"]
        if endpoint is not None and not _ENDPOINT.match(endpoint):
            raise InvalidStoreURL(
                f"not an endpoint URL: {endpoint!r}; write http(s)://HOST[:PORT][/ACCOUNT], "
                "e.g. http://127.0.0.1:10000/devstoreaccount1"
            )
        part = config["part_size"]
        if part is not None:
            if not 1 <= part <= self.max_part_size:
                raise InvalidStoreURL(f"part_size must be between 1 byte and 4000 MiB, not {part} bytes")
            self.preferred_part_size = part
        #: account, endpoint and credential: reads the key or token file, no network
        self.access: Access = resolve(config)
        self.errors = ErrorMap(self.access.account, container, self.access.endpoint, self.access.source)
        self.uploads = Uploads(self)
        self._counter = RequestCounter(container)
        self._client: Any = None
        self._session: requests.Session | None = None
        self._client_lock = threading.Lock()
        self.deleter = Deleter(self)

    @classmethod
    def from_url(cls, url: SplitResult, options: Mapping[str, Any]) -> Self:
        return cls(*URL.split(url), **options)

    def to_url(self) -> str:
        return URL.render(self.container, self.keys.prefix, options_query(self.options, self.config))

    @property
    def endpoint(self) -> str:
        return self.access.endpoint

    @property
    def writable(self) -> bool:
        return not self.config["read_only"] and not self.config["anonymous"]

    def check_writable(self) -> None:
        if self.config["read_only"]:
            raise AccessDenied(f"{self.to_url()} is read-only")
        if self.config["anonymous"]:
            raise AccessDenied(f"{self.to_url()} is anonymous, so read-only")

    # -- client -----------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The container's SDK client, created on first use (no network until then)."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        cfg = self.config
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=cfg["max_connections"])
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._session = session
        backoff = cfg["retry_backoff"]
        service = BlobServiceClient(
            account_url=self.access.endpoint,
            credential=self.access.credential,
            transport=RequestsTransport(session=session, session_owner=False),
            connection_timeout=cfg["connect_timeout"],
            read_timeout=cfg["read_timeout"],
            retry_policy=LinearRetry(
                backoff=backoff, random_jitter_range=backoff / 2, retry_total=cfg["max_attempts"] - 1
            ),
            # One Put Blob per put, whatever its size (the SDK would split it into blocks).
            max_single_put_size=MAX_PUT_BLOB,
            raw_request_hook=self._counter,
            raw_response_hook=self._counter.answered,
            user_agent="fusestore",
        )
        return service.get_container_client(self.container)

    def blob(self, full_key: str) -> Any:
        return self.client.get_blob_client(full_key)

    def request_counts(self) -> dict[str, int]:
        return self._counter.counts()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._session is not None:
            self._session.close()
            self._session = None

    def translate(self, key: str | None, *, condition: str | None = None) -> Any:
        return self.errors.translate(key, condition=condition)

    @contextlib.contextmanager
    def conditional(self, key: str, condition: str | None) -> Iterator[None]:
        """`translate` for a conditional write: Azure answers If-Match on a missing blob
        with 412, so one HEAD tells "gone" (NotFound) from "changed"."""
        try:
            with self.translate(key, condition=condition):
                yield
        except PreconditionFailed:
            if condition == "match":
                self.head(key)  # raises NotFound when the blob is gone
            raise

    # -- reading ----------------------------------------------------------------------

    def probe(self) -> None:
        """One List Blobs of one entry: StoreNotFound, AccessDenied or StoreUnavailable,
        each one line naming the container and the account."""
        try:
            with self.translate(None):
                next(iter(self.client.list_blobs(results_per_page=1).by_page()), None)
        except StoreError as exc:
            raise type(exc)(first_line(exc)) from exc

    def head(self, key: str) -> ObjectInfo:
        full = self.keys.full(key)
        with self.translate(key):
            props = self.blob(full).get_blob_properties()
        return self._info(key, props)

    @staticmethod
    def _info(key: str, props: Any) -> ObjectInfo:
        return ObjectInfo(
            key,
            props.size,
            etag_of(props.etag),
            props.last_modified.timestamp(),
            decode_metadata(props.metadata),
        )

    def list(
        self,
        prefix: str = "",
        delimiter: str | None = "/",
        token: str | None = None,
        max_keys: int = 1000,
    ) -> ListPage:
        full_prefix = self.keys.full_prefix(prefix) or None
        size = max(1, min(max_keys, 5000))
        with self.translate(prefix or None):
            if delimiter:
                pager = self.client.walk_blobs(
                    name_starts_with=full_prefix,
                    include=["metadata"],
                    delimiter=delimiter,
                    results_per_page=size,
                ).by_page(continuation_token=token)
            else:
                pager = self.client.list_blobs(
                    name_starts_with=full_prefix, include=["metadata"], results_per_page=size
                ).by_page(continuation_token=token)
            items = builtins.list(next(pager, []))
            next_token = pager.continuation_token or None
        objects: dict[str, ObjectInfo] = {}
        prefixes: builtins.list[str] = []
        for item in items:
            if isinstance(item, BlobPrefix):
                prefixes.append(self.keys.relative(item.name))
            elif item.name != self.keys.prefix:  # the marker of the store's own root
                key = self.keys.relative(item.name)
                objects[key] = self._info(key, item)
        # UTF-8 byte order within the page, whatever the server sorts by (Azurite: UTF-16).
        return ListPage(
            [objects[k] for k in _utf8_order(builtins.list(objects))], _utf8_order(prefixes), next_token
        )

    def open_range(
        self, key: str, start: int = 0, length: int | None = None, etag: str | None = None
    ) -> HTTPBody:
        full = self.keys.full(key)
        if length == 0:
            info = self.head(key)
            if etag is not None and info.etag != etag:
                raise PreconditionFailed(f"etag of {key!r} changed", key=key)
            return HTTPBody(self.endpoint, key, None, 0)
        args: dict[str, Any] = {}
        if start or length is not None:
            end = "" if length is None else str(start + length - 1)
            args["range"] = f"bytes={start}-{end}"
        if etag is not None:
            args["modified_access_conditions"] = ModifiedAccessConditions(if_match=etag)
        # The generated client's Get Blob keeps the response streaming (see httpbody).
        operations = self.blob(full)._client.blob
        with self.translate(key, condition="match"):
            try:
                response = operations.download(cls=lambda pipeline, _body, _headers: pipeline, **args)
            except HttpResponseError as exc:
                if exc.status_code != 416 and error_code(exc) != "InvalidRange":
                    raise
                return HTTPBody(self.endpoint, key, None, 0)  # starts at or past the end
        http = response.http_response
        length = int(http.headers.get("Content-Length", 0))
        # azure-core's response, requests' under it, urllib3's under that
        return HTTPBody(self.endpoint, key, http.internal_response.raw, length, close=http.close)

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
        full = self.keys.full(key)
        meta = encode_metadata(check_metadata(dict(metadata or {})))
        self.check_writable()
        extra, condition = conditions(if_match, if_none_match)
        data = read_body(body)
        with self.conditional(key, condition):
            r = self.blob(full).upload_blob(
                data, length=len(data), overwrite=True, metadata=meta, max_concurrency=1, **extra
            )
        return etag_of(r["etag"])

    def copy(
        self,
        src: str,
        dst: str,
        metadata: Mapping[str, str] | None = None,
        *,
        expect: ObjectInfo | None = None,
    ) -> str:
        full_src, full_dst = self.keys.full(src), self.keys.full(dst)
        meta = None if metadata is None else encode_metadata(check_metadata(dict(metadata)))
        self.check_writable()
        seen = expect if expect is not None and expect.key == src else None
        if full_src == full_dst:
            return self._replace_metadata(src, meta, seen)
        source = self.blob(full_src)
        url = source.url
        if isinstance(self.access.credential, AzureSasCredential):
            # The source of a copy is read with the credential in its URL.
            url += ("&" if "?" in url else "?") + self.access.credential.signature.removeprefix("?")
        extra: dict[str, Any] = {}
        if seen is not None:
            extra = {"source_etag": seen.etag, "source_match_condition": MatchConditions.IfNotModified}
        target = self.blob(full_dst)
        with self.translate(src):
            r = target.start_copy_from_url(url, metadata=meta or None, **extra)
        etag = self._finish_copy(dst, target, r)
        if meta == {}:
            # Copy Blob without metadata copies the source's: clear it, on this copy only.
            with self.conditional(dst, "match"):
                r = target.set_blob_metadata({}, etag=etag, match_condition=MatchConditions.IfNotModified)
            etag = etag_of(r["etag"])
        return etag

    def _finish_copy(self, dst: str, target: Any, started: Mapping[str, Any]) -> str:
        """Wait for an asynchronous copy (across accounts or large: `pending`) to end.
        Blocks, polling Get Blob Properties, for up to `copy_timeout` seconds."""
        status, etag = started.get("copy_status"), started.get("etag")
        deadline = time.monotonic() + self.config["copy_timeout"]
        pause = 0.05
        while status == "pending":
            if time.monotonic() > deadline:
                with contextlib.suppress(HttpResponseError):
                    target.abort_copy(started["copy_id"])
                raise StoreError(
                    f"the copy to {dst!r} did not finish in {self.config['copy_timeout']} s", key=dst
                )
            time.sleep(pause)
            pause = min(2.0, pause * 2)
            with self.translate(dst):
                props = target.get_blob_properties()
            status, etag = props.copy.status, props.etag
        if status != "success":
            raise StoreError(f"the copy to {dst!r} ended {status}", key=dst)
        return etag_of(etag)

    def _replace_metadata(self, key: str, meta: dict[str, str] | None, seen: ObjectInfo | None) -> str:
        """A copy onto itself: Set Blob Metadata, conditional on the etag last seen."""
        etag = seen.etag if seen is not None else self.head(key).etag
        if meta is None:
            return etag
        with self.conditional(key, "match"):
            r = self.blob(self.keys.full(key)).set_blob_metadata(
                meta, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        return etag_of(r["etag"])

    def delete_many(self, keys: Iterable[str], etags: Mapping[str, str] | None = None) -> None:
        keys = list(keys)
        for key in keys:
            self.keys.full(key)  # InvalidKey before anything is deleted
        self.check_writable()
        self.deleter.delete(keys, etags or {})

    def stat_store(self) -> StoreStats:
        return StoreStats()  # Azure reports no capacity
