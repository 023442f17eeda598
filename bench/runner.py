"""Runs one workload on the limit and on every system: fresh bucket (or a verified-unchanged
shared one for read-only workloads), fresh mount, bounded time, cleanup whatever happens."""

from __future__ import annotations

import contextlib
import os
import statistics
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from common import BenchError, Deadline
from systems import Fusestore, System
from workloads import Ctx, Workload

LIMIT = "limit"


@dataclass
class Outcome:
    values: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    requests: dict[str, int] | None = None  # fusestore's own count (status before/after)
    server_requests: dict[str, int] | None = None  # from the server's request log
    #: how far fusestore's Prometheus counters moved (scraped before and after)
    counters: dict[str, float] | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: every round's values when the workload ran more than once (`values` holds medians)
    rounds: list[dict[str, float]] = field(default_factory=list)

    def fail(self, message: str) -> None:
        if self.error is None:
            self.error = message


#: Seconds past the mount's sampling interval (1 s) before the counters are read again.
SAMPLED_LAG = 1.5


def _diff(before: dict[str, int] | None, after: dict[str, int] | None) -> dict[str, int] | None:
    if before is None or after is None:
        return None
    ops = sorted(set(before) | set(after))
    return {op: after.get(op, 0) - before.get(op, 0) for op in ops if after.get(op, 0) != before.get(op, 0)}


def _message(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, BenchError):
        where = traceback.extract_tb(exc.__traceback__)
        frames = [f"{os.path.basename(f.filename)}:{f.lineno}" for f in where if "bench" in f.filename]
        if frames:
            text += f" (at {frames[-1]})"
    return " ".join(text.split())[:300]


def median_of(rounds: list[Outcome]) -> Outcome:
    """One outcome for several rounds of the same system: each value the median of the
    rounds that measured it; failed if every round failed (else the failures are noted)."""
    done = [o for o in rounds if o.error is None]
    if not done:
        return rounds[0]
    keys = dict.fromkeys(k for o in done for k in o.values)
    combined = Outcome(
        values={k: statistics.median(o.values[k] for o in done if k in o.values) for k in keys},
        requests=done[0].requests,
        server_requests=done[0].server_requests,
        seconds=sum(o.seconds for o in rounds),
        rounds=[o.values for o in done],
    )
    combined.notes = list(dict.fromkeys(n for o in rounds for n in o.notes))
    failed = [o.error for o in rounds if o.error is not None]
    if failed:
        combined.notes.append(f"{len(failed)} of {len(rounds)} rounds failed, e.g. {failed[0]}")
    return combined


class Runner:
    def __init__(
        self,
        ctx: Ctx,
        systems: dict[str, System],
        timeout: float | None,
        global_deadline: Deadline,
        repeat: int = 1,
    ):
        self.ctx = ctx
        self.systems = systems
        self.timeout = timeout
        self.global_deadline = global_deadline
        self.repeat = repeat
        self.buckets: set[str] = set()

    def budget(self, workload: Workload) -> float:
        if self.timeout is not None:
            return self.timeout
        return max(60.0, workload.budget * self.ctx.scale)

    def new_bucket(self, tag: str) -> str:
        name = self.ctx.backend.new_bucket(tag)
        self.buckets.add(name)
        return name

    def drop_bucket(self, name: str) -> None:
        try:
            self.ctx.backend.delete_bucket(name)
            self.buckets.discard(name)
        except Exception as exc:
            self.ctx.log(f"  could not delete bucket {name}: {_message(exc)}")

    def run(self, workload: Workload) -> dict[str, Outcome]:
        """The workload on the limit and every system, `repeat` rounds (each round runs
        them all in turn, so a slow spell of the machine hits every one alike)."""
        rounds = [self.run_round(workload) for _ in range(self.repeat)]
        if len(rounds) == 1:
            return rounds[0]
        return {name: median_of([r[name] for r in rounds if name in r]) for name in rounds[0]}

    def run_round(self, workload: Workload) -> dict[str, Outcome]:
        outcomes: dict[str, Outcome] = {}
        shared: str | None = None
        snapshot: dict[str, Any] | None = None
        tag = "".join(workload.keys)
        try:
            for name in [LIMIT, *self.systems]:
                outcome = Outcome()
                outcomes[name] = outcome
                started = time.monotonic()
                seconds = min(self.budget(workload), self.global_deadline.remaining())
                deadline = Deadline(seconds, f"({tag}) on {name}")
                bucket = None
                try:
                    if seconds <= 0:
                        raise BenchError("skipped: the run's global timeout was reached")
                    if workload.shared:
                        if shared is None:
                            shared = self.new_bucket(tag)
                            workload.seed(shared)
                            snapshot = self.ctx.backend.objects().list(shared, "")
                        bucket = shared
                    else:
                        bucket = self.new_bucket(f"{tag}-{name}")
                        workload.seed(bucket)
                    if name == LIMIT:
                        try:
                            workload.limit(bucket, deadline, outcome.values)
                        finally:
                            workload.stop_watchers()
                    else:
                        self.on_system(workload, self.systems[name], bucket, deadline, outcome)
                except Exception as exc:
                    outcome.fail(_message(exc))
                finally:
                    if bucket is not None and bucket != shared:
                        self.drop_bucket(bucket)
                    elif shared is not None:
                        now = self.ctx.backend.objects().list(shared, "")
                        if now != snapshot:
                            outcome.notes.append("changed the read-only bucket; it was seeded anew")
                            self.drop_bucket(shared)
                            shared = None
                    outcome.seconds = time.monotonic() - started
                status = f"failed: {outcome.error}" if outcome.error else "ok"
                self.ctx.log(f"  ({tag}) {name:<9} {outcome.seconds:6.1f}s  {status}")
        finally:
            if shared is not None:
                self.drop_bucket(shared)
        return outcomes

    def on_system(
        self, workload: Workload, system: System, bucket: str, deadline: Deadline, outcome: Outcome
    ) -> None:
        backend = self.ctx.backend
        mnt = system.mount(bucket)
        try:
            before = offset = scraped = None
            try:
                before = system.requests()
                if isinstance(system, Fusestore):
                    scraped = system.counters()
                offset = backend.log_offset()
                workload.run(system, mnt, bucket, deadline, outcome.values)
            except Exception as exc:
                outcome.fail(_message(exc))
            finally:
                workload.stop_watchers()
            with contextlib.suppress(Exception):
                outcome.requests = _diff(before, system.requests())
            if isinstance(system, Fusestore) and scraped is not None:
                try:
                    time.sleep(SAMPLED_LAG)  # the byte counters are sampled once a second
                    after = system.counters()
                    outcome.counters = {k: after[k] - scraped[k] for k in after}
                except Exception as exc:
                    outcome.notes.append(f"metrics scrape failed: {_message(exc)}")
            outcome.server_requests = backend.requests_since(offset)
            if isinstance(system, Fusestore) and outcome.error is None:
                with contextlib.suppress(Exception):
                    dirty = system.status().get("dirty_items")
                    if dirty:
                        outcome.notes.append(f"{dirty} item(s) still dirty when measured visible")
        finally:
            try:
                system.unmount(Deadline(min(120.0, max(30.0, deadline.remaining() + 30)), "unmount"))
            except Exception as exc:
                outcome.fail(_message(exc))
        if outcome.error is not None:
            tail = system.log_tail(2000).replace(self.ctx.workdir, "$WORKDIR")[-300:]
            if tail:
                outcome.notes.append(f"end of its log: …{tail}")
        else:
            try:
                workload.verify(bucket)
            except Exception as exc:
                outcome.fail(f"check after unmounting: {_message(exc)}")
                for metric in workload.metrics():
                    if metric.final:
                        outcome.values.pop(metric.id, None)
        notes = getattr(workload, "notes", None)
        if notes is not None:
            with contextlib.suppress(Exception):
                outcome.notes.extend(notes(bucket))
