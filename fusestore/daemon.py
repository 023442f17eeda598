"""The mount's lifecycle: open store and cache → replay the journal → mount → serve and
flush → on unmount or signal: sync everything, then unlink the FUSE session.

Exit codes: 0 when the store holds everything, 1 when data is left in the journal (the
store was unreachable within `unmount_timeout`; it goes up at the next mount), 2 for a
bad setup (see `SetupError`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from dataclasses import dataclass

import pyfuse3
import trio

from . import mounts
from .cache import CacheDir, CacheLocked, ContentStore
from .core import Filesystem, MountSettings
from .fuse_ops import FuseOperations
from .stores import Store, StoreError, StoreUnavailable

log = logging.getLogger(__name__)


#: Tries of the store before mounting (0.25 s, 0.5 s, 1 s, 2 s apart).
PROBE_ATTEMPTS = 5


class SetupError(Exception):
    """The mount cannot start; the message is one line saying why and what to do."""


@dataclass
class DaemonOptions:
    unmount_timeout: float = 300.0
    allow_other: bool = False
    eviction_interval: float = 2.0


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
        self._kernel_unmounted = False
        self._sync_scope: trio.CancelScope | None = None

    def _probe(self) -> None:
        """Check the store before mounting; a store that fails only now and then (5xx,
        throttling) gets a few tries within a few seconds."""
        for attempt in range(PROBE_ATTEMPTS):
            try:
                self.store.probe()
                return
            except StoreUnavailable as exc:
                if attempt == PROBE_ATTEMPTS - 1:
                    raise SetupError(f"{exc}; check that the store is up and the endpoint is right") from None
                time.sleep(0.25 * 2**attempt)
            except StoreError as exc:
                raise SetupError(str(exc)) from None

    def _setup(self) -> tuple[Filesystem, str]:
        self._probe()
        try:
            mountpoint = mounts.prepare_mountpoint(self.mountpoint_arg)
        except mounts.MountpointError as exc:
            raise SetupError(str(exc)) from None
        try:
            self.cache.open()
        except (CacheLocked, PermissionError) as exc:
            raise SetupError(str(exc)) from None
        except OSError as exc:
            raise SetupError(f"cache directory {self.cache.path}: {exc.strerror}") from None
        fs = Filesystem(self.store, self.cache, self.settings)
        pending = fs.replay()
        if pending:
            log.warning("resuming %d item(s) of work left by the previous mount", pending)
        ContentStore.remove_orphans(fs.contents, fs.dirty_content_ids())
        return fs, mountpoint

    def run(self) -> int:
        # Cache files are private whatever the caller's umask (files the kernel creates on
        # the mount get the modes it asks for; this umask does not touch them).
        os.umask(0o077)
        fs, mountpoint = self._setup()
        self.fs = fs
        options = set(pyfuse3.default_options)
        options |= {f"fsname={self.store.to_url()}", "subtype=fusestore", "default_permissions"}
        if self.options.allow_other:
            options.add("allow_other")
        try:
            pyfuse3.init(FuseOperations(fs), mountpoint, options)
        except RuntimeError as exc:
            fs.close()
            self.cache.close()
            raise SetupError(f"cannot mount on {mountpoint}: {exc}") from None
        mounts.register(
            mountpoint, {"pid": os.getpid(), "store": self.store.to_url(), "cache": str(self.cache.path)}
        )
        print(
            f"fusestore: {self.store.to_url()} mounted on {mountpoint} (cache {self.cache.path})",
            file=sys.stderr,
            flush=True,
        )
        code = 1
        try:
            code = trio.run(self._serve, fs, mountpoint)
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
            nursery.start_soon(self._evict_loop, fs)
            stop = trio.Event()
            kernel_done = trio.Event()
            nursery.start_soon(self._watch_signals, stop)

            async def serve_kernel() -> None:
                await pyfuse3.main()
                kernel_done.set()
                stop.set()

            nursery.start_soon(serve_kernel)
            await stop.wait()
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
        count, size = fs.flusher.pending()
        if count:
            log.warning("unmounting: uploading %d pending item(s), %.1f MiB", count, size / 2**20)
        started = time.monotonic()
        with trio.move_on_after(self.options.unmount_timeout) as self._sync_scope:
            await fs.flusher.sync_all()
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

    async def _watch_signals(self, stop_requested: trio.Event) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if not stop_requested.is_set():
                    log.warning("%s: syncing, then unmounting", signal.Signals(signum).name)
                    stop_requested.set()
                elif self._sync_scope is not None:
                    log.warning(
                        "%s again: unmounting without waiting for the store", signal.Signals(signum).name
                    )
                    self._sync_scope.cancel()

    async def _evict_loop(self, fs: Filesystem) -> None:
        limiter = trio.CapacityLimiter(1)
        while True:
            await trio.sleep(self.options.eviction_interval)
            victims = fs.contents.evict_candidates()
            if victims:
                await trio.to_thread.run_sync(ContentStore.remove_files, victims, limiter=limiter)
