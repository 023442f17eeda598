"""The control channel's commands: one handler per command, all named in `COMMANDS`.

`ControlServer` (in `control`) reads a request and calls `dispatch`, which looks the
command up in `COMMANDS`; a new command is one handler here and one entry in the table.
Handlers run on the daemon's trio thread, one task per connection; they reach the mount
only through `ControlledMount` (the daemon), never the daemon's private state.
`MountStatus` is the answer to `status` (and the `status` of every final answer), sent
as `MountStatus.to_json()`.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import trio

from ..core import pinning
from ..stores import StoreError

if TYPE_CHECKING:
    from ..cache.pins import PinProgress
    from ..core.filesystem import Filesystem
    from ..stores import Store

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class LinkedStoreStatus:
    """A store linked into the mount: where (`/`-rooted path) and which (its URL)."""

    path: str
    store: str


@dataclass(frozen=True)
class MountStatus:
    """The mount's state for `fusestore status`; `to_json` is the wire form, whose keys,
    order and values the CLI and other tools read (do not rename them)."""

    mountpoint: str
    store: str
    pid: int
    state: str  # "mounted" or "unmounting"
    store_online: bool
    read_only: bool
    #: the flusher's counters (`Flusher.progress`), sent inline at the top level: among
    #: them `uploads` (each in flight: path, size, bytes sent or None) and `recent_events`
    #: (the last failures, conflicts and refusals: time, kind, text)
    upload: dict[str, Any]
    dirty_limit: int
    cache_dir: str
    cache_used: int
    cache_limit: int
    links: list[LinkedStoreStatus]
    pinned: list[str]
    pinned_bytes: int
    #: store requests made so far, by operation
    requests: dict[str, int]
    #: the kernel's requests so far, by kind (counted only at debug log level)
    kernel_requests: dict[str, int] | None = None
    #: inodes the mount holds now, and those dropped since it started (compaction)
    nodes: int | None = None
    nodes_dropped: int | None = None
    #: entries the kernel was asked to forget past --max-entries, since the mount started
    entries_shed: int | None = None
    #: object bytes read from the store, and clean files evicted from the cache, so far
    downloaded_bytes: int = 0
    cache_evictions: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "mountpoint": self.mountpoint,
            "store": self.store,
            "pid": self.pid,
            "state": self.state,
            "store_online": self.store_online,
            "read_only": self.read_only,
            **self.upload,
            "dirty_limit": self.dirty_limit,
            "cache_dir": self.cache_dir,
            "cache_used": self.cache_used,
            "cache_limit": self.cache_limit,
            "links": [{"path": link.path, "store": link.store} for link in self.links],
            "pinned": list(self.pinned),
            "pinned_bytes": self.pinned_bytes,
            "requests": dict(sorted(self.requests.items())),
            "downloaded_bytes": self.downloaded_bytes,
            "cache_evictions": self.cache_evictions,
            **(
                {"kernel_requests": dict(sorted(self.kernel_requests.items()))}
                if self.kernel_requests is not None
                else {}
            ),
            **({"nodes": self.nodes} if self.nodes is not None else {}),
            **({"nodes_dropped": self.nodes_dropped} if self.nodes_dropped is not None else {}),
            **({"entries_shed": self.entries_shed} if self.entries_shed is not None else {}),
        }


class ControlledMount(Protocol):
    """What the commands need of a running mount (the daemon provides it)."""

    def live_fs(self) -> Filesystem:
        """The mounted file system (the control socket serves only while there is one)."""
        ...

    def status(self) -> MountStatus: ...

    def open_link(self, url: str) -> Store:
        """A store for `url` with the mount's own store options as defaults (no I/O;
        ValueError for a bad URL)."""
        ...

    def request_unmount(self, *, sync: bool) -> None:
        """Start unmounting: after the final sync, or at once (what is not uploaded stays
        in the journal)."""
        ...


@dataclass(frozen=True)
class Request:
    """One decoded request: its arguments, and how often progress lines may go out."""

    args: dict[str, Any]
    interval: float

    def text(self, name: str) -> str:
        return str(self.args.get(name, ""))


Handler = Callable[[ControlledMount, Request, Send], Awaitable[None]]


async def dispatch(mount: ControlledMount, request: dict[str, Any], send: Send) -> None:
    """Answer one request (`ControlServer`'s handler)."""
    command = request["cmd"]
    decoded = Request(request, float(request.get("interval", 0.5)))
    handler = COMMANDS.get(command)
    if handler is None:
        await send({"error": f"unknown request {command!r}"})
        return
    await handler(mount, decoded, send)


async def _done(mount: ControlledMount, send: Send, **extra: Any) -> None:
    await send({"done": True, **extra, "status": mount.status().to_json()})


async def send_progress(mount: ControlledMount, send: Send, interval: float) -> None:
    """Upload progress every `interval` seconds, until cancelled (or the client is gone)."""
    fs = mount.live_fs()
    while True:
        await send({"progress": {**fs.flusher.progress(), "store_online": fs.calls.online}})
        await trio.sleep(interval)


async def status(mount: ControlledMount, request: Request, send: Send) -> None:
    await send(mount.status().to_json())


async def flush(mount: ControlledMount, request: Request, send: Send) -> None:
    """Progress lines until nothing is dirty, then the status."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_progress, mount, send, request.interval)
        await mount.live_fs().flusher.sync_all()
        nursery.cancel_scope.cancel()
    await _done(mount, send)


async def link(mount: ControlledMount, request: Request, send: Send) -> None:
    """Link the store at `url` at `path` of the live mount, once it answered one request."""
    path, url = request.text("path"), request.text("url")
    try:
        store = mount.open_link(url)
        await trio.to_thread.run_sync(store.probe)
        await mount.live_fs().link_store(path, store)
    except (ValueError, StoreError) as exc:
        await send({"error": f"cannot link {url} at {path}: {exc}"})
        return
    log.info("linked %s at /%s", url, path.strip("/"))
    await _done(mount, send)


async def unlink_store(mount: ControlledMount, request: Request, send: Send) -> None:
    try:
        store = await mount.live_fs().unlink_store(request.text("path"))
    except ValueError as exc:
        await send({"error": str(exc)})
        return
    await trio.to_thread.run_sync(store.close)
    await _done(mount, send)


async def pin(mount: ControlledMount, request: Request, send: Send) -> None:
    """`fusestore pin`: progress at most every `interval` seconds, then the result."""
    last_sent = -math.inf

    async def report(progress: PinProgress) -> None:
        nonlocal last_sent
        done = progress.files_done == progress.files_total
        if done or trio.current_time() - last_sent >= request.interval:
            last_sent = trio.current_time()
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await send({"progress": progress.as_dict()})  # a client gone: the pin goes on

    try:
        result = await pinning.pin(mount.live_fs(), request.text("path"), report)
    except (OSError, StoreError) as exc:
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        await send({"error": message})
        return
    await _done(mount, send, pin=result.as_dict())


async def unpin(mount: ControlledMount, request: Request, send: Send) -> None:
    try:
        pinning.unpin(mount.live_fs(), request.text("path"))
    except OSError as exc:
        await send({"error": exc.strerror or str(exc)})
        return
    await _done(mount, send)


async def unmount(mount: ControlledMount, request: Request, send: Send) -> None:
    """With `sync` (the default): progress until the daemon exits; without: unmount now."""
    sync = bool(request.args.get("sync", True))
    mount.request_unmount(sync=sync)
    if sync:
        await send_progress(mount, send, request.interval)  # until the daemon exits


#: Every command the control socket answers, by its `cmd`.
COMMANDS: dict[str, Handler] = {
    "status": status,
    "flush": flush,
    "link": link,
    "unlink_store": unlink_store,
    "pin": pin,
    "unpin": unpin,
    "unmount": unmount,
}
