"""`--metrics-addr`: Prometheus metrics scraped from a live mount during a workload, and
the address refused in one line, nothing mounted."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fusestore.service.mounts import is_mounted
from fusestore.testing.s3server import LocalS3Server

from .conftest import Mount, sh, status_of

MiB = 2**20

#: Every name the dashboard in contrib/ and the docs promise.
NAMES = [
    "fusestore_mount_info",
    "fusestore_store_requests_total",
    "fusestore_store_request_seconds_bucket",
    "fusestore_fuse_requests_total",
    "fusestore_fuse_request_seconds_bucket",
    "fusestore_uploaded_bytes_total",
    "fusestore_downloaded_bytes_total",
    "fusestore_dirty_items",
    "fusestore_dirty_bytes",
    "fusestore_dirty_limit_bytes",
    "fusestore_oldest_dirty_age_seconds",
    "fusestore_uploads_in_flight",
    "fusestore_not_uploadable_items",
    "fusestore_cache_used_bytes",
    "fusestore_cache_limit_bytes",
    "fusestore_cache_evictions_total",
    "fusestore_cache_evicted_bytes_total",
    "fusestore_conflicts_total",
    "fusestore_failed_attempts_total",
    "fusestore_store_online",
    "fusestore_unmounting",
    "fusestore_nodes",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        return str(answer.read().decode())


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if not match or match[1] != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match[2] or ""))
        if all(have.get(key) == wanted for key, wanted in labels.items()):
            total += float(match[3])
    return total


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.2)


@pytest.mark.timeout(120)
def test_metrics_move_with_a_workload(mount_factory: Callable[..., Mount]) -> None:
    port = free_port()
    mount = mount_factory("--metrics-addr", str(port), "--writeback-delay", "3600", run=False)
    # Another client's object, read later through the mount (a LIST, a GET).
    mount.client.put_object(Bucket=mount.bucket, Key="sub/theirs", Body=b"x" * MiB)
    mount.start()
    before = scrape(port)
    for name in ("fusestore_mount_info", "fusestore_store_requests_total", "fusestore_dirty_bytes"):
        assert f"\n{name}" in "\n" + before, name
    assert value(before, "fusestore_mount_info", mountpoint=str(mount.path)) == 1
    assert value(before, "fusestore_store_online") == 1
    assert value(before, "fusestore_store_requests_total", operation="list", outcome="ok") >= 1  # the probe

    data = os.urandom(3 * MiB)
    (mount.path / "f").write_bytes(data)
    eventually(lambda: value(scrape(port), "fusestore_dirty_bytes") == len(data))
    dirty = scrape(port)
    assert value(dirty, "fusestore_dirty_items") == 1
    assert value(dirty, "fusestore_oldest_dirty_age_seconds") > 0
    assert value(dirty, "fusestore_fuse_requests_total", operation="write", outcome="ok") >= 1
    assert value(dirty, "fusestore_fuse_requests_total", operation="create", outcome="ok") == 1

    sh(f"{sys.executable} -m fusestore flush {mount.path}", cwd=mount.path.parent)
    eventually(lambda: value(scrape(port), "fusestore_dirty_bytes") == 0)
    flushed = scrape(port)
    assert value(flushed, "fusestore_uploaded_bytes_total") >= len(data)
    uploads = value(flushed, "fusestore_store_requests_total", operation="put", outcome="ok")
    assert uploads >= 1
    every_put = value(flushed, "fusestore_store_requests_total", operation="put")  # with refused ones
    assert value(flushed, "fusestore_store_request_seconds_count", operation="put") == every_put

    lists = value(flushed, "fusestore_store_requests_total", operation="list")
    assert sh("ls sub", cwd=mount.path).split() == ["theirs"]
    assert (mount.path / "sub" / "theirs").read_bytes() == b"x" * MiB
    with pytest.raises(OSError):
        (mount.path / "sub").rmdir()  # not empty: the kernel's request fails
    # Sampled numbers are at most a second old; counted ones are current.
    eventually(lambda: value(scrape(port), "fusestore_downloaded_bytes_total") >= MiB)
    after = scrape(port)
    assert value(after, "fusestore_store_requests_total", operation="list") > lists
    assert value(after, "fusestore_store_requests_total", operation="get", outcome="ok") >= 1
    assert value(after, "fusestore_fuse_requests_total", operation="rmdir", outcome="ENOTEMPTY") == 1
    assert value(after, "fusestore_fuse_requests_total", operation="readdir") >= 1
    assert value(after, "fusestore_fuse_request_seconds_count") >= value(
        after, "fusestore_fuse_requests_total"
    )
    for name in NAMES:
        assert re.search(rf"^{name}[{{ ]", after, re.MULTILINE), f"{name} is not served"
    assert mount.umount() == 0, mount.log_text()
    with pytest.raises(OSError):
        scrape(port)  # the server went with the daemon


@pytest.fixture
def port_in_use() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        yield int(holder.getsockname()[1])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("background", [[], ["--background"]], ids=["foreground", "background"])
def test_an_address_in_use_stops_the_mount_in_one_line(
    mount_factory: Callable[..., Mount], port_in_use: int, background: list[str]
) -> None:
    mount = mount_factory("--metrics-addr", f"127.0.0.1:{port_in_use}", *background, run=False)
    mount.path.mkdir()
    done = subprocess.run(mount.command(), capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [f"fusestore: error: --metrics-addr 127.0.0.1:{port_in_use}: Address already in use"]
    assert not is_mounted(mount.path)
    assert not list(mount.path.iterdir())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("address", ["notaport", "127.0.0.1:70000", "host:"])
def test_a_bad_address_is_a_usage_error(mount_factory: Callable[..., Mount], address: str) -> None:
    mount = mount_factory("--metrics-addr", address, run=False)
    mount.path.mkdir()
    done = subprocess.run(mount.command(), capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "--metrics-addr" in done.stderr and "[HOST:]PORT" in done.stderr
    assert not is_mounted(mount.path)


@pytest.mark.timeout(120)
def test_two_mounts_serve_their_own_metrics(mount_factory: Callable[..., Mount]) -> None:
    ports = [free_port(), free_port()]
    one = mount_factory("--metrics-addr", str(ports[0]), name="one")
    two = mount_factory("--metrics-addr", f"localhost:{ports[1]}", name="two")
    (one.path / "only-here").write_bytes(b"1")
    first, second = scrape(ports[0]), scrape(ports[1])
    assert value(first, "fusestore_mount_info", mountpoint=str(one.path)) == 1
    assert value(second, "fusestore_mount_info", mountpoint=str(two.path)) == 1
    assert value(first, "fusestore_fuse_requests_total", operation="create") == 1
    assert value(second, "fusestore_fuse_requests_total", operation="create") == 0


@pytest.mark.timeout(120)
def test_failing_uploads_show_as_failed_attempts_and_requests(mount_factory: Callable[..., Mount]) -> None:
    port = free_port()
    mount = mount_factory("--metrics-addr", str(port), "--faults", "put:error=1")
    (mount.path / "f").write_bytes(b"data")
    eventually(lambda: value(scrape(port), "fusestore_failed_attempts_total") >= 2)
    text = scrape(port)
    assert value(text, "fusestore_store_requests_total", operation="put", outcome="unavailable") >= 2
    assert value(text, "fusestore_store_requests_total", operation="put", outcome="ok") == 0
    assert value(text, "fusestore_dirty_items") >= 1
    events = status_of(mount)["recent_events"]
    assert events and events[-1]["kind"] == "error" and "/f" in events[-1]["text"], events
    assert "injected fault" in events[-1]["text"]
    mount.kill()


@pytest.mark.timeout(180)
def test_an_outage_shows_while_scrapes_go_on(own_server: LocalS3Server, tmp_path: Path) -> None:
    """The store stops answering: the gauge says so, the oldest change ages, unavailable
    requests are counted, and scrapes from many threads at once keep answering, their
    counters never going back; the store returns: the change goes up, the gauge is 1."""
    own_server.create_bucket("metrics-outage")
    port = free_port()
    mount = Mount(
        own_server,
        "metrics-outage",
        tmp_path / "mnt",
        tmp_path / "mnt-cache",
        ["--writeback-delay", "0.5", "--io-timeout", "3", "--metrics-addr", str(port)],
    )
    try:
        mount.start()
        own_server.stop()
        (mount.path / "during-outage").write_bytes(b"x" * 1000)
        eventually(lambda: value(scrape(port), "fusestore_store_online") == 0, timeout=60)

        seen: list[tuple[float, float]] = []
        failures: list[BaseException] = []

        def scraper() -> None:
            try:
                mine: list[tuple[float, float]] = []
                for _ in range(5):
                    text = scrape(port)
                    counts = (
                        value(text, "fusestore_store_requests_total"),
                        value(text, "fusestore_fuse_requests_total"),
                    )
                    assert not mine or (counts[0] >= mine[-1][0] and counts[1] >= mine[-1][1]), "went back"
                    mine.append(counts)
                seen.extend(mine)
            except BaseException as exc:  # reported below
                failures.append(exc)

        threads = [threading.Thread(target=scraper) for _ in range(8)]
        for thread in threads:
            thread.start()
        for _ in range(20):
            os.listdir(mount.path)  # the kernel's requests go on meanwhile
        for thread in threads:
            thread.join(30)
        assert not failures, failures
        assert len(seen) == 40
        down = scrape(port)
        assert value(down, "fusestore_store_requests_total", outcome="unavailable") >= 1
        assert value(down, "fusestore_dirty_items") >= 1
        assert value(down, "fusestore_oldest_dirty_age_seconds") > 0
        outages = [e["text"] for e in status_of(mount)["recent_events"] if e["kind"] == "store"]
        assert len(outages) == 1 and outages[0].startswith("the store is not answering"), outages

        own_server.start()
        own_server.create_bucket("metrics-outage")
        eventually(lambda: value(scrape(port), "fusestore_store_online") == 1, timeout=60)
        eventually(lambda: value(scrape(port), "fusestore_dirty_items") == 0, timeout=90)
        assert mount.get("during-outage") == b"x" * 1000
        outages = [e["text"] for e in status_of(mount)["recent_events"] if e["kind"] == "store"]
        assert len(outages) == 2 and outages[1].startswith("the store answers again"), outages
        assert mount.umount() == 0, mount.log_text()
    finally:
        mount.kill()
