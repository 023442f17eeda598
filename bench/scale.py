"""The scale suite (`python bench/run.py --suite scale`): fusestore and rclone on a
150,000-entry `file://` tree, a 100,000-object S3 prefix and a 1,000,000-object S3 tree.

    python bench/run.py --suite scale [--parts 1,2,3] [--scale 0.1] [--peers fusestore,rclone]

Each system gets a fresh mount and an empty cache for each measurement series; every walk's
entry count is checked against what the store holds (a wrong count fails that figure, it is
never a figure). Prints one table and writes it, with every figure, as JSON and Markdown
under bench/results/. Every mount and process it starts is removed however it ends; it stops
by itself within the global timeout."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import report
from common import BenchError, Cleanup, Deadline, MiB, RssSampler, guarded_run
from scale_tools import (
    Figures,
    LocalDirectory,
    LocalFusestore,
    LocalRclone,
    Tree,
    boto3_list,
    check_count,
    cold,
    counted,
    du_mib,
    fill,
    first_line,
    rss_mib,
    shrink_kernel_caches,
    stat_all,
)
from servers import Backend, make_backend
from systems import Fusestore, Rclone, System

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = ("fusestore", "rclone")
PAUSE = 5.0  # seconds after `echo 2 > drop_caches` before RSS is read


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="run.py --suite scale",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawTextHelpFormatter,
    )
    add = p.add_argument
    add("--parts", default="1,2,3", help="1: file:// tree, 2: S3 prefix, 3: S3 tree (default: all)")
    add("--peers", default=",".join(PEERS), help="systems (default: fusestore,rclone)")
    add("--scale", type=float, default=1.0, help="shrink every count (e.g. 0.05 for a quick run)")
    p.add_argument(
        "--backend",
        default=os.environ.get("BACKEND") or "seaweedfs",
        choices=("seaweedfs", "moto"),  # its parts fill and list with boto3: S3 only
        help="S3 server of parts 2 and 3: seaweedfs (default) or moto",
    )
    add("--tree-dirs", type=int, default=None, help="part 3: directories (default 1000, scaled)")
    add("--tree-files", type=int, default=1000, help="part 3: objects per directory (default 1000)")
    add("--tree-peers", default="fusestore", help="systems walking part 3's tree (default fusestore)")
    add("--fill-procs", type=int, default=4, help="processes filling the bucket (default 4)")
    add("--fill-threads", type=int, default=16, help="boto3 threads of each (default 16)")
    add("--metadata-ttl", type=int, default=3600, help="part 3's --metadata-ttl (default 3600 s)")
    add("--timeout", type=float, default=6000.0, help="global timeout in seconds (default 6000)")
    p.add_argument(
        "--workload-timeout", type=float, default=600.0, help="seconds each workload may take (default 600)"
    )
    add("--fusestore-opts", default="", help="extra options for `fusestore mount`, space-separated")
    add("--results", default=os.path.join(HERE, "results"), help="where the JSON and Markdown go")
    args = p.parse_args(argv)
    args.parts = {s.strip() for s in args.parts.split(",") if s.strip()}
    if not args.parts <= {"1", "2", "3"}:
        p.error("--parts takes 1, 2 and 3")
    args.peers = [s.strip() for s in args.peers.split(",") if s.strip()]
    args.tree_peers = [s.strip() for s in args.tree_peers.split(",") if s.strip()]
    if not set(args.peers + args.tree_peers) <= set(PEERS):
        p.error(f"systems: choose among {', '.join(PEERS)}")
    if not 0 < args.scale <= 1:
        p.error("--scale must be in (0, 1]")
    if args.tree_dirs is None:
        args.tree_dirs = max(1, round(1000 * args.scale))
    return args


def scaled(n: int, scale: float, least: int = 10) -> int:
    return max(least, round(n * scale))


#: (part, key) -> (the table's label, unit); labels with {n} get the part's size.
LABELS = {
    ("1", "rss_idle"): ("daemon RSS right after mount (idle)", "MiB"),
    ("1", "find_cold"): ("`find` of the whole tree, cold", "s"),
    ("1", "find_warm"): ("`find` of the whole tree, warm", "s"),
    ("1", "lsR"): ("`ls -lR`, warm", "s"),
    ("1", "stat"): ("`stat` of every file, warm (one process: os.lstat of each path)", "s"),
    ("1", "ls_flat"): ("`ls -l` of the {n}-entry directory, warm", "s"),
    ("1", "rss_after"): ("daemon RSS after the walks", "MiB"),
    ("1", "rss_dropped"): ("daemon RSS after `echo 2 > drop_caches` + 5 s", "MiB"),
    ("1", "head"): ("`ls | head -1` of the {n}-entry directory, fresh mount", "s"),
    ("1", "head_f"): ("`ls -f | head -1` of the {n}-entry directory, fresh mount", "s"),
    ("2", "boto3"): ("boto3's own paginated LIST of the prefix (just before)", "s"),
    ("2", "rss_idle"): ("daemon RSS right after mount (idle)", "MiB"),
    ("2", "ls_cold"): ("`ls -f` of the {n}-object prefix, cold", "s"),
    ("2", "vs_boto3"): ("cold `ls -f` / boto3's LIST", "x"),
    ("2", "list"): ("LIST requests of the cold `ls -f`", ""),
    ("2", "heads"): ("HEAD requests of the cold `ls -f`", ""),
    ("2", "ls_warm"): ("`ls -l` of the prefix, warm", "s"),
    ("2", "rss_after"): ("daemon RSS after the listings", "MiB"),
    ("2", "rss_dropped"): ("daemon RSS after `echo 2 > drop_caches` + 5 s", "MiB"),
    ("2", "head"): ("`ls | head -1` of the prefix, fresh mount", "s"),
    ("2", "head_f"): ("`ls -f | head -1` of the prefix, fresh mount", "s"),
    ("3", "rss_idle"): ("daemon RSS right after mount (idle)", "MiB"),
    ("3", "find_cold"): ("`find` of the {n}-object tree, cold", "s"),
    ("3", "rate"): ("that `find`: entries a second", "1/s"),
    ("3", "rss_peak"): ("daemon RSS at the walk's peak (polled every 0.2 s)", "MiB"),
    ("3", "list"): ("LIST requests of the cold `find`", ""),
    ("3", "heads"): ("HEAD requests of the cold `find`", ""),
    ("3", "rss_after"): ("daemon RSS after the walk", "MiB"),
    ("3", "rss_dropped"): ("daemon RSS after `echo 2 > drop_caches` + 5 s", "MiB"),
    ("3", "unmount"): ("unmount after the walk", "s"),
    ("3", "index"): ("the cache's index on disk", "MiB"),
    ("3", "cache"): ("the whole cache directory on disk", "MiB"),
    ("3", "remount"): ("remount on the same cache, inside the metadata TTL", "s"),
    ("3", "find_again"): ("`find` after the remount (kernel caches dropped)", "s"),
    ("3", "list_again"): ("LIST requests of that `find`", ""),
    ("3", "heads_again"): ("HEAD requests of that `find`", ""),
    ("3", "rss_again"): ("daemon RSS after that walk", "MiB"),
}


class Suite:
    """The three parts, in order, each system in turn; every figure into `self.figures`.
    Every method blocks (child processes, mounts); none raises for one figure's failure."""

    def __init__(self, args: argparse.Namespace, workdir: str, cleanup: Cleanup, deadline: Deadline) -> None:
        self.args = args
        self.workdir = workdir
        self.cleanup = cleanup
        self.deadline = deadline
        self.figures = Figures()
        self.extra = args.fusestore_opts.split()
        self.info: dict[str, Any] = {}
        self.backend: Backend | None = None
        self.bucket = ""
        self.sizes: dict[str, str] = {}

    # -- helpers -----------------------------------------------------------------------

    def limit(self) -> Deadline:
        """The deadline of one workload: its own timeout, or the run's, whichever is first."""
        seconds = min(self.args.workload_timeout, self.deadline.remaining())
        if seconds <= 0:
            raise BenchError("skipped: the run's global timeout was reached")
        return Deadline(seconds, "workload")

    def measure(self, part: str, key: str, system: str, fn: Callable[[], Any]) -> Any:
        """One figure: `fn()`'s value, or the failure's text in its cell (the run goes on)."""
        try:
            value = fn()
        except Exception as exc:
            text = str(exc) or type(exc).__name__
            late = re.match(r"timeout: .* after (\d+)s", text)
            if late:
                text = f"timed out after {late.group(1)} s"
            value = text if text.startswith(("skipped", "timed out")) else f"failed: {text}"
            value = value.replace(self.workdir, "$WORKDIR")[:200]
        return self.put(part, key, system, value)

    def put(self, part: str, key: str, system: str, value: Any) -> Any:
        label, unit = LABELS[(part, key)]
        label = label.format(n=self.sizes.get(part, "?"))
        self.figures.put(part, key, label, unit, system, value)
        shown = value if isinstance(value, str) else f"{fmt(value)} {unit}"
        log(f"  [{part}] {system:<9} {label}: {shown}")
        return value

    def mounted(self, system: System, target: str, cache_dir: str | None = None) -> tuple[str, float]:
        t0 = time.monotonic()
        mnt = system.mount(target, cache_dir)
        self.cleanup.push(f"{system.name} mount", system.cleanup)
        return mnt, time.monotonic() - t0

    def unmounted(self, system: System) -> float | None:
        t0 = time.monotonic()
        try:
            system.unmount(Deadline(180, "unmount"))
        except Exception as exc:
            log(f"  {system.name}: unmount: {exc}")
            return None
        return time.monotonic() - t0

    def walk(self, system: str, cmd: str, want: int, what: str, drop: bool = False) -> float:
        """Seconds a counting pipeline took; a count other than `want` fails it."""
        if drop:
            cold()
        took, got = counted(cmd, self.limit(), 1e9)
        check_count(f"{system}: {what}", got, want, log)
        return took

    def idle(self, part: str, system: System) -> None:
        time.sleep(1)
        self.measure(part, "rss_idle", system.name, lambda: rss_mib(system.pgid))

    def rss_rows(self, part: str, system: System) -> None:
        self.measure(part, "rss_after", system.name, lambda: rss_mib(system.pgid))

        def dropped() -> float:
            shrink_kernel_caches(PAUSE)
            return rss_mib(system.pgid)

        self.measure(part, "rss_dropped", system.name, dropped)

    def first_entry(self, part: str, system: System, target: str, directory: str, unsorted: bool) -> None:
        """`ls | head -1` (or `ls -f`) on a fresh mount, the kernel's caches dropped."""
        key = "head_f" if unsorted else "head"
        try:
            mnt, _ = self.mounted(system, target)
        except Exception as exc:
            self.put(part, key, system.name, f"failed: mount: {exc}")
            return
        try:
            cold()
            path = os.path.join(mnt, directory)
            argv = ["ls", "-f", path] if unsorted else ["ls", path]
            self.measure(part, key, system.name, lambda: first_line(argv, self.limit(), 1e9))
        finally:
            self.unmounted(system)

    def requests(self, system: System) -> dict[str, int] | None:
        with contextlib.suppress(Exception):
            return system.requests()
        return None

    def count_requests(
        self, part: str, system: System, before: dict[str, int] | None, suffix: str = ""
    ) -> None:
        after = self.requests(system)
        if before is None or after is None:
            self.put(part, "list" + suffix, system.name, "not counted")
            self.put(part, "heads" + suffix, system.name, "not counted")
            return
        diff = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
        self.figures.requests.setdefault(part, {})[f"{system.name} {LABELS[(part, 'list' + suffix)][0]}"] = (
            diff
        )
        self.put(
            part, "list" + suffix, system.name, sum(v for k, v in diff.items() if k.startswith("ListObj"))
        )
        self.put(part, "heads" + suffix, system.name, diff.get("HeadObject", 0))

    # -- part 1: file:// ---------------------------------------------------------------

    def part1(self) -> None:
        scale = self.args.scale
        root = os.path.join(self.workdir, "tree")
        tree = Tree(root, dirs=max(1, round(100 * scale)), per_dir=1000, flat=scaled(50_000, scale))
        self.sizes["1"] = f"{tree.flat:,}"
        log(f"[1] building {tree.dirs} x {tree.per_dir} files + {tree.flat} in one directory ...")
        took = tree.build()
        self.figures.notes.append(
            f"[1] the tree: {tree.dirs} directories x {tree.per_dir} files + one of {tree.flat:,} "
            f"({tree.entries:,} entries `find` prints), built in {took:.1f} s on local disk"
        )
        list_file = os.path.join(self.workdir, "paths.txt")
        with open(list_file, "w") as f:
            f.write("\n".join(tree.paths()))
        where = os.path.join(self.workdir, "p1")
        for name in self.args.peers:
            log(f"[1] {name}")
            system: System = (
                LocalFusestore(LocalDirectory(), where, self.extra)
                if name == "fusestore"
                else LocalRclone(LocalDirectory(), where)
            )
            self.part1_on(system, tree, list_file)
            self.first_entry("1", system, tree.root, "flat", unsorted=False)
            self.first_entry("1", system, tree.root, "flat", unsorted=True)
        shutil.rmtree(tree.root, ignore_errors=True)

    def part1_on(self, system: System, tree: Tree, list_file: str) -> None:
        name = system.name
        try:
            mnt, _ = self.mounted(system, tree.root)
        except Exception as exc:
            self.put("1", "find_cold", name, f"failed: mount: {exc}")
            return
        q = shlex.quote
        try:
            self.idle("1", system)
            find = f"find {q(mnt)} | wc -l"
            self.measure(
                "1", "find_cold", name, lambda: self.walk(name, find, tree.entries, "find cold", True)
            )
            self.measure("1", "find_warm", name, lambda: self.walk(name, find, tree.entries, "find warm"))
            lsr = f"ls -lR {q(mnt)} | grep -c '^[-dl]'"
            self.measure("1", "lsR", name, lambda: self.walk(name, lsr, tree.entries - 1, "ls -lR"))

            def stats() -> float:
                took, n = stat_all(mnt, list_file, self.limit(), 1e9)
                check_count(f"{name}: stat of every file", n, tree.files, log)
                return took

            self.measure("1", "stat", name, stats)
            ls_flat = f"ls -l {q(os.path.join(mnt, 'flat'))} | grep -c '^-'"
            self.measure("1", "ls_flat", name, lambda: self.walk(name, ls_flat, tree.flat, "ls -l flat"))
            self.rss_rows("1", system)
        finally:
            self.unmounted(system)

    # -- S3: the bucket ------------------------------------------------------------------

    def server(self) -> Backend:
        if self.backend is None:
            self.backend = make_backend(self.args.backend, self.workdir)
            self.cleanup.push("server", self.backend.stop)
            log(f"starting {self.backend.name} on 127.0.0.1 ...")
            self.backend.start()
            self.bucket = self.backend.new_bucket("scale")
        return self.backend

    def fill(self, keys: list[str], what: str) -> None:
        backend = self.server()
        procs, threads = self.args.fill_procs, self.args.fill_threads
        log(f"filling {len(keys):,} objects ({what}) from {procs} x {threads} threads ...")
        took = fill(backend.endpoint_url, self.bucket, keys, procs, threads, log, what)
        self.figures.notes.append(
            f"{what}: {len(keys):,} objects put with boto3 from {procs} processes x {threads} threads "
            f"in {took:.0f} s ({len(keys) / took:.0f}/s) on {backend.name}"
        )

    def s3_system(self, name: str, extra: list[str] | None = None) -> System:
        backend = self.server()
        where = os.path.join(self.workdir, "s3")
        if name == "fusestore":
            return Fusestore(backend, where, [*self.extra, *(extra or [])])
        return Rclone(backend, where)

    # -- part 2: one S3 prefix -----------------------------------------------------------

    def part2(self) -> None:
        n = scaled(100_000, self.args.scale)
        self.sizes["2"] = f"{n:,}"
        self.fill([f"flat/f{j:06d}" for j in range(n)], "[2] the prefix flat/")
        target = f"{self.bucket}/flat"
        for name in self.args.peers:
            log(f"[2] {name}")
            system = self.s3_system(name)
            self.part2_on(system, target, n)
            self.first_entry("2", system, target, "", unsorted=False)
            self.first_entry("2", system, target, "", unsorted=True)

    def part2_on(self, system: System, target: str, n: int) -> None:
        name = system.name
        seconds, keys, pages = boto3_list(self.server().endpoint_url, self.bucket, "flat/")
        if keys != n:
            log(f"!!!!! boto3 listed {keys} of {n} keys !!!!!")
        self.sizes["2 pages"] = str(pages)
        self.put("2", "boto3", name, seconds)
        try:
            mnt, _ = self.mounted(system, target)
        except Exception as exc:
            self.put("2", "ls_cold", name, f"failed: mount: {exc}")
            return
        q = shlex.quote(mnt)
        try:
            self.idle("2", system)
            before = self.requests(system)
            ls_f = f"ls -f {q} | grep -cvxE '[.][.]?'"
            took = self.measure("2", "ls_cold", name, lambda: self.walk(name, ls_f, n, "ls -f cold", True))
            if not isinstance(took, str):
                self.put("2", "vs_boto3", name, took / seconds)
            self.count_requests("2", system, before)
            ls_l = f"ls -l {q} | grep -c '^-'"
            self.measure("2", "ls_warm", name, lambda: self.walk(name, ls_l, n, "ls -l warm"))
            self.rss_rows("2", system)
        finally:
            self.unmounted(system)

    # -- part 3: a tree of a million objects ----------------------------------------------

    def part3(self) -> None:
        dirs, per = self.args.tree_dirs, self.args.tree_files
        self.sizes["3"] = f"{dirs:,} x {per:,}"
        self.fill([f"tree/d{i:04d}/f{j:04d}" for i in range(dirs) for j in range(per)], "[3] the tree tree/")
        for name in self.args.tree_peers:
            log(f"[3] {name}: {dirs:,} x {per:,} objects")
            system = self.s3_system(name, ["--metadata-ttl", str(self.args.metadata_ttl)])
            self.part3_on(system, f"{self.bucket}/tree", 1 + dirs + dirs * per)

    def part3_on(self, system: System, target: str, entries: int) -> None:
        name = system.name
        keep = os.path.join(self.workdir, f"p3-{name}-cache") if name == "fusestore" else None
        try:
            mnt, _ = self.mounted(system, target, keep)
        except Exception as exc:
            self.put("3", "find_cold", name, f"failed: mount: {exc}")
            return
        peak = RssSampler(system.pgid, 0.2)
        try:
            self.idle("3", system)
            before = self.requests(system)
            find = f"find {shlex.quote(mnt)} | wc -l"

            def find_cold() -> float:
                with peak:
                    return self.walk(name, find, entries, "find cold", True)

            took = self.measure("3", "find_cold", name, find_cold)
            if not isinstance(took, str):
                self.put("3", "rate", name, entries / took)
            self.put("3", "rss_peak", name, peak.peak / MiB)
            self.count_requests("3", system, before)
            self.rss_rows("3", system)
        finally:
            unmount_s = self.unmounted(system)
        if keep is None:
            return
        if unmount_s is not None:
            self.put("3", "unmount", name, unmount_s)
        self.measure("3", "index", name, lambda: du_mib(os.path.join(keep, "index")))
        self.measure("3", "cache", name, lambda: du_mib(keep))
        try:
            mnt, remount = self.mounted(system, target, keep)
        except Exception as exc:
            self.put("3", "remount", name, f"failed: {exc}")
            return
        try:
            self.put("3", "remount", name, remount)
            before = self.requests(system)
            find = f"find {shlex.quote(mnt)} | wc -l"
            self.measure(
                "3", "find_again", name, lambda: self.walk(name, find, entries, "find after remount", True)
            )
            self.count_requests("3", system, before, "_again")
            self.measure("3", "rss_again", name, lambda: rss_mib(system.pgid))
        finally:
            self.unmounted(system)

    def run(self) -> None:
        fusestore = LocalFusestore(LocalDirectory(), self.workdir, self.extra).version()
        rclone = LocalRclone(LocalDirectory(), self.workdir).version()
        self.info = report.machine(make_backend(self.args.backend, self.workdir), {})
        self.info.update(fusestore=fusestore, rclone=rclone)
        log(f"rclone: {rclone}; fusestore {fusestore}")
        for part in ("1", "2", "3"):
            if part not in self.args.parts:
                continue
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            self.figures.notes.append(f"[{part}] load average at its start: {load}")
            try:
                getattr(self, f"part{part}")()
            except Exception as exc:
                log(f"[{part}] failed: {exc}")
                self.figures.notes.append(
                    f"[{part}] stopped: {str(exc).replace(self.workdir, '$WORKDIR')[:300]}"
                )


def fmt(value: Any) -> str:
    """Counts as integers, the rest as the main bench shows its figures."""
    return f"{value:,}" if isinstance(value, int) else report.fmt(value)


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    c = result["config"]
    lines = [
        f"# fusestore scale benchmark (scale {c['scale']:g})",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, kernel {m['kernel']}; "
        f"Python {m['python']}; S3 server (parts 2, 3): {m['server']}; fusestore {m.get('fusestore')}; "
        f"rclone: {m.get('rclone')}; boto3 {m['boto3']}.",
        "",
        f"Run: {c['started']} UTC, {c['seconds']:.0f} s in all; load average at the start "
        f"{c['load_start']}, at the end {c['load_end']}. Ratios are fusestore's value over rclone's "
        "(below 1: fusestore is faster or smaller).",
        "",
    ]
    rows = []
    for r in result["rows"]:
        unit = f" [{r['unit']}]" if r["unit"] else ""
        fs, rc = r.get("fusestore", "not run"), r.get("rclone", "not run")
        rows.append([r["part"], r["workload"] + unit, fmt(fs), fmt(rc), report.ratio(fs, rc)])
    lines += [report.table(["part", "workload", "fusestore", "rclone", "ratio"], rows), ""]
    if result["requests"]:
        lines += ["## fusestore's S3 requests (its own count, `status --json`)", ""]
        for part, per in result["requests"].items():
            for what, counts in per.items():
                detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
                lines.append(f"- [{part}] {what}: {detail}")
        lines.append("")
    if result["notes"]:
        lines += ["## Notes", "", *(f"- {n}" for n in result["notes"]), ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    stamp = datetime.now(UTC)
    load_start = os.getloadavg()
    workdir, cleanup = guarded_run("fusestore-scale-", args.timeout + 180, log)
    if os.geteuid() != 0:
        log("not root: caches cannot be dropped, so the 'cold' figures are not cold")
    suite = Suite(args, workdir, cleanup, Deadline(args.timeout, "the whole run"))
    interrupted = False
    try:
        suite.run()
    except KeyboardInterrupt as exc:
        interrupted = True
        log(f"interrupted ({exc}): cleaning up")
    finally:
        cleanup.run_all(log)
    if not suite.info:
        return 130 if interrupted else 1
    load_end = os.getloadavg()
    result = {
        "machine": suite.info,
        "rows": suite.figures.rows,
        "requests": suite.figures.requests,
        "notes": suite.figures.notes,
        "config": {
            "suite": "scale",
            "interrupted": interrupted,
            "started": stamp.strftime("%Y-%m-%d %H:%M:%S"),
            "seconds": round(time.monotonic() - started, 1),
            "load_start": " ".join(f"{x:.2f}" for x in load_start),
            "load_end": " ".join(f"{x:.2f}" for x in load_end),
            **{k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(args).items()},
        },
    }
    text = markdown(result)
    print(text)
    stem = f"{stamp.strftime('%Y%m%d-%H%M%S')}-scale-{args.backend}-scale{args.scale:g}"
    os.makedirs(args.results, exist_ok=True)
    json_path = os.path.join(args.results, f"{stem}.json")
    with open(json_path, "w") as f:
        json.dump(result, f, indent=2, ensure_ascii=False, default=str)
        f.write("\n")
    with open(os.path.join(args.results, f"{stem}.md"), "w") as f:
        f.write(text)
    log(f"wrote {os.path.relpath(json_path)} and its .md")
    return 130 if interrupted else 0
