"""Through the real daemon: `--io-timeout` bounds each store request, never a listing that
keeps making progress. A `file://` store slowed with `--faults` latency on every LIST."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fusestore.testing.s3server import S3ServerProcess

from .conftest import Mount, sh

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
