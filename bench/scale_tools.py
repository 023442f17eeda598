"""What the scale suite builds and measures with: the local tree and the filled bucket,
timed shell pipelines whose entry counts are checked, RSS, the systems mounting a local
directory, and the table of one row per figure."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from common import BenchError, Deadline, MiB, drop_caches, group_rss, kill_group, run, spawn
from objects import s3_client
from servers import Backend
from systems import Fusestore, Rclone, rclone_binary

# --- the systems on a local directory ------------------------------------------------------


class LocalDirectory(Backend):
    """No server: the systems of part 1 mount a directory of this machine."""

    name = kind = "file"

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class LocalFusestore(Fusestore):
    """`fusestore mount file:///DIR MNT --cache-dir ...` (`bucket` is the directory)."""

    def command(self, bucket: str, mountpoint: str, cache_dir: str) -> list[str]:
        return self.cli(
            "mount",
            f"file://{bucket}",
            mountpoint,
            "--cache-dir",
            cache_dir,
            "--log-level",
            "warning",
            *self.extra,
        )


class LocalRclone(Rclone):
    """`rclone mount /DIR MNT --vfs-cache-mode writes` (`bucket` is the directory), with
    the machine's rclone, as on S3."""

    def binary(self) -> str:
        return rclone_binary("s3")

    def command(self, bucket: str, mountpoint: str, cache_dir: str) -> list[str]:
        config = os.path.join(self.workdir, "rclone-local.conf")
        open(config, "a").close()  # no remote: a local path needs none
        return [
            self.binary(),
            "--config",
            config,
            "mount",
            bucket,
            mountpoint,
            "--vfs-cache-mode",
            "writes",
            "--cache-dir",
            cache_dir,
        ]


# --- the data --------------------------------------------------------------------------------


@dataclass
class Tree:
    """`dirs` directories of `per_dir` files plus one flat directory of `flat` files."""

    root: str
    dirs: int
    per_dir: int
    flat: int

    def paths(self) -> list[str]:
        """Every file, relative to the root."""
        out = [f"d{i:04d}/f{j:05d}" for i in range(self.dirs) for j in range(self.per_dir)]
        out += [f"flat/f{j:06d}" for j in range(self.flat)]
        return out

    @property
    def files(self) -> int:
        return self.dirs * self.per_dir + self.flat

    @property
    def entries(self) -> int:
        """What `find ROOT` prints: the root, every directory, every file."""
        return 1 + self.dirs + 1 + self.files

    def build(self) -> float:
        """Write the tree on local disk (small files of 1-512 bytes); seconds it took."""
        t0 = time.monotonic()
        for i in range(self.dirs):
            os.makedirs(os.path.join(self.root, f"d{i:04d}"))
        os.makedirs(os.path.join(self.root, "flat"))
        for n, rel in enumerate(self.paths()):
            with open(os.path.join(self.root, rel), "wb") as f:
                f.write(b"x" * (1 + n % 512))
        found = 1 + sum(len(dirs) + len(files) for _, dirs, files in os.walk(self.root))
        if found != self.entries:
            raise BenchError(f"the local tree holds {found} entries, not {self.entries}")
        return time.monotonic() - t0


_clients: dict[str, Any] = {}


def _put_chunk(endpoint_url: str, bucket: str, keys: list[str], threads: int) -> int:
    """In a worker process: PutObject each key (a few bytes) from `threads` threads."""
    s3 = _clients.get(endpoint_url)
    if s3 is None:
        s3 = _clients[endpoint_url] = s3_client(endpoint_url, pool=threads)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=bucket, Key=key, Body=key[-8:].encode()), keys))
    return len(keys)


def fill(
    endpoint_url: str, bucket: str, keys: list[str], procs: int, threads: int, log: Any, what: str
) -> float:
    """PutObject every key with boto3 from `procs` processes of `threads` threads each (one
    process's boto3 is bound by its own CPU long before the server is); seconds it took."""
    t0 = time.monotonic()
    size = max(500, len(keys) // 100)
    chunks = [keys[i : i + size] for i in range(0, len(keys), size)]
    done = shown = 0
    with ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_put_chunk, endpoint_url, bucket, chunk, threads) for chunk in chunks]
        for future in as_completed(futures):
            done += future.result()
            if done - shown >= len(keys) // 10:
                shown = done
                rate = done / (time.monotonic() - t0)
                log(f"  {what}: {done:,} of {len(keys):,} objects ({rate:.0f}/s)")
    return time.monotonic() - t0


def boto3_list(endpoint_url: str, bucket: str, prefix: str) -> tuple[float, int, int]:
    """boto3's own paginated ListObjectsV2 of `prefix` ("/" delimited, 1000 a page, as a
    directory listing asks): (seconds, keys, pages)."""
    s3 = s3_client(endpoint_url)
    s3.list_buckets()  # the connection made before timing, as a mount's would be
    t0 = time.monotonic()
    keys = pages = 0
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "Delimiter": "/", "MaxKeys": 1000}
    while True:
        answer = s3.list_objects_v2(**kwargs)
        pages += 1
        keys += len(answer.get("Contents", []))
        if not answer.get("IsTruncated"):
            return time.monotonic() - t0, keys, pages
        kwargs["ContinuationToken"] = answer["NextContinuationToken"]


# --- measuring ---------------------------------------------------------------------------------


def cold() -> None:
    """Drop the kernel's page, dentry and inode caches (root only)."""
    if os.geteuid() == 0:
        drop_caches()


def shrink_kernel_caches(pause: float) -> None:
    """`echo 2 > /proc/sys/vm/drop_caches` (dentries and inodes: the kernel forgets the
    mount's nodes), then `pause` seconds for the daemon to act on the forgets."""
    if os.geteuid() == 0:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2\n")
    time.sleep(pause)


def rss_mib(pgid: int) -> float:
    return group_rss(pgid) / MiB


def counted(cmd: str, deadline: Deadline, limit: float) -> tuple[float, int]:
    """Run a shell pipeline that prints one number (a count); (seconds, count). A failing
    step of the pipeline (an EIO from `find`) fails it."""
    t0 = time.monotonic()
    out = run(["bash", "-o", "pipefail", "-c", cmd], deadline, limit=limit)
    took = time.monotonic() - t0
    try:
        return took, int(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BenchError(f"no count from {cmd!r}: {out.stdout[-200:]!r}") from None


def check_count(what: str, got: int, want: int, log: Any) -> None:
    if got != want:
        log(f"!!!!! WRONG COUNT: {what} counted {got:,} entries, the store holds {want:,} !!!!!")
        raise BenchError(f"wrong count: {what} counted {got:,} of {want:,}")


def first_line(argv: list[str], deadline: Deadline, limit: float) -> float:
    """Seconds until `argv` printed its first line (`ls | head -1`: what a user waits
    for); the command is killed then."""
    timeout = deadline.bounded(limit)
    t0 = time.monotonic()
    proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    timer = threading.Timer(timeout, kill_group, (proc,))
    timer.start()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        took = time.monotonic() - t0
    finally:
        timer.cancel()
        kill_group(proc)
        proc.wait(10)
    if not line:
        if took >= timeout - 0.5:
            raise BenchError(f"timed out after {timeout:.0f} s")
        raise BenchError(f"{shlex.join(argv[:2])} printed nothing")
    return took


STAT_SCRIPT = """
import os, sys, time
paths = open(sys.argv[1]).read().split("\\n")
os.chdir(sys.argv[2])
t0 = time.monotonic()
for p in paths:
    os.lstat(p)
print(time.monotonic() - t0, len(paths))
"""


def stat_all(mnt: str, list_file: str, deadline: Deadline, limit: float) -> tuple[float, int]:
    """One child Python doing os.lstat on every file (paths from `list_file`): (seconds
    of its loop, files). Any error fails it."""
    out = run([sys.executable, "-c", STAT_SCRIPT, list_file, mnt], deadline, limit=limit)
    seconds, n = out.stdout.split()
    return float(seconds), int(n)


def du_mib(path: str) -> float:
    """Bytes on disk under `path` (allocated blocks), in MiB."""
    total = 0
    for base, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # a file removed meanwhile
                total += os.lstat(os.path.join(base, name)).st_blocks * 512
    return total / MiB


# --- the table -------------------------------------------------------------------------------


@dataclass
class Figures:
    """Every figure of one run, in the order measured: rows of (part, workload, unit) with
    one value (or failure text) per system, plus notes and request counts."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    requests: dict[str, Any] = field(default_factory=dict)

    def row(self, part: str, key: str, label: str, unit: str) -> dict[str, Any]:
        for r in self.rows:
            if r["id"] == f"{part}.{key}":
                return r
        r = {"id": f"{part}.{key}", "part": part, "workload": label, "unit": unit}
        self.rows.append(r)
        return r

    def put(self, part: str, key: str, label: str, unit: str, system: str, value: Any) -> None:
        self.row(part, key, label, unit)[system] = value
