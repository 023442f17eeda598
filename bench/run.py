"""fusestore against s3fs-fuse, rclone mount and the limit (the store's SDK / local disk), on
one local server: S3 (moto by default, BACKEND=seaweedfs for SeaweedFS), or an emulator
(BACKEND=azurite, BACKEND=gcs-emulator; s3fs-fuse speaks only S3 and is left out there).

    python bench/run.py [--only a,b,...] [--peers fusestore,s3fs,rclone] [--scale 0.25]
    python bench/run.py --suite scale [...]   (bench/scale.py: huge directories and buckets)

Prints one table and writes it as JSON and Markdown under bench/results/. Every mount,
process and bucket it makes is removed however it ends; it stops by itself within the
global timeout (each workload on each system has its own timeout too)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from datetime import UTC, datetime

import report
from common import Deadline, guarded_run
from runner import Runner
from servers import BACKENDS, make_backend
from systems import SYSTEMS, System
from workloads import WORKLOADS, Ctx

HERE = os.path.dirname(os.path.abspath(__file__))

ALL_KEYS = "abcdefghijk"

S3_BACKENDS = ("moto", "seaweedfs")
#: Systems that mount S3 buckets only.
S3_ONLY = ("s3fs",)

#: `--suite NAME` runs that module's main(the other arguments) instead of the workloads a-k.
SUITES = {"scale": "scale", "soak": "soak"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--suite",
        default="default",
        choices=["default", *SUITES],
        help="default: the workloads a-k; scale: huge directories and buckets;\n"
        "soak: an hour of steady work (--suite NAME --help)",
    )
    p.add_argument(
        "--only", default=",".join(ALL_KEYS), help="workloads to run, e.g. a,b,e (default: all, a-k)"
    )
    p.add_argument(
        "--peers",
        default=None,
        help="systems to mount (default: all three on S3; fusestore,rclone on the emulators)",
    )
    p.add_argument(
        "--scale", type=float, default=1.0, help="shrink sizes and counts (e.g. 0.1 for a quick run)"
    )
    p.add_argument(
        "--backend",
        default=os.environ.get("BACKEND") or "moto",
        choices=BACKENDS,
        help="moto (default), seaweedfs, azurite or gcs-emulator",
    )
    p.add_argument(
        "--timeout", type=float, default=1200.0, help="global timeout in seconds (default 1200: 20 minutes)"
    )
    p.add_argument(
        "--workload-timeout",
        type=float,
        default=None,
        help="seconds each workload may take on each system (default: its own budget, scaled)",
    )
    p.add_argument(
        "--fusestore-opts", default="", help="extra options for `fusestore mount`, space-separated"
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of each workload; the table shows each figure's median (default 1)",
    )
    p.add_argument("--results", default=os.path.join(HERE, "results"), help="where the JSON and Markdown go")
    args = p.parse_args(argv)
    args.only = {k.strip() for k in args.only.replace(",", " ").split() if k.strip()}
    unknown = args.only - set(ALL_KEYS)
    if unknown:
        p.error(f"unknown workload(s) {', '.join(sorted(unknown))}: choose among {', '.join(ALL_KEYS)}")
    s3 = args.backend in S3_BACKENDS
    if args.peers is None:
        args.peers = "fusestore,s3fs,rclone" if s3 else "fusestore,rclone"
    args.peers = [s.strip() for s in args.peers.split(",") if s.strip()]
    for name in args.peers:
        if name not in SYSTEMS:
            p.error(f"unknown system {name!r}: choose among {', '.join(SYSTEMS)}")
        if name in S3_ONLY and not s3:
            p.error(f"{name} speaks only S3: not on {args.backend}")
    if not 0 < args.scale <= 1:
        p.error("--scale must be in (0, 1]")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    suite_parser = argparse.ArgumentParser(add_help=False)
    suite_parser.add_argument("--suite", default="default")
    picked, rest = suite_parser.parse_known_args(argv)
    if picked.suite in SUITES:
        return int(importlib.import_module(SUITES[picked.suite]).main(rest))
    args = parse_args(argv)
    started = time.monotonic()
    stamp = datetime.now(UTC)
    workdir, cleanup = guarded_run("fusestore-bench-", args.timeout + 120, log)

    def scrub(text: str) -> str:
        return text.replace(workdir, "$WORKDIR").replace(os.path.dirname(HERE), ".")

    global_deadline = Deadline(args.timeout, "the whole run")
    systems: dict[str, System] = {}
    interrupted = False
    order = []
    root = os.geteuid() == 0
    info: dict[str, object] = {}
    try:
        backend = make_backend(args.backend, workdir)
        cleanup.push("server", backend.stop)
        log(f"starting {backend.name} on 127.0.0.1 ...")
        backend.start()
        extra = args.fusestore_opts.split()
        for name in args.peers:
            system = (
                SYSTEMS[name](backend, workdir, extra)
                if name == "fusestore"
                else SYSTEMS[name](backend, workdir)
            )
            systems[name] = system
            cleanup.push(f"{name} mount", system.cleanup)
        shown = [n for n in SYSTEMS if args.backend in S3_BACKENDS or n not in S3_ONLY]
        versions = {name: SYSTEMS[name](backend, workdir).version() for name in shown}
        info = report.machine(backend, versions)
        ctx = Ctx(backend=backend, scale=args.scale, workdir=workdir, root=root, log=log)
        runner = Runner(ctx, systems, args.workload_timeout, global_deadline, repeat=max(1, args.repeat))
        cleanup.push("buckets", lambda: [runner.drop_bucket(b) for b in list(runner.buckets)])
        if not root:
            log("not root: caches cannot be dropped, so the 'cold' figures are not cold")
        for cls in WORKLOADS:
            workload = cls(ctx)
            if not set(workload.keys) & args.only:
                continue
            log(f"({''.join(workload.keys)}) preparing ...")
            try:
                workload.setup()
            except Exception as exc:
                log(f"({''.join(workload.keys)}) setup failed: {exc}")
                continue
            order.append((workload.metrics(), runner.run(workload)))
    except KeyboardInterrupt as exc:
        interrupted = True
        log(f"interrupted ({exc}): cleaning up")
    finally:
        cleanup.run_all(log)
    if not order or not info:
        return 130 if interrupted else 1
    result = report.build(order, list(systems), info, scrub)
    if args.backend not in S3_BACKENDS:
        result["notes"].insert(0, f"s3fs-fuse speaks only S3: not run on {args.backend}.")
    result["config"] = {
        "interrupted": interrupted,
        "started": stamp.strftime("%Y-%m-%d %H:%M:%S"),
        "scale": args.scale,
        "repeat": max(1, args.repeat),
        "backend": args.backend,
        "only": "".join(sorted(args.only)),
        "peers": args.peers,
        "seconds": round(time.monotonic() - started, 1),
        "global_timeout": args.timeout,
        "fusestore_opts": args.fusestore_opts,
        "root": root,
    }
    title = f"fusestore benchmark ({args.backend}, scale {args.scale:g})"
    print(report.markdown(result, title))
    stem = f"{stamp.strftime('%Y%m%d-%H%M%S')}-{args.backend}-scale{args.scale:g}"
    json_path, md_path = report.write(result, args.results, stem, title)
    log(f"wrote {os.path.relpath(json_path)} and {os.path.relpath(md_path)}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
