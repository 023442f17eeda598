"""Nothing lost: the daemon killed with -9, the store killed and restarted, a slow store.

Each test runs the real daemon on a real FUSE mount against moto's server on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fusestore.service import mounts
from fusestore.service.mounts import is_mounted
from fusestore.testing.s3server import LocalS3Server

from .conftest import Mount, fusestore_cli, sh

MiB = 1024 * 1024


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_data(size: int, seed: int) -> bytes:
    """`size` bytes that differ in every MiB (a misplaced part cannot go unnoticed)."""
    block = os.urandom(min(size, MiB)) if size else b""
    out = bytearray()
    number = 0
    while len(out) < size:
        out += f"{seed}:{number}:".encode() + block
        number += 1
    return bytes(out[:size])


def write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def kill_9(mount: Mount) -> None:
    """SIGKILL the daemon: no sync, no unmount; the kernel mount is left dangling."""
    assert mount.process is not None
    mount.process.kill()
    mount.process.wait(10)


def wait_until(check: Callable[[], bool], timeout: float, what: str, mount: Mount) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not after {timeout}s\n{mount.log_text()}")
        time.sleep(0.2)
    return time.monotonic() - started


def pending_uploads(mount: Mount) -> list[str]:
    answer = mount.client.list_multipart_uploads(Bucket=mount.bucket)
    return [upload["Key"] for upload in answer.get("Uploads", [])]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_9_right_after_fsync_loses_nothing(mount_factory: Callable[..., Mount]) -> None:
    sizes = [0, 1, 4096, 100_000, MiB + 3, 5 * MiB, 8 * MiB - 1, 17 * MiB, 33 * MiB, 70 * MiB]
    files = {f"f{i:02d}-{size}": make_data(size, i) for i, size in enumerate(sizes)}
    # Nothing goes up before the kill: only the cache and its journal hold the files.
    mount = mount_factory("--writeback-delay", "3600", "--upload-at-close", "0")
    (mount.path / "sub").mkdir()
    for name, data in files.items():
        write_synced(mount.path / "sub" / name, data)
    kill_9(mount)
    assert mount.objects() == {}, "nothing was uploaded before the kill"

    mount.start()  # the remount is all the user does
    keys = {f"sub/{name}" for name in files}
    wait_until(lambda: keys <= set(mount.objects()), 120, "every file in the bucket", mount)
    for name, data in files.items():
        assert digest(mount.get(f"sub/{name}")) == digest(data), name
    assert mount.umount() == 0, mount.log_text()
    assert set(mount.objects()) == keys


@pytest.mark.timeout(120)
def test_umount_after_kill_9_names_what_is_pending_and_the_mount_that_uploads_it(
    mount_factory: Callable[..., Mount],
) -> None:
    """`fusestore umount` of a mount whose daemon died must not say all is well: it says
    what the cache still holds and the exact command that uploads it, and exits 1."""
    mount = mount_factory("--writeback-delay", "30")
    data = os.urandom(100_000)
    write_synced(mount.path / "f", data)
    kill_9(mount)

    done = fusestore_cli("umount", str(mount.path))
    assert done.returncode == 1, done.stderr
    assert not is_mounted(mount.path), "the dead mount is detached"
    assert "1 file(s)" in done.stderr and "not yet in the store" in done.stderr, done.stderr
    assert f"fusestore cache show {mount.cache}" in done.stderr, done.stderr
    [command] = [
        line.strip() for line in done.stderr.splitlines() if line.strip().startswith("fusestore mount ")
    ]
    assert mount.objects() == {}

    # The command it names is all it takes.
    argv = shlex.split(command)
    with open(mount.log, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", *argv], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "f" in mount.objects(), 60, "the pending file in the bucket", mount)
        assert mount.get("f") == data
        again = fusestore_cli("umount", str(mount.path))
        assert again.returncode == 0, again.stderr
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.mark.timeout(120)
def test_umount_after_kill_9_without_a_registry_entry_never_says_all_is_well(
    mount_factory: Callable[..., Mount],
) -> None:
    """With the dead daemon's registry entry gone, the cache is looked for by the store URL
    in the mount table (at its default place: this one is elsewhere); what cannot be
    checked is not reported as uploaded."""
    mount = mount_factory("--writeback-delay", "30")
    write_synced(mount.path / "f", b"pending")
    kill_9(mount)
    mounts._entry_path(str(mount.path)).unlink()

    done = fusestore_cli("umount", str(mount.path))
    assert done.returncode == 1, done.stderr
    assert not is_mounted(mount.path)
    assert "goes up at the next mount of the same store with the same cache" in done.stderr, done.stderr
    mount.start()
    wait_until(lambda: "f" in mount.objects(), 60, "the pending file in the bucket", mount)
    assert mount.umount() == 0


@pytest.mark.timeout(120)
def test_kill_9_right_after_close_without_fsync_loses_nothing(mount_factory: Callable[..., Mount]) -> None:
    """What a program was told is written survives the daemon's death at once, fsync or
    not: new files (whose writes need no journal transaction of their own) and appends
    past an object's bytes, made with the shell as users do."""
    mount = mount_factory("--writeback-delay", "3600", "--upload-at-close", "0", run=False)
    original = make_data(3 * MiB + 5, 99)
    mount.client.put_object(Bucket=mount.bucket, Key="old", Body=original)
    mount.start()
    files = {f"f{i:03d}": make_data(100 + 997 * i, i) for i in range(150)}
    source = mount.path.parent / "source"
    source.mkdir()
    for name, data in files.items():
        (source / name).write_bytes(data)
    sh(f"cp -r {source} new && printf one >> old && printf two >> old", cwd=mount.path)
    kill_9(mount)
    assert set(mount.objects()) == {"old"}, "nothing was uploaded before the kill"

    mount.start()
    keys = {f"new/{name}" for name in files}
    wait_until(lambda: keys <= set(mount.objects()), 60, "every new file in the bucket", mount)
    wait_until(lambda: len(mount.get("old")) > len(original), 60, "the appended object", mount)
    for name, data in files.items():
        assert digest(mount.get(f"new/{name}")) == digest(data), name
    assert mount.get("old") == original + b"onetwo"
    assert mount.umount() == 0, mount.log_text()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_9_during_a_multipart_upload(mount_factory: Callable[..., Mount]) -> None:
    data = make_data(160 * MiB, 7)
    mount = mount_factory("--writeback-delay", "1")  # uploaded once written (not while)
    seen_sizes: list[int] = []
    stop = threading.Event()

    def poll() -> None:
        client = mount.server.client()
        while not stop.is_set():
            with contextlib.suppress(client.exceptions.ClientError):
                seen_sizes.append(client.head_object(Bucket=mount.bucket, Key="big")["ContentLength"])
            time.sleep(0.02)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        write_synced(mount.path / "big", data)
        # Killed once the upload is under way with some of its parts sent.
        deadline = time.monotonic() + 60
        while True:
            uploads = mount.client.list_multipart_uploads(Bucket=mount.bucket).get("Uploads", [])
            if uploads:
                parts = mount.client.list_parts(
                    Bucket=mount.bucket, Key="big", UploadId=uploads[0]["UploadId"]
                ).get("Parts", [])
                if parts:
                    break
            assert time.monotonic() < deadline, f"no multipart upload seen\n{mount.log_text()}"
            time.sleep(0.05)
        kill_9(mount)
        time.sleep(1)
        assert "big" not in mount.objects(), "a killed upload left an object"
        assert pending_uploads(mount) == ["big"], "the orphan is there before the remount"

        mount.start()
        wait_until(lambda: "big" in mount.objects(), 120, "the object after the remount", mount)
        assert digest(mount.get("big")) == digest(data)
        assert mount.umount() == 0, mount.log_text()
    finally:
        stop.set()
        poller.join(5)
    assert set(seen_sizes) <= {len(data)}, "a partial object was visible"
    assert pending_uploads(mount) == [], "orphaned multipart uploads were left"


@pytest.mark.timeout(120)
def test_kill_9_between_the_copies_and_the_deletes_of_a_rename(mount_factory: Callable[..., Mount]) -> None:
    """`mv d e` is copies then deletes in the store; killed after the copies (every delete
    failing until then), the remount converges to the renamed tree."""
    files = {f"f{i}": make_data(1000 * i, i) for i in range(6)}
    mount = mount_factory(run=False)
    for name, data in files.items():
        mount.client.put_object(Bucket=mount.bucket, Key=f"d/{name}", Body=data)
    mount.options += ["--faults", "delete*:error=1"]
    mount.start()
    (mount.path / "d").rename(mount.path / "e")
    renamed = {f"e/{name}" for name in files}
    wait_until(lambda: renamed <= set(mount.objects()), 30, "the copies", mount)
    assert {f"d/{name}" for name in files} <= set(mount.objects()), "no delete went through"
    kill_9(mount)

    mount.options.remove("--faults")
    mount.options.remove("delete*:error=1")
    mount.start()
    assert sorted(os.listdir(mount.path)) == ["e"]
    assert sorted(os.listdir(mount.path / "e")) == sorted(files)
    wait_until(lambda: set(mount.objects()) == renamed, 30, "the deletes after the remount", mount)
    for name, data in files.items():
        assert mount.get(f"e/{name}") == data
    assert mount.umount() == 0, mount.log_text()
    assert set(mount.objects()) == renamed


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_store_killed_and_restarted_20s_later(own_server: LocalS3Server, tmp_path: Path) -> None:
    io_timeout = 5.0
    own_server.create_bucket("outage")
    client = own_server.client()
    cached = make_data(3 * MiB, 1)
    client.put_object(Bucket="outage", Key="cached", Body=cached)
    client.put_object(Bucket="outage", Key="uncached", Body=make_data(3 * MiB, 2))
    mount = Mount(
        own_server,
        "outage",
        tmp_path / "mnt",
        tmp_path / "mnt-cache",
        ["--writeback-delay", "1", "--io-timeout", str(io_timeout)],
    )
    try:
        mount.start()
        assert sorted(os.listdir(mount.path)) == ["cached", "uncached"]
        assert (mount.path / "cached").read_bytes() == cached
        files = {f"new/{i:03d}": make_data(10_000 + i, 100 + i) for i in range(100)}
        (mount.path / "new").mkdir()
        for name, data in files.items():
            (mount.path / name).write_bytes(data)
        own_server.stop()
        down_at = time.monotonic()

        # The mount stays responsive: cached data reads at once, listings come from the cache.
        started = time.monotonic()
        assert (mount.path / "cached").read_bytes() == cached
        assert len(os.listdir(mount.path / "new")) == 100
        assert time.monotonic() - started < 2, "cached reads waited for the store"
        # Uncached data fails with EIO, within the I/O timeout (plus slack), not a hang.
        started = time.monotonic()
        with pytest.raises(OSError) as failure:
            (mount.path / "uncached").read_bytes()
        assert failure.value.errno == errno.EIO
        assert time.monotonic() - started < io_timeout + 5
        # Writes are still accepted.
        (mount.path / "new" / "during-outage").write_bytes(b"written while the store was down")
        files["new/during-outage"] = b"written while the store was down"

        time.sleep(max(0.0, 20 - (time.monotonic() - down_at)))
        # moto keeps nothing across a restart: the bucket comes back empty.
        own_server.start()
        own_server.create_bucket("outage")
        wait_until(lambda: set(files) <= set(mount.objects()), 90, "every pending file uploaded", mount)
        for name, data in files.items():
            assert mount.get(name) == data, name
        assert mount.umount() == 0, mount.log_text()
    finally:
        mount.kill()


def max_logged_dirty(log: str) -> float:
    """The most dirty data the daemon reported when writers had to wait (MiB)."""
    values = [float(m) for m in re.findall(r"dirty data at the limit: ([0-9.]+) MiB", log)]
    return max(values, default=0.0)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dirty_limit_holds_while_the_store_is_slow(mount_factory: Callable[..., Mount]) -> None:
    writers, each = 4, 128 * MiB
    limit_mib, chunk_mib = 64, 16
    mount = mount_factory("--dirty-limit", "64M", "--faults", "put*:latency=0.3", run=False)
    mount.log_level = "debug"  # the daemon reports its dirty data when writers wait
    mount.start()
    try:
        procs = [
            subprocess.Popen(
                ["dd", "if=/dev/urandom", f"of={mount.path}/w{i}", "bs=1M", f"count={each // MiB}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for i in range(writers)
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, f"a writer failed instead of waiting: {err!r}"
        local = {f"w{i}": digest((mount.path / f"w{i}").read_bytes()) for i in range(writers)}
        assert mount.umount() == 0, mount.log_text()
        peak = max_logged_dirty(mount.log.read_text(errors="replace"))
        assert peak > 0, "the writers never had to wait: the test proves nothing"
        # (should it fail: the daemon's warnings and failed calls say why)
        notable = [
            line
            for line in mount.log.read_text(errors="replace").splitlines()
            if " WARNING " in line or " ERROR " in line or "failed" in line or "abort" in line
        ]
        assert peak <= limit_mib + writers * (chunk_mib + 1), f"{peak} MiB dirty\n" + "\n".join(notable[-40:])
        for name, expected in local.items():
            assert digest(mount.get(name)) == expected, name
    finally:
        mount.kill()


def tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)])
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")


@pytest.mark.timeout(180)
def test_a_full_cache_disk_fails_the_write_with_enospc_and_keeps_the_rest(
    mount_factory: Callable[..., Mount], tmp_path: Path
) -> None:
    cache = tmp_path / "small-cache"
    tmpfs(cache, "40m")
    try:
        mount = mount_factory("--writeback-delay", "3600", "--cache-dir", str(cache / "c"), run=False)
        mount.log_level = "debug"
        mount.start()
        first = make_data(8 * MiB, 1)
        write_synced(mount.path / "first", first)
        big = make_data(64 * MiB, 2)
        with pytest.raises(OSError) as failure:
            write_synced(mount.path / "big", big)
        assert failure.value.errno == errno.ENOSPC
        assert (mount.path / "first").read_bytes() == first
        os.unlink(mount.path / "big")  # what an application does after ENOSPC: room again
        try:
            write_synced(mount.path / "after", b"room again")
        except OSError as exc:
            usage = sh(f"df -k {cache}; ls -lR {cache}", "/")
            pytest.fail(f"{exc}\n{usage}\n{mount.log_text()}")
        assert mount.umount() == 0, mount.log_text()
        assert mount.get("first") == first
        assert mount.get("after") == b"room again"
        assert "big" not in mount.objects()
    finally:
        sh(f"umount -l {cache}", "/")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_untar_with_a_fifth_of_all_store_calls_failing(
    mount_factory: Callable[..., Mount], tmp_path: Path
) -> None:
    source = tmp_path / "tree"
    expected: dict[str, bytes] = {}
    for i in range(1100):
        rel = f"d{i % 23:02d}/sub{i % 3}/file{i:04d}.txt"
        expected[rel] = f"file {i}\n".encode() * (1 + i % 50)
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_bytes(expected[rel])
    sh(f"tar cf {tmp_path}/tree.tar -C {source} .", tmp_path)
    mount = mount_factory("--faults", "*:error=0.2;seed=3")
    sh(f"tar xf {tmp_path}/tree.tar -C {mount.path}", tmp_path, timeout=240)
    assert mount.umount() == 0, mount.log_text()
    log = mount.log.read_text()
    assert "injecting faults" in log
    # A few short "outages" happen by chance (five failures in a row, or a second of
    # failures on a loaded machine); a store taken for down most of the time would show
    # dozens.
    assert log.count("the store is not answering") <= 10, "a flaky store is no outage"
    keys = set(mount.objects())
    files = {key for key in keys if not key.endswith("/")}
    assert files == set(expected), (
        f"missing {sorted(set(expected) - files)[:5]}, extra {sorted(files - set(expected))[:5]}"
    )
    for rel in list(expected)[::97]:
        assert mount.get(rel) == expected[rel], rel
    directories = {str(Path(rel).parent) + "/" for rel in expected} | {
        rel.split("/")[0] + "/" for rel in expected
    }
    assert keys - files <= directories, "only markers of the tree's directories"
