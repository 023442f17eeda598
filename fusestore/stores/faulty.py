"""Fault injection: a driver that wraps another and makes its calls fail, slow or hang.

For tests and chaos runs (`fusestore mount --faults SPEC`). A spec is rules separated by
`;`, each `GLOB:effect=value[,effect=value...]`, where GLOB matches store method names
(`*`, `put*`, `open_range`) and effects are:

- `error=P`: with probability P the call fails with StoreUnavailable before it is made
  (the store is down, or answered 5xx);
- `lost=P`: with probability P the call is made, then fails as if the answer was lost;
- `latency=S`: every call waits S seconds first (a slow store or link);
- `stall=S`: every call hangs S seconds first (a dead link; meant to exceed the I/O
  timeout), ended early by `close()`;
- `fail_after=N`: an upload (`put`, `put_part`) larger than N bytes fails and stores
  nothing; a download stream (`open_range`, `get_range`) fails once N bytes were read.
  Sizes take K/M/G suffixes;
- `unconditional=P`: with probability P a `put` or `complete_multipart` ignores its
  If-Match / If-None-Match condition and writes anyway (a server without them).

A rule `seed=N` makes the random choices repeatable. Example:
`*:error=0.2;put*:latency=0.05;seed=1`.
"""

from __future__ import annotations

import builtins
import fnmatch
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .base import Body, CompletedPart, ListPage, ObjectInfo, ObjectReader, PendingUpload, Store, StoreStats
from .errors import InvalidStoreURL, StoreUnavailable
from .wrapper import WrappedStore

_SUFFIXES = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
_EFFECTS = ("error", "lost", "latency", "stall", "fail_after", "unconditional")


@dataclass
class FaultRule:
    pattern: str
    error: float = 0.0
    lost: float = 0.0
    latency: float = 0.0
    stall: float = 0.0
    fail_after: int | None = None
    unconditional: float = 0.0


@dataclass
class FaultPlan:
    rules: list[FaultRule]
    seed: int | None = None

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """The plan a spec describes; InvalidStoreURL naming the part it cannot read."""
        rules: list[FaultRule] = []
        seed = None
        for part in (p.strip() for p in spec.split(";")):
            if not part:
                continue
            if part.startswith("seed="):
                seed = _number(part, part[5:], int)
                continue
            pattern, colon, effects = part.partition(":")
            if not colon or not pattern.strip() or not effects.strip():
                raise InvalidStoreURL(f"fault rule {part!r}: expected GLOB:effect=value[,effect=value]")
            rule = FaultRule(pattern.strip())
            for effect in effects.split(","):
                name, equals, value = (x.strip() for x in effect.partition("="))
                if not equals or name not in _EFFECTS:
                    raise InvalidStoreURL(f"fault rule {part!r}: unknown effect {name!r} (one of {_EFFECTS})")
                if name == "fail_after":
                    rule.fail_after = _size(part, value)
                else:
                    amount = _number(part, value, float)
                    if name in ("error", "lost", "unconditional") and not 0 <= amount <= 1:
                        raise InvalidStoreURL(f"fault rule {part!r}: {name} is a probability (0 to 1)")
                    setattr(rule, name, amount)
            rules.append(rule)
        return cls(rules, seed)

    def for_operation(self, operation: str) -> list[FaultRule]:
        return [rule for rule in self.rules if fnmatch.fnmatchcase(operation, rule.pattern)]


def _number(part: str, text: str, kind: Callable[[str], Any]) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise InvalidStoreURL(f"fault rule {part!r}: {text!r} is not a number") from None
    if value < 0:
        raise InvalidStoreURL(f"fault rule {part!r}: {text!r} is negative")
    return value


def _size(part: str, text: str) -> int:
    text = text.strip().upper().removesuffix("B")
    suffix = text[-1:] if text[-1:] in _SUFFIXES else ""
    return int(_number(part, text[: len(text) - len(suffix)], float) * _SUFFIXES[suffix])


class _FailingReader(ObjectReader):
    """A download stream that breaks after `limit` bytes."""

    def __init__(self, inner: ObjectReader, limit: int, store: FaultyStore) -> None:
        self.inner, self.left, self.store = inner, limit, store

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        if len(data) > self.left:
            self.store.count("fail_after")
            raise StoreUnavailable("injected fault: the connection broke during the download")
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.inner.close()


class FaultyStore(WrappedStore):
    """Another store, with faults injected per the plan. Thread-safe; every method may
    block (sleeps for latency and stalls) like the store it wraps.

    It reports the wrapped store's URL, key space and limits, so a cache made with faults
    is the same cache as without. `put_file` is the base class's, built on `put`/`put_part`,
    so faults hit each part. `injected` counts the faults by kind.
    """

    def __init__(self, inner: Store, plan: FaultPlan | str) -> None:
        super().__init__(inner)
        self.plan = plan if isinstance(plan, FaultPlan) else FaultPlan.parse(plan)
        self.injected: Counter[str] = Counter()
        self._random = random.Random(self.plan.seed)
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()  # ends stalls
        self.inner.close()

    def count(self, kind: str) -> None:
        with self._lock:
            self.injected[kind] += 1

    def _chance(self, probability: float) -> bool:
        if probability <= 0:
            return False
        with self._lock:
            return self._random.random() < probability

    def _call(self, operation: str, call: Callable[[], Any], upload_size: int | None = None) -> Any:
        rules = self.plan.for_operation(operation)
        for rule in rules:
            if rule.latency:
                time.sleep(rule.latency)
            if rule.stall:
                self.count("stall")
                self._closed.wait(rule.stall)
            if self._chance(rule.error):
                self.count("error")
                raise StoreUnavailable(f"injected fault: {operation} failed (store unavailable)")
            if rule.fail_after is not None and upload_size is not None and upload_size > rule.fail_after:
                self.count("fail_after")
                raise StoreUnavailable(f"injected fault: the connection broke during {operation}")
        result = call()
        for rule in rules:
            if self._chance(rule.lost):
                self.count("lost")
                raise StoreUnavailable(f"injected fault: the answer to {operation} was lost")
        return result

    def _unconditional(self, operation: str, if_match: str | None, if_none_match: bool) -> bool:
        """Whether this write ignores its conditions (and counts it when it had some)."""
        if if_match is None and not if_none_match:
            return False
        if any(self._chance(rule.unconditional) for rule in self.plan.for_operation(operation)):
            self.count("unconditional")
            return True
        return False

    def _download_limit(self, operation: str) -> int | None:
        limits = [r.fail_after for r in self.plan.for_operation(operation) if r.fail_after is not None]
        return min(limits) if limits else None

    # -- the Store interface, delegated ---------------------------------------------------

    def head(self, key: str) -> ObjectInfo:
        result: ObjectInfo = self._call("head", lambda: self.inner.head(key))
        return result

    def list(
        self, prefix: str = "", delimiter: str | None = "/", token: str | None = None, max_keys: int = 1000
    ) -> ListPage:
        result: ListPage = self._call("list", lambda: self.inner.list(prefix, delimiter, token, max_keys))
        return result

    def open_range(
        self, key: str, start: int = 0, length: int | None = None, etag: str | None = None
    ) -> ObjectReader:
        reader: ObjectReader = self._call(
            "open_range", lambda: self.inner.open_range(key, start, length, etag)
        )
        limit = self._download_limit("open_range")
        return reader if limit is None else _FailingReader(reader, limit, self)

    def get_range(
        self, key: str, start: int = 0, length: int | None = None, etag: str | None = None
    ) -> bytes:
        def read() -> bytes:
            with self.inner.open_range(key, start, length, etag) as reader:
                limit = self._download_limit("get_range")
                return (reader if limit is None else _FailingReader(reader, limit, self)).read()

        data: bytes = self._call("get_range", read)
        return data

    def probe(self) -> None:
        self._call("probe", self.inner.probe)

    def put(
        self,
        key: str,
        body: Body,
        metadata: Mapping[str, str] | None = None,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        size = len(body) if isinstance(body, bytes | bytearray | memoryview) else None
        if self._unconditional("put", if_match, if_none_match):
            if_match, if_none_match = None, False
        etag: str = self._call(
            "put",
            lambda: self.inner.put(key, body, metadata, if_match=if_match, if_none_match=if_none_match),
            size,
        )
        return etag

    def start_multipart(self, key: str, metadata: Mapping[str, str] | None = None) -> str:
        upload_id: str = self._call("start_multipart", lambda: self.inner.start_multipart(key, metadata))
        return upload_id

    def put_part(self, key: str, upload_id: str, number: int, body: Body) -> CompletedPart:
        size = len(body) if isinstance(body, bytes | bytearray | memoryview) else None
        part: CompletedPart = self._call(
            "put_part", lambda: self.inner.put_part(key, upload_id, number, body), size
        )
        return part

    def complete_multipart(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[CompletedPart],
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        if self._unconditional("complete_multipart", if_match, if_none_match):
            if_match, if_none_match = None, False
        etag: str = self._call(
            "complete_multipart",
            lambda: self.inner.complete_multipart(
                key, upload_id, parts, if_match=if_match, if_none_match=if_none_match
            ),
        )
        return etag

    def abort_multipart(self, key: str, upload_id: str) -> None:
        self._call("abort_multipart", lambda: self.inner.abort_multipart(key, upload_id))

    def list_multipart(self, prefix: str = "") -> builtins.list[PendingUpload]:
        uploads: builtins.list[PendingUpload] = self._call(
            "list_multipart", lambda: self.inner.list_multipart(prefix)
        )
        return uploads

    def copy(
        self,
        src: str,
        dst: str,
        metadata: Mapping[str, str] | None = None,
        *,
        expect: ObjectInfo | None = None,
    ) -> str:
        etag: str = self._call("copy", lambda: self.inner.copy(src, dst, metadata, expect=expect))
        return etag

    def delete_many(self, keys: Iterable[str], etags: Mapping[str, str] | None = None) -> None:
        keys = builtins.list(keys)
        self._call("delete_many", lambda: self.inner.delete_many(keys, etags))

    def stat_store(self) -> StoreStats:
        stats: StoreStats = self._call("stat_store", self.inner.stat_store)
        return stats
