"""Through the real daemon: the entries of a walk leave memory once the kernel forgets
them (`echo 2 > /proc/sys/vm/drop_caches`), and come back without a LIST inside the TTL."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from fusestore.testing.s3server import S3ServerProcess

from .conftest import sh, status_of
from .test_slow_listings import FileMount

DIRS, FILES = 20, 500
DROP_CACHES = "/proc/sys/vm/drop_caches"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.access(DROP_CACHES, os.W_OK), reason="needs root: drops the kernel's caches"
)


def drop_kernel_caches() -> None:
    os.sync()
    with open(DROP_CACHES, "w") as control:
        control.write("2\n")


@pytest.mark.timeout(180)
def test_a_walk_leaves_memory_once_the_kernel_forgets_it(server: S3ServerProcess, tmp_path: Path) -> None:
    root = tmp_path / "store"
    for d in range(DIRS):
        (root / f"d{d:02d}").mkdir(parents=True)
        for f in range(FILES):
            (root / f"d{d:02d}" / f"f{f:04d}").write_bytes(b"")
    mount = FileMount(server, root, tmp_path / "mnt", tmp_path / "mnt-cache", ["--metadata-ttl", "600"])
    try:
        mount.start()
        idle = status_of(mount)["nodes"]
        total = DIRS * (FILES + 1)
        for _ in range(2):  # again: nothing grows
            assert sh("find . | wc -l", cwd=mount.path).strip() == str(total + 1)
            walked = status_of(mount)
            assert walked["nodes"] >= DIRS * FILES
            lists = walked["requests"].get("list", 0)
            drop_kernel_caches()
            deadline = time.monotonic() + 60
            while (nodes := status_of(mount)["nodes"]) > idle + DIRS and time.monotonic() < deadline:
                time.sleep(0.5)
            assert nodes <= idle + DIRS, mount.log_text()[-3000:]
            # read again from the remembered listings: no LIST, the same entries
            assert sh("ls -lR . | grep -c ^-", cwd=mount.path).strip() == str(DIRS * FILES)
            assert status_of(mount)["requests"].get("list", 0) == lists
        assert status_of(mount)["nodes_dropped"] >= 2 * total
    finally:
        mount.kill()


@pytest.mark.timeout(180)
def test_past_max_entries_a_walk_stays_in_bounded_memory(server: S3ServerProcess, tmp_path: Path) -> None:
    """The kernel is asked to forget the directories read least recently: the daemon's
    entries stay near the bound, walks still count everything, and what was forgotten
    comes back from the remembered listings, without a LIST."""
    bound, dirs, files = 1000, 12, 400
    root = tmp_path / "store"
    for d in range(dirs):
        (root / f"d{d:02d}").mkdir(parents=True)
        for f in range(files):
            (root / f"d{d:02d}" / f"f{f:04d}").write_bytes(b"x" * (f % 7))
    options = ["--metadata-ttl", "600", "--max-entries", str(bound)]
    mount = FileMount(server, root, tmp_path / "mnt", tmp_path / "mnt-cache", options)
    try:
        mount.start()
        total = dirs * (files + 1)
        assert sh("find . | wc -l", cwd=mount.path).strip() == str(total + 1)
        lists = status_of(mount)["requests"].get("list", 0)
        deadline = time.monotonic() + 60
        while (nodes := status_of(mount)["nodes"]) > bound and time.monotonic() < deadline:
            time.sleep(0.5)
        assert nodes <= bound, mount.log_text()[-3000:]
        assert status_of(mount)["entries_shed"] >= total - bound
        # forgotten or not, every entry is there, with its size
        assert sh("ls -lR . | grep -c ^-", cwd=mount.path).strip() == str(dirs * files)
        assert sh("find . | wc -l", cwd=mount.path).strip() == str(total + 1)
        assert (mount.path / "d00" / "f0006").stat().st_size == 6
        assert status_of(mount)["requests"].get("list", 0) == lists
    finally:
        mount.kill()


@pytest.mark.timeout(60)
def test_the_daemon_runs_on_the_c_allocator(server: S3ServerProcess, tmp_path: Path) -> None:
    """Its memory goes back to the system once entries are dropped: the mount command
    ran itself again, as the same process, with PYTHONMALLOC=malloc."""
    root = tmp_path / "store"
    root.mkdir()
    mount = FileMount(server, root, tmp_path / "mnt", tmp_path / "mnt-cache", [])
    try:
        mount.start()
        assert mount.process is not None
        environ = Path(f"/proc/{mount.process.pid}/environ").read_bytes().split(b"\0")
        assert b"PYTHONMALLOC=malloc" in environ
        assert status_of(mount)["pid"] == mount.process.pid
    finally:
        mount.kill()
