"""Months of uptime: a steady mix of small-file work must not grow the daemon's memory or
its cache without bound.

The mix (the bench's soak, bench/soak.py, run through the core): small files written,
rewritten in place, saved atomically (a temporary file renamed over the old one),
renamed, deleted and read back, and lines appended to a log. The kernel is modelled as
forgetting every inode after each operation (what it does for removed names; the worst
case for everything else). After each round the flusher is synced and the cache made
durable, as the daemon does every few seconds.
"""

from __future__ import annotations

import gc
import os
import random
import tracemalloc
from pathlib import Path

import diskcache
import pytest
from trio.testing import MockClock

from fusestore.cache import keydisk
from fusestore.core.filesystem import Filesystem

from .conftest import Env, ino_of, mkdir, read_path, write_file

KiB = 1024
DIRS = 4
FILES = 40
OPS_PER_ROUND = 40


class Mix:
    """The soak's operations on a mounted `Filesystem`, and what every file should hold."""

    def __init__(self, env: Env, fs: Filesystem, seed: int) -> None:
        self.env = env
        self.fs = fs
        self.rng = random.Random(seed)
        self.files: dict[str, bytes] = {}
        self.serial = 0
        self.log = b""

    async def setup(self) -> None:
        for d in range(DIRS):
            await mkdir(self.fs, f"d{d}")
        await write_file(self.fs, "app.log", b"")
        self.forget_all()

    def forget_all(self) -> None:
        """The kernel lets go of every inode it was told of."""
        for ino, node in list(self.fs.ns.nodes.items()):
            if ino != 1 and node.lookups:
                self.fs.forget(ino, node.lookups)

    def _new_name(self) -> str:
        self.serial += 1
        return f"d{self.rng.randrange(DIRS)}/f{self.serial}"

    def _data(self) -> bytes:
        return self.rng.randbytes(self.rng.randrange(4 * KiB, 32 * KiB))

    def _pick(self) -> str:
        return self.rng.choice(sorted(self.files))

    async def _rewrite(self, path: str, data: bytes, flags: int = os.O_WRONLY | os.O_TRUNC) -> None:
        fh, _ = await self.fs.open(await ino_of(self.fs, path), flags)
        assert await self.fs.write(fh, 0, data) == len(data)
        self.fs.release(fh)

    async def step(self) -> None:
        fs = self.fs
        kind = self.rng.choices(
            ["write", "rewrite", "save", "rename", "delete", "read", "append"], [5, 2, 2, 3, 2, 4, 3]
        )[0]
        if kind == "write" and len(self.files) >= FILES:
            kind = "delete"
        if kind != "write" and kind != "append" and not self.files:
            kind = "write"
        if kind == "write":
            path, data = self._new_name(), self._data()
            await write_file(fs, path, data)
            self.files[path] = data
        elif kind == "rewrite":
            path, data = self._pick(), self._data()
            await self._rewrite(path, data)
            self.files[path] = data
        elif kind == "save":
            path, data = self._pick(), self._data()
            await write_file(fs, path + ".tmp", data)
            parent, _, name = path.rpartition("/")
            dir_ino = await ino_of(fs, parent)
            await fs.rename(dir_ino, name + ".tmp", dir_ino, name, 0)
            self.files[path] = data
        elif kind == "rename":
            path, new = self._pick(), self._new_name()
            old_parent, _, old_name = path.rpartition("/")
            new_parent, _, new_name = new.rpartition("/")
            await fs.rename(await ino_of(fs, old_parent), old_name, await ino_of(fs, new_parent), new_name, 0)
            self.files[new] = self.files.pop(path)
        elif kind == "delete":
            path = self._pick()
            parent, _, name = path.rpartition("/")
            await fs.unlink(await ino_of(fs, parent), name)
            del self.files[path]
        elif kind == "read":
            path = self._pick()
            assert await read_path(fs, path) == self.files[path]
        else:
            line = f"line {self.serial} {'x' * self.rng.randrange(40, 200)}\n".encode()
            fh, _ = await fs.open(await ino_of(fs, "app.log"), os.O_WRONLY | os.O_APPEND)
            assert await fs.write(fh, len(self.log), line) == len(line)
            fs.release(fh)
            self.log += line
        self.forget_all()

    async def round(self) -> None:
        """One round of the mix, then what the daemon does every few seconds."""
        for _ in range(OPS_PER_ROUND):
            await self.step()
        await self.fs.flusher.sync_all()
        await self.fs.persist()
        await self.fs.budgets.evict()
        self.env.calls.clear()  # the test's record of store calls holds what was uploaded

    def live_bytes(self) -> int:
        return sum(len(data) for data in self.files.values()) + len(self.log)


def cache_data_bytes(cache_dir: Path) -> int:
    """What the cache's data files hold (their logical sizes: the files are sparse)."""
    return sum(path.stat().st_size for path in cache_dir.rglob("data/*") if path.is_file())


@pytest.mark.trio
async def test_the_cache_holds_at_most_twice_the_live_data(env: Env, virtual_clock: MockClock) -> None:
    async with env.mount(deadline=600) as fs:
        mix = Mix(env, fs, seed=1)
        await mix.setup()
        for n in range(60):
            await mix.round()
            live, cached = mix.live_bytes(), cache_data_bytes(env.cache_dir)
            assert cached <= 2 * live, f"round {n}: {cached} cached bytes for {live} live"
        for path, data in mix.files.items():
            assert await read_path(fs, path) == data
    expected = {path: data for path, data in mix.files.items()} | {"app.log": mix.log}
    assert env.objects() == dict(sorted(expected.items()))


@pytest.mark.slow  # about 10 s of CPU: 1,200 operations traced by tracemalloc
@pytest.mark.trio
async def test_no_structure_grows_with_the_number_of_operations(
    env: Env, virtual_clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory after K rounds and after 3K rounds is the same, give or take what a working
    set of this size may use (caches fill up during the first K; nothing grows per
    operation). Traced from the start, so that what replaces older entries of a bounded
    structure counts no more than what it replaced. The index's and journal's caches of
    key encodings are bounded by construction (an LRU: see the test below); made small
    here so that they are full within the first K rounds."""
    monkeypatch.setattr(keydisk, "KEYS_KEPT", 64)
    rounds = 10
    tracemalloc.start(8)
    try:
        async with env.mount(deadline=600) as fs:
            mix = Mix(env, fs, seed=2)
            await mix.setup()
            for _ in range(rounds):
                await mix.round()
            gc.collect()
            early = tracemalloc.take_snapshot()
            for _ in range(2 * rounds):
                await mix.round()
            gc.collect()
            late = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    ops = 2 * rounds * OPS_PER_ROUND
    ours = [tracemalloc.Filter(True, "*/fusestore/*")]
    stats = late.filter_traces(ours).compare_to(early.filter_traces(ours), "traceback")
    grown = sum(stat.size_diff for stat in stats)
    top = "\n".join(
        f"{stat.size_diff:+d} B {stat.count_diff:+d}: "
        + " < ".join(str(frame) for frame in reversed(stat.traceback[-4:]))
        for stat in stats[:12]
    )
    assert grown < 16 * ops, f"{grown} bytes more after {ops} more operations:\n{top}"


def test_the_encodings_of_keys_kept_are_bounded(tmp_path: Path) -> None:
    """The cache of key encodings keeps at most KEYS_KEPT, and none of a landing's key
    (written once, deleted once: each upload's token is new)."""
    with diskcache.Cache(str(tmp_path / "db"), disk=keydisk.KeyCachingDisk) as db:
        for n in range(keydisk.KEYS_KEPT + 100):
            db.set(("node", n), n)
            db.set(("landing", f"token-{n}"), n)
        info = db.disk._put_tuple.cache_info()
        assert info.currsize == keydisk.KEYS_KEPT <= 1024
