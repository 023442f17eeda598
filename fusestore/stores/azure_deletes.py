"""Deleting many blobs: Blob Batch requests of up to 256 deletes each, or, where the
service takes no batches (some SAS tokens, some emulators), one Delete Blob per blob, a
few at a time. Absent blobs are fine, and so is a blob kept by its condition (a delete
given an etag: If-Match, a 412 when replaced since). Every method blocks on its requests.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.core import MatchConditions

from .azure_container import Container
from .errors import AccessDenied, NotFound, PreconditionFailed, StoreError

log = logging.getLogger(__name__)

#: Blob Batch takes at most this many subrequests.
BATCH_SIZE = 256
#: Deletes one by one run this many at a time (at most the store's connections).
PARALLEL = 8

Failure = tuple[str, StoreError]


class Deleter:
    """The deletes of one store. Thread-safe (the batch flag only ever goes to False)."""

    def __init__(self, store: Container) -> None:
        self._store = store
        #: False once the service refused a Blob Batch: deletes go one by one since.
        self.batches = True

    def delete(self, keys: list[str], etags: Mapping[str, str]) -> None:
        """Delete the blobs of these (relative) keys, those in `etags` only while they
        are that version. StoreError names any that failed: AccessDenied when every
        failure was a refusal."""
        failed: list[Failure] = []
        for start in range(0, len(keys), BATCH_SIZE):
            chunk = keys[start : start + BATCH_SIZE]
            batch = self.batches and len(chunk) > 1
            failed += self._batch(chunk, etags) if batch else self._each(chunk, etags)
        if failed:
            key, error = failed[0]
            cls = AccessDenied if all(isinstance(e, AccessDenied) for _, e in failed) else StoreError
            raise cls(f"could not delete {len(failed)} object(s), e.g. {key!r}: {error}", key=key)

    def _batch(self, keys: list[str], etags: Mapping[str, str]) -> list[Failure]:
        store = self._store
        blobs: list[Any] = []
        for key in keys:
            full = store.keys.full(key)
            etag = etags.get(key)
            blobs.append(
                full
                if etag is None
                else {"name": full, "etag": etag, "match_condition": MatchConditions.IfNotModified}
            )
        try:
            with store.errors.translate(None):
                answers = list(store.client.delete_blobs(*blobs, raise_on_any_failure=False))
        except StoreError as exc:
            if type(exc) not in (StoreError, NotFound):  # refused, no container, or down: no fallback
                raise
            log.info("%s takes no Blob Batch (%s): deleting blob by blob", store.endpoint, exc)
            self.batches = False
            return self._each(keys, etags)
        failed: list[Failure] = []
        for key, answer in zip(keys, answers, strict=False):
            status = answer.status_code
            if status in (200, 202, 404) or (status == 412 and key in etags):
                continue
            text = f"{status} {answer.headers.get('x-ms-error-code', '')}".strip()
            failed.append((key, AccessDenied(text) if status in (401, 403) else StoreError(text)))
        return failed

    def _each(self, keys: list[str], etags: Mapping[str, str]) -> list[Failure]:
        store = self._store

        def delete(key: str) -> Failure | None:
            etag = etags.get(key)
            condition: dict[str, Any] = (
                {} if etag is None else {"etag": etag, "match_condition": MatchConditions.IfNotModified}
            )
            try:
                with (
                    contextlib.suppress(NotFound, PreconditionFailed),
                    store.errors.translate(key, condition="match"),
                ):
                    store.blob(store.keys.full(key)).delete_blob(**condition)
            except StoreError as exc:
                return key, exc
            return None

        if len(keys) == 1:
            results = [delete(keys[0])]
        else:
            with ThreadPoolExecutor(max_workers=min(PARALLEL, store.config["max_connections"])) as pool:
                results = list(pool.map(delete, keys))
        return [r for r in results if r is not None]
