"""The workloads (a)-(k). Each one seeds its bucket with the store's own SDK (objects.py:
boto3 on S3), runs the operation on a mount with public tools (dd, fio, tar, ls, stat, mv,
rm; a child Python for the 1000 small files), and runs the same work as the "limit": the
SDK straight against the server, or plain local disk (the directory the caches live in).

A workload fills `values` metric by metric, so what was measured before a failure stays."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import sys
import sysconfig
import tarfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from common import BenchError, Deadline, MiB, RssSampler, drop_caches, run, timed
from objects import Objects
from servers import Backend
from systems import System
from watch import Watcher, has_all, is_marker

MB = 1e6  # throughput is in MB/s (10^6 bytes), as dd and fio print it


@dataclass
class Metric:
    id: str
    workload: str  # its letter in the table
    label: str
    unit: str  # s, MB/s, ops/s, MiB
    limit: str = ""  # what the limit column holds for it ("" = nothing comparable)
    final: bool = False  # about the store's final state: void if the check after unmounting fails

    @property
    def lower_is_better(self) -> bool:
        return self.unit in ("s", "MiB")


@dataclass
class Ctx:
    backend: Backend
    scale: float
    workdir: str
    root: bool
    log: Any = print
    data: dict[str, Any] = field(default_factory=dict)

    def size(self, mib: int) -> int:
        """`mib` MiB scaled, in bytes (at least 1 MiB)."""
        return max(1, round(mib * self.scale)) * MiB

    def count(self, n: int) -> int:
        return max(10, round(n * self.scale))

    def local(self, name: str) -> str:
        """A fresh path on the local disk the caches live on."""
        path = os.path.join(self.workdir, "local", name)
        if os.path.lexists(path):
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def cold(self) -> None:
        if self.root:
            drop_caches()


def mb_s(nbytes: int, seconds: float) -> float:
    return nbytes / MB / seconds if seconds > 0 else float("inf")


def md5_file(path: str) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def random_file(path: str, size: int, seed: int) -> str:
    """Write `size` bytes of seeded random data; returns their md5."""
    rng = random.Random(seed)
    digest = hashlib.md5()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = rng.randbytes(min(left, 8 * MiB))
            digest.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def dd_read(path: str, deadline: Deadline) -> float:
    return timed(["dd", f"if={path}", "of=/dev/null", "bs=1M", "status=none"], deadline)


class Workload:
    keys: tuple[str, ...] = ()
    title = ""
    budget = 120.0  # seconds per system at scale 1
    shared = False  # read-only: one seeded bucket serves every system (checked unchanged)
    prefix = ""  # what `shared` compares

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self._watchers: list[Watcher] = []

    def metrics(self) -> list[Metric]:
        raise NotImplementedError

    def setup(self) -> None:
        """Once, before any system: local artifacts."""

    def seed(self, bucket: str) -> None:
        """The bucket's starting contents, uploaded with the store's SDK."""

    def run(
        self, system: System, mnt: str, bucket: str, deadline: Deadline, values: dict[str, float]
    ) -> None:
        raise NotImplementedError

    def limit(self, bucket: str, deadline: Deadline, values: dict[str, float]) -> None:
        """The same work with the store's SDK against the server, or on plain local disk."""

    def verify(self, bucket: str) -> None:
        """After unmounting (untimed): the store holds what it should; BenchError if not."""

    def watcher(self, bucket: str, prefix: str, done: Any, **kw: Any) -> Watcher:
        watcher = Watcher(self.ctx.backend.new_objects(), bucket, prefix, done, **kw)
        self._watchers.append(watcher)
        return watcher.start()

    def seen_after(self, watcher: Watcher, work: Callable[[], None], deadline: Deadline) -> float:
        """Seconds from starting `work` (the limit's SDK calls) until `watcher` saw the
        result: the limit's "visible" is measured exactly as the systems' are, under the
        same watcher's listings."""
        watcher.begin()
        work()
        return watcher.wait(deadline)

    def stop_watchers(self) -> None:
        while self._watchers:
            self._watchers.pop().stop()

    @property
    def objects(self) -> Objects:
        return self.ctx.backend.objects()

    def says(self, operation: str) -> str:
        """What the limit's `operation` is on this store, for the table (Objects.words)."""
        return self.objects.words[operation]


# --- (a) ---------------------------------------------------------------------------------


class SeqWrite(Workload):
    keys = ("a",)
    budget = 120

    def setup(self) -> None:
        self.size = self.ctx.size(256)
        self.src = self.ctx.local("a-source")
        self.md5 = random_file(self.src, self.size, seed=1)
        self.title = f"dd bs=1M write of {self.size // MiB} MiB"

    def metrics(self) -> list[Metric]:
        t = self.title
        return [
            Metric("close", "a", f"{t}: until dd exits (close)", "s", "local disk (dd)"),
            Metric("visible", "a", f"{t}: until visible", "s", self.says("upload"), final=True),
            Metric("rate", "a", f"{t}: throughput until visible", "MB/s", self.says("upload"), final=True),
        ]

    def run(
        self, system: System, mnt: str, bucket: str, deadline: Deadline, values: dict[str, float]
    ) -> None:
        timed(["cat", self.src], deadline, discard=True)  # the source in the page cache, not timed
        watcher = self.watcher(bucket, "big", has_all({"big": self.size}))
        t0 = watcher.begin()
        run(["dd", f"if={self.src}", f"of={mnt}/big", "bs=1M", "status=none"], deadline)
        values["close"] = time.monotonic() - t0
        values["visible"] = system.wait_visible(watcher, deadline)
        values["rate"] = mb_s(self.size, values["visible"])

    def limit(self, bucket: str, deadline: Deadline, values: dict[str, float]) -> None:
        timed(["cat", self.src], deadline, discard=True)
        dest = self.ctx.local("a-dest")
        values["close"] = timed(["dd", f"if={self.src}", f"of={dest}", "bs=1M", "status=none"], deadline)
        os.remove(dest)
        # The issue's yardstick: the SDK's own managed upload of the same file (boto3's:
        # 8 MiB parts, 10 threads), as any client of the store sends a file this big.
        watcher = self.watcher(bucket, "big", has_all({"big": self.size}))
        objects = self.objects
        values["visible"] = self.seen_after(
            watcher, lambda: objects.upload_file(bucket, "big", self.src), deadline
        )
        values["rate"] = mb_s(self.size, values["visible"])

    def verify(self, bucket: str) -> None:
        if self.objects.md5(bucket, "big") != self.md5:
            raise BenchError("the object's content differs from what dd wrote")


# --- (b), (c) ---------------------------------------------------------------------------


class SeqRead(Workload):
    keys = ("b", "c")
    budget = 90
    shared = True

    def setup(self) -> None:
        self.size = self.ctx.size(256)
        self.src = self.ctx.local("b-source")
        self.md5 = random_file(self.src, self.size, seed=2)

    def metrics(self) -> list[Metric]:
        n = f"{self.size // MiB} MiB"
        return [
            Metric("cold", "b", f"cold sequential read of {n} (dd bs=1M)", "s", self.says("get")),
            Metric("cold_rate", "b", f"cold sequential read of {n}", "MB/s", self.says("get")),
            Metric("warm", "c", f"warm re-read of {n}", "s", "local disk (page cache)"),
            Metric("warm_rate", "c", f"warm re-read of {n}", "MB/s", "local disk (page cache)"),
        ]

    def seed(self, bucket: str) -> None:
        with open(self.src, "rb") as f:
            self.objects.put(bucket, "big", f.read())

    def run(
        self, system: System, mnt: str, bucket: str, deadline: Deadline, values: dict[str, float]
    ) -> None:
        self.ctx.cold()
        values["cold"] = dd_read(f"{mnt}/big", deadline)
        values["cold_rate"] = mb_s(self.size, values["cold"])
        values["warm"] = dd_read(f"{mnt}/big", deadline)
        values["warm_rate"] = mb_s(self.size, values["warm"])

    def limit(self, bucket: str, deadline: Deadline, values: dict[str, float]) -> None:
        self.ctx.cold()
        t0 = time.monotonic()
        got = self.objects.read(bucket, "big", _discard)
        values["cold"] = time.monotonic() - t0
        if got != self.size:
            raise BenchError(f"GetObject returned {got} bytes")
        values["cold_rate"] = mb_s(self.size, values["cold"])
        dd_read(self.src, deadline)  # into the page cache
        values["warm"] = dd_read(self.src, deadline)
        values["warm_rate"] = mb_s(self.size, values["warm"])


# --- (d) ---------------------------------------------------------------------------------

#: Creates N files of 4 KiB in a new directory; prints its start and end (CLOCK_MONOTONIC,
#: the same clock as the parent's time.monotonic()).
WRITER = """\
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
t0 = time.monotonic()
os.mkdir(d)
for i in range(n):
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        f.write(os.urandom(4096))
print(t0, time.monotonic())
"""


class SmallFiles(Workload):
    keys = ("d",)
    budget = 150

    def setup(self) -> None:
        self.n = self.ctx.count(1000)

    def metrics(self) -> list[Metric]:
        t = f"create {self.n} files of 4 KiB"
        return [
            Metric("close", "d", f"{t}: until the last is closed", "s", "local disk"),
            Metric("ops", "d", f"{t}: files created", "ops/s", "local disk"),
            Metric("visible", "d", f"{t}: until visible", "s", self.says("put8"), final=True),
        ]

    def write(self, directory: str, deadline: Deadline) -> tuple[float, float]:
        out = run([sys.executable, "-I", "-S", "-c", WRITER, directory, str(self.n)], deadline)
        start, end = (float(x) for x in out.stdout.split())
        return start, end

    def expected(self) -> dict[str, int]:
        return {f"many/f{i:05d}": 4096 for i in range(self.n)}

    def run(
        self, system: System, mnt: str, bucket: str, deadline: Deadline, values: dict[str, float]
    ) -> None:
        watcher = self.watcher(bucket, "many/", has_all(self.expected()))
        watcher.begin()
        start, end = self.write(f"{mnt}/many", deadline)
        values["close"] = end - start
        values["ops"] = self.n / values["close"]
        values["visible"] = system.wait_visible(watcher, deadline) - (start - watcher.t0)  # type: ignore[operator]

    def limit(self, bucket: str, deadline: Deadline, values: dict[str, float]) -> None:
        start, end = self.write(self.ctx.local("d-many"), deadline)
        values["close"] = end - start
        values["ops"] = self.n / values["close"]
        objects = {k: os.urandom(4096) for k in self.expected()}
        watcher = self.watcher(bucket, "many/", has_all(self.expected()))
        store = self.objects
        values["visible"] = self.seen_after(watcher, lambda: store.put_many(bucket, objects), deadline)


# --- (e) ---------------------------------------------------------------------------------


class Listing(Workload):
    keys = ("e",)
    budget = 150
    shared = True

    def setup(self) -> None:
        self.n = self.ctx.count(5000)
        self.local_dir = self.ctx.local("e-dir")
        os.makedirs(self.local_dir)
        for i in range(self.n):
            with open(os.path.join(self.local_dir, f"f{i:05d}"), "wb") as f:
                f.write(b"x" * 100)

    def metrics(self) -> list[Metric]:
        t = f"ls -l of a directory of {self.n} objects"
        return [
            Metric("cold", "e", f"{t}, cold", "s", self.says("list")),
            Metric("warm", "e", f"{t}, warm", "s", "local disk ls -l"),
        ]

    def seed(self, bucket: str) -> None:
        self.objects.put_many(bucket, {f"dir/f{i:05d}": b"x" * 100 for i in range(self.n)})

    def ls(self, path: str, deadline: Deadline) -> float:
        t0 = time.monotonic()
        out = run(["ls", "-l", path], deadline)
        took = time.monotonic() - t0
        entries = len(out.stdout.splitlines()) - 1  # the "total" line
        if entries != self.n:
            raise BenchError(f"ls -l listed {entries} of {self.n} entries")
        return took

    def run(
        self, system: System, mnt: str, bucket: str, deadline: Deadline, values: dict[str, float]
    ) -> None:
        self.ctx.cold()
        values["cold"] = self.ls(f"{mnt}/dir", deadline)
        values["warm"] = self.ls(f"{mnt}/dir", deadline)

    def limit(self, bucket: str, deadline: Deadline, values: dict[str, float]) -> None:
        t0 = time.monotonic()
        found = self.objects.list(bucket, "dir/")
        values["cold"] = time.monotonic() - t0
        if len(found) != self.n:
            raise BenchError(f"listed {len(found)} of {self.n}")
        self.ls(self.local_dir, deadline)
        values["warm"] = self.ls(self.local_dir, deadline)


# --- (f) ---------------------------------------------------------------------------------


class Stat(Workload):
    keys = ("f",)
    budget = 90
    shared = True

    def setup(self) -> None:
        self.n = self.ctx.count(1000)

    def names(self) -> list[str]:
        return [f"st/f{i:05d}" for i in range(self.n)]

    def metrics(self) -> list[Metric]:
        t = f"stat of {self.n} files, cold"
        return [
            Metric("time", "f", t, "s", self.says("head")),
            Metric("ops", "f", t, "ops/s", self.says("head")),
        ]

    def seed(self, bucket: str) -> None:
        self.objects.put_many(bucket, {k: b"y" * 1000 for k in self.names()})

    def run(
        self, system: System, mnt: str, bucket: str, deadline: Deadline, values: dict[str, float]
    ) -> None:
        self.ctx.cold()
        paths = [f"{mnt}/{k}" for k in self.names()]
        t0 = time.monotonic()
        out = run(["stat", "--printf=%s\\n", *paths], deadline)
        values["time"] = time.monotonic() - t0
        if out.stdout.split() != ["1000"] * self.n:
            raise BenchError("stat reported wrong sizes")
        values["ops"] = self.n / values["time"]

    def limit(self, bucket: str, deadline: Deadline, values: dict[str, float]) -> None:
        t0 = time.monotonic()
        for key in self.names():
            self.objects.head(bucket, key)
        values["time"] = time.monotonic() - t0
        values["ops"] = self.n / values["time"]


# --- (g) ---------------------------------------------------------------------------------


def stdlib_files(limit: int) -> list[str]:
    """The first `limit` regular files (at most 1 MiB) of this Python's stdlib, sorted."""
    root = sysconfig.get_paths()["stdlib"]
    found = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(
            x
            for x in dirs
            if x not in ("__pycache__", "site-packages", "dist-packages", "lib-dynload")
            and not x.startswith("config-")
        )
        for name in files:
            path = os.path.join(d, name)
            if os.path.isfile(path) and not os.path.islink(path) and os.path.getsize(path) <= MiB:
                found.append(os.path.relpath(path, root))
    return sorted(found)[:limit]


class Untar(Workload):
    keys = ("g",)
    budget = 150

    def setup(self) -> None:
        """A deterministic tarball: sorted members, fixed owner, mode and mtime."""
        root = sysconfig.get_paths()["stdlib"]
        files = stdlib_files(self.ctx.count(2000))
        self.tarball = self.ctx.local("g-source.tar")
        self.contents: dict[str, bytes] = {}
        dirs = sorted({os.path.dirname(f"pysrc/{f}") for f in files} | {"pysrc"})
        all_dirs = sorted({p for d in dirs for p in _parents(d)})
        with tarfile.open(self.tarball, "w", format=tarfile.GNU_FORMAT) as tar:
            for d in all_dirs:
                info = tarfile.TarInfo(d)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
                tar.addfile(info)
            for rel in files:
                with open(os.path.join(root, rel), "rb") as f:
                    body = f.read()
                info = tarfile.TarInfo(f"pysrc/{rel}")
                info.size, info.mode, info.mtime = len(body), 0o644, 1_700_000_000
                tar.addfile(info, io.BytesIO(body))
                self.contents[f"pysrc/{rel}"] = body
        self.n = len(files)
        self.nbytes = sum(len(b) for b in self.contents.values())

    def metrics(self) -> list[Metric]:
        t = f"tar xf of {self.n} files ({self.nbytes / MiB:.0f} MiB, Python stdlib)"
        return [
            Metric("close", "g", f"{t}: until tar exits", "s", "local disk"),
            Metric("visible", "g", f"{t}: until visible", "s", self.says("put8"), final=True),
        ]

    def untar(self, dest: str, deadline: Deadline) -> None:
        run(["tar", "--no-same-owner", "-xf", self.tarball, "-C", dest], deadline)

    def run(
        self, system: System, mnt: str, bucket: str, deadline: Deadline, values: dict[str, float]
    ) -> None:
        timed(["cat", self.tarball], deadline, discard=True)
        expected = {k: len(v) for k, v in self.contents.items()}
        watcher = self.watcher(bucket, "pysrc/", has_all(expected))
        t0 = watcher.begin()
        self.untar(mnt, deadline)
        values["close"] = time.monotonic() - t0
        values["visible"] = system.wait_visible(watcher, deadline)

    def limit(self, bucket: str, deadline: Deadline, values: dict[str, float]) -> None:
        dest = self.ctx.local("g-dest")
        os.makedirs(dest)
        t0 = time.monotonic()
        self.untar(dest, deadline)
        values["close"] = time.monotonic() - t0
        shutil.rmtree(dest)
        watcher = self.watcher(bucket, "pysrc/", has_all({k: len(v) for k, v in self.contents.items()}))
        store = self.objects
        values["visible"] = self.seen_after(watcher, lambda: store.put_many(bucket, self.contents), deadline)

    def verify(self, bucket: str) -> None:
        got = self.objects.list(bucket, "pysrc/")
        wrong = [k for k, v in self.contents.items() if got.get(k, (-1,))[0] != len(v)]
        if wrong:
            raise BenchError(f"{len(wrong)} files missing or of the wrong size, e.g. {wrong[0]}")


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


# --- (h), (i) -----------------------------------------------------------------------------


class MoveRemove(Workload):
    keys = ("h", "i")
    budget = 150

    def setup(self) -> None:
        self.n = self.ctx.count(500)

    def metrics(self) -> list[Metric]:
        t = f"a directory of {self.n} files"
        return [
            Metric("mv", "h", f"mv of {t}: until mv exits", "s", "local disk"),
            Metric(
                "mv_visible",
                "h",
                f"mv of {t}: until visible",
                "s",
                self.says("move"),
                final=True,
            ),
            Metric("rm", "i", f"rm -rf of {t}: until rm exits", "s", "local disk"),
            Metric("rm_visible", "i", f"rm -rf of {t}: until gone", "s", self.says("delete"), final=True),
        ]

    def names(self, prefix: str) -> list[str]:
        return [f"{prefix}/f{i:05d}" for i in range(self.n)]

    def seed(self, bucket: str) -> None:
        self.objects.put_many(bucket, {k: b"z" * 4096 for k in self.names("src")})

    def run(
        self, system: System, mnt: str, bucket: str, deadline: Deadline, values: dict[str, float]
    ) -> None:
        watcher = self.watcher(bucket, "", has_all(dict.fromkeys(self.names("dst"), 4096), gone=("src/",)))
        t0 = watcher.begin()
        run(["mv", f"{mnt}/src", f"{mnt}/dst"], deadline)
        values["mv"] = time.monotonic() - t0
        values["mv_visible"] = system.wait_visible(watcher, deadline)
        watcher = self.watcher(bucket, "dst/", has_all({}, gone=("dst/",)))
        t0 = watcher.begin()
        run(["rm", "-rf", f"{mnt}/dst"], deadline)
        values["rm"] = time.monotonic() - t0
        values["rm_visible"] = system.wait_visible(watcher, deadline)

    def verify(self, bucket: str) -> None:
        left = self.objects.list(bucket, "")
        if any(not is_marker(k) for k in left):
            raise BenchError(f"{len(left)} objects left after rm -rf")

    def notes(self, bucket: str) -> list[str]:
        left = sorted(self.objects.list(bucket, ""))
        return [f"directory markers left after rm -rf: {', '.join(left)}"] if left else []

    def limit(self, bucket: str, deadline: Deadline, values: dict[str, float]) -> None:
        src = self.ctx.local("h-src")
        os.makedirs(src)
        for name in self.names(src):
            with open(name, "wb") as f:
                f.write(b"z" * 4096)
        dst = self.ctx.local("h-dst")
        values["mv"] = timed(["mv", src, dst], deadline)
        values["rm"] = timed(["rm", "-rf", dst], deadline)
        store = self.objects

        def move() -> None:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: store.copy(bucket, f"src/f{i:05d}", f"dst/f{i:05d}"), range(self.n)))
            store.delete_many(bucket, self.names("src"))

        watcher = self.watcher(bucket, "", has_all(dict.fromkeys(self.names("dst"), 4096), gone=("src/",)))
        values["mv_visible"] = self.seen_after(watcher, move, deadline)
        watcher = self.watcher(bucket, "dst/", has_all({}, gone=("dst/",)))
        values["rm_visible"] = self.seen_after(
            watcher, lambda: store.delete_many(bucket, self.names("dst")), deadline
        )


# --- (j) ---------------------------------------------------------------------------------


class RandomWrites(Workload):
    """fio: 1024 random 4 KiB writes, each followed by fsync, into an existing 64 MiB file
    (uploaded with the store's SDK, so each system first has to fetch what it needs of it)."""

    keys = ("j",)
    budget = 60
    IOS = 1024

    def setup(self) -> None:
        self.size = 64 * MiB
        self.ios = max(64, round(self.IOS * self.ctx.scale)) if self.ctx.scale < 1 else self.IOS
        self.seed_file = self.ctx.local("j-seed")
        random_file(self.seed_file, self.size, seed=3)
        # fio is deterministic here (fixed seed, fixed buffer pattern): the final content
        # is known from a local run.
        probe = self.ctx.local("j-probe")
        shutil.copyfile(self.seed_file, probe)
        self.fio(probe, Deadline(120, "fio probe"))
        self.md5 = md5_file(probe)
        os.remove(probe)

    def metrics(self) -> list[Metric]:
        t = f"fio: {self.ios} random 4 KiB writes + fsync into a 64 MiB file"
        return [
            Metric("time", "j", f"{t}: until fio exits", "s", "local disk"),
            Metric("iops", "j", f"{t}: writes", "ops/s", "local disk"),
            Metric("visible", "j", f"{t}: until visible", "s", self.says("result"), final=True),
        ]

    def fio(self, path: str, deadline: Deadline) -> float:
        """Runs the job; returns its seconds. Stops early at the deadline and says so."""
        runtime = max(5, int(deadline.remaining() - 15))
        cmd = [
            "fio",
            "--name=randwrite",
            f"--filename={path}",
            "--rw=randwrite",
            "--bs=4k",
            f"--size={self.size}",
            f"--number_ios={self.ios}",
            "--fsync=1",
            "--ioengine=psync",
            "--randseed=42",
            "--buffer_pattern=0x5a5aa5a5",
            f"--runtime={runtime}",
            "--output-format=json",
        ]
        t0 = time.monotonic()
        out = run(cmd, deadline, limit=runtime + 60)
        took = time.monotonic() - t0
        try:
            report = json.loads(out.stdout[out.stdout.index("{") :])
            done = int(report["jobs"][0]["write"]["total_ios"])
        except (ValueError, KeyError, IndexError) as exc:
            raise BenchError(f"fio's report is unreadable: {exc}") from None
        if done != self.ios:
            raise BenchError(f"only {done} of {self.ios} writes in {took:.0f}s ({done / took:.1f} ops/s)")
        return took

    def seed(self, bucket: str) -> None:
        with open(self.seed_file, "rb") as f:
            self.objects.put(bucket, "rand.bin", f.read())

    def run(
        self, system: System, mnt: str, bucket: str, deadline: Deadline, values: dict[str, float]
    ) -> None:
        watcher = self.watcher(
            bucket, "rand.bin", has_all({"rand.bin": self.size}), content=("rand.bin", self.md5)
        )
        watcher.begin()
        values["time"] = self.fio(f"{mnt}/rand.bin", deadline)
        values["iops"] = self.ios / values["time"]
        values["visible"] = system.wait_visible(watcher, deadline)

    def limit(self, bucket: str, deadline: Deadline, values: dict[str, float]) -> None:
        path = self.ctx.local("j-limit")
        shutil.copyfile(self.seed_file, path)
        values["time"] = self.fio(path, deadline)
        values["iops"] = self.ios / values["time"]
        with open(path, "rb") as f:
            body = f.read()
        t0 = time.monotonic()
        self.objects.put(bucket, "rand.bin", body)
        values["visible"] = time.monotonic() - t0
        os.remove(path)

    def verify(self, bucket: str) -> None:
        if self.objects.md5(bucket, "rand.bin") != self.md5:
            raise BenchError("the object's content differs from fio's result")


# --- (k) ---------------------------------------------------------------------------------


class Memory(Workload):
    keys = ("k",)
    budget = 240

    def setup(self) -> None:
        self.size = self.ctx.size(2048)

    def metrics(self) -> list[Metric]:
        t = f"{self.size // MiB} MiB file"
        return [
            Metric("rss_write", "k", f"daemon peak RSS writing a {t} (until visible)", "MiB"),
            Metric("rss_read", "k", "daemon peak RSS reading it back (caches dropped)", "MiB"),
            Metric(
                "write_rate", "k", f"writing a {t}: throughput until visible", "MB/s", self.says("stream")
            ),
            Metric("read_rate", "k", f"reading a {t} back", "MB/s", self.says("get")),
        ]

    def run(
        self, system: System, mnt: str, bucket: str, deadline: Deadline, values: dict[str, float]
    ) -> None:
        watcher = self.watcher(bucket, "huge", has_all({"huge": self.size}))
        with RssSampler(system.pgid) as sampler:
            watcher.begin()
            count = self.size // MiB
            run(["dd", "if=/dev/zero", f"of={mnt}/huge", "bs=1M", f"count={count}", "status=none"], deadline)
            visible = system.wait_visible(watcher, deadline)
        values["rss_write"] = sampler.peak / MiB
        values["write_rate"] = mb_s(self.size, visible)
        self.ctx.cold()
        with RssSampler(system.pgid) as sampler:
            took = dd_read(f"{mnt}/huge", deadline)
        values["rss_read"] = sampler.peak / MiB
        values["read_rate"] = mb_s(self.size, took)

    def limit(self, bucket: str, deadline: Deadline, values: dict[str, float]) -> None:
        store = self.objects
        t0 = time.monotonic()
        store.upload_stream(bucket, "huge", _Zeros(self.size), self.size)
        values["write_rate"] = mb_s(self.size, time.monotonic() - t0)
        t0 = time.monotonic()
        store.read(bucket, "huge", _discard)
        values["read_rate"] = mb_s(self.size, time.monotonic() - t0)


def _discard(chunk: bytes) -> None:
    """A download's sink that keeps nothing."""


class _Zeros(io.RawIOBase):
    """`size` zero bytes as a readable file, without holding them in memory."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


WORKLOADS: list[type[Workload]] = [
    SeqWrite,
    SeqRead,
    SmallFiles,
    Listing,
    Stat,
    Untar,
    MoveRemove,
    RandomWrites,
    Memory,
]
