"""Shared helpers: deadlines, child processes in their own process groups, cache dropping,
and the registry of everything that must be undone when the run ends (however it ends)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from fusestore.testing import serverprocess

MiB = 2**20


class BenchError(Exception):
    """One workload failed on one system; the message goes into the table's cell."""


class Deadline:
    """A point in time every blocking step of one workload on one system must respect."""

    def __init__(self, seconds: float, what: str = "") -> None:
        self.seconds = seconds
        self.what = what
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def check(self) -> None:
        if self.remaining() <= 0:
            raise BenchError(f"timeout after {self.seconds:.0f}s{' in ' + self.what if self.what else ''}")

    def bounded(self, seconds: float) -> float:
        """`seconds`, or less if the deadline comes first; raises once it has passed."""
        self.check()
        return max(0.1, min(seconds, self.remaining()))


# --- child processes -------------------------------------------------------------------

_children: set[subprocess.Popen[Any]] = set()
_children_lock = threading.Lock()


def spawn(cmd: Sequence[str], *, die_with_parent: bool = False, **kwargs: Any) -> subprocess.Popen[Any]:
    """Start `cmd` in a new session (its own process group), remembered for cleanup.
    `die_with_parent` (for servers and daemons, started while no other thread runs): it
    gets SIGTERM if the bench dies."""
    if die_with_parent:
        kwargs["preexec_fn"] = serverprocess.die_with_parent  # a killed bench leaves nothing
    proc = subprocess.Popen(list(cmd), start_new_session=True, **kwargs)
    with _children_lock:
        _children.add(proc)
    return proc


def forget(proc: subprocess.Popen[Any]) -> None:
    with _children_lock:
        _children.discard(proc)


def kill_group(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    """Signal the process group `proc` leads (it was started in a session of its own)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_process(proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """SIGTERM the group, then SIGKILL it after `grace` seconds; reaps `proc`."""
    if proc.poll() is None:
        kill_group(proc, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            kill_group(proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
    kill_group(proc, signal.SIGKILL)  # stragglers left in the group
    forget(proc)


def kill_all_children() -> None:
    with _children_lock:
        procs = list(_children)
    for proc in procs:
        stop_process(proc, grace=2.0)


def run(
    cmd: Sequence[str],
    deadline: Deadline,
    *,
    limit: float | None = None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    check: bool = True,
    discard: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` to completion within the deadline (and `limit` seconds); kills its whole
    group on timeout. Raises BenchError on timeout or (with `check`) a non-zero exit.
    `discard`: send its standard output to /dev/null (binary data, big listings)."""
    timeout = deadline.bounded(limit if limit is not None else deadline.remaining())
    stdout = subprocess.DEVNULL if discard else subprocess.PIPE
    proc = spawn(cmd, stdout=stdout, stderr=subprocess.PIPE, text=True, errors="replace", env=env, cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=10)
        raise BenchError(f"timeout: {os.path.basename(cmd[0])} still running after {timeout:.0f}s") from None
    finally:
        kill_group(proc)
        forget(proc)
    if check and proc.returncode != 0:
        lines = (err or out or "").strip().splitlines() or [""]
        more = f" (and {len(lines) - 1} more lines)" if len(lines) > 1 else ""
        raise BenchError(f"{os.path.basename(cmd[0])} exited {proc.returncode}: {lines[0][:200]}{more}")
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)


def timed(cmd: Sequence[str], deadline: Deadline, **kwargs: Any) -> float:
    """Seconds `cmd` took (see `run`)."""
    t0 = time.monotonic()
    run(cmd, deadline, **kwargs)
    return time.monotonic() - t0


# --- the machine -----------------------------------------------------------------------


def drop_caches() -> None:
    """Drop the kernel's clean page, dentry and inode caches (root only; no global sync)."""
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def sync_fs(path: str, deadline: Deadline) -> None:
    """Sync the one file system holding `path` (never a global sync)."""
    run(["sync", "-f", path], deadline, limit=120)


def mounts_under(base: str) -> list[str]:
    """Mount points at or below `base`, deepest first."""
    found = []
    with open("/proc/self/mounts") as f:
        for line in f:
            point = line.split()[1].replace("\\040", " ")
            if point == base or point.startswith(base.rstrip("/") + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def fs_type(path: str) -> str | None:
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[1] == path:
                return fields[2]
    return None


def lazy_unmount(path: str) -> None:
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(["fusermount3", "-u", "-z", path], capture_output=True, timeout=20)


def group_rss(pgid: int) -> int:
    """Resident bytes of every process in process group `pgid` (0 if none is left)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError, IndexError):
            continue
    return total


class RssSampler:
    """Samples the RSS of a process group every `interval` seconds; `peak` in bytes."""

    def __init__(self, pgid: int, interval: float = 0.1) -> None:
        self.pgid = pgid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, group_rss(self.pgid))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, group_rss(self.pgid))


# --- cleanup ---------------------------------------------------------------------------


class Cleanup:
    """Undo actions, run newest first, each on its own (one failing does not stop the rest)."""

    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[[], object]]] = []
        self._lock = threading.Lock()

    def push(self, what: str, action: Callable[[], object]) -> Callable[[], object]:
        with self._lock:
            self._actions.append((what, action))
        return action

    def discard(self, action: Callable[[], object]) -> None:
        with self._lock:
            self._actions = [(w, a) for w, a in self._actions if a is not action]

    def run_all(self, log: Callable[[str], None] = print) -> None:
        while True:
            with self._lock:
                if not self._actions:
                    return
                what, action = self._actions.pop()
            try:
                action()
            except Exception as exc:
                log(f"cleanup: {what}: {exc}")


def guarded_run(prefix: str, hard_stop_after: float, log: Callable[[str], None]) -> tuple[str, Cleanup]:
    """A work directory and the registry that undoes the run (the directory, child
    processes, mounts under it), with SIGINT/SIGTERM raised as KeyboardInterrupt and a
    watchdog that undoes everything and exits 3 when the run is not over after
    `hard_stop_after` seconds."""
    workdir = tempfile.mkdtemp(prefix=prefix)
    cleanup = Cleanup()

    def watchdog() -> None:
        log(f"the run overran its time ({hard_stop_after:.0f}s): cleaning up and exiting")
        cleanup.run_all(log)
        os._exit(3)

    hard_stop = threading.Timer(hard_stop_after, watchdog)
    hard_stop.daemon = True
    hard_stop.start()
    cleanup.push("watchdog", hard_stop.cancel)  # undone last: it guards the rest
    cleanup.push("work directory", lambda: shutil.rmtree(workdir, ignore_errors=True))
    cleanup.push("processes", kill_all_children)
    cleanup.push("stray mounts", lambda: [lazy_unmount(m) for m in mounts_under(workdir)])

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return workdir, cleanup
