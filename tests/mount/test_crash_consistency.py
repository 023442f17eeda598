"""Crash consistency: rounds of a random workload on a real mount, each cut by kill -9 of the
daemon, then a remount on the same cache and a clean unmount; the bucket is then compared
with the reference model of `crash_model` (see its docstring for what a kill -9 guarantees).

The kill comes at a random moment, while a big file's multipart upload is under way, as it
completes, just after a rename, or as any upload lands. In some rounds (all of the short
form's) the daemon talks to the store over a slow link whose answers come late, so that the
kill falls between a change the store made and the daemon hearing of it.

Every round checks: every name holds a value the model allows (fsynced bytes there, nothing
older than the grace, no name deleted or renamed away coming back), every object a version
the workload wrote for its name, no object at a name it never used, no conflict copy (there
is no other writer), no multipart upload left after the clean unmount, and that the mount
shows what the bucket holds when the next round starts. The figures are printed at the end
(and in the failure).

The short form (3 rounds, small files and one multipart upload) runs with the suite; the
long form runs when FUSESTORE_CRASH_ROUNDS is set (rounds per server, moto and SeaweedFS).
FUSESTORE_CRASH_SEED replaces the seed (printed), FUSESTORE_CRASH_GRACE the seconds after
which a returned operation must be reflected (5; a later one may or may not be). To look
into a failure: FUSESTORE_CRASH_LOG_LEVEL=debug traces every store call and upload token in
the daemon's log, and FUSESTORE_CRASH_KEEP=DIR keeps, per round, the cache's journal and
index as the kill left them and after the next unmount, a list of its data files and the
path of the log.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import pytest

from .conftest import SERVERS, Mount
from .crash_model import (
    DIR,
    DIR_CHILDREN,
    DIRS,
    ROOT_NAMES,
    KiB,
    MiB,
    Model,
    Sizes,
    Workload,
    digest,
    partial_write,
)
from .slow_link import SlowAnswers
from .test_crash_and_outage import kill_9

SEED = int(os.environ.get("FUSESTORE_CRASH_SEED", "18"))
GRACE = float(os.environ.get("FUSESTORE_CRASH_GRACE", "5"))
LONG_ROUNDS = int(os.environ.get("FUSESTORE_CRASH_ROUNDS", "0"))
LOG_LEVEL = os.environ.get("FUSESTORE_CRASH_LOG_LEVEL", "info")
KEEP = os.environ.get("FUSESTORE_CRASH_KEEP")
#: Seconds a round's workload, its kill and its thread may take at most.
WORKLOAD_BOUND = 90.0
#: When a round's daemon is killed: at a random moment, while the multipart upload of a
#: big file is under way, as it completes, just after a rename, as any upload lands.
MODES = ("random", "cut", "complete", "rename", "landed")
#: Seconds a slow link holds back each answer of the store.
SLOW_ANSWERS = 0.5


@dataclass
class Figures:
    rounds: int = 0
    operations: int = 0
    bytes_fsynced: int = 0
    kills_during_uploads: int = 0
    kills_during_renames: int = 0
    #: kills just after an upload landed in the store (with answers late: not heard of)
    kills_after_landing: int = 0
    false_conflicts: int = 0
    orphans: int = 0
    resurrected: int = 0
    stale: int = 0
    lost: int = 0
    never_written: int = 0
    #: objects at names the workload never used
    strays: int = 0
    unclean_unmounts: int = 0
    unexpected_errors: int = 0
    view_mismatches: int = 0
    #: informative: names not reflecting an operation that returned within the grace
    late: int = 0
    #: informative: names left with the bytes of a write cut by the kill
    partial: int = 0

    def __str__(self) -> str:
        return ", ".join(f"{f.name.replace('_', ' ')}: {getattr(self, f.name)}" for f in fields(self))


def pool_name(key: str) -> bool:
    """Whether `key` is one of the names the workload uses (a file or a directory's)."""
    parts = key.split("/")
    if len(parts) == 1:
        return key in ROOT_NAMES
    return len(parts) == 2 and parts[0] in DIRS and parts[1] in (*DIR_CHILDREN, "")


@dataclass
class CrashRounds:
    """Runs rounds on one mount (same bucket, same cache) and tallies what they find."""

    mount: Mount
    #: every mount of the cache talks to the store through it (the cache belongs to its URL)
    link: SlowAnswers
    sizes: Sizes
    seed: int
    grace: float = GRACE
    figures: Figures = field(default_factory=Figures)
    failures: list[str] = field(default_factory=list)
    #: every value each name ever had (what "a version the workload wrote" means)
    history: dict[str, set[str | None]] = field(default_factory=dict)
    #: conflict copies and stray objects found so far (each is counted once)
    conflicts: set[str] = field(default_factory=set)
    options: list[str] = field(default_factory=list)
    #: the share of rounds whose first mount talks to the store over a slow link
    slow_share: float = 0.5
    #: seconds from the sight of a multipart upload to the kill, in "cut" rounds (at
    #: once: its id not heard of yet over a slow link; later: some parts sent)
    cut_after: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        self.options = list(self.mount.options)
        self.mount.log_level = LOG_LEVEL

    def keep(self, what: str) -> None:
        """Keep the cache's journal and index, a list of its data files and the log's path (see
        FUSESTORE_CRASH_KEEP)."""
        if KEEP is None:
            return
        into = Path(KEEP) / f"round-{self.figures.rounds:02d}-{what}"
        cache = self.mount.cache
        for part in ("journal", "index"):
            if (cache / part).is_dir():
                shutil.copytree(cache / part, into / part)
        into.mkdir(parents=True, exist_ok=True)
        data = sorted((cache / "data").glob("*")) if (cache / "data").is_dir() else []
        (into / "data.txt").write_text("".join(f"{p.name} {p.stat().st_size}\n" for p in data if p.exists()))
        (into / "log.txt").write_text(f"{self.mount.log}\n")

    def fail(self, kind: str, message: str) -> None:
        setattr(self.figures, kind, getattr(self.figures, kind) + 1)
        self.failures.append(f"round {self.figures.rounds}: {kind.replace('_', ' ')}: {message}")

    # -- the bucket ---------------------------------------------------------------------

    def read_bucket(self) -> tuple[dict[str, str | None], dict[str, bytes]]:
        """The model's names as the bucket holds them: values, and the files' bytes."""
        values: dict[str, str | None] = {}
        files: dict[str, bytes] = {}
        for key in self.mount.objects():
            if not pool_name(key):
                continue
            if key.endswith("/"):
                values[key] = DIR
                continue
            files[key] = self.mount.get(key)
            values[key] = digest(files[key])
            if "/" in key:
                values[key.split("/")[0] + "/"] = DIR
        return values, files

    def uploads(self) -> list[dict[str, str]]:
        client = self.mount.client
        found: list[dict[str, str]] = client.list_multipart_uploads(Bucket=self.mount.bucket).get(
            "Uploads", []
        )
        return found

    # -- one round --------------------------------------------------------------------

    def run(
        self, rounds: int, modes: list[str], *, warmup: tuple[float, float], random_kill: tuple[float, float]
    ) -> None:
        print(f"crash consistency: seed {self.seed}, {rounds} rounds, grace {self.grace}s")
        for number in range(rounds):
            self.round(number, modes[number % len(modes)], warmup, random_kill)
        print(f"crash consistency: {self.figures}")

    def round(
        self, number: int, mode: str, warmup: tuple[float, float], random_kill: tuple[float, float]
    ) -> None:
        rng = random.Random(f"{self.seed}:{number}")
        self.figures.rounds += 1
        baseline, files = self.read_bucket()
        for name, value in baseline.items():
            self.history.setdefault(name, set()).add(value)
        # The daemon's default write-back delay, or a short one (more uploads in flight);
        # a slow link (answers held back) in some rounds: a kill then often falls between
        # a change the store made and the daemon hearing of it.
        delay = rng.choice(["0.5", "2"])
        slow = rng.random() < self.slow_share
        self.mount.options = [*self.options, "--writeback-delay", delay]
        self.link.delay = SLOW_ANSWERS if slow else 0.0
        try:
            self.mount.start()
            self.check_view(files)
            model = Model(baseline)
            workload = Workload(
                self.mount.path,
                model,
                files,
                rng,
                self.sizes,
                warmup=rng.uniform(*warmup),
                want_big=mode in ("cut", "complete"),
                want_rename=mode == "rename",
                upload_after=float(delay),
            )
            thread = threading.Thread(target=workload.run, daemon=True)
            thread.start()
            try:
                self.await_moment(mode, workload, thread, rng, random_kill)
                kill = time.monotonic()
                workload.kill_requested.set()
                kill_9(self.mount)
                self.keep("killed")
                in_flight = self.uploads()
            finally:
                workload.stop.set()
                thread.join(30)
            assert not thread.is_alive(), "the workload did not stop after the kill"
        finally:
            self.link.delay = 0.0
        link_text = f"answers {SLOW_ANSWERS}s late" if slow else "answers at once"
        self.tally_kill(model, workload, kill, in_flight, f"{mode}, --writeback-delay {delay}, {link_text}")
        self.mount.options = list(self.options)

        self.mount.start()  # the same cache: the pending work is picked up
        code = self.mount.umount()
        self.keep("unmounted")
        if code != 0:
            self.fail("unclean_unmounts", f"exit {code}\n{self.mount.log_text()[-2000:]}")
            self.mount.kill()
        self.check_bucket(model, kill)
        orphans = self.uploads()
        for upload in orphans:
            self.fail("orphans", f"{upload['Key']} (upload {upload['UploadId'][:12]}…)")
            with contextlib.suppress(Exception):  # the next round counts its own
                self.mount.client.abort_multipart_upload(
                    Bucket=self.mount.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )

    def await_moment(
        self,
        mode: str,
        workload: Workload,
        thread: threading.Thread,
        rng: random.Random,
        random_kill: tuple[float, float],
    ) -> None:
        """Returns at the moment to kill the daemon: a random one, one with a multipart
        upload in flight or just completed, one just after a rename, or one just after an
        upload landed in the store (bounded, and at once if the workload stopped by itself)."""
        started = time.monotonic()
        deadline = started + WORKLOAD_BOUND - 30
        if mode == "random":
            deadline = min(deadline, started + rng.uniform(*random_kill))
        landed: dict[str, tuple[str, int]] | None = None
        while thread.is_alive() and time.monotonic() < deadline:
            if mode == "cut" and self.uploads():
                time.sleep(rng.uniform(*self.cut_after))
                return
            if mode == "complete" and workload.big_done.is_set():
                [big] = workload.reserved
                if self.listing().get(big, ("", 0))[1] == len(workload.files[big]):
                    self.figures.kills_after_landing += 1
                    return
            if mode == "rename" and workload.renamed.is_set():
                time.sleep(rng.uniform(0, 0.2))
                return
            if mode == "landed" and time.monotonic() - started > workload.warmup:
                listing = self.listing()
                if landed is not None and any(landed.get(key) != seen for key, seen in listing.items()):
                    self.figures.kills_after_landing += 1
                    return
                landed = listing
            time.sleep(0.02)

    def listing(self) -> dict[str, tuple[str, int]]:
        """The etag and size of every workload file in the bucket."""
        answer = self.mount.client.list_objects_v2(Bucket=self.mount.bucket)
        contents = answer.get("Contents", [])
        return {obj["Key"]: (obj["ETag"], obj["Size"]) for obj in contents if pool_name(obj["Key"])}

    def tally_kill(
        self, model: Model, workload: Workload, kill: float, in_flight: list[dict[str, str]], mode: str
    ) -> None:
        figures = self.figures
        done = [op for op in model.ops if op.ended is not None]
        figures.operations += len(done)
        figures.bytes_fsynced += workload.bytes_fsynced
        if in_flight:
            figures.kills_during_uploads += 1
        renames = [
            op
            for op in model.ops
            if op.kind.startswith("rename") and (op.ended is None or kill - op.ended < 1)
        ]
        if renames:
            figures.kills_during_renames += 1
        last = model.ops[-1].describe(kill) if model.ops else "none"
        print(
            f"round {figures.rounds} ({mode}): {len(done)} operations, killed "
            f"{kill - workload.started:.1f}s in, {len(in_flight)} multipart upload(s) in flight, last: {last}"
        )
        for error in workload.unexpected:
            self.fail("unexpected_errors", error)

    # -- checks ------------------------------------------------------------------------

    def log_lines(self, *words: str) -> str:
        """The daemon's last log lines with all of `words` (what it said about a name)."""
        try:
            text = self.mount.log.read_text(errors="replace")
        except OSError:
            return ""
        lines = [line for line in text.splitlines() if all(word in line for word in words)]
        return "".join(f"\n  log: {line}" for line in lines[-4:])

    def check_view(self, files: dict[str, bytes]) -> None:
        """The mount shows what the bucket holds (sizes of the model's files)."""
        for name, data in files.items():
            try:
                size = (self.mount.path / name).stat().st_size
            except OSError as exc:
                self.fail("view_mismatches", f"{name}: {exc!r}, the bucket has {len(data)} bytes")
                continue
            if size != len(data):
                self.fail("view_mismatches", f"{name}: {size} bytes, the bucket has {len(data)}")

    def check_bucket(self, model: Model, kill: float) -> None:
        objects = self.mount.objects()
        found: dict[str, str | None] = {}
        bodies: dict[str, bytes] = {}
        for key in sorted(objects):
            if ".conflict-" in key:
                # counted once, wherever a directory rename takes it later
                copy = key.rsplit("/", 1)[-1]
                if copy not in self.conflicts:
                    self.conflicts.add(copy)
                    origin = key.split(".conflict-")[0]
                    same = [k for k in objects if k.startswith(origin) and ".conflict-" not in k]
                    identical = same and self.mount.get(key) == self.mount.get(same[0])
                    self.fail(
                        "false_conflicts",
                        f"{key} ({'identical to' if identical else 'next to'} {same})"
                        + self.log_lines(origin, "conflict"),
                    )
                continue
            if key.endswith("/"):
                found[key] = DIR
                continue
            bodies[key] = self.mount.get(key)
            found[key] = digest(bodies[key])
        in_flight = model.in_flight()
        for name in sorted(model.names() | set(found)):
            value = found.get(name)
            for op in model.ops:
                self.history.setdefault(name, set()).update([op.changes[name]] if name in op.changes else [])
            if not pool_name(name):
                if name not in self.conflicts:  # counted once
                    self.conflicts.add(name)
                    self.fail("strays", f"{name}: no file of this name was ever written")
                continue
            if name.endswith("/"):  # a marker is optional; only one coming back is wrong
                if value is None or DIR in model.allowed(name, kill, self.grace):
                    continue
                self.fail("resurrected", f"directory {name}\n{model.timeline(name, kill)}")
                continue
            allowed = model.allowed(name, kill, self.grace)
            if value in allowed:
                if value not in model.allowed(name, kill, 0.0):
                    self.figures.late += 1
                    print(f"  {name}: {(value or 'absent')[:8]}, not as the last operations left it")
                    print(model.timeline(name, kill))
                self.history[name].add(value)
                continue
            cut = in_flight.partial.get(name) if in_flight is not None else None
            if cut is not None and value is not None and partial_write(bodies[name], *cut):
                self.figures.partial += 1
                self.history[name].add(value)
                continue
            timeline = model.timeline(name, kill) + self.log_lines(repr(name))
            if value is None:
                self.fail("lost", f"{name} is missing\n{timeline}")
            elif all(a is None for a in allowed):
                self.fail("resurrected", f"{name} ({value[:8]}) should be gone\n{timeline}")
            elif value in self.history.get(name, set()):
                self.fail("stale", f"{name} holds an older version {value[:8]}\n{timeline}")
            else:
                self.fail(
                    "never_written", f"{name}: {len(bodies[name])} bytes never written there\n{timeline}"
                )
            self.history[name].add(value)


def crash_rounds(
    mount_factory: Callable[..., Mount],
    rounds: int,
    sizes: Sizes,
    *,
    slow_share: float,
    cut_after: tuple[float, float],
    **timing: tuple[float, float],
) -> CrashRounds:
    mount = mount_factory(run=False)
    with SlowAnswers(mount.server.endpoint_url, 0.0) as link:
        mount.options += ["--endpoint-url", link.endpoint_url]
        runner = CrashRounds(mount, link, sizes, SEED, slow_share=slow_share, cut_after=cut_after)
        try:
            runner.run(rounds, list(MODES[1:4] if rounds <= 3 else MODES), **timing)
        finally:
            mount.kill()  # before the link goes
    return runner


def report(runner: CrashRounds) -> str:
    return f"seed {runner.seed}: {runner.figures}\n\n" + "\n\n".join(runner.failures)


@pytest.mark.timeout(240)
def test_crash_consistency_short(mount_factory: Callable[..., Mount]) -> None:
    """Three rounds over a slow link, killed while a 65 MiB file's multipart upload is in
    flight, as it completes, and just after a rename; small files otherwise."""
    sizes = Sizes(smallest=KiB, largest=MiB, big=(65 * MiB, 66 * MiB), live_limit=8 * MiB)
    runner = crash_rounds(
        mount_factory,
        3,
        sizes,
        slow_share=1.0,
        cut_after=(0, 0),
        warmup=(GRACE + 0.5, GRACE + 1.5),
        random_kill=(2, 8),
    )
    assert runner.figures.operations > 20, "the workload hardly ran: the test proves little"
    assert not runner.failures, report(runner)


@pytest.mark.slow
@pytest.mark.skipif(not LONG_ROUNDS, reason="the long form runs with FUSESTORE_CRASH_ROUNDS=N")
@pytest.mark.timeout(600 + 240 * LONG_ROUNDS)
@pytest.mark.parametrize("server", SERVERS, indirect=True)
def test_crash_consistency_long(mount_factory: Callable[..., Mount]) -> None:
    """FUSESTORE_CRASH_ROUNDS rounds, files of 1 KiB to 50 MiB, one of 70-80 MiB in every
    third round; killed at random (2-15 s in), during uploads and after renames."""
    sizes = Sizes(smallest=KiB, largest=50 * MiB, big=(70 * MiB, 80 * MiB), live_limit=160 * MiB)
    runner = crash_rounds(
        mount_factory,
        LONG_ROUNDS,
        sizes,
        slow_share=0.5,
        cut_after=(0, 1),
        warmup=(2, 12),
        random_kill=(2, 15),
    )
    assert not runner.failures, report(runner)
