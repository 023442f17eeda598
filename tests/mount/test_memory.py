"""Through the real daemon: the entries of a walk leave memory once the kernel forgets
them (`echo 2 > /proc/sys/vm/drop_caches`), and come back without a LIST inside the TTL."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fusestore.testing.s3server import S3ServerProcess

from .conftest import Mount, fusestore_cli, sh, status_of
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


def peak_rss_mib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) // 1024


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_2_gib_file_keeps_the_daemon_under_150_mib(mount_factory: Callable[..., Mount]) -> None:
    """The daemon's memory does not grow with the file: written (a multipart upload whose
    parts come from the cache file) and read back cold on a fresh cache (a streamed GET
    into it), its peak stays under 150 MiB. Part buffers freed into fragmented arenas had
    taken a 1 GiB write to 225 MiB once."""
    writer = mount_factory()
    sh("dd if=/dev/zero of=big bs=1M count=2048 status=none", cwd=writer.path)
    assert fusestore_cli("flush", str(writer.path)).returncode == 0
    written = peak_rss_mib(status_of(writer)["pid"])
    assert writer.umount() == 0, writer.log_text()
    reader = mount_factory(bucket=writer.bucket, name="reader")
    sh("cmp big /dev/zero 2>&1 | grep -q EOF", cwd=reader.path)  # all 2 GiB, zeros
    read = peak_rss_mib(status_of(reader)["pid"])
    assert reader.umount() == 0, reader.log_text()
    assert written <= 150 and read <= 150, f"peak RSS: {written} MiB writing, {read} MiB reading"
