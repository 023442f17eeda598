"""Random workloads on the core, each cut by a "kill" at a random moment (the cache
directory copied as the kernel holds it, the daemon's memory gone), then mounted again
from that copy: a kill alone (no damage) must leave no cache file in lost+found, every
fsynced byte must reach the store, and every object must hold a value its name held (no
conflict copy: there is no other writer). Kernel-free and fast, so that it can try many
moments; the mount-level crash test (tests/mount) tries fewer, on real servers.

FUSESTORE_CORE_CRASH_RUNS sets the number of runs (default 30), FUSESTORE_CORE_CRASH_SEED
the first seed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
from collections.abc import Iterable
from pathlib import Path

import pytest
import trio

from fusestore.cache import inspector
from fusestore.core.filesystem import Filesystem
from fusestore.stores import Store, StoreUnavailable
from fusestore.stores.wrapper import WrappedStore

from .conftest import Env, MiB, ino_of, pattern, read_path
from .test_journal_and_remount import crash_copy

pytestmark = pytest.mark.trio

RUNS = int(os.environ.get("FUSESTORE_CORE_CRASH_RUNS", "30"))
FIRST_SEED = int(os.environ.get("FUSESTORE_CORE_CRASH_SEED", "0"))
NAMES = ["f0", "f1", "f2", "f3"]


class Workload:
    """Random operations on NAMES; `fsynced[name]`: the bytes an fsync of it returned
    with, while no later operation changed or moved it."""

    def __init__(self, fs: Filesystem, rng: random.Random) -> None:
        self.fs = fs
        self.rng = rng
        self.fsynced: dict[str, bytes] = {}
        self.model: dict[str, bytes] = {}
        #: every value each name held at some instant (digests)
        self.history: dict[str, set[str]] = {name: set() for name in NAMES}

    def now(self, name: str, data: bytes) -> None:
        self.model[name] = data
        self.history[name].add(hashlib.sha256(data).hexdigest())

    async def run(self, steps: int) -> None:
        for _ in range(steps):
            await self.step()
            await trio.sleep(self.rng.choice([0, 0, 0.001, 0.01, 0.03]))

    async def step(self) -> None:
        rng, fs = self.rng, self.fs
        name = rng.choice(NAMES)
        kind = rng.choice(["write", "write", "append", "rewrite", "rename", "unlink", "read"])
        present = name in self.model
        try:
            if kind == "rename" and present:
                target = rng.choice([n for n in NAMES if n != name])
                self.fsynced.pop(name, None)
                self.fsynced.pop(target, None)
                await fs.rename(1, name, 1, target, 0)
                self.now(target, self.model.pop(name))
            elif kind == "unlink" and present:
                self.fsynced.pop(name, None)
                await fs.unlink(1, name)
                del self.model[name]
            elif kind == "read" and present:
                assert await read_path(fs, name) == self.model[name]
            elif kind in ("write", "append", "rewrite") or not present:
                await self.write(name, kind if present else "rewrite")
        except OSError as exc:
            assert exc.errno == errno.ENOENT, exc

    async def write(self, name: str, kind: str) -> None:
        rng, fs = self.rng, self.fs
        size = rng.choice([100, 5000, 300_000, 2 * MiB + 7])
        data = rng.randbytes(size)
        old = self.model.get(name, b"")
        self.fsynced.pop(name, None)
        if name not in self.model:
            fh, _ = await fs.create(1, name, 0o644, os.O_WRONLY, 0, 0)
            self.now(name, b"")
            new = data
            await fs.write(fh, 0, data)
        elif kind == "rewrite":
            fh, _ = await fs.open(await ino_of(fs, name), os.O_WRONLY | os.O_TRUNC)
            self.now(name, b"")
            new = data
            await fs.write(fh, 0, data)
        elif kind == "append":
            fh, _ = await fs.open(await ino_of(fs, name), os.O_WRONLY)
            new = old + data
            await fs.write(fh, len(old), data)
        else:
            fh, _ = await fs.open(await ino_of(fs, name), os.O_WRONLY)
            at = rng.randrange(0, max(1, len(old)))
            new = old[:at] + data + old[at + len(data) :]
            await fs.write(fh, at, data)
        self.now(name, new)
        try:
            if rng.random() < 0.5:
                await fs.fsync(fh)
                self.fsynced[name] = new
        finally:
            fs.flush(fh)
            fs.release(fh)


class Mortal(WrappedStore):
    """The store as a daemon sees it: once `dead`, no write of its reaches the store."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.dead = False

    def check_write(self, keys: Iterable[str]) -> None:
        if self.dead:
            raise StoreUnavailable("test: the daemon is dead")


@pytest.mark.timeout(60 + 10 * RUNS)
@pytest.mark.parametrize("seed", range(FIRST_SEED, FIRST_SEED + RUNS))
async def test_a_kill_at_any_moment_leaves_nothing_in_lost_and_found(
    env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture, seed: int
) -> None:
    rng = random.Random(seed)
    for name in NAMES[:2]:
        env.put(name, pattern(rng.choice([3000, 3 * MiB + 5]), seed=seed))
    workload: Workload
    mortal = Mortal(env.store)
    async with env.mount(store=mortal, writeback_delay=rng.choice([0.0, 0.01, 0.05]), sync=False) as fs:
        workload = Workload(fs, rng)
        for name in NAMES[:2]:
            workload.now(name, env.objects()[name])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(workload.run, 60)
            await trio.sleep(rng.uniform(0.0, 0.4))
            crash_copy(env, tmp_path / "after-kill")  # nothing of the trio loop runs meanwhile
            # The daemon is dead from here on: the requests it sent still land, but it
            # sends no new one while its tasks (and the threads they started) wind down.
            mortal.dead = True
            nursery.cancel_scope.cancel()
    async with env.mount():
        pass
    lost = inspector.lost_entries(env.cache_dir)
    assert lost == [], caplog.text
    stored = env.objects()
    for name, data in workload.fsynced.items():
        assert stored.get(name) == data, f"{name}: fsynced bytes not in the store"
    for name, data in stored.items():
        digest = hashlib.sha256(data).hexdigest()
        assert digest in workload.history.get(name, set()), f"{name}: {len(data)} bytes never written there"
