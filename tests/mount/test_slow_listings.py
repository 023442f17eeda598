"""Through the real daemon, stores slowed with `--faults` latency on every LIST:
`--io-timeout` bounds each store request, never a listing that keeps making progress (a
`file://` store), and the first entries of a big S3 prefix reach a reader with the first
page, not after every page."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fusestore.testing.s3server import S3ServerProcess

from .conftest import Mount, sh, status_of

IO_TIMEOUT = 3.0
#: Each LIST page waits this long: well within the timeout, but four pages are not.
LATENCY = 1.2
ENTRIES = 3500  # four pages of up to 1,000


class FileMount(Mount):
    """A daemon serving a `file://` store (the directory `root`) instead of a bucket."""

    def __init__(
        self, server: S3ServerProcess, root: Path, path: Path, cache: Path, options: list[str]
    ) -> None:
        super().__init__(server, "unused", path, cache, options)
        self.root = root

    @property
    def url(self) -> str:
        return f"file://{self.root}"

    def command(self) -> list[str]:
        command = super().command()
        at = command.index("--endpoint-url")
        del command[at : at + 2]
        return command


@pytest.mark.timeout(120)
def test_ls_of_a_big_directory_through_a_slow_store_lists_every_entry(
    server: S3ServerProcess, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    (root / "big").mkdir(parents=True)
    for i in range(ENTRIES):
        (root / "big" / f"f{i:05d}").write_bytes(b"x")
    options = ["--io-timeout", str(IO_TIMEOUT), "--faults", f"list:latency={LATENCY}"]
    mount = FileMount(server, root, tmp_path / "mnt", tmp_path / "mnt-cache", options)
    try:
        mount.start()
        started = time.monotonic()
        listed = sh("ls -1 big | wc -l", cwd=mount.path, timeout=60).strip()
        took = time.monotonic() - started
        assert listed == str(ENTRIES), mount.log_text()
        assert took > IO_TIMEOUT, "the listing took longer than the timeout in total"
        assert "did not answer" not in mount.log_text()
    finally:
        mount.kill()


#: S3 prefixes of four listing pages each, every page slowed by this much: the first
#: page's entries must not wait for the other three.
PREFIX_ENTRIES = 3500
PAGE_LATENCY = 3.0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_first_entries_of_a_big_prefix_come_with_its_first_page(
    mount_factory: Callable[..., Mount],
) -> None:
    mount = mount_factory("--faults", f"list:latency={PAGE_LATENCY}", run=False)
    # Names of some length: `ls` writes its output in 4 KiB blocks, the first of them
    # well within the first page.
    keys = [f"{top}/IMG_{i:05d}_2026-12-06.jpg" for top in ("a", "b") for i in range(PREFIX_ENTRIES)]
    with ThreadPoolExecutor(8) as pool:  # boto3's connection pool holds 10
        list(pool.map(lambda key: mount.client.put_object(Bucket=mount.bucket, Key=key), keys))
    mount.start()
    os.stat(mount.path / "b")  # the root's listing (the probe's) is not what is timed

    # `ls -f` of a never-listed prefix, until its first line. (Timed to that line, not to
    # the end of `ls -f | head -1`: on a busy machine `head` may run only after `ls` has
    # written all of the first page into the pipe, and then `ls` learns that `head` is
    # gone only at its next write, a page later.)
    started = time.monotonic()
    with subprocess.Popen(["ls", "-f", "a"], cwd=mount.path, stdout=subprocess.PIPE) as ls:
        assert ls.stdout is not None
        first_line = ls.stdout.readline().decode().strip()
        took = time.monotonic() - started
        ls.kill()
    assert first_line in (".", "..", "IMG_00000_2026-12-06.jpg")
    print(f"ls -f, first line: {took:.2f}s")
    assert took < 2 * PAGE_LATENCY, f"ls -f took {took:.1f}s to its first line: more than one page's wait"

    # Python reading one entry of another, then closing the directory.
    started = time.monotonic()
    with os.scandir(mount.path / "b") as entries:
        first = next(entries).name
    took = time.monotonic() - started
    print(f"one entry through os.scandir: {took:.2f}s")
    assert first == "IMG_00000_2026-12-06.jpg"
    assert took < 2 * PAGE_LATENCY, f"one entry took {took:.1f}s: more than one page's wait"

    # The listing went on without its reader; one reading now gets the pages listed and
    # then the rest as it comes, every name once.
    listed = sh("ls -f b | grep -c '^IMG'", cwd=mount.path, timeout=120).strip()
    assert listed == str(PREFIX_ENTRIES), mount.log_text()
    assert sh("ls -f a | sort | uniq -d", cwd=mount.path, timeout=120) == ""
    lists = status_of(mount)["requests"]["ListObjectsV2"]
    pages = -(-PREFIX_ENTRIES // 1000)
    assert lists <= 1 + 2 * pages, f"{lists} LISTs: more than one listing of each prefix"
    # Once listed, again within the TTL: no LIST.
    assert sh("ls -f b | wc -l", cwd=mount.path).strip() == str(PREFIX_ENTRIES + 2)
    assert sh("ls -f a | wc -l", cwd=mount.path).strip() == str(PREFIX_ENTRIES + 2)
    assert status_of(mount)["requests"]["ListObjectsV2"] == lists
    assert "did not answer" not in mount.log_text()
    assert mount.umount() == 0, mount.log_text()
