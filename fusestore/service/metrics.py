"""Prometheus metrics of one mount (`fusestore mount --metrics-addr [HOST:]PORT`).

Every daemon has a registry of its own (never prometheus_client's global one), served
as Prometheus text at `/metrics` (any path answers) by prometheus_client's HTTP server,
in threads of its own: a scrape never runs on the trio thread and never touches the
mount's state. Three kinds of numbers, each safe across threads:

- Counted as they happen, into prometheus_client's own (locked) metrics: store requests
  by operation and outcome, with their latency (`MeasuredStore`, in the worker thread
  making the call), and the kernel's requests by operation and outcome, with their
  latency (the FUSE adapter, on the trio thread; a few microseconds each).
- Sampled: everything read from the mount's state (dirty data, the cache, conflicts,
  failed attempts, bytes up and down, whether the store answers) is taken on the trio
  thread by `sampling.sample_loop` once a second into a frozen `Sample`, whose reference a scrape
  reads. So these are at most a second old, and a scrape costs the mount nothing.
- The sample's running totals are exported as counters, its levels as gauges.

Metric names are a promise (the dashboard in contrib/ and users' alerts use them): see
`docs/deploy.md`.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from .sampling import Sample

log = logging.getLogger(__name__)

#: Latency buckets (seconds): store requests take milliseconds to minutes (big uploads);
#: the kernel's requests microseconds (served from memory) to the I/O timeout.
STORE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
FUSE_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    5.0,
    30.0,
)


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine only (`localhost`, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MountMetrics:
    """The metrics of one mount and the HTTP server serving them.

    `store_call` and `kernel_request` may be called from any thread (prometheus_client
    locks); `sample` is replaced whole by `sample_loop`; `serve` binds at once (OSError
    when it cannot) and answers in daemon threads until `close`."""

    def __init__(self, mountpoint: str = "", store: str = "") -> None:
        self.mountpoint = mountpoint
        self.store = store
        # No `_created` series (the process-wide switch: one daemon is one process): each
        # labelled counter would carry a second series of its start time, which the
        # daemon's uptime already tells.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        self.store_requests = Counter(
            "fusestore_store_requests",
            "Requests to the store, by operation (the driver's call) and outcome.",
            ["operation", "outcome"],
            registry=self.registry,
        )
        self.store_seconds = Histogram(
            "fusestore_store_request_seconds",
            "Time a store request took, by operation (a streamed GET: until its first byte).",
            ["operation"],
            buckets=STORE_BUCKETS,
            registry=self.registry,
        )
        self.fuse_requests = Counter(
            "fusestore_fuse_requests",
            "Requests of the kernel, by operation and outcome (ok, or the errno's name).",
            ["operation", "outcome"],
            registry=self.registry,
        )
        self.fuse_seconds = Histogram(
            "fusestore_fuse_request_seconds",
            "Time the daemon took to answer a kernel request, by operation.",
            ["operation"],
            buckets=FUSE_BUCKETS,
            registry=self.registry,
        )
        self._fuse_counters: dict[tuple[str, str], Counter] = {}
        self._fuse_histograms: dict[str, Histogram] = {}
        self.sample: Sample | None = None
        self.registry.register(_SampleCollector(self))
        self._server: WSGIServer | None = None
        self.address: tuple[str, int] | None = None

    def store_call(self, operation: str, outcome: str, seconds: float) -> None:
        """One store request ended (any thread)."""
        self.store_requests.labels(operation, outcome).inc()
        self.store_seconds.labels(operation).observe(seconds)

    def kernel_request(self, operation: str, outcome: str, seconds: float) -> None:
        """One kernel request was answered (the trio thread alone calls it: the children
        by label are kept in plain dicts: 2.2 µs a request instead of 3.3 with `labels`)."""
        counter = self._fuse_counters.get((operation, outcome))
        if counter is None:
            counter = self._fuse_counters[operation, outcome] = self.fuse_requests.labels(operation, outcome)
        histogram = self._fuse_histograms.get(operation)
        if histogram is None:
            histogram = self._fuse_histograms[operation] = self.fuse_seconds.labels(operation)
        counter.inc()
        histogram.observe(seconds)

    def serve(self, host: str, port: int) -> None:
        """Listen on `host`:`port` now (OSError when the address is taken or not this
        machine's); the requests are answered in threads of the HTTP server's own."""
        if not is_loopback(host):
            log.warning("metrics served on %s:%d: anyone who can reach it may read them", host, port)
        self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self.address = (host, self._server.server_port)

    def close(self) -> None:
        """Stop answering (blocks until the server's loop has stopped: at most 0.5 s)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _SampleCollector(Collector):
    """The sampled metrics, read from the last `Sample` (a scrape's thread: no mount state)."""

    def __init__(self, metrics: MountMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterator[Metric]:
        return iter(())  # names are known only once sampled; the registry need not check them

    def collect(self) -> Iterator[Metric]:
        metrics = self.metrics
        sample = metrics.sample
        info = GaugeMetricFamily(
            "fusestore_mount_info",
            "The mount (always 1): its mount point and store.",
            labels=["mountpoint", "store"],
        )
        info.add_metric([metrics.mountpoint, metrics.store], 1)
        yield info
        if sample is None:
            return
        age = 0.0 if sample.oldest_dirty_since is None else max(0.0, time.time() - sample.oldest_dirty_since)
        gauges = {
            "fusestore_store_online": (
                "1 while the store answers, 0 while it does not.",
                sample.store_online,
            ),
            "fusestore_unmounting": ("1 once unmounting started (the final sync runs).", sample.unmounting),
            "fusestore_dirty_items": (
                "Files, directories and deletes not yet in the store.",
                sample.dirty_items,
            ),
            "fusestore_dirty_bytes": ("Changed data in the cache not yet in the store.", sample.dirty_bytes),
            "fusestore_dirty_limit_bytes": ("--dirty-limit: writers wait past it.", sample.dirty_limit),
            "fusestore_oldest_dirty_age_seconds": (
                "Age of the oldest change not yet in the store (0: none).",
                age,
            ),
            "fusestore_uploads_in_flight": ("Uploads running now.", sample.uploads_in_flight),
            "fusestore_not_uploadable_items": (
                "Items whose name the store refuses (kept, not retried).",
                sample.not_uploadable,
            ),
            "fusestore_cache_used_bytes": ("Data held in the cache.", sample.cache_used),
            "fusestore_cache_limit_bytes": (
                "--cache-size: clean data is evicted past it.",
                sample.cache_limit,
            ),
            "fusestore_nodes": ("Files and directories the daemon holds in memory.", sample.nodes),
        }
        for name, (text, value) in gauges.items():
            yield GaugeMetricFamily(name, text, value=float(value))
        counters = {
            "fusestore_uploaded_bytes": (
                "Bytes of files uploaded (landed in the store).",
                sample.uploaded_bytes,
            ),
            "fusestore_downloaded_bytes": (
                "Bytes of objects read from the store into the cache.",
                sample.downloaded_bytes,
            ),
            "fusestore_cache_evictions": ("Clean files evicted from the cache.", sample.evictions),
            "fusestore_cache_evicted_bytes": ("Bytes evicted from the cache.", sample.evicted_bytes),
            "fusestore_conflicts": (
                "Changes another client beat to the store (kept as conflict copies).",
                sample.conflicts,
            ),
            "fusestore_failed_attempts": (
                "Upload attempts that failed (each is retried).",
                sample.failed_attempts,
            ),
        }
        for name, (text, value) in counters.items():
            yield CounterMetricFamily(name, text, value=float(value))
