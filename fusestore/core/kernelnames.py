"""`KernelNames`: names the kernel must forget, so that its next lookup asks us again.

The FUSE layer hands in `forget` (`pyfuse3.invalidate_entry`: blocking, and the kernel
may wait for the very request that found the change, so it never runs inline). Without
it (no kernel, as in tests) nothing is told.
"""

from __future__ import annotations

from collections.abc import Callable

import trio


class KernelNames:
    """Tells the kernel to drop (directory inode, name) entries, one call at a time.

    `forget_soon` is synchronous and cheap; `forget_now` and `forget_within` yield."""

    def __init__(self) -> None:
        #: makes the kernel forget a name in a directory (inode number, name), so that its
        #: next lookup finds the node now there (set by the FUSE layer; blocking, so it is
        #: called in a worker thread)
        self.forget: Callable[[int, str], None] | None = None
        #: where the kernel is told in the background (set while the mount serves)
        self.nursery: trio.Nursery | None = None
        self._limiter = trio.CapacityLimiter(1)
        # Shedding asks for many names at a time: it must not hold up the forgets above.
        self._bulk_limiter = trio.CapacityLimiter(1)

    async def forget_now(self, names: list[tuple[int, str]], done: trio.Event | None = None) -> None:
        """Worker thread: every `forget` call, in one thread run (see `_forget`). Sets
        `done` after the last."""
        forget = self.forget
        assert forget is not None
        await self._forget(forget, names, self._limiter)
        if done is not None:
            done.set()

    async def forget_all(self, names: list[tuple[int, str]]) -> None:
        """`forget_now` for the many names of a shedding round, in a lane of its own;
        nothing while no kernel is told."""
        if self.forget is not None:
            await self._forget(self.forget, names, self._bulk_limiter)

    @staticmethod
    async def _forget(
        forget: Callable[[int, str], None], names: list[tuple[int, str]], limiter: trio.CapacityLimiter
    ) -> None:
        """Every call in one thread run: a thread hop per name would cost more than the calls."""

        def forget_each() -> None:
            for parent_ino, name in names:
                forget(parent_ino, name)

        await trio.to_thread.run_sync(forget_each, limiter=limiter)

    def forget_soon(self, names: list[tuple[int, str]]) -> None:
        """`forget_now` in the background (the request that found the change may hold
        the directory's lock the kernel needs); nothing while not serving."""
        if names and self.forget is not None and self.nursery is not None:
            self.nursery.start_soon(self.forget_now, names)

    async def forget_within(self, names: list[tuple[int, str]], timeout: float) -> None:
        """`forget_now` in the background, waited for up to `timeout` seconds (the kernel
        could be waiting for the request that calls this). Worker thread: see `forget_now`."""
        if self.nursery is None:  # None: not serving, no kernel to tell
            return
        forgotten = trio.Event()
        self.nursery.start_soon(self.forget_now, names, forgotten)
        with trio.move_on_after(timeout):
            await forgotten.wait()
