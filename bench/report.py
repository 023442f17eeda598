"""The table: one row per metric, one column per system, the limit and the ratios; the
fusestore request counts per workload; the machine. Written as JSON and Markdown."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from typing import Any

from runner import LIMIT, Outcome
from workloads import Metric

PEERS = ("s3fs", "rclone")


def machine(backend: Any, versions: dict[str, str]) -> dict[str, Any]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(next(line.split()[1] for line in f if line.startswith("MemTotal"))) * 1024
    except (OSError, StopIteration, ValueError):
        pass
    fio = "?"
    try:
        fio = subprocess.run(["fio", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        fio = "not installed"
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "server": f"{backend.name} {backend.version()}",
        "moto": _version("moto"),
        "boto3": _version("boto3"),
        "kind": backend.kind,
        "sdk": f"{backend.objects().sdk} {_version(backend.objects().sdk)}",
        "fio": fio,
        **versions,
    }


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def fmt(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def ratio(a: Any, b: Any) -> str:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0:
        return f"{a / b:.2f}x"
    return "—"


def cell(outcome: Outcome | None, metric: Metric, is_limit: bool) -> Any:
    if outcome is None:
        return "not run"
    if metric.id in outcome.values:
        return outcome.values[metric.id]
    if is_limit and not metric.limit:
        return "n/a"
    if outcome.error:
        return outcome.error if outcome.error.startswith("skipped") else f"failed: {outcome.error}"
    return "n/a"


def build(
    order: list[tuple[list[Metric], dict[str, Outcome]]],
    systems: list[str],
    info: dict[str, Any],
    scrub: Any,
) -> dict[str, Any]:
    rows = []
    requests: dict[str, Any] = {}
    counters: dict[str, Any] = {}
    server: dict[str, Any] = {}
    notes: list[str] = []
    durations: dict[str, Any] = {}
    rounds: dict[str, Any] = {}  # each round's values, where there were several
    for metrics, outcomes in order:
        tag = "".join(dict.fromkeys(m.workload for m in metrics))
        for metric in metrics:
            cells = {}
            for name in ("fusestore", *PEERS):
                cells[name] = cell(outcomes.get(name), metric, False) if name in systems else "not run"
            cells[LIMIT] = cell(outcomes.get(LIMIT), metric, True)
            cells = {k: scrub(v) if isinstance(v, str) else v for k, v in cells.items()}
            rows.append(
                {
                    "workload": metric.workload,
                    "metric": metric.label,
                    "unit": metric.unit,
                    "better": "lower" if metric.lower_is_better else "higher",
                    "limit_is": metric.limit or "n/a",
                    **cells,
                }
            )
        for name, outcome in outcomes.items():
            durations.setdefault(tag, {})[name] = round(outcome.seconds, 1)
            if outcome.rounds:
                rounds.setdefault(tag, {})[name] = outcome.rounds
            if outcome.server_requests is not None:
                server.setdefault(tag, {})[name] = outcome.server_requests
            for note in outcome.notes:
                notes.append(f"({tag}) {name}: {scrub(note)}")
        fs = outcomes.get("fusestore")
        if fs is not None and fs.requests is not None:
            requests[tag] = fs.requests
        if fs is not None and fs.counters is not None:
            counters[tag] = fs.counters
    return {
        "machine": info,
        "systems": systems,
        "rows": rows,
        "fusestore_requests": requests,
        "fusestore_metrics": counters,
        "server_requests": server,
        "seconds_per_workload": durations,
        "rounds": rounds,
        "notes": notes,
    }


def table(header: list[str], lines: list[list[str]]) -> str:
    lines = [[c.replace("|", "\\|") for c in line] for line in lines]
    widths = [
        max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)
    ]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |")
    return "\n".join(out)


def main_table(result: dict[str, Any]) -> str:
    header = [
        "workload",
        "metric",
        "fusestore",
        "s3fs",
        "rclone",
        "limit",
        "fusestore/s3fs",
        "fusestore/rclone",
        "fusestore/limit",
        "limit is",
    ]
    lines = []
    for row in result["rows"]:
        arrow = "↓" if row["better"] == "lower" else "↑"
        lines.append(
            [
                row["workload"],
                f"{row['metric']} [{row['unit']} {arrow}]",
                fmt(row["fusestore"]),
                fmt(row["s3fs"]),
                fmt(row["rclone"]),
                fmt(row[LIMIT]),
                ratio(row["fusestore"], row["s3fs"]),
                ratio(row["fusestore"], row["rclone"]),
                ratio(row["fusestore"], row[LIMIT]),
                row["limit_is"],
            ]
        )
    return table(header, lines)


def store_word(result: dict[str, Any]) -> str:
    """What the store's requests are called: "S3" on S3 servers, else nothing."""
    return "S3 " if result["machine"].get("kind", "s3") == "s3" else ""


def requests_table(result: dict[str, Any]) -> str:
    lines = []
    for tag, counts in result["fusestore_requests"].items():
        total = sum(counts.values())
        detail = ", ".join(f"{op} {n}" for op, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        lines.append([tag, str(total), detail or "none"])
    word = store_word(result)
    return table(["workload", "requests", f"fusestore's {word}requests by kind (status before/after)"], lines)


def metrics_table(result: dict[str, Any]) -> str:
    """How far fusestore's Prometheus counters moved in each workload."""
    per = result.get("fusestore_metrics") or {}
    labels = list(next(iter(per.values()), {}))
    lines = [[tag, *(f"{moved[label]:,.0f}" for label in labels)] for tag, moved in per.items()]
    return table(["workload", *labels], lines)


def server_table(result: dict[str, Any]) -> str:
    systems = ["fusestore", *PEERS]
    lines = []
    for tag, per in result["server_requests"].items():
        line = [tag]
        for name in systems:
            counts = per.get(name)
            if counts is None:
                line.append("—")
                continue
            top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
            detail = ", ".join(f"{op} {n}" for op, n in top)
            line.append(f"{sum(counts.values())} ({detail})" if detail else "0")
        lines.append(line)
    return table(["workload", *systems], lines)


def markdown(result: dict[str, Any], title: str) -> str:
    m = result["machine"]
    s3 = m.get("kind", "s3") == "s3"
    listing = "a boto3 listing" if s3 else f"a listing with {m['sdk'].split()[0]}"
    parts = [
        f"# {title}",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, kernel {m['kernel']}; "
        f"Python {m['python']}; server: {m['server']}; fusestore {m.get('fusestore', '?')}; "
        f"s3fs: {m.get('s3fs', 'not run (S3 only)')}; rclone: {m.get('rclone', '?')}; "
        + (f"moto {m['moto']}; boto3 {m['boto3']}" if s3 else f"the bench's SDK: {m['sdk']}")
        + f"; {m['fio']}.",
        "",
        f"Run: {result['config']['started']} UTC, scale {result['config']['scale']}, "
        f"{result['config']['seconds']:.0f} s in all"
        + (
            f"; each figure is the median of {result['config']['repeat']} rounds. "
            if result["config"].get("repeat", 1) > 1
            else ". "
        )
        + "Ratios are fusestore's value over the other's: for ↓ (seconds, MiB) below 1 means fusestore "
        'is better, for ↑ (MB/s, ops/s) above 1 does. "Visible" is measured from the operation\'s '
        f"start until {listing} begun after it shows the final objects.",
        "",
        main_table(result),
        "",
        f"## fusestore's {store_word(result)}requests per workload",
        "",
        requests_table(result),
        "",
    ]
    if result.get("fusestore_metrics"):
        parts += [
            "## fusestore's metrics per workload",
            "",
            "How far the counters served on `--metrics-addr` moved, scraped before and after each workload.",
            "",
            metrics_table(result),
            "",
        ]
    if result["server_requests"]:
        parts += [
            "## S3 requests per workload as the server logged them",
            "",
            "All systems, the same window as fusestore's count; the three commonest kinds "
            "(the log cannot tell PutObject from CopyObject: Put/CopyObject).",
            "",
            server_table(result),
            "",
        ]
    if result["notes"]:
        parts += ["## Notes", "", *(f"- {n}" for n in result["notes"]), ""]
    return "\n".join(parts)


def write(result: dict[str, Any], directory: str, stem: str, title: str) -> tuple[str, str]:
    os.makedirs(directory, exist_ok=True)
    json_path = os.path.join(directory, f"{stem}.json")
    md_path = os.path.join(directory, f"{stem}.md")
    with open(json_path, "w") as f:
        json.dump(result, f, indent=2, ensure_ascii=False, default=str)
        f.write("\n")
    with open(md_path, "w") as f:
        f.write(markdown(result, title))
    return json_path, md_path


def python_version() -> str:
    return sys.version.split()[0]
