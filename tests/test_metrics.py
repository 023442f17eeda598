"""The metrics without a mount: a registry per daemon, the names the dashboard in
contrib/ uses (exactly those served), the outcomes a measured store counts, a scrape
that reads only the last sample, and `--metrics-addr`'s forms."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import click
import pytest
from prometheus_client import generate_latest

from fusestore.mountoptions import Address
from fusestore.service.measuredstore import MeasuredStore, outcome_of
from fusestore.service.metrics import MountMetrics, is_loopback
from fusestore.service.sampling import Sample
from fusestore.stores import NotFound, StoreUnavailable, open_store

DASHBOARD = Path(__file__).parent.parent / "contrib" / "grafana-dashboard.json"


def a_sample(**changes: object) -> Sample:
    values: dict[str, object] = {
        "dirty_items": 3,
        "dirty_bytes": 5000,
        "oldest_dirty_since": time.time() - 10,
        "dirty_limit": 2**31,
        "uploads_in_flight": 1,
        "cache_used": 7000,
        "cache_limit": 2**33,
        "evictions": 2,
        "evicted_bytes": 300,
        "uploaded_bytes": 4000,
        "downloaded_bytes": 9000,
        "conflicts": 1,
        "failed_attempts": 4,
        "not_uploadable": 0,
        "store_online": True,
        "unmounting": False,
        "nodes": 12,
    }
    values.update(changes)
    return Sample(**values)  # type: ignore[arg-type]


def served(metrics: MountMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def families(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))


def full_metrics() -> MountMetrics:
    metrics = MountMetrics("/mnt/x", "s3://bucket")
    metrics.sample = a_sample()
    metrics.store_call("put", "ok", 0.02)
    metrics.kernel_request("write", "ok", 0.0001)
    return metrics


def test_each_daemon_has_its_own_registry() -> None:
    one, two = MountMetrics("/mnt/one"), MountMetrics("/mnt/two")
    one.store_call("head", "not_found", 0.01)
    assert 'fusestore_store_requests_total{operation="head",outcome="not_found"} 1.0' in served(one)
    assert "fusestore_store_requests_total{" not in served(two)
    assert 'mountpoint="/mnt/two"' in served(two)


def test_sampled_values_are_served_as_gauges_and_counters() -> None:
    text = served(full_metrics())
    assert "fusestore_dirty_items 3.0" in text and "fusestore_dirty_bytes 5000.0" in text
    assert "fusestore_uploaded_bytes_total 4000.0" in text
    assert "fusestore_downloaded_bytes_total 9000.0" in text
    assert "fusestore_cache_evictions_total 2.0" in text and "fusestore_failed_attempts_total 4.0" in text
    assert "fusestore_store_online 1.0" in text and "fusestore_unmounting 0.0" in text
    age = float(re.search(r"^fusestore_oldest_dirty_age_seconds (\S+)$", text, re.MULTILINE)[1])  # type: ignore[index]
    assert 9 < age < 60, "counted from the sample's time to the scrape"
    assert "fusestore_conflicts_total 1.0" in text and "_created" not in text


def test_before_the_first_sample_only_the_mount_is_served() -> None:
    text = served(MountMetrics("/mnt/x", "s3://b"))
    assert 'fusestore_mount_info{mountpoint="/mnt/x",store="s3://b"} 1.0' in text
    assert "fusestore_dirty_bytes" not in text
    assert "fusestore_oldest_dirty_age_seconds 0.0" in served(_sampled(a_sample(oldest_dirty_since=None)))


def _sampled(sample: Sample) -> MountMetrics:
    metrics = MountMetrics()
    metrics.sample = sample
    return metrics


def dashboard_names() -> set[str]:
    exprs = [
        target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]
    ]
    exprs.append("fusestore_mount_info")  # the mount picker's query
    return {name for expr in exprs for name in re.findall(r"\bfusestore_[a-z_]+", expr)}


def test_the_dashboard_uses_exactly_the_names_served() -> None:
    text = served(full_metrics())
    samples = set(re.findall(r"^(fusestore_[a-z_]+)", text, re.MULTILINE))
    used = dashboard_names()
    assert used <= samples, f"the dashboard names metrics never served: {sorted(used - samples)}"
    unused = {name for name in families(text) if not any(u.startswith(name) for u in used)}
    assert not unused, f"served but on no panel: {sorted(unused)}"


def test_a_measured_store_counts_each_request_by_outcome() -> None:
    calls: list[tuple[str, str]] = []
    store = MeasuredStore(
        open_store("memory://metrics-test"), lambda op, outcome, _s: calls.append((op, outcome))
    )
    store.put("a", b"123")
    store.head("a")
    with pytest.raises(NotFound):
        store.head("missing")
    store.list("")
    with store.open_range("a") as reader:
        assert reader.read() == b"123"
    store.copy("a", "b")
    store.delete_many(["a", "b"])
    assert calls == [
        ("put", "ok"),
        ("head", "ok"),
        ("head", "not_found"),
        ("list", "ok"),
        ("get", "ok"),
        ("copy", "ok"),
        ("delete", "ok"),
    ]
    assert store.to_url() == "memory://metrics-test", "the same store (and so the same cache)"
    assert outcome_of(StoreUnavailable("down")) == "unavailable" and outcome_of(RuntimeError()) == "error"


def test_the_server_answers_on_loopback_in_its_own_thread() -> None:
    metrics = full_metrics()
    metrics.serve("127.0.0.1", 0)
    try:
        assert metrics.address is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics.address[1]}/metrics", timeout=10) as answer:
            assert "fusestore_dirty_bytes 5000.0" in answer.read().decode()
        second = MountMetrics()
        with pytest.raises(OSError):
            second.serve("127.0.0.1", metrics.address[1])  # taken
    finally:
        metrics.close()


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("9464", ("127.0.0.1", 9464)),
        (":9464", ("127.0.0.1", 9464)),
        ("0.0.0.0:9464", ("0.0.0.0", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_metrics_addr_forms(text: str, address: tuple[str, int]) -> None:
    assert Address().convert(text, None, None) == address


@pytest.mark.parametrize("text", ["", "x", "9464:", "host:0", "host:65536", "host:-1"])
def test_metrics_addr_refused(text: str) -> None:
    with pytest.raises(click.BadParameter, match=r"\[HOST:\]PORT"):
        Address().convert(text, None, None)


def test_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1") and not is_loopback("example.org")
