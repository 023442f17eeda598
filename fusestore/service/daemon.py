"""The mount's lifecycle: check the mountpoint → open store and cache → replay the journal →
mount → serve and flush → on unmount or signal: sync everything, then unlink the FUSE session.

Exit codes: 0 when the store holds everything, 1 when data is left in the journal (the
store was unreachable within `unmount_timeout`; it goes up at the next mount) or kept in
the cache's lost+found, 2 for a bad setup (see `SetupError`), a damaged journal included.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyfuse3
import trio

from ..cache import CacheDir, CacheLocked
from ..cache.recovery import JournalDamaged
from ..core import MountSettings
from ..core.filesystem import Filesystem
from ..private import UnsafeDirectory
from ..stores import ListPage, Store, StoreError, StoreUnavailable
from ..stores.links import Link, open_linked
from . import control_commands, logs, mounts, sdnotify
from .control import ControlServer
from .control_commands import LinkedStoreStatus, MountStatus
from .fuse_ops import FuseOperations
from .sampling import Sample, sample_loop

if TYPE_CHECKING:
    from .metrics import MountMetrics

log = logging.getLogger(__name__)


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit, as servers do:
    every file a program holds open on the mount holds a cache file open here, and a
    service's soft limit is often 1024. Returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open-file limit from %d: %s", soft, exc)
        return soft
    return wanted


#: Kernel read-ahead of the mount: 1 MiB requests for sequential reads.
READ_AHEAD_KIB = 1024
#: Seconds the read-ahead waits for the kernel's INIT before it is set anyway.
INIT_WAIT = 5.0
#: Seconds between two sums of the cache's use for the metrics (a pass over every content).
CACHE_USE_EVERY = 10.0
#: Tries of the store before mounting (0.25 s, 0.5 s, 1 s, 2 s apart).
PROBE_ATTEMPTS = 5


class SetupError(Exception):
    """The mount cannot start; the message is one line saying why and what to do."""


@dataclass
class DaemonOptions:
    unmount_timeout: float = 300.0
    allow_other: bool = False
    #: FUSE's allow_root: root may use the mount too (not with allow_other)
    allow_root: bool = False
    read_only: bool = False
    eviction_interval: float = 2.0
    #: called once the mount is ready (`--background` tells the waiting parent)
    on_ready: Callable[[], None] | None = None
    #: the mount's own store options (endpoint, region, profile): a linked store's defaults
    link_defaults: dict[str, Any] = field(default_factory=dict)
    #: the mount's metrics (`--metrics-addr`): kernel requests timed, its state sampled
    metrics: MountMetrics | None = None


class Daemon:
    """One mount of one store. `run` blocks until the mount ends and returns the exit code."""

    def __init__(
        self,
        store: Store,
        mountpoint: str,
        settings: MountSettings,
        cache_dir: str | None,
        options: DaemonOptions | None = None,
    ) -> None:
        self.store = store
        self.mountpoint_arg = mountpoint
        self.settings = settings
        self.cache = CacheDir.for_store(store.to_url(), cache_dir)
        self.options = options or DaemonOptions()
        self.fs: Filesystem | None = None
        self.operations: FuseOperations | None = None
        self._kernel_unmounted = False
        self._sync_scope: trio.CancelScope | None = None
        self._stop: trio.Event | None = None
        self._syncing = False
        self._skip_sync = False  # unmount asked for without waiting for the store
        self.mountpoint = ""
        self._root_page: ListPage | None = None
        #: when the cache's use was last summed for the metrics, and the sum
        self._cache_use: tuple[float, int] | None = None

    def _probe(self) -> None:
        """Check the store before mounting; a store that fails only now and then (5xx,
        throttling) gets a few tries within a few seconds."""
        for attempt in range(PROBE_ATTEMPTS):
            try:
                # A full first page of the root: the root's listing too when it fits (the
                # first `ls` or lookup after mounting then costs no request).
                self._root_page = self.store.list("", "/", None)
                return
            except StoreUnavailable as exc:
                if attempt == PROBE_ATTEMPTS - 1:
                    raise SetupError(f"{exc}; check that the store is up and the endpoint is right") from None
                time.sleep(0.25 * 2**attempt)
            except StoreError as exc:
                raise SetupError(str(exc)) from None
            except Exception as exc:
                # A driver's bug (or an SDK's surprise): one line for the user, the
                # traceback in the log.
                log.debug("the store's first listing failed", exc_info=True)
                raise SetupError(
                    f"the store could not be listed ({type(exc).__name__}: {exc}); "
                    "--log-level debug logs where it failed"
                ) from None

    def _setup(self) -> tuple[Filesystem, str]:
        try:
            # Before anything is mounted: where the control socket goes must be ours alone.
            mounts.checked_runtime_dir(create=True)
        except UnsafeDirectory as exc:
            raise SetupError(str(exc)) from None
        except OSError as exc:
            raise SetupError(f"runtime directory {mounts.runtime_dir()}: {exc.strerror}") from None
        # The mountpoint before the store: its check is local and instant, while a store
        # that does not answer is tried for seconds, and a mistake in the path should be
        # named as itself whatever else is wrong (no credentials, a dead endpoint).
        try:
            mountpoint = mounts.prepare_mountpoint(self.mountpoint_arg)
        except mounts.MountpointError as exc:
            raise SetupError(str(exc)) from None
        self._probe()
        try:
            self.cache.open()
        except (CacheLocked, PermissionError) as exc:
            raise SetupError(str(exc)) from None
        except OSError as exc:
            raise SetupError(f"cache directory {self.cache.path}: {exc.strerror}") from None
        try:
            fs = Filesystem(self.store, self.cache, self.settings)
        except JournalDamaged as exc:
            self.cache.close()
            raise SetupError(str(exc)) from None
        pending = fs.replay()
        if pending:
            log.warning("resuming %d item(s) of work left by the previous mount", pending)
        page = self._root_page
        if page is not None and page.next_token is None:
            fs.listings.seed_listing(fs.ns.root, page.objects, page.prefixes)
        fs.account_for_files()
        self._warn_lost(fs, "")
        return fs, mountpoint

    def _warn_lost(self, fs: Filesystem, when: str) -> bool:
        """Say (on stderr, whoever started the daemon sees it) what lost+found holds."""
        lost = fs.lost_found.entries()
        if lost:
            print(
                f"fusestore: warning: {when}{len(lost)} file(s) that may hold changes are NOT in the store: "
                f"they are kept in {fs.lost_found.path}; `fusestore cache show {self.cache.path}` lists "
                f"them, `fusestore cache recover {self.cache.path} DIR` copies them into DIR",
                file=sys.stderr,
                flush=True,
            )
        return bool(lost)

    def run(self) -> int:
        # Cache files are private whatever the caller's umask (files the kernel creates on
        # the mount get the modes it asks for; this umask does not touch them).
        os.umask(0o077)
        raise_open_file_limit()
        fs, mountpoint = self._setup()
        self.fs = fs
        options = set(pyfuse3.default_options)
        options |= {f"fsname={self.store.to_url()}", "subtype=fusestore", "default_permissions"}
        options.add("noatime")  # what the mount does (reads never change an atime): `mount` says so
        if self.options.allow_other:
            options.add("allow_other")
        if self.options.allow_root:
            options.add("allow_root")  # libfuse lets in the mounting user and root alone
        if self.options.read_only:
            options.add("ro")  # the kernel refuses every change with EROFS
        metrics = self.options.metrics
        self.operations = FuseOperations(fs, metrics.kernel_request if metrics is not None else None)
        try:
            pyfuse3.init(self.operations, mountpoint, options)
        except RuntimeError as exc:
            fs.close()
            self.cache.close()
            raise SetupError(f"cannot mount on {mountpoint}: {exc}") from None
        self.mountpoint = mountpoint
        if metrics is not None:
            metrics.mountpoint, metrics.store = mountpoint, self.store.to_url()
        mounts.register(
            mountpoint,
            {
                "pid": os.getpid(),
                "uid": os.geteuid(),
                "store": self.store.to_url(),
                "cache": str(self.cache.path),
                "control": str(mounts.control_path(mountpoint)),
            },
        )
        print(
            f"fusestore: {self.store.to_url()} mounted on {mountpoint} (cache {self.cache.path})",
            file=sys.stderr,
            flush=True,
        )
        code = 1
        try:
            code = trio.run(self._serve, fs, mountpoint)
            if self._warn_lost(fs, "unmounted, but ") and code == 0:
                code = 1  # 0 only when the store holds every change
        finally:
            pyfuse3.close(unmount=not self._kernel_unmounted)
            fs.close()
            self.cache.close()
            entry = mounts.registered(mountpoint) or {}
            mounts.register(mountpoint, {**entry, "exit_code": code})
        return code

    async def _serve(self, fs: Filesystem, mountpoint: str) -> int:
        async with trio.open_nursery() as nursery:
            await nursery.start(fs.serve)
            nursery.start_soon(fs.persister.evict_loop, self.options.eviction_interval)
            if self.options.metrics is not None:
                nursery.start_soon(sample_loop, self.options.metrics, self._sample)
            stop = self._stop = trio.Event()
            kernel_done = trio.Event()
            nursery.start_soon(self._watch_signals, stop)
            control = ControlServer(mounts.control_path(mountpoint), self._control)
            try:
                await nursery.start(control.serve)
            except OSError as exc:  # status and flush are lost, the mount is not
                log.warning("no control socket (status, flush): %s", exc)
            if self.options.on_ready is not None:
                self.options.on_ready()
            sdnotify.notify("READY=1", f"STATUS=serving {self.store.to_url()} on {mountpoint}")

            async def serve_kernel() -> None:
                await pyfuse3.main()
                kernel_done.set()
                stop.set()

            nursery.start_soon(serve_kernel)
            nursery.start_soon(self._raise_read_ahead, mountpoint)
            await stop.wait()
            sdnotify.notify("STOPPING=1")
            if kernel_done.is_set():
                # The kernel unmounted us (fusermount3 -u, umount): the cache still has it all.
                self._kernel_unmounted = True
                synced = await self._sync(fs)
            else:
                # A signal: sync while still mounted, then unlink the session.
                synced = await self._sync(fs)
                pyfuse3.terminate()
                await kernel_done.wait()
            nursery.cancel_scope.cancel()
        return 0 if synced else 1

    async def _sync(self, fs: Filesystem) -> bool:
        self._syncing = True
        count, size = fs.flusher.pending()
        if self._skip_sync:
            if count:
                log.warning(
                    "unmounting without syncing: %d item(s), %.1f MiB kept in %s for the next mount",
                    count,
                    size / 2**20,
                    self.cache.path,
                )
            return not count and not fs.flusher.parked.count()
        if count:
            log.warning("unmounting: uploading %d pending item(s), %.1f MiB", count, size / 2**20)
        started = time.monotonic()
        with trio.move_on_after(self.options.unmount_timeout) as self._sync_scope:
            async with trio.open_nursery() as reporting:
                reporting.start_soon(self._report_sync, fs)
                await fs.flusher.sync_all()
                reporting.cancel_scope.cancel()
            refused = fs.flusher.parked.lines()
            if refused:
                # Not waited for (the store would refuse them again): said, and exit 1.
                for line in refused:
                    print(
                        f"fusestore: error: not in the store, its name refused: {line}; kept in "
                        f"{self.cache.path} until renamed (fusestore cache show lists it)",
                        file=sys.stderr,
                        flush=True,
                    )
                return False
            if count:
                log.warning("all changes are in the store (%.1fs)", time.monotonic() - started)
            return True
        count, size = fs.flusher.pending()
        print(
            f"fusestore: error: the store did not take {count} pending item(s) ({size / 2**20:.1f} MiB) "
            f"within {self.options.unmount_timeout:g}s; they are kept in {self.cache.path} and go up at "
            "the next mount of this store",
            file=sys.stderr,
            flush=True,
        )
        return False

    async def _raise_read_ahead(self, mountpoint: str) -> None:
        """Set the mount's read-ahead once the kernel has the daemon's INIT answer (which
        caps it at the kernel default), before the next request is answered, so that the
        first file opened has it (the kernel fixes a file's read-ahead at its open); best
        effort: it needs root. Inline: a line of the mount table and a few bytes to sysfs."""
        assert self.operations is not None
        with trio.move_on_after(INIT_WAIT):
            await self.operations.kernel_ready.wait()
        if not mounts.set_read_ahead(mountpoint, READ_AHEAD_KIB):
            log.debug("read-ahead of the mount left at the kernel's default (not root?)")

    async def _report_sync(self, fs: Filesystem) -> None:
        """Tell systemd what is left while the final sync runs (shown by systemctl status)."""
        while True:
            count, size = fs.flusher.pending()
            sdnotify.notify(f"STATUS=unmounting: uploading {count} item(s), {size / 2**20:.1f} MiB left")
            await trio.sleep(1.0)

    # -- the control channel ---------------------------------------------------------------

    def live_fs(self) -> Filesystem:
        assert self.fs is not None
        return self.fs

    def status(self) -> MountStatus:
        """The mount's state for `fusestore status` (no I/O: safe to call often)."""
        fs = self.live_fs()
        requests = self.store.request_counts() or dict(fs.calls.counts)
        return MountStatus(
            mountpoint=self.mountpoint,
            store=self.store.to_url(),
            pid=os.getpid(),
            state="unmounting" if self._syncing else "mounted",
            store_online=fs.calls.online,
            read_only=self.options.read_only,
            upload=fs.flusher.progress(),
            dirty_limit=self.settings.dirty_limit,
            cache_dir=str(self.cache.path),
            cache_used=fs.contents.used,
            cache_limit=self.settings.cache_size,
            links=[LinkedStoreStatus("/" + link.path, link.store.to_url()) for link in self._links()],
            pinned=["/" + key for key in fs.pins],
            pinned_bytes=fs.contents.kept_bytes,
            requests=requests,
            kernel_requests=dict(self.operations.requests)
            if self.operations is not None and self.operations.requests is not None
            else None,
            nodes=len(fs.ns.nodes),
            nodes_dropped=fs.compaction.dropped,
            entries_shed=fs.compaction.shed_count,
            downloaded_bytes=fs.fetcher.downloaded_bytes,
            cache_evictions=fs.budgets.evictions,
        )

    def _sample(self) -> Sample:
        """The numbers metrics export, on the trio thread. Cheap (see `Flusher.gauges`),
        but for the cache's use: a pass over every content (as `status` makes), so taken
        afresh only every `CACHE_USE_EVERY` seconds."""
        fs = self.live_fs()
        now = time.monotonic()
        if self._cache_use is None or now - self._cache_use[0] >= CACHE_USE_EVERY:
            self._cache_use = (now, fs.contents.used)
        flusher = fs.flusher
        items, oldest = flusher.gauges()
        return Sample(
            dirty_items=items,
            dirty_bytes=max(0, fs.budgets.dirty_bytes()),
            oldest_dirty_since=oldest,
            dirty_limit=self.settings.dirty_limit,
            uploads_in_flight=len(flusher.running),
            cache_used=self._cache_use[1],
            cache_limit=self.settings.cache_size,
            evictions=fs.budgets.evictions,
            evicted_bytes=fs.budgets.evicted_bytes,
            uploaded_bytes=flusher.uploaded_bytes,
            downloaded_bytes=fs.fetcher.downloaded_bytes,
            conflicts=flusher.conflicts,
            failed_attempts=flusher.failed_attempts,
            not_uploadable=flusher.parked.count(),
            store_online=fs.calls.online,
            unmounting=self._syncing,
            nodes=len(fs.ns.nodes),
        )

    def open_link(self, url: str) -> Store:
        linked = self.live_fs().linked.stores
        main = linked.main if linked is not None else self.store
        return open_linked(url, self.options.link_defaults, main.scheme)

    def request_unmount(self, *, sync: bool) -> None:
        assert self._stop is not None
        if not sync:
            log.warning("unmount without waiting for the store was asked for")
            self._skip_sync = True
            self._stop.set()
            if self._sync_scope is not None:
                self._sync_scope.cancel()
        elif not self._stop.is_set():
            log.warning("unmount asked for: syncing, then unmounting")
            self._stop.set()

    async def _control(
        self, request: dict[str, Any], send: Callable[[dict[str, Any]], Awaitable[None]]
    ) -> None:
        await control_commands.dispatch(self, request, send)

    def _links(self) -> list[Link]:
        fs = self.fs
        linked = None if fs is None else fs.linked.stores
        return [] if linked is None else list(linked.links.values())

    async def _watch_signals(self, stop_requested: trio.Event) -> None:
        # SIGHUP reopens a --log-file (logrotate's postrotate sends it); without one it
        # keeps its default action, as before.
        hangup = (signal.SIGHUP,) if logs.logging_to_file() else ()
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, *hangup) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    logs.reopen_log_file()
                    log.info("SIGHUP: the log file was opened anew")
                elif not stop_requested.is_set():
                    log.warning("%s: syncing, then unmounting", signal.Signals(signum).name)
                    stop_requested.set()
                elif self._sync_scope is not None:
                    log.warning(
                        "%s again: unmounting without waiting for the store", signal.Signals(signum).name
                    )
                    self._sync_scope.cancel()
