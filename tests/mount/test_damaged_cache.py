"""A cache damaged after kill -9: the mount refuses it in one line and the fsynced files
are recovered whole, on a real mount against moto's server."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from fusestore.service.mounts import is_mounted, lazy_unmount

from .conftest import Mount, fusestore_cli
from .test_crash_and_outage import kill_9, make_data, wait_until, write_synced

MiB = 1024 * 1024


@pytest.mark.timeout(180)
def test_fsynced_files_survive_random_bytes_in_the_journals_log(
    mount_factory: Callable[..., Mount], tmp_path: Path
) -> None:
    files = {f"f{i}": make_data(100_000 + 300_000 * i, i) for i in range(5)}
    mount = mount_factory("--writeback-delay", "3600", "--upload-at-close", "0")
    for name, data in files.items():
        write_synced(mount.path / name, data)
    kill_9(mount)
    assert mount.objects() == {}, "nothing was uploaded before the kill"
    shown = fusestore_cli("cache", "show", str(mount.cache))
    assert "PENDING: 5 file(s)" in shown.stdout, shown.stdout

    (mount.cache / "journal" / "cache.db-wal").write_bytes(os.urandom(8192))
    try:
        done = subprocess.run(mount.command(), capture_output=True, text=True, timeout=60, check=False)
    finally:
        if is_mounted(mount.path):
            lazy_unmount(mount.path)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("fusestore: error: the journal of the cache") and "cache recover" in line, line
    assert mount.objects() == {}, "nothing was uploaded from a journal that cannot be read"

    shown = fusestore_cli("cache", "show", str(mount.cache))
    assert "pending: unknown" in shown.stdout and "cache recover" in shown.stdout, shown.stdout
    rescued = tmp_path / "rescued"
    done = fusestore_cli("cache", "recover", str(mount.cache), str(rescued))
    assert done.returncode == 0, done.stderr
    recovered = sorted(p.read_bytes() for p in rescued.iterdir())
    assert recovered == sorted(files.values()), "the five files, byte for byte"

    # What the message says next: the cache is cleaned, the store mounts again.
    done = fusestore_cli("cache", "clean", "--force", "--yes", str(mount.cache))
    assert done.returncode == 0, done.stderr
    mount.start()
    assert mount.umount() == 0, mount.log_text()


@pytest.mark.timeout(180)
def test_a_pending_file_cut_short_is_kept_aside_and_recovered_into_the_mount(
    mount_factory: Callable[..., Mount],
) -> None:
    files = {f"f{i}": make_data(200_000 + 100_000 * i, i) for i in range(3)}
    mount = mount_factory("--writeback-delay", "3600", "--upload-at-close", "0")
    for name, data in files.items():
        write_synced(mount.path / name, data)
    kill_9(mount)
    shown = fusestore_cli("cache", "show", "--json", str(mount.cache))
    [content] = [item["content"] for item in json.loads(shown.stdout)["items"] if item["key"] == "f1"]
    half = files["f1"][: len(files["f1"]) // 2]
    os.truncate(mount.cache / "data" / content, len(half))

    mount.start()
    assert "f1" in mount.log_text() and "lost+found" in mount.log_text()
    wait_until(lambda: {"f0", "f2"} <= set(mount.objects()), 60, "the whole files uploaded", mount)
    assert "f1" not in mount.objects(), "a file cut short is not uploaded as if whole"
    shown = fusestore_cli("cache", "show", str(mount.cache))
    assert "LOST+FOUND: 1 file(s)" in shown.stdout and "f1" in shown.stdout, shown.stdout

    # Recovered into the mount itself, while it runs: it goes up like any new file.
    done = fusestore_cli("cache", "recover", str(mount.cache), str(mount.path / "recovered"))
    assert done.returncode == 0, done.stderr
    assert (mount.path / "recovered" / "f1").read_bytes() == half
    assert mount.umount() == 0, mount.log_text()
    assert mount.get("recovered/f1") == half
    assert mount.get("f0") == files["f0"] and mount.get("f2") == files["f2"]


@pytest.mark.timeout(120)
def test_unmount_exits_1_while_lost_found_holds_files(mount_factory: Callable[..., Mount]) -> None:
    mount = mount_factory("--writeback-delay", "3600", "--upload-at-close", "0")
    write_synced(mount.path / "f", make_data(300_000, 1))
    kill_9(mount)
    [data] = [p for p in (mount.cache / "data").iterdir() if p.stat().st_size]
    os.truncate(data, 1000)
    mount.start()
    assert mount.umount() == 1, mount.log_text()
    assert "NOT in the store" in mount.log_text()


@pytest.mark.timeout(180)
def test_fusestore_umount_names_what_lost_found_holds_and_exits_1(
    mount_factory: Callable[..., Mount],
) -> None:
    """Files in lost+found are not in the store: `fusestore umount` never says it holds
    every change while there are any, of a live daemon or of a dead one."""
    mount = mount_factory("--writeback-delay", "3600", "--upload-at-close", "0")
    write_synced(mount.path / "f", make_data(300_000, 1))
    kill_9(mount)
    [data] = [p for p in (mount.cache / "data").iterdir() if p.stat().st_size]
    os.truncate(data, 1000)
    mount.start()  # f goes to lost+found

    done = fusestore_cli("umount", str(mount.path))
    assert mount.wait() == 1, mount.log_text()
    assert done.returncode == 1, done.stderr
    assert "holds every change" not in done.stderr, done.stderr
    assert "lost+found" in done.stderr and "'f'" in done.stderr, done.stderr
    assert f"fusestore cache recover {mount.cache}" in done.stderr, done.stderr

    mount.start()
    kill_9(mount)  # a crashed mount whose lost+found holds the file, nothing pending
    done = fusestore_cli("umount", str(mount.path))
    assert done.returncode == 1, done.stderr
    assert not is_mounted(mount.path)
    assert "holds every change" not in done.stderr, done.stderr
    assert "lost+found" in done.stderr and "'f'" in done.stderr, done.stderr
    assert f"fusestore cache recover {mount.cache}" in done.stderr, done.stderr
