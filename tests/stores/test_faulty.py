"""Fault injection: the spec, and each kind of fault on a memory store."""

from __future__ import annotations

import threading
import time

import pytest

from fusestore.stores import InvalidStoreURL, StoreUnavailable
from fusestore.stores.faulty import FaultPlan, FaultyStore
from fusestore.stores.memory import MemoryStore


def test_spec_parsing() -> None:
    plan = FaultPlan.parse("*:error=0.2; put*:latency=0.05,fail_after=8M ;open_range:stall=60;seed=7")
    assert plan.seed == 7
    assert [r.pattern for r in plan.rules] == ["*", "put*", "open_range"]
    assert plan.rules[1].fail_after == 8 * 1024 * 1024 and plan.rules[1].latency == 0.05
    assert [r.pattern for r in plan.for_operation("put_part")] == ["*", "put*"]
    assert FaultPlan.parse("").rules == []


@pytest.mark.parametrize(
    "spec",
    ["put", "put:", "put:error", "put:error=2", "put:boom=1", "put:latency=-1", "put:latency=x", "seed=x"],
)
def test_bad_specs_are_refused_naming_the_rule(spec: str) -> None:
    with pytest.raises(InvalidStoreURL) as refused:
        FaultPlan.parse(f"*:latency=0;{spec}")
    assert spec.split(";")[0] in str(refused.value) or "seed" in str(refused.value)


def test_error_rate_is_about_right_and_repeatable_with_a_seed() -> None:
    def outcomes() -> list[bool]:
        store = FaultyStore(MemoryStore(), "head:error=0.3;seed=42")
        store.inner.put("k", b"v")
        result = []
        for _ in range(400):
            try:
                store.head("k")
                result.append(True)
            except StoreUnavailable as exc:
                assert "injected" in str(exc)
                result.append(False)
        return result

    first = outcomes()
    assert 0.2 < first.count(False) / len(first) < 0.4
    assert outcomes() == first


def test_lost_replies_are_really_made() -> None:
    store = FaultyStore(MemoryStore(), "put:lost=1")
    with pytest.raises(StoreUnavailable):
        store.put("k", b"stored anyway")
    assert store.inner.get_range("k") == b"stored anyway"
    assert store.injected["lost"] == 1


def test_latency_and_a_stall_released_by_close() -> None:
    store = FaultyStore(MemoryStore(), "head:latency=0.1;list:stall=30")
    store.inner.put("k", b"v")
    started = time.monotonic()
    store.head("k")
    assert time.monotonic() - started >= 0.1
    threading.Timer(0.2, store.close).start()
    started = time.monotonic()
    store.list()
    assert time.monotonic() - started < 5, "close() ends a stall"


def test_fail_after_bytes_on_uploads_and_downloads() -> None:
    store = FaultyStore(MemoryStore(), "put*:fail_after=10;get_range:fail_after=4;open_range:fail_after=4")
    store.put("small", b"0123456789")  # not larger than the limit
    with pytest.raises(StoreUnavailable):
        store.put("big", b"0123456789A")
    assert "big" not in {o.key for o in store.inner.iter_objects()}, "nothing stored"
    upload = store.start_multipart("parts")
    with pytest.raises(StoreUnavailable):
        store.put_part("parts", upload, 1, b"x" * 11)
    with pytest.raises(StoreUnavailable):
        store.get_range("small")
    with store.open_range("small") as reader:
        assert reader.read(4) == b"0123"
        with pytest.raises(StoreUnavailable):
            reader.read(4)
