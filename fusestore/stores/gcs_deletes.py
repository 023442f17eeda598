"""The gs:// driver's deletes: 100 per batch request where the endpoint answers batches,
else one request each, eight at a time. Absent objects are fine, and so is one kept by its
condition (a delete of one generation: ifGenerationMatch, a 412 when replaced since).

Blocks on HTTP requests. Thread-safe: what it learns (whether batches are answered) is
one flag, set once.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any, Protocol

from .errors import AccessDenied, NotFound, PreconditionFailed, StoreError
from .gcs_errors import Translator

#: Calls one batch request carries (the JSON API's limit).
BATCH_SIZE = 100
#: Single deletes in flight at once, where batches are not answered.
CONCURRENCY = 8


class DeleteHost(Protocol):
    """What the deletes need of their store (`gcs.GCSStore`)."""

    @property
    def bucket(self) -> Any: ...
    @property
    def client(self) -> Any: ...
    @property
    def translator(self) -> Translator: ...
    def count(self, operation: str, n: int = 1) -> None: ...
    def call_options(self) -> dict[str, Any]: ...
    def errors(self, key: str | None, **how: Any) -> AbstractContextManager[None]: ...


class _NoBatches(Exception):
    """The endpoint does not answer batch requests."""


class Deleter:
    """Deletes objects by name for one store."""

    def __init__(self, store: DeleteHost) -> None:
        self.store = store
        #: whether the endpoint answers batch requests (emulators may not): learned once
        self.batches = True

    def delete(self, names: list[str], generations: Mapping[str, int]) -> None:
        """Delete every name, those in `generations` only at that generation; StoreError
        (AccessDenied when all were refused) names one that failed."""
        failed: list[tuple[str, StoreError]] = []
        if self.batches and len(names) > 1:
            for start in range(0, len(names), BATCH_SIZE):
                try:
                    failed += self._batch(names[start : start + BATCH_SIZE], generations)
                except _NoBatches:
                    self.batches = False
                    names = names[start:]
                    break
            else:
                names = []
        if names:
            with ThreadPoolExecutor(max_workers=min(CONCURRENCY, len(names))) as pool:
                outcomes = pool.map(lambda name: self._one(name, generations.get(name)), names)
                failed += [f for f in outcomes if f is not None]
        if failed:
            name, error = failed[0]
            cls = AccessDenied if all(isinstance(e, AccessDenied) for _, e in failed) else StoreError
            raise cls(f"could not delete {len(failed)} object(s), e.g. {name!r}: {error}", key=name)

    def _one(self, name: str, generation: int | None) -> tuple[str, StoreError] | None:
        store = self.store
        store.count("objects.delete")
        condition = {} if generation is None else {"if_generation_match": generation}
        try:
            with store.errors(name, condition="match"):
                store.bucket.delete_blob(name, **condition, **store.call_options())
        except (NotFound, PreconditionFailed):
            return None
        except StoreError as exc:
            return name, exc
        return None

    def _batch(self, names: list[str], generations: Mapping[str, int]) -> list[tuple[str, StoreError]]:
        """One batch request; the names whose delete failed (404s are fine, and 412s of
        deletes of one generation)."""
        store = self.store
        bucket = store.bucket
        batch = store.client.batch(raise_exception=False)
        store.count("batch")
        try:
            with store.errors(None), batch:
                for name in names:
                    generation = generations.get(name)
                    condition = {} if generation is None else {"if_generation_match": generation}
                    bucket.delete_blob(name, **condition, timeout=store.call_options()["timeout"])
        except ValueError as exc:  # the SDK cannot read the answer as a batch's
            raise _NoBatches from exc
        store.count("objects.delete", len(names))
        failed: list[tuple[str, StoreError]] = []
        for name, response in zip(names, batch._responses, strict=True):
            status = response.status_code
            if 200 <= status < 300 or status == 404 or (status == 412 and name in generations):
                continue
            try:
                store.translator.raise_status(status, f"HTTP {status}", name)
            except StoreError as exc:
                failed.append((name, exc))
        return failed
