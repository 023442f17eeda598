"""A bucket written by other tools, with keys that are no valid paths, seen through real tools.

The rule is in docs/semantics.md ("Object names that cannot be shown"): such objects are
skipped, never read, changed, moved or deleted, and nothing reaches outside the mount or
the cache directory.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Mount, fusestore_cli, sh

ODD = {
    "a//b": b"empty name",
    "/lead": b"leading slash",
    "./x": b"dot",
    "../x": b"dot dot",
    "y/../../escape": b"climbs out",
    "y/./z": b"inner dot",
    "n" * 256: b"name too long",
    "k": b"file shadowed by a directory",
    "k/x": b"inside k",
    "sp ace /t ": b"trailing spaces are kept",
    "ok/file": b"an ordinary file",
}


@pytest.mark.timeout(120)
def test_odd_keys_through_ls_find_cat_and_rm(mount_factory: Callable[..., Mount], tmp_path: Path) -> None:
    mount = mount_factory(run=False)
    for key, data in ODD.items():
        mount.client.put_object(Bucket=mount.bucket, Key=key, Body=data)
    mount.start()
    root = mount.path

    assert sorted(os.listdir(root)) == ["a", "k", "ok", "sp ace ", "y"]
    found = sh("find . | sort", cwd=root).splitlines()
    assert found == [".", "./a", "./k", "./k/x", "./ok", "./ok/file", "./sp ace ", "./sp ace /t ", "./y"]
    sh("ls -laR . > /dev/null", cwd=root)
    assert (root / "k/x").read_bytes() == b"inside k"
    assert (root / "sp ace /t ").read_bytes() == b"trailing spaces are kept"
    assert (root / "k").is_dir() and os.listdir(root / "a") == [] and os.listdir(root / "y") == []
    # Removing everything that is shown leaves the skipped objects alone; a directory that
    # holds some is not empty.
    sh("rm -rf k ok 'sp ace ' a/* y/*", cwd=root)
    for holder in ("a", "y"):
        with pytest.raises(OSError) as refused:
            os.rmdir(root / holder)
        assert refused.value.errno == errno.ENOTEMPTY
    assert mount.umount() == 0, mount.log_text()

    objects = mount.objects()
    hidden = {key for key in ODD if key not in ("k/x", "sp ace /t ", "ok/file")}
    assert set(objects) == hidden, "the shown files went, the skipped objects stayed"
    for key in hidden:
        assert mount.get(key) == ODD[key], key
    for escaped in (tmp_path / "x", tmp_path / "escape", mount.cache.parent / "escape"):
        assert not escaped.exists()
    log = mount.log_text()
    assert "skipping object" in log and "Traceback" not in log


@pytest.mark.timeout(120)
def test_a_name_the_store_refuses_is_kept_named_and_goes_up_once_renamed(
    mount_factory: Callable[..., Mount],
) -> None:
    """moto cannot hold a key with a newline. Before, the upload was retried until the
    300 s unmount timeout, and then at every mount; now the file is kept in the cache,
    reported, and the unmount ends at once with exit 1."""
    mount = mount_factory()
    name = "line\nbreak.txt"
    (mount.path / name).write_bytes(b"kept in the cache")
    (mount.path / "fine.txt").write_bytes(b"uploaded")
    mount.wait_for_key("fine.txt")

    # flush says so too: it said "the store holds every change" and exited 0.
    flushed = fusestore_cli("flush", str(mount.path), timeout=100)
    assert flushed.returncode == 1, flushed.stderr
    assert "1 item(s) cannot be uploaded" in flushed.stderr and "holds every change" not in flushed.stderr

    started = time.monotonic()
    done = fusestore_cli("umount", str(mount.path), timeout=100)
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert mount.wait() == 1
    assert took < 60, f"the unmount waited {took:.0f}s"
    refused = [line for line in mount.log_text().splitlines() if "its name refused" in line]
    assert len(refused) == 1 and repr("/" + name) in refused[0], mount.log_text()
    assert f"Not uploadable: {name!r}" in done.stderr, done.stderr
    assert set(mount.objects()) == {"fine.txt"}

    shown = fusestore_cli("cache", "show", str(mount.cache))
    assert shown.returncode == 0, shown.stderr
    [item] = [line for line in shown.stdout.splitlines() if repr(name) in line]
    assert "NOT UPLOADABLE" in item, shown.stdout

    mount.start()  # the next mount tries once more, then it is renamed to a name the store takes
    os.rename(mount.path / name, mount.path / "renamed.txt")
    mount.wait_for_key("renamed.txt")
    assert mount.umount() == 0, mount.log_text()
    assert mount.get("renamed.txt") == b"kept in the cache"
    assert "nothing pending" in fusestore_cli("cache", "show", str(mount.cache)).stdout
