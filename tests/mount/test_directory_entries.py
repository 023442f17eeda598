"""Directory entries as the kernel asks for them: `.` and `..`, every name exactly once
across the several readdir requests a big directory takes, and what `ls -l` of a big
directory costs in kernel requests (counted by the daemon at debug log level)."""

from __future__ import annotations

import errno
import os
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import Mount, sh, status_of

#: Long names fill a readdir buffer in a few dozen entries: many requests per listing.
NAMES = [f"entry-{i:05}-{'x' * 40}" for i in range(2000)]


def fill(mount: Mount, prefix: str = "d/") -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: mount.client.put_object(Bucket=mount.bucket, Key=prefix + name), NAMES))


def kernel_requests(mount: Mount) -> Counter[str]:
    return Counter(status_of(mount)["kernel_requests"])


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_readdir_lists_dot_and_dotdot_and_every_name_once(mount_factory: Callable[..., Mount]) -> None:
    mount = mount_factory(run=False)
    mount.log_level = "debug"  # count the kernel's readdir requests
    fill(mount)
    mount.start()
    path = mount.path

    before = kernel_requests(mount)
    listed = sh("ls -fa d", cwd=path).splitlines()
    readdirs = kernel_requests(mount)["readdir"] - before["readdir"]
    assert readdirs > 3, f"the listing took {readdirs} readdir requests: too few to test resuming"
    counts = Counter(listed)
    assert [name for name, n in counts.items() if n > 1] == [], "names listed twice"
    assert sorted(counts) == sorted([".", "..", *NAMES]), "names missing or extra"
    assert listed[:2] == [".", ".."]

    # `.` is the directory itself, `..` its parent. (At the root, `ls` shows the `..` of
    # the mountpoint, outside the mount, whatever the daemon says.)
    inodes = dict(reversed(line.split()) for line in sh("ls -fai d", cwd=path).splitlines())
    assert inodes["."] == str(os.stat(path / "d").st_ino)
    assert inodes[".."] == str(os.stat(path).st_ino)
    root = dict(reversed(line.split()) for line in sh("ls -fai", cwd=path).splitlines())
    assert root.keys() == {".", "..", "d"}
    assert root["."] == str(os.stat(path).st_ino)

    # Python's directory readers (no dots there) see every name once, warm as cold.
    assert sorted(os.listdir(path / "d")) == NAMES
    with os.scandir(path / "d") as entries:
        assert sorted(entry.name for entry in entries) == NAMES
    assert mount.umount() == 0, mount.log_text()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ls_l_of_a_big_directory_costs_few_kernel_requests_per_entry(
    mount_factory: Callable[..., Mount],
) -> None:
    mount = mount_factory(run=False)
    mount.log_level = "debug"
    fill(mount)
    mount.start()

    before = kernel_requests(mount)
    started = time.monotonic()
    listing = sh("ls -l d", cwd=mount.path)
    elapsed = time.monotonic() - started
    assert len(listing.splitlines()) == len(NAMES) + 1  # and "total"
    made = kernel_requests(mount) - before
    per_entry = made.total() / len(NAMES)
    print(f"ls -l of {len(NAMES)} entries: {elapsed:.2f}s, {dict(made)}, {per_entry:.3f} requests per entry")
    # Attributes come with the entries (readdirplus): no lookup or getattr per entry, and
    # extended attributes are refused once for the whole mount, not asked per entry.
    assert made["getxattr"] + made["listxattr"] <= 4, made
    assert made["lookup"] + made["getattr"] <= 10, made
    assert per_entry <= 0.2, made

    # Extended attributes are not supported, and say so without asking the daemon again.
    before = kernel_requests(mount)
    file = mount.path / "d" / NAMES[0]
    for call in (
        lambda: os.getxattr(file, "user.x"),
        lambda: os.listxattr(file),
        lambda: os.setxattr(file, "user.x", b"1"),
        lambda: os.removexattr(file, "user.x"),
    ):
        with pytest.raises(OSError) as refused:
            call()
        assert refused.value.errno == errno.EOPNOTSUPP
    asked = kernel_requests(mount) - before
    assert asked["getxattr"] == 0 and asked["listxattr"] <= 1, asked
    assert mount.umount() == 0, mount.log_text()
