"""A cache disk that runs full: clean data gives way, and a write that cannot be stored
leaves a file that shows, keeps and uploads the same bytes.

The cache directory is a small tmpfs of the test's own (the tests run as root).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import Mount

MiB = 1024 * 1024
DISK = 40 * MiB
CLEAN_FILES = 6
CLEAN_SIZE = 4 * MiB
WRITERS = 10
WRITE_SIZE = 5 * MiB


@pytest.fixture
def small_cache_disk(tmp_path: Path) -> Iterator[Path]:
    """A 40 MiB tmpfs where `mount_factory` puts the cache of the mount named "mnt"."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "mnt-cache"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK},mode=0700", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def pattern(size: int, seed: int) -> bytes:
    """Bytes that differ per writer and per MiB, never zeros."""
    out = bytearray()
    number = 0
    while len(out) < size:
        out += f"<{seed}:{number}>".encode() * (MiB // 8)
        number += 1
    return bytes(out[:size])


def write_and_fsync(path: Path, data: bytes, sizes: dict[str, int]) -> BaseException | None:
    """Write, fsync, close: None if every step succeeded, else the first error. After a
    failure, `sizes` gets what the mount says of the file while it is still open."""
    error: BaseException | None = None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for start in range(0, len(data), MiB):
            os.write(fd, data[start : start + MiB])
        os.fsync(fd)
    except OSError as exc:
        error = exc
        sizes[path.name] = os.stat(path).st_size
    try:
        os.close(fd)
    except OSError as exc:
        error = error or exc
    return error


def test_a_full_cache_disk_evicts_clean_data_and_keeps_what_it_shows(
    small_cache_disk: Path, mount_factory: Callable[..., Mount]
) -> None:
    started = time.monotonic()
    # Nothing goes up before the unmount: the writers find only clean data to evict.
    mount = mount_factory("--writeback-delay", "30", run=False)
    clean = {f"clean/{n}": pattern(CLEAN_SIZE, 100 + n) for n in range(CLEAN_FILES)}
    for key, body in clean.items():
        mount.client.put_object(Bucket=mount.bucket, Key=key, Body=body)
    mount.start()
    for key, body in clean.items():  # the cache fills with clean data
        assert (mount.path / key).read_bytes() == body
    free = os.statvfs(small_cache_disk)
    free_before = free.f_bavail * free.f_frsize
    assert free_before < 20 * MiB, f"the clean data should fill the disk: {free_before / MiB:.1f} MiB free"

    data = {f"w{n}": pattern(WRITE_SIZE, n) for n in range(WRITERS)}
    errors: dict[str, BaseException | None] = {}
    open_sizes: dict[str, int] = {}

    def writer(name: str) -> None:
        errors[name] = write_and_fsync(mount.path / name, data[name], open_sizes)

    threads = [threading.Thread(target=writer, args=(name,)) for name in data]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(errors) == WRITERS, "a writer hung"
    succeeded = [name for name, error in errors.items() if error is None]
    failed = {name: error for name, error in errors.items() if error is not None}
    for name, error in failed.items():
        assert isinstance(error, OSError), (name, error)
    assert failed, "the disk never ran full: the test proves nothing"

    # What the mount shows for each file, before unmounting.
    shown = {}
    for name in data:
        size = os.stat(mount.path / name).st_size
        body = (mount.path / name).read_bytes()
        assert len(body) == size, f"{name}: stat says {size} bytes, a read gives {len(body)}"
        shown[name] = body
        if name in open_sizes:
            assert open_sizes[name] == size, f"{name}: {open_sizes[name]} bytes while open, {size} after"
    assert mount.umount() == 0, mount.log_text()

    objects = mount.objects()
    for name in succeeded:
        assert shown[name] == data[name], f"{name}: fsync succeeded, but the mount shows other bytes"
        assert mount.get(name) == data[name], f"{name}: fsync succeeded, but the store has other bytes"
    for name in failed:
        body = shown[name]
        assert body == data[name][: len(body)], f"{name}: the mount shows bytes never written"
        assert name in objects, f"{name}: the mount shows it, the store has nothing"
        assert mount.get(name) == body, (
            f"{name}: the mount showed {len(body)} bytes, the store has {objects[name]['size']}"
        )
    # Clean data gave way: far more was written than the disk had free beside the clean data.
    assert len(succeeded) * WRITE_SIZE > free_before, (
        f"{len(succeeded)} writers succeeded with {free_before / MiB:.1f} MiB free: nothing was evicted\n"
        + mount.log_text()
    )
    # `TIME WARNING logger: message` (the daemon's log lines carry their time)
    warnings = [line for line in mount.log.read_text().splitlines() if line.split(" ", 2)[1:2] == ["WARNING"]]
    for name in data:
        named = [line for line in warnings if line.split(": ")[1:2] == [f"/{name}"]]
        assert len(named) == (name in failed), f"{name}: {named}"
    assert time.monotonic() - started < 60
