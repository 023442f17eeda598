"""Unmount paths, signals, stale mounts, a store that is gone at unmount, and the maildir hand-off."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fusestore.service.mounts import is_mounted, mount_table
from fusestore.testing.s3server import LocalS3Server

from .conftest import Mount, sh

FIFTY_MIB = 50 * 2**20


def write_dirty_file(mount: Mount, name: str = "dirty.bin") -> str:
    """A 50 MiB file that cannot have been uploaded yet (long writeback delay); its sha256."""
    data = os.urandom(FIFTY_MIB)
    (mount.path / name).write_bytes(data)
    assert name not in mount.objects()
    return hashlib.sha256(data).hexdigest()


def uploaded_digest(mount: Mount, key: str) -> str:
    return hashlib.sha256(mount.get(key)).hexdigest()


@pytest.mark.timeout(180)
def test_umount_uploads_a_dirty_50_mib_file_before_exiting(mount_factory: Callable[..., Mount]) -> None:
    mount = mount_factory("--writeback-delay", "3600")
    digest = write_dirty_file(mount)
    done = subprocess.run(
        [sys.executable, "-m", "fusestore", "umount", str(mount.path)],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 0, done.stderr
    assert mount.wait() == 0
    assert uploaded_digest(mount, "dirty.bin") == digest
    assert "store holds every change" in done.stderr


@pytest.mark.timeout(180)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_uploads_a_dirty_50_mib_file_before_exiting(
    mount_factory: Callable[..., Mount], signum: int
) -> None:
    mount = mount_factory("--writeback-delay", "3600")
    digest = write_dirty_file(mount)
    assert mount.signal(signum) == 0
    assert uploaded_digest(mount, "dirty.bin") == digest


@pytest.mark.timeout(180)
def test_fusermount_u_syncs_after_the_kernel_unmounts(mount_factory: Callable[..., Mount]) -> None:
    mount = mount_factory("--writeback-delay", "3600")
    (mount.path / "a.txt").write_text("after fusermount")
    subprocess.run(["fusermount3", "-u", str(mount.path)], check=True, timeout=30)
    assert mount.wait() == 0
    assert mount.get("a.txt") == b"after fusermount"


@pytest.mark.timeout(180)
def test_store_down_at_unmount_keeps_data_for_the_next_mount(
    mount_factory: Callable[..., Mount], tmp_path: Path
) -> None:
    with LocalS3Server() as server:
        server.create_bucket("gone")
        mount = Mount(
            server,
            "gone",
            tmp_path / "mnt",
            tmp_path / "cache",
            ["--writeback-delay", "3600", "--unmount-timeout", "3"],
        )
        try:
            mount.start()
            (mount.path / "kept.txt").write_text("kept across an outage")
            port = server.port
            server.stop()
            code = mount.signal(signal.SIGTERM, timeout=60)
            assert code == 1
            assert "go up at the next mount" in mount.log_text()
        finally:
            mount.kill()
    # The same store (same port, so the same URL and cache) comes back, empty: the journal
    # holds the file and uploads it on the next mount.
    with LocalS3Server(port) as server:
        server.create_bucket("gone")
        again = Mount(server, "gone", tmp_path / "mnt", tmp_path / "cache", ["--writeback-delay", "3600"])
        try:
            again.start()
            assert (again.path / "kept.txt").read_text() == "kept across an outage"
            assert again.umount() == 0
            assert again.get("kept.txt") == b"kept across an outage"
        finally:
            again.kill()


@pytest.mark.timeout(120)
def test_stale_mount_of_a_killed_daemon_is_cleaned_at_the_next_mount(
    mount_factory: Callable[..., Mount],
) -> None:
    mount = mount_factory("--writeback-delay", "0.2")
    (mount.path / "before.txt").write_text("before the crash")
    mount.wait_for_key("before.txt")
    assert mount.process is not None
    mount.process.kill()
    mount.process.wait(10)
    with pytest.raises(OSError) as stale:
        os.stat(mount.path)
    assert stale.value.errno == 107  # ENOTCONN: "Transport endpoint is not connected"
    mount.start()
    assert (mount.path / "before.txt").read_text() == "before the crash"
    assert mount.umount() == 0


@pytest.mark.timeout(60)
def test_bad_mountpoints_fail_with_one_line(mounted: Mount, tmp_path: Path) -> None:
    def mount_on(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "fusestore",
                "mount",
                mounted.url,
                str(path),
                "--endpoint-url",
                mounted.server.endpoint_url,
                "--cache-dir",
                str(tmp_path / "other-cache"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    (tmp_path / "file").write_text("x")
    for path, words in [
        (tmp_path / "missing", "does not exist"),
        (tmp_path / "full", "not empty"),
        (tmp_path / "file", "not a directory"),
        (mounted.path, "already a mount point"),
    ]:
        done = mount_on(path)
        assert done.returncode == 2, done.stderr
        assert words in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert is_mounted(mounted.path)


@pytest.mark.timeout(180)
def test_maildir_hand_off_never_shows_a_partial_file(mounted: Mount) -> None:
    root = mounted.path
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir()
    writers, per_writer = 4, 25
    seen: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set() or os.listdir(root / "new"):
            for name in os.listdir(root / "new"):
                try:
                    os.rename(root / "new" / name, root / "cur" / name)
                except FileNotFoundError:
                    continue
                data = (root / "cur" / name).read_bytes()
                size, _, body = data.partition(b"\n")
                if not size.isdigit() or len(body) != int(size):
                    errors.append(f"{name}: partial ({len(data)} bytes)")
                seen.append(name)
            time.sleep(0.01)

    script = (
        "import os, sys\n"
        "root, who, count = sys.argv[1], sys.argv[2], int(sys.argv[3])\n"
        "for i in range(count):\n"
        "    body = os.urandom(1000 + 5000 * i) \n"
        "    name = f'{who}.{i}'\n"
        "    with open(os.path.join(root, 'tmp', name), 'wb') as f:\n"
        "        f.write(str(len(body)).encode() + b'\\n')\n"
        "        f.flush()\n"
        "        f.write(body)\n"
        "    os.rename(os.path.join(root, 'tmp', name), os.path.join(root, 'new', name))\n"
    )
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        procs = [
            subprocess.Popen([sys.executable, "-c", script, str(root), f"w{w}", str(per_writer)])
            for w in range(writers)
        ]
        assert all(p.wait(120) == 0 for p in procs)
    finally:
        stop.set()
        thread.join(60)
    assert errors == []
    assert sorted(seen) == sorted(f"w{w}.{i}" for w in range(writers) for i in range(per_writer))
    assert os.listdir(root / "tmp") == [] and os.listdir(root / "new") == []
    assert mounted.umount() == 0
    keys = set(mounted.objects())
    assert {k for k in keys if k.startswith("cur/")} == {
        f"cur/w{w}.{i}" for w in range(writers) for i in range(per_writer)
    }
    assert keys - {k for k in keys if k.startswith("cur/")} == {"tmp/", "new/"}, "empty dirs keep markers"


def test_make_run_mounts_and_unmounts_cleanly(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "fusestore.service.demo"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not is_mounted(tmp_path / "mnt"):
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "make run did not mount within 60s"
            time.sleep(0.1)
        assert (tmp_path / "mnt" / "hello.txt").read_text().startswith("Hello")
        (tmp_path / "mnt" / "new.txt").write_text("written in the demo")
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0, out
        assert not is_mounted(tmp_path / "mnt")
        assert "unmounted" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if is_mounted(tmp_path / "mnt"):
            sh(f"fusermount3 -u -z {tmp_path / 'mnt'}", cwd=tmp_path)


@pytest.mark.timeout(60)
def test_the_kernel_reads_ahead_1_mib_from_the_first_request_on(mounted: Mount) -> None:
    """The mount's read-ahead is raised to 1 MiB (sequential reads as 1 MiB requests, not
    128 KiB ones) as soon as the kernel took the daemon's INIT answer: a file opened by
    the first program on the mount reads with it (the kernel fixes a file's read-ahead at
    its open). It came 0.2 s after the mount, so the first reads were 128 KiB ones."""
    found = [entry for entry in mount_table() if entry.mountpoint == str(mounted.path)]
    knob = Path(f"/sys/class/bdi/{found[-1].device}/read_ahead_kb")
    os.stat(mounted.path)  # answered once INIT is done
    deadline = time.monotonic() + 0.15
    while knob.read_text().strip() != "1024" and time.monotonic() < deadline:
        time.sleep(0.005)
    assert knob.read_text().strip() == "1024"
