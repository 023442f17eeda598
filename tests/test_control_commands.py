"""The control channel's command table and the `status` answer's wire form, without a
mount: a stand-in for the daemon records what the commands ask of it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fusestore.cli.control import _render
from fusestore.service.control_commands import COMMANDS, LinkedStoreStatus, MountStatus, dispatch

UPLOAD = {
    "dirty_items": 2,
    "dirty_bytes": 5000,
    "oldest_dirty_age": 1.5,
    "uploads_in_flight": 0,
    "deletes_pending": 1,
    "failed_attempts": 0,
    "conflicts": 0,
    "conflict_copies": [],
    "conflict_copies_total": 0,
    "not_uploadable": 0,
    "conditional_writes": "honoured by the store",
    "uploaded_bytes": 0,
    "uploads": [],
    "recent_events": [],
}


def a_status() -> MountStatus:
    return MountStatus(
        mountpoint="/mnt/x",
        store="s3://bucket",
        pid=42,
        state="mounted",
        store_online=True,
        read_only=False,
        upload=dict(UPLOAD),
        dirty_limit=2**31,
        cache_dir="/var/cache/x",
        cache_used=5000,
        cache_limit=10 * 2**30,
        links=[LinkedStoreStatus("/data", "s3://other")],
        pinned=["/data"],
        pinned_bytes=100,
        requests={"PutObject": 5, "HeadObject": 1},
    )


class StandIn:
    """Records what the commands ask of the mount."""

    def __init__(self) -> None:
        self.unmounts: list[bool] = []

    def live_fs(self) -> Any:
        raise AssertionError("not needed by the commands tested here")

    def status(self) -> MountStatus:
        return a_status()

    def open_link(self, url: str) -> Any:
        raise ValueError(f"no store at {url}")

    def request_unmount(self, *, sync: bool) -> None:
        self.unmounts.append(sync)


async def answers(request: dict[str, Any], mount: StandIn | None = None) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(json.loads(json.dumps(message)))  # what goes over the wire

    await dispatch(mount or StandIn(), request, send)
    return sent


def test_status_is_sent_with_the_keys_order_and_nesting_tools_read() -> None:
    wire = a_status().to_json()
    assert list(wire) == [
        "mountpoint", "store", "pid", "state", "store_online", "read_only",
        *UPLOAD,
        "dirty_limit", "cache_dir", "cache_used", "cache_limit",
        "links", "pinned", "pinned_bytes", "requests", "downloaded_bytes", "cache_evictions",
    ]  # fmt: skip
    assert wire["links"] == [{"path": "/data", "store": "s3://other"}]
    assert list(wire["requests"].items()) == [("HeadObject", 1), ("PutObject", 5)], "sorted by name"
    assert wire["oldest_dirty_age"] == 1.5 and wire["conditional_writes"] == "honoured by the store"
    assert "  requests:   HeadObject 1, PutObject 5" in _render(wire).splitlines()


def test_the_text_status_lists_the_links_and_says_how_many_copies_it_leaves_out() -> None:
    wire = a_status().to_json()
    wire["links"].append({"path": "/models", "store": "file:///srv/models"})
    wire["conflict_copies"] = [f"/f{i}.conflict-b-1" for i in range(100)]  # the daemon sends 100 at most
    wire["conflict_copies_total"] = 130
    wire["pinned"] = [f"/p{i}" for i in range(8)]
    lines = _render(wire).splitlines()
    at = lines.index("  links:      /data  ←  s3://other")
    assert lines[at + 1] == "              /models  ←  file:///srv/models"
    conflicts = next(i for i, line in enumerate(lines) if line.startswith("  conflicts:"))
    assert lines[conflicts].endswith("; 130 conflict cop(ies) listed")
    assert lines[conflicts + 1 : conflicts + 7] == [
        *(f"              /f{i}.conflict-b-1" for i in range(5)),
        "              … and 125 more (fusestore status --json lists 100)",
    ]
    pinned = next(i for i, line in enumerate(lines) if line.startswith("  pinned:"))
    assert lines[pinned + 6] == "              … and 3 more (fusestore status --json lists them all)"

    wire["links"] = []
    assert "  links:      none" in _render(wire).splitlines()


def test_the_table_names_every_command() -> None:
    assert set(COMMANDS) == {"status", "flush", "link", "unlink_store", "pin", "unpin", "unmount"}


@pytest.mark.trio
async def test_status_answers_one_object() -> None:
    assert await answers({"cmd": "status"}) == [a_status().to_json()]


@pytest.mark.trio
async def test_an_unknown_command_is_an_error() -> None:
    assert await answers({"cmd": "reboot"}) == [{"error": "unknown request 'reboot'"}]


@pytest.mark.trio
async def test_unmount_without_sync_asks_once_and_answers_nothing() -> None:
    mount = StandIn()
    assert await answers({"cmd": "unmount", "sync": False}, mount) == []
    assert mount.unmounts == [False]


@pytest.mark.trio
async def test_a_link_the_mount_cannot_open_is_an_error_line() -> None:
    assert await answers({"cmd": "link", "path": "p", "url": "bad://"}) == [
        {"error": "cannot link bad:// at p: no store at bad://"}
    ]
