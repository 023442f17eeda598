"""`fusestore status --watch`'s rendering of status answers, without a mount: the plain
lines (no terminal), the live view's text, and the rates between two answers."""

from __future__ import annotations

import io
import time
from typing import Any

from rich.console import Console

from fusestore.cli.watch import Rates, plain_lines, view, watch

MiB = 2**20


def a_status(**changes: Any) -> dict[str, Any]:
    status = {
        "mountpoint": "/mnt/x",
        "store": "s3://bucket",
        "pid": 42,
        "state": "mounted",
        "store_online": True,
        "read_only": False,
        "dirty_items": 2,
        "dirty_bytes": 512 * MiB,
        "oldest_dirty_age": 3.0,
        "uploads_in_flight": 2,
        "deletes_pending": 0,
        "failed_attempts": 1,
        "conflicts": 1,
        "conflict_copies": [],
        "not_uploadable": 0,
        "conditional_writes": "honoured by the store",
        "uploaded_bytes": 10 * MiB,
        "uploads": [
            {"path": "/big.iso", "size": 100 * MiB, "sent": 25 * MiB},
            {"path": "/small.txt", "size": 5000, "sent": None},
        ],
        "recent_events": [
            {"time": 1000.0, "kind": "error", "text": "upload of /a failed (attempt 1): boom"},
            {"time": 1001.0, "kind": "conflict", "text": "/b: changed by another client"},
        ],
        "dirty_limit": 2048 * MiB,
        "cache_dir": "/var/cache/x",
        "cache_used": 1024 * MiB,
        "cache_limit": 4096 * MiB,
        "links": [],
        "pinned": [],
        "pinned_bytes": 0,
        "requests": {},
        "downloaded_bytes": 4 * MiB,
        "cache_evictions": 0,
    }
    status.update(changes)
    return status


def test_rates_come_from_two_answers() -> None:
    rates = Rates()
    rates.update([a_status()], now=100.0)
    assert rates.of("/mnt/x") is None, "one answer is no rate"
    rates.update([a_status(uploaded_bytes=12 * MiB, downloaded_bytes=8 * MiB)], now=102.0)
    assert rates.of("/mnt/x") == (1 * MiB, 2 * MiB)
    rates.update([{"mountpoint": "/mnt/x", "error": "gone"}], now=103.0)  # an error keeps the last
    assert rates.of("/mnt/x") == (1 * MiB, 2 * MiB)


def test_plain_lines_one_per_mount_then_each_new_event_once() -> None:
    rates = Rates()
    rates.update([a_status()], now=0.0)
    rates.update([a_status(uploaded_bytes=11 * MiB)], now=1.0)
    seen: dict[str, float] = {}
    lines = plain_lines([a_status(uploaded_bytes=11 * MiB)], rates, seen, now=time.time())
    assert len(lines) == 3
    head = lines[0]
    assert " /mnt/x: store answers; up 1.0 MiB/s, down 0 B/s;" in head
    assert "dirty 512.0 MiB of 2.0 GiB (2 item(s)); cache 1.0 GiB of 4.0 GiB;" in head
    assert "2 upload(s) in flight; 1 conflict(s), 1 failed attempt(s)" in head
    assert lines[1].endswith("/mnt/x: error: upload of /a failed (attempt 1): boom")
    assert lines[2].endswith("/mnt/x: conflict: /b: changed by another client")
    again = plain_lines([a_status()], rates, seen, now=time.time())
    assert len(again) == 1, "an event is told once"


def test_plain_lines_of_a_mount_that_does_not_answer() -> None:
    lines = plain_lines(
        [{"mountpoint": "/mnt/y", "error": "no daemon is listening"}, a_status(store_online=False)],
        Rates(),
        {},
        now=time.time(),
    )
    assert lines[0].endswith("/mnt/y: no daemon is listening")
    assert plain_lines([], Rates(), {}, now=time.time())[0].endswith(" no fusestore mounts")
    assert "store DOES NOT ANSWER; up …, down …;" in lines[1]


def rendered(statuses: list[dict[str, Any]], rates: Rates) -> str:
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(view(statuses, rates))
    out = console.file
    assert isinstance(out, io.StringIO)
    return out.getvalue()


def test_the_live_view_shows_rates_bars_uploads_and_events() -> None:
    rates = Rates()
    rates.update([a_status()], now=0.0)
    rates.update([a_status(uploaded_bytes=13 * MiB)], now=1.0)
    text = rendered([a_status(uploaded_bytes=13 * MiB)], rates)
    assert "/mnt/x  ←  s3://bucket  (pid 42, mounted)" in text
    assert "up 3.0 MiB/s (13.0 MiB so far), down 0 B/s (4.0 MiB so far)" in text
    assert "512.0 MiB of 2.0 GiB" in text and "1.0 GiB of 4.0 GiB" in text
    assert "/big.iso" in text and "25.0 MiB of 100.0 MiB" in text, "a staged upload's progress"
    assert "/small.txt (4.9 KiB)" in text
    assert "error: upload of /a failed (attempt 1): boom" in text
    assert "conflict: /b: changed by another client" in text
    assert "answers" in text and "1 conflict(s), 1 failed attempt(s)" in text


def test_the_live_view_of_nothing_and_of_an_error() -> None:
    assert "no fusestore mounts" in rendered([], Rates())
    assert "/mnt/y: gone" in rendered([{"mountpoint": "/mnt/y", "error": "gone"}], Rates())
    assert "DOES NOT ANSWER" in rendered([a_status(store_online=False)], Rates())


def test_watch_without_a_terminal_prints_a_snapshot_per_interval_until_interrupted() -> None:
    out = io.StringIO()
    polls = 0

    def poll() -> list[dict[str, Any]]:
        nonlocal polls
        polls += 1
        if polls == 4:
            raise KeyboardInterrupt  # Ctrl-C
        return [a_status(recent_events=[])]

    watch(poll, 0.01, out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and all("/mnt/x: store answers" in line for line in lines)
