"""Starting a mount from checked options: in the foreground, or detached once it is ready.

`--background` forks before anything opens a socket or a thread (boto3 and trio do both
later): the child becomes the daemon, and the parent waits on a pipe for one word — the
mount is ready, or the one-line reason it is not — and exits 0 or 2 accordingly. So
`mount -t fusestore`, fstab and scripts learn the outcome from the exit code, and no
half-started daemon is left behind.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..mountoptions import DAEMON, SETTINGS, STORE, routed
from ..stores import InvalidStoreURL, Store, StoreError, open_store
from ..stores.links import LinkedStores, open_linked, parse_link
from .logs import detach_output
from .measuredstore import MeasuredStore

if TYPE_CHECKING:
    from .metrics import MountMetrics

log = logging.getLogger(__name__)

#: Seconds the parent of a background mount waits for it to be ready.
READY_TIMEOUT = 120.0


@dataclass
class MountRequest:
    url: str
    mountpoint: str
    options: dict[str, Any]  # the mount command's options, by parameter name
    #: the store driver's own options given by `-o` or the config file (`path_style`, ...)
    store_options: dict[str, Any] = field(default_factory=dict)


def error(message: str) -> int:
    print(f"fusestore: error: {message}", file=sys.stderr, flush=True)
    return 2


def start_mount(request: MountRequest) -> int:
    """Run the mount; returns the exit code (0 synced, 1 data left for the next mount, 2 bad setup)."""
    if not request.options.get("background"):
        return run_daemon(request)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:  # the parent: wait for the word from the child
        os.close(write_end)
        return _wait_ready(read_end, pid)
    os.close(read_end)
    os.setsid()  # not killed with the terminal or the mount(8) that started it
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.close(devnull)

    def ready() -> None:
        os.write(write_end, b"ok\n")
        os.close(write_end)
        detach_output()

    code = 2
    try:
        code = run_daemon(request, on_ready=ready, report=write_end)
    except BaseException:
        log.exception("the daemon failed")
    finally:
        os._exit(code)


def _wait_ready(read_end: int, pid: int) -> int:
    with os.fdopen(read_end, "rb") as pipe:
        word = pipe.read()  # until the child writes "ok" and closes, or exits
    if word.startswith(b"ok"):
        return 0
    _, status = os.waitpid(pid, 0)
    if word:
        print(word.decode(errors="replace").rstrip("\n"), file=sys.stderr, flush=True)
    code = os.waitstatus_to_exitcode(status)
    return code if code > 0 else 2


def link_stores(store: Store, specs: Iterable[str], defaults: dict[str, Any]) -> LinkedStores:
    """The mount's store with the stores of `--link PATH=URL` linked in, each checked
    with one request (InvalidStoreURL naming the link that fails)."""
    linked = LinkedStores(store)
    for spec in specs:
        try:
            path, url = parse_link(spec)
            other = open_linked(url, defaults, store.scheme)
            other.probe()
            linked.add(path, other)
        except (ValueError, StoreError) as exc:
            raise InvalidStoreURL(f"--link {spec}: {exc}") from None
    return linked


def run_daemon(request: MountRequest, on_ready: Any = None, report: int | None = None) -> int:
    """Open the store, build the daemon, serve until unmounted (blocks)."""
    from ..core import MountSettings
    from .daemon import Daemon, DaemonOptions, SetupError

    o = request.options
    settings = MountSettings(**routed(o, SETTINGS))  # uid, gid unset: the user's own
    store_options = {name: value for name, value in routed(o, STORE).items() if value}
    metrics = None
    try:
        store = open_store(request.url, **request.store_options, **store_options)
        if not store.writable and not o.get("read_only"):
            # A store that refuses every write (read_only, or anonymous) mounts read-only:
            # changes fail at once with EROFS instead of at upload time.
            log.info("%s refuses writes: mounting read-only", store.to_url())
            o = {**o, "read_only": True}
        if o.get("faults"):
            from ..stores.faulty import FaultyStore

            store = FaultyStore(store, o["faults"])
            log.warning("injecting faults into every store call: %s", o["faults"])
        if o.get("metrics_addr"):
            metrics = serve_metrics(o["metrics_addr"])
            store = MeasuredStore(store, metrics.store_call)
        link_defaults = {name: value for name, value in store_options.items() if name != "key_prefix"}
        store = link_stores(store, o.get("link") or (), link_defaults)
        daemon = Daemon(
            store,
            request.mountpoint,
            settings,
            o.get("cache_dir"),
            DaemonOptions(
                **routed(o, DAEMON),
                on_ready=on_ready,
                link_defaults=link_defaults,
                metrics=metrics,
            ),
        )
        return daemon.run()
    except (InvalidStoreURL, StoreError, SetupError, MetricsAddressError) as exc:
        if report is not None:
            os.write(report, f"fusestore: error: {exc}\n".encode())
            return 2
        return error(str(exc))
    finally:
        if metrics is not None:
            metrics.close()


class MetricsAddressError(Exception):
    """`--metrics-addr` names an address this daemon cannot listen on."""


def serve_metrics(address: tuple[str, int]) -> MountMetrics:
    """A mount's metrics, served at `address` from now on (before anything is mounted, so
    an address in use stops the mount with one line: MetricsAddressError)."""
    from .metrics import MountMetrics  # prometheus_client: only for the mounts that serve it

    host, port = address
    metrics = MountMetrics()
    try:
        metrics.serve(host, port)
    except OSError as exc:
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise MetricsAddressError(f"--metrics-addr {shown}: {exc.strerror or exc}") from None
    return metrics
