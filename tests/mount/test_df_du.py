"""`df` and `du` on a real mount: the space a store that knows no capacity reports is
its cache disk's, and a sparse file counts only the blocks the cache holds for it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from .conftest import Mount, fusestore_cli

MiB = 2**20


@pytest.mark.timeout(120)
def test_df_on_an_s3_mount_shows_the_cache_disk(mount_factory: Callable[..., Mount]) -> None:
    mount = mount_factory()
    shown = os.statvfs(mount.path)
    disk = os.statvfs(mount.cache)
    assert shown.f_blocks * shown.f_frsize == disk.f_blocks * disk.f_frsize, "S3 reports no capacity"
    # Others may write to that disk meanwhile: free space agrees within a margin.
    assert abs(shown.f_bavail * shown.f_frsize - disk.f_bavail * disk.f_frsize) < 256 * MiB
    assert shown.f_bfree >= shown.f_bavail
    assert shown.f_namemax == 255


@pytest.mark.timeout(120)
def test_du_counts_a_sparse_files_holes_only_once_the_store_holds_them(
    mount_factory: Callable[..., Mount],
) -> None:
    mount = mount_factory("--writeback-delay", "3600", "--metadata-ttl", "1")
    sparse = mount.path / "sparse"
    with open(sparse, "wb") as f:
        f.truncate(64 * MiB)
        f.seek(32 * MiB)
        f.write(b"x" * 4096)
    dense = mount.path / "dense"
    dense.write_bytes(os.urandom(3 * MiB))

    assert os.stat(sparse).st_size == 64 * MiB
    assert os.stat(sparse).st_blocks * 512 <= MiB, "one 1 MiB block of the cache, not 64 MiB"
    assert os.stat(dense).st_blocks * 512 == 3 * MiB
    tiny = mount.path / "tiny"
    tiny.write_bytes(b"ten bytes!")
    assert os.stat(tiny).st_blocks == 1

    assert fusestore_cli("flush", str(mount.path)).returncode == 0
    # The store holds every byte of it now, zeros included (an object has no holes).
    deadline = time.monotonic() + 10  # once the kernel asks again (--metadata-ttl)
    while os.stat(sparse).st_blocks * 512 != 64 * MiB and time.monotonic() < deadline:
        time.sleep(0.2)
    assert os.stat(sparse).st_blocks * 512 == 64 * MiB
    assert os.stat(dense).st_blocks * 512 == 3 * MiB
