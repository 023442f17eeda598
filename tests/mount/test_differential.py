"""Differential test: random POSIX operations on the mount and on a plain local directory.

A hypothesis state machine applies the same operation to both trees (the reference is a
directory under tmp_path, the other the real daemon on a fresh bucket) and requires the
same outcome: the same errno when one side refuses, and afterwards the same names, kinds,
permission bits, sizes and bytes. Touched paths are compared after every step, the whole
tree every few steps and after every remount; at the end of each run the daemon is
unmounted and the bucket must hold exactly the reference tree.

The run is seeded (`derandomize=True`) and not shrunk by default, so a failure costs the
same bounded time as a pass; set FUSESTORE_DIFF_SHRINK=1 to let hypothesis shrink it
(slow: every attempt starts a daemon).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import itertools
import os
import random
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from .conftest import Mount

KiB = 1024
MAX_FILE = 300 * KiB  # files stay small; several cross the 128 KiB FUSE write size
NAMES = ("a", "b", "c")  # few names: renames onto existing entries and non-empty rmdirs are common
MAX_DEPTH = 3
ALL_PATHS = sorted(
    "/".join(parts) for depth in range(1, MAX_DEPTH + 1) for parts in itertools.product(NAMES, repeat=depth)
)
MAX_FDS = 4
FILE_MODES = (0o644, 0o600, 0o640, 0o664, 0o666, 0o700, 0o755, 0o604)
DIR_MODES = (0o755, 0o700, 0o750, 0o775, 0o777, 0o711)
DEFAULT_DIR_PERM = 0o755  # the daemon's default umask 022
TREE_EVERY = 25  # steps between whole-tree comparisons
REMOUNT_AFTER = 120  # a remount becomes possible once this many steps ran since the last one

EXAMPLES = 10
STEPS = 300
MIN_TOTAL_STEPS = 20
assert EXAMPLES * STEPS >= MIN_TOTAL_STEPS

REF, MNT = 0, 1
SIDES = ("reference", "mount")

Outcome = tuple[str, Any]  # ("ok", value) or ("err", errno name)


def outcome(fn: Callable[[int], Any], side: int) -> Outcome:
    try:
        return ("ok", fn(side))
    except OSError as exc:
        return ("err", errno.errorcode.get(exc.errno or 0, str(exc.errno)))


def offsets() -> st.SearchStrategy[int]:
    """Offsets and sizes in [0, MAX_FILE], often next to a 128 KiB boundary."""
    near_boundary = st.builds(
        lambda k, d: min(MAX_FILE, max(0, k * 128 * KiB + d)), st.integers(0, 2), st.integers(-64, 64)
    )
    return st.one_of(st.integers(0, MAX_FILE), near_boundary, st.integers(0, 4 * KiB))


def lengths() -> st.SearchStrategy[int]:
    return st.one_of(st.integers(1, 200), st.integers(1, 20 * KiB), st.integers(1, 140 * KiB))


def payload(seed: int, length: int) -> bytes:
    return random.Random(seed).randbytes(length)


class Counter:
    steps = 0
    runs = 0
    remounts = 0


def step(func: Callable[..., None]) -> Callable[..., None]:
    """Count a rule as one operation; a raising rule marks the run as failed (see teardown)."""

    @functools.wraps(func)
    def wrapper(self: DifferentialMachine, *args: Any, **kwargs: Any) -> None:
        Counter.steps += 1
        self.steps += 1
        self.since_remount += 1
        try:
            func(self, *args, **kwargs)
        except Exception:  # not hypothesis' StopTest: a run that ran out of data is no failure
            self.healthy = False
            raise

    return wrapper


class DifferentialMachine(RuleBasedStateMachine):
    factory: ClassVar[Callable[..., Mount]]
    tmp: ClassVar[Path]

    def __init__(self) -> None:
        super().__init__()
        Counter.runs += 1
        self.run = Counter.runs
        self.mount: Mount | None = None
        self.roots: tuple[Path, Path] = (self.tmp, self.tmp)
        self.fds: list[tuple[str, int, int]] = []  # (path opened, reference fd, mount fd)
        self.steps = 0
        self.since_remount = 0
        self.healthy = True

    # -- setup and teardown ---------------------------------------------------------------

    @initialize(ttl=st.sampled_from(["60", "0.5"]))
    def start(self, ttl: str) -> None:
        """A fresh bucket and daemon; a short TTL makes the daemon list the store during the run."""
        print("INIT", self.run, ttl)
        ref = self.tmp / f"ref{self.run}"
        ref.mkdir()
        self.mount = self.factory("--writeback-delay", "0.2", "--metadata-ttl", ttl, name=f"mnt{self.run}")
        self.roots = (ref, self.mount.path)

    def teardown(self) -> None:
        print("RUN", self.run, self.steps, Counter.remounts)
        self.close_all()
        if self.mount is None or not self.healthy:
            return  # the fixture kills the daemon; the first failure is the one reported
        try:
            code = self.mount.umount()
            assert code == 0, f"umount exited with {code}\n{self.log()}"
            self.check_bucket()
            # What the next mount sees of the bucket (and of the cache) is the same tree.
            self.mount.start()
            self.compare_tree("mounted again after the run")
            code = self.mount.umount()
            assert code == 0, f"second umount exited with {code}\n{self.log()}"
            self.check_bucket()
        except Exception:
            self.healthy = False
            raise

    # -- helpers --------------------------------------------------------------------------

    def log(self) -> str:
        return "daemon log (tail):\n" + (self.mount.log_text() if self.mount else "")

    def path(self, side: int, rel: str) -> str:
        return os.path.join(self.roots[side], rel)

    def both(self, what: str, fn: Callable[[int], Any]) -> Outcome:
        """Run `fn(side)` on the reference, then on the mount; the outcomes must agree."""
        ref, mnt = outcome(fn, REF), outcome(fn, MNT)
        if ref != mnt:
            raise AssertionError(f"{what}: reference {_short(ref)} but mount {_short(mnt)}\n{self.log()}")
        return ref

    def walk(self, side: int) -> dict[str, tuple[str, int, int | bytes]]:
        """rel path -> (kind, permission bits, bytes for files / 0 for directories)."""
        found: dict[str, tuple[str, int, int | bytes]] = {}
        root = self.roots[side]

        def visit(rel: str) -> None:
            for name in sorted(os.listdir(os.path.join(root, rel) if rel else root)):
                child = f"{rel}/{name}" if rel else name
                found[child] = self.describe(side, child)
                if found[child][0] == "dir":
                    visit(child)

        visit("")
        return found

    def describe(self, side: int, rel: str) -> tuple[str, int, int | bytes]:
        full = self.path(side, rel)
        st_ = os.lstat(full)
        perm = stat.S_IMODE(st_.st_mode)
        if stat.S_ISDIR(st_.st_mode):
            return ("dir", perm, 0)
        if stat.S_ISREG(st_.st_mode):
            with open(full, "rb") as f:
                data = f.read()
            assert len(data) == st_.st_size, f"{SIDES[side]} {rel}: stat says {st_.st_size}, read {len(data)}"
            return ("file", perm, data)
        return ("other", perm, st_.st_size)

    def existing(self, kind: str | None = None) -> list[str]:
        tree = self.walk(REF)
        return [rel for rel, (k, _, _) in tree.items() if kind is None or k == kind]

    def pick(self, data: st.DataObject, kind: str | None = None, label: str = "path") -> str:
        """Mostly an existing path (of `kind`), sometimes any path of the small name space."""
        candidates = self.existing(kind)
        if candidates and data.draw(st.integers(0, 3), label=f"{label} any?") > 0:
            return data.draw(st.sampled_from(candidates), label=label)
        return data.draw(st.sampled_from(ALL_PATHS), label=label)

    def compare_paths(self, *rels: str, deep: bool = False) -> None:
        """The paths (and their parents' listings) agree on both sides."""
        todo = set(rels) | {os.path.dirname(r) for r in rels}
        for rel in sorted(todo):
            ref = outcome(lambda side, rel=rel: self.describe(side, rel) if rel else ("dir", 0, 0), REF)
            mnt = outcome(lambda side, rel=rel: self.describe(side, rel) if rel else ("dir", 0, 0), MNT)
            if ref != mnt:
                raise AssertionError(
                    f"after the step, {rel!r}: reference {_short(ref)} but mount {_short(mnt)}\n{self.log()}"
                )
            if ref[0] == "ok" and ref[1][0] == "dir":
                if deep:
                    self.compare_subtree(rel)
                else:
                    listing = [
                        sorted(os.listdir(self.path(side, rel) if rel else self.roots[side]))
                        for side in (REF, MNT)
                    ]
                    assert listing[REF] == listing[MNT], f"listing of {rel!r}: {listing}\n{self.log()}"

    def compare_subtree(self, rel: str) -> None:
        subtrees = []
        for side in (REF, MNT):
            subtrees.append({k: v for k, v in self.walk(side).items() if k.startswith(rel + "/")})
        self.assert_same_tree(subtrees[REF], subtrees[MNT], f"below {rel!r}")

    def compare_tree(self, when: str) -> None:
        self.assert_same_tree(self.walk(REF), self.walk(MNT), when)

    def assert_same_tree(self, ref: dict[str, Any], mnt: dict[str, Any], when: str) -> None:
        if ref == mnt:
            return
        lines = []
        for rel in sorted(set(ref) | set(mnt)):
            if ref.get(rel) != mnt.get(rel):
                lines.append(f"  {rel}: reference {_short(ref.get(rel))} mount {_short(mnt.get(rel))}")
        raise AssertionError(f"trees differ ({when}):\n" + "\n".join(lines) + "\n" + self.log())

    def compare_fd(self, index: int) -> None:
        """An open file reads the same through both descriptors (it may be renamed or unlinked)."""
        rel, *fds = self.fds[index]

        def contents(side: int) -> tuple[int, int, bytes]:
            st_ = os.fstat(fds[side])
            return st_.st_size, stat.S_IMODE(st_.st_mode), os.pread(fds[side], MAX_FILE + 1, 0)

        self.both(f"read fd {index} (opened as {rel})", contents)

    def close_all(self) -> None:
        while self.fds:
            _, ref_fd, mnt_fd = self.fds.pop()
            for fd in (ref_fd, mnt_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def keep_fd(self, rel: str, result: Outcome) -> None:
        """Both sides opened `rel`: keep the pair, or close it when enough are open."""
        if result[0] != "ok":
            return
        ref_fd, mnt_fd = result[1]
        if len(self.fds) >= MAX_FDS:
            self.both("close (new fd)", lambda side: os.close((ref_fd, mnt_fd)[side]))
        else:
            self.fds.append((rel, ref_fd, mnt_fd))

    def open_both(self, what: str, rel: str, flags: int, mode: int = 0o644) -> Outcome:
        """os.open on each side; ("ok", (ref fd, mnt fd)) or the common error."""
        opened = [
            outcome(lambda side: os.open(self.path(side, rel), flags, mode), side) for side in (REF, MNT)
        ]
        if opened[REF][0] != opened[MNT][0] or (opened[REF][0] == "err" and opened[REF][1] != opened[MNT][1]):
            for result in opened:
                if result[0] == "ok":
                    os.close(result[1])
            raise AssertionError(
                f"{what} {rel}: reference {_short(opened[REF])} but mount {_short(opened[MNT])}\n{self.log()}"
            )
        if opened[REF][0] == "err":
            return opened[REF]
        return ("ok", (opened[REF][1], opened[MNT][1]))

    # -- rules: files -----------------------------------------------------------------------

    @rule(
        data=st.data(),
        mode=st.sampled_from(FILE_MODES),
        excl=st.booleans(),
        trunc=st.booleans(),
        keep=st.booleans(),
    )
    @step
    def create_file(self, data: st.DataObject, mode: int, excl: bool, trunc: bool, keep: bool) -> None:
        rel = self.pick(data, None)
        flags = os.O_RDWR | os.O_CREAT | (os.O_EXCL if excl else 0) | (os.O_TRUNC if trunc else 0)
        result = self.open_both("create", rel, flags, mode)
        if result[0] == "ok":
            if keep:
                self.keep_fd(rel, result)
            else:
                self.both("close", lambda side: os.close(result[1][side]))
        self.compare_paths(rel)

    @rule(data=st.data())
    @step
    def open_existing(self, data: st.DataObject) -> None:
        rel = self.pick(data, "file")
        result = self.open_both("open", rel, os.O_RDWR)
        self.keep_fd(rel, result)
        self.compare_paths(rel)

    @rule(data=st.data(), offset=offsets(), length=lengths(), seed=st.integers(0, 2**32 - 1))
    @step
    def write_path(self, data: st.DataObject, offset: int, length: int, seed: int) -> None:
        """Open, pwrite (possibly past the end: a hole), close."""
        rel = self.pick(data, "file")
        length = max(1, min(length, MAX_FILE - offset))
        chunk = payload(seed, length)
        result = self.open_both("open for write", rel, os.O_WRONLY)
        if result[0] == "ok":
            self.both("pwrite", lambda side: os.pwrite(result[1][side], chunk, offset))
            self.both("close", lambda side: os.close(result[1][side]))
        self.compare_paths(rel)

    @precondition(lambda self: self.fds)
    @rule(data=st.data(), offset=offsets(), length=lengths(), seed=st.integers(0, 2**32 - 1))
    @step
    def write_fd(self, data: st.DataObject, offset: int, length: int, seed: int) -> None:
        index = data.draw(st.integers(0, len(self.fds) - 1), label="fd")
        length = max(1, min(length, MAX_FILE - offset))
        chunk = payload(seed, length)
        self.both("pwrite fd", lambda side: os.pwrite(self.fds[index][1 + side], chunk, offset))
        self.compare_fd(index)

    @rule(data=st.data(), size=offsets())
    @step
    def truncate_path(self, data: st.DataObject, size: int) -> None:
        rel = self.pick(data, "file")
        self.both("truncate", lambda side: os.truncate(self.path(side, rel), size))
        self.compare_paths(rel)

    @precondition(lambda self: self.fds)
    @rule(data=st.data(), size=offsets())
    @step
    def truncate_fd(self, data: st.DataObject, size: int) -> None:
        index = data.draw(st.integers(0, len(self.fds) - 1), label="fd")
        self.both("ftruncate", lambda side: os.ftruncate(self.fds[index][1 + side], size))
        self.compare_fd(index)

    @precondition(lambda self: self.fds)
    @rule(data=st.data())
    @step
    def fsync_fd(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.fds) - 1), label="fd")
        self.both("fsync", lambda side: os.fsync(self.fds[index][1 + side]))
        self.compare_fd(index)

    @precondition(lambda self: self.fds)
    @rule(data=st.data(), reopen=st.booleans())
    @step
    def close_fd(self, data: st.DataObject, reopen: bool) -> None:
        """Close an open file; perhaps open its path again (which may now be another file, or none)."""
        index = data.draw(st.integers(0, len(self.fds) - 1), label="fd")
        rel, ref_fd, mnt_fd = self.fds.pop(index)
        self.both("close fd", lambda side: os.close((ref_fd, mnt_fd)[side]))
        if reopen:
            self.keep_fd(rel, self.open_both("reopen", rel, os.O_RDWR))
        self.compare_paths(rel)

    @rule(data=st.data())
    @step
    def unlink(self, data: st.DataObject) -> None:
        rel = self.pick(data, "file")
        self.both("unlink", lambda side: os.unlink(self.path(side, rel)))
        self.compare_paths(rel)

    @rule(data=st.data(), mode=st.sampled_from(FILE_MODES + DIR_MODES))
    @step
    def chmod(self, data: st.DataObject, mode: int) -> None:
        rel = self.pick(data, None)
        self.both("chmod", lambda side: os.chmod(self.path(side, rel), mode))
        self.compare_paths(rel)

    # -- rules: directories and names -----------------------------------------------------------

    @rule(data=st.data(), mode=st.sampled_from(DIR_MODES))
    @step
    def mkdir(self, data: st.DataObject, mode: int) -> None:
        dirs = self.existing("dir")
        if dirs and data.draw(st.booleans(), label="below an existing dir?"):
            rel = (
                data.draw(st.sampled_from(dirs), label="parent")
                + "/"
                + data.draw(st.sampled_from(NAMES), label="name")
            )
        else:
            rel = self.pick(data, None)
        self.both("mkdir", lambda side: os.mkdir(self.path(side, rel), mode))
        self.compare_paths(rel)

    @rule(data=st.data())
    @step
    def rmdir(self, data: st.DataObject) -> None:
        rel = self.pick(data, "dir")
        self.both("rmdir", lambda side: os.rmdir(self.path(side, rel)))
        self.compare_paths(rel)

    @rule(data=st.data(), kind=st.sampled_from(["file", "dir", None]))
    @step
    def rename(self, data: st.DataObject, kind: str | None) -> None:
        """Files and directories, onto existing entries, into other directories, into themselves."""
        src = self.pick(data, kind, label="source")
        how = data.draw(st.sampled_from(["existing", "sibling", "any", "into dir"]), label="target is")
        if how == "existing":
            dst = self.pick(data, None, label="target")
        elif how == "sibling":
            dst = os.path.join(os.path.dirname(src), data.draw(st.sampled_from(NAMES), label="name"))
        elif how == "into dir":
            dirs = self.existing("dir") or [""]
            dst = os.path.join(data.draw(st.sampled_from(dirs), label="dir"), os.path.basename(src))
        else:
            dst = data.draw(st.sampled_from(ALL_PATHS), label="target")
        self.both("rename", lambda side: os.rename(self.path(side, src), self.path(side, dst)))
        self.compare_paths(src, dst, deep=True)

    # -- rules: the daemon --------------------------------------------------------------------

    @precondition(lambda self: self.since_remount >= REMOUNT_AFTER)
    @rule()
    @step
    def remount(self) -> None:
        """Close everything, unmount (which uploads everything), check the bucket, mount again."""
        assert self.mount is not None
        self.close_all()
        Counter.remounts += 1
        code = self.mount.umount()
        assert code == 0, f"umount exited with {code}\n{self.log()}"
        self.check_bucket()
        self.mount.start()
        self.since_remount = 0
        self.compare_tree("after the remount")

    @invariant()
    def periodic_tree(self) -> None:
        if self.mount is None or self.steps % TREE_EVERY or not self.steps:
            return
        try:
            for index in range(len(self.fds)):
                self.compare_fd(index)
            self.compare_tree(f"after step {self.steps}")
        except Exception:
            self.healthy = False
            raise

    # -- the bucket --------------------------------------------------------------------------

    def check_bucket(self) -> None:
        """Unmounted: the bucket holds the reference tree's files, byte for byte, and markers
        for its empty directories (and for no other directory)."""
        assert self.mount is not None
        tree = self.walk(REF)
        files = {rel: v for rel, v in tree.items() if v[0] == "file"}
        empty_dirs = {
            rel
            for rel, v in tree.items()
            if v[0] == "dir" and not any(other.startswith(rel + "/") for other in tree)
        }
        objects = self.mount.objects()
        keys = {k for k in objects if not k.endswith("/")}
        markers = {k[:-1] for k in objects if k.endswith("/")}
        problems = []
        if keys != set(files):
            problems.append(
                f"objects not in the reference: {sorted(keys - set(files))}; "
                f"files missing from the bucket: {sorted(set(files) - keys)}"
            )
        dirs = {rel: v[1] for rel, v in tree.items() if v[0] == "dir"}
        if markers - set(dirs):
            problems.append(f"markers of missing directories: {sorted(markers - set(dirs))}")
        # A non-empty directory keeps its marker when it carries attributes of its own
        # (filesystem.py: marker_wanted), so its mode must be in the marker.
        needed = empty_dirs | {rel for rel, perm in dirs.items() if perm != DEFAULT_DIR_PERM}
        if needed - markers:
            problems.append(f"directories without the marker they need: {sorted(needed - markers)}")
        for rel in sorted(markers & set(dirs) - empty_dirs):
            mode = self.mount.metadata(rel + "/").get("mode")
            if mode is None or stat.S_IMODE(int(mode)) != dirs[rel]:
                problems.append(f"{rel}/: marker mode {mode}, reference {oct(dirs[rel])}")
        for rel in sorted(keys & set(files)):
            body = self.mount.get(rel)
            if body != files[rel][2]:
                problems.append(
                    f"{rel}: bucket has {len(body)} bytes {_digest(body)}, reference "
                    f"{len(files[rel][2])} bytes {_digest(files[rel][2])}"
                )  # type: ignore[arg-type]
                continue
            mode = self.mount.metadata(rel).get("mode")
            if mode is None or int(mode) != stat.S_IFREG | files[rel][1]:
                problems.append(f"{rel}: metadata mode {mode}, reference {oct(files[rel][1])}")
        assert not problems, (
            "bucket differs from the reference:\n  " + "\n  ".join(problems) + "\n" + self.log()
        )


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def _short(value: Any) -> str:
    """repr with file contents shortened to length and digest."""
    if isinstance(value, bytes):
        return f"<{len(value)} bytes {_digest(value)}>"
    if isinstance(value, tuple):
        return "(" + ", ".join(_short(v) for v in value) + ")"
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 0o7777:
        return oct(value) if value > 9 else str(value)
    return repr(value)


@pytest.fixture
def machine(mount_factory: Callable[..., Mount], tmp_path: Path) -> Iterator[type[DifferentialMachine]]:
    DifferentialMachine.factory = staticmethod(mount_factory)  # type: ignore[assignment]
    DifferentialMachine.tmp = tmp_path
    Counter.steps = Counter.runs = Counter.remounts = 0
    yield DifferentialMachine


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_random_operations_match_a_local_directory(machine: type[DifferentialMachine]) -> None:
    phases = [Phase.explicit, Phase.generate]
    if os.environ.get("FUSESTORE_DIFF_SHRINK"):
        phases.append(Phase.shrink)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            derandomize=True,
            database=None,
            deadline=None,
            phases=phases,
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        ),
    )
    assert Counter.steps >= MIN_TOTAL_STEPS, f"only {Counter.steps} operations ran in {Counter.runs} runs"
    assert Counter.remounts >= 1, "no run lasted long enough to remount"
    print(f"{Counter.steps} operations in {Counter.runs} runs, {Counter.remounts} remounts")
