"""A soak: one fusestore mount under a steady mix of small-file work for `--minutes`.

    python bench/soak.py [--minutes 60] [--rate 23] [--backend moto] [--fusestore-opts "..."]

The mix, at a steady `--rate` operations a second: small files (1 KiB - 256 KiB) written
anew, rewritten in place or saved atomically (a temporary file renamed over the old one),
renamed, deleted and read back (checked byte for byte), and lines appended to a log that
is rotated (renamed over its older copy) at 2 MiB. Every minute it samples the daemon's
resident memory (VmRSS), its open descriptors (/proc/PID/fd), the cache directory's size
on disk, the live data (the sizes of the files in the mount) and the errors so far, then
prints the table and the acceptance check:

- RSS at the last minute (60) within 20 MiB of minute 10 (of the middle one, under 20 minutes);
- descriptors bounded: never more than the idle daemon's (minute 0) plus the cache files it
  keeps open between two sweeps of idle ones (256), its spare cache files (64) and 16;
- the cache directory at most twice the live data, at every sample from minute 2 on.

The S3 server runs on 127.0.0.1 (moto's by default). Every mount, process and bucket it
makes is removed however it ends. Not part of `make test` or `make bench`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from common import (
    BenchError,
    Deadline,
    MiB,
    guarded_run,
)
from servers import make_backend
from systems import Fusestore

from fusestore.cache.contentstore import OPEN_FILES, SPARES

HERE = os.path.dirname(os.path.abspath(__file__))

#: Directories the files live in, and how many files the mix keeps at most (about 20 MiB
#: of live data, as in the soak that found the growth).
DIRS = 8
FILES_MAX = 420
#: The log is rotated (renamed over its older copy) once it is this long.
LOG_ROTATE = 2 * MiB
#: The mix: operation → weight.
MIX = {"write": 24, "rewrite": 10, "save": 10, "rename": 12, "delete": 8, "read": 21, "append": 15}
#: Acceptance.
RSS_SLACK = 20 * MiB
FD_SLACK = 16
CACHE_FACTOR = 2.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Sample:
    minute: int
    ops: int
    errors: int
    rss: int
    fds: int
    cache: int
    live: int
    dirty: int | None
    lag: float


@dataclass
class Mix:
    """The workload and its model: what every file in the mount should hold."""

    root: str
    rng: random.Random
    files: dict[str, str] = field(default_factory=dict)  # relative path → sha256 of its bytes
    log_len: int = 0
    ops: int = 0
    errors: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)
    serial: int = 0

    def setup(self) -> None:
        for d in range(DIRS):
            os.makedirs(os.path.join(self.root, f"d{d}"), exist_ok=True)
        with open(os.path.join(self.root, "app.log"), "ab"):
            pass

    def _path(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def _new_name(self) -> str:
        self.serial += 1
        return f"d{self.rng.randrange(DIRS)}/f{self.serial:07d}.dat"

    def _data(self) -> bytes:
        size = int(2 ** self.rng.uniform(10, 18))  # 1 KiB to 256 KiB, log-uniform
        return self.rng.randbytes(size)

    def _write(self, rel: str, data: bytes) -> None:
        with open(self._path(rel), "wb") as f:
            f.write(data)
        self.files[rel] = hashlib.sha256(data).hexdigest()

    def step(self) -> None:
        kinds, weights = zip(*MIX.items(), strict=True)
        kind = self.rng.choices(kinds, weights)[0]
        if kind in ("rewrite", "save", "rename", "delete", "read") and not self.files:
            kind = "write"
        if kind == "write" and len(self.files) >= FILES_MAX:
            kind = "delete"
        self.ops += 1
        self.counts[kind] = self.counts.get(kind, 0) + 1
        try:
            getattr(self, "op_" + kind)()
        except (OSError, AssertionError) as exc:
            self.errors += 1
            if len(self.first_errors) < 10:
                self.first_errors.append(f"{kind}: {exc!r}")

    def _pick(self) -> str:
        return self.rng.choice(list(self.files))

    def op_write(self) -> None:
        self._write(self._new_name(), self._data())

    def op_rewrite(self) -> None:
        self._write(self._pick(), self._data())

    def op_save(self) -> None:
        """An editor's save: a temporary file, then renamed over the old one."""
        rel = self._pick()
        data = self._data()
        tmp = rel + ".tmp"
        with open(self._path(tmp), "wb") as f:
            f.write(data)
        os.rename(self._path(tmp), self._path(rel))
        self.files[rel] = hashlib.sha256(data).hexdigest()

    def op_rename(self) -> None:
        rel = self._pick()
        new = self._new_name()
        os.rename(self._path(rel), self._path(new))
        self.files[new] = self.files.pop(rel)

    def op_delete(self) -> None:
        rel = self._pick()
        os.unlink(self._path(rel))
        del self.files[rel]

    def op_read(self) -> None:
        rel = self._pick()
        with open(self._path(rel), "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        assert digest == self.files[rel], f"{rel}: read back other bytes than written"

    def op_append(self) -> None:
        line = f"{time.time():.6f} op {self.ops} {'x' * self.rng.randrange(40, 200)}\n".encode()
        with open(self._path("app.log"), "ab") as f:
            f.write(line)
        self.log_len += len(line)
        if self.log_len >= LOG_ROTATE:
            os.rename(self._path("app.log"), self._path("app.log.1"))
            with open(self._path("app.log"), "ab"):
                pass
            self.log_len = 0


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def du(path: str) -> int:
    """Bytes the tree takes on disk (allocated blocks, as `du` counts them)."""
    total = 0
    for top, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(top, name)).st_blocks * 512
            except FileNotFoundError:
                continue
    return total


def live_bytes(path: str) -> int:
    total = 0
    for top, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(top, name)).st_size
            except FileNotFoundError:
                continue
    return total


def sample(system: Fusestore, mix: Mix, minute: int, lag: float) -> Sample:
    assert system.proc is not None
    pid = system.proc.pid
    try:
        dirty: int | None = int(system.status().get("dirty_bytes", 0))
    except (BenchError, ValueError, KeyError, IndexError):
        dirty = None
    return Sample(
        minute=minute,
        ops=mix.ops,
        errors=mix.errors,
        rss=rss_of(pid),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        cache=du(system.cache_dir),
        live=live_bytes(system.mountpoint),
        dirty=dirty,
        lag=lag,
    )


def table(samples: list[Sample]) -> str:
    def mib(value: int | None) -> str:
        return "?" if value is None else f"{value / MiB:.1f}"

    lines = [
        "| minute | operations | errors | RSS MiB | fds | cache dir MiB | live MiB | dirty MiB | behind s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in samples:
        lines.append(
            f"| {s.minute} | {s.ops} | {s.errors} | {mib(s.rss)} | {s.fds} | {mib(s.cache)} | "
            f"{mib(s.live)} | {mib(s.dirty)} | {s.lag:.1f} |"
        )
    return "\n".join(lines)


def acceptance(samples: list[Sample]) -> list[tuple[str, bool, str]]:
    """(check, passed, detail) for each acceptance rule."""
    if len(samples) < 2:
        return [("enough samples", False, f"{len(samples)} sample(s)")]
    by_minute = {s.minute: s for s in samples}
    last = samples[-1]
    base = by_minute.get(10 if last.minute >= 20 else max(1, last.minute // 2), samples[0])
    checks = []
    grown = last.rss - base.rss
    checks.append(
        (
            f"RSS at minute {last.minute} within {RSS_SLACK // MiB} MiB of minute {base.minute}",
            grown <= RSS_SLACK,
            f"{base.rss / MiB:.1f} → {last.rss / MiB:.1f} MiB ({grown / MiB:+.1f})",
        )
    )
    ceiling = samples[0].fds + OPEN_FILES + SPARES + FD_SLACK
    peak = max(s.fds for s in samples)
    checks.append(
        (
            f"open descriptors bounded (at most the idle daemon's + {OPEN_FILES + SPARES + FD_SLACK})",
            peak <= ceiling,
            f"peak {peak} (minute {max(samples, key=lambda s: s.fds).minute}), bound {ceiling}",
        )
    )
    ratios = [(s.minute, s.cache / max(1, s.live)) for s in samples if s.minute >= 2]
    worst = max(ratios, key=lambda r: r[1], default=(0, 0.0))
    checks.append(
        (
            f"cache directory at most {CACHE_FACTOR:g} times the live data",
            worst[1] <= CACHE_FACTOR,
            f"at most {worst[1]:.2f} times (minute {worst[0]})",
        )
    )
    checks.append(("no errors", last.errors == 0, f"{last.errors} error(s)"))
    return checks


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=int, default=60, help="how long the mix runs (default 60)")
    p.add_argument("--rate", type=float, default=23.0, help="operations a second (default 23)")
    p.add_argument("--seed", type=int, default=20, help="the mix's random seed")
    p.add_argument(
        "--backend",
        default=os.environ.get("BACKEND") or "moto",
        choices=("moto", "seaweedfs"),  # S3 only
        help="moto (default) or seaweedfs",
    )
    p.add_argument("--fusestore-opts", default="", help="extra `fusestore mount` options, space-separated")
    p.add_argument("--results", default=os.path.join(HERE, "results"), help="where the JSON goes")
    args = p.parse_args(argv)
    if args.minutes < 1 or args.rate <= 0:
        p.error("--minutes must be ≥ 1 and --rate > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC)
    workdir, cleanup = guarded_run("fusestore-soak-", args.minutes * 60 + 600, log)

    samples: list[Sample] = []
    mix: Mix | None = None
    interrupted = False
    try:
        backend = make_backend(args.backend, workdir)
        cleanup.push("server", backend.stop)
        log(f"starting {backend.name} on 127.0.0.1 ...")
        backend.start()
        bucket = backend.new_bucket("soak")
        cleanup.push("bucket", lambda: backend.delete_bucket(bucket))
        system = Fusestore(backend, workdir, args.fusestore_opts.split())
        cleanup.push("fusestore mount", system.cleanup)
        mountpoint = system.mount(bucket)
        mix = Mix(mountpoint, random.Random(args.seed))
        mix.setup()
        log(f"mounted; {args.rate:g} operations a second for {args.minutes} minute(s)")
        start = time.monotonic()
        samples.append(sample(system, mix, 0, 0.0))
        interval = 1.0 / args.rate
        next_op = start
        minute = 1
        while minute <= args.minutes:
            now = time.monotonic()
            if now >= start + minute * 60:
                lag = max(0.0, now - next_op)
                samples.append(sample(system, mix, minute, lag))
                s = samples[-1]
                log(
                    f"minute {minute}: {s.ops} ops, {s.errors} errors, RSS {s.rss / MiB:.1f} MiB, "
                    f"{s.fds} fds, cache {s.cache / MiB:.1f} MiB, live {s.live / MiB:.1f} MiB"
                )
                minute += 1
                continue
            if now < next_op:
                time.sleep(min(next_op - now, start + minute * 60 - now))
                continue
            mix.step()
            next_op += interval
        system.unmount(Deadline(300, "unmounting"))
    except KeyboardInterrupt as exc:
        interrupted = True
        log(f"interrupted ({exc}): cleaning up")
    except BenchError as exc:
        log(f"failed: {exc}")
        interrupted = True
    finally:
        cleanup.run_all(log)
    if not samples:
        return 1
    title = f"fusestore soak ({args.backend}, {args.rate:g} ops/s, {args.minutes} min)"
    print(f"## {title}\n")
    print(table(samples))
    if mix is not None:
        print(f"\nmix: {json.dumps(dict(sorted(mix.counts.items())))}")
        for line in mix.first_errors:
            print(f"error: {line}")
    print()
    checks = acceptance(samples)
    for what, passed, detail in checks:
        print(f"- {'PASS' if passed else 'FAIL'} {what}: {detail}")
    os.makedirs(args.results, exist_ok=True)
    path = os.path.join(args.results, f"{stamp.strftime('%Y%m%d-%H%M%S')}-soak-{args.backend}.json")
    result: dict[str, Any] = {
        "title": title,
        "config": {**vars(args), "interrupted": interrupted},
        "samples": [asdict(s) for s in samples],
        "mix": mix.counts if mix is not None else {},
        "acceptance": [{"check": w, "passed": p, "detail": d} for w, p, d in checks],
    }
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    log(f"wrote {os.path.relpath(path)}")
    return 130 if interrupted else (0 if all(p for _, p, _ in checks) else 1)


if __name__ == "__main__":
    sys.exit(main())
