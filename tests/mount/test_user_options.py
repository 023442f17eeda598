"""Mount options that shape what users see and who may look: the modes of objects that
carry none, allow_root, and how long a name found absent stays absent."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fusestore.service.mounts import is_mounted

from .conftest import Mount, fusestore_cli
from .test_posix_rules import as_user
from .test_security import mount_options

#: an unprivileged user, neither the one mounting (root) nor root
NOBODY = (41003, [41003])


def perm(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.timeout(120)
def test_file_and_dir_modes_win_over_the_umask_for_objects_that_carry_none(
    mount_factory: Callable[..., Mount],
) -> None:
    mount = mount_factory("--file-mode", "0640", "--dir-mode", "0750", "--umask", "077", run=False)
    mount.client.put_object(Bucket=mount.bucket, Key="bare", Body=b"no metadata")
    mount.client.put_object(Bucket=mount.bucket, Key="implied/inner", Body=b"x")
    mount.client.put_object(
        Bucket=mount.bucket, Key="own", Body=b"x", Metadata={"mode": str(stat.S_IFREG | 0o600)}
    )
    mount.start()
    assert perm(mount.path / "bare") == 0o640
    assert perm(mount.path / "implied") == 0o750
    assert perm(mount.path / "implied" / "inner") == 0o640
    assert perm(mount.path / "own") == 0o600, "an object's own mode wins"
    assert perm(mount.path) == 0o750, "the root is a directory without a mode"
    assert mount.umount() == 0, mount.log_text()

    # --umask alone shapes both, as before; a mode given for one kind leaves the other to it.
    only_umask = mount_factory("--umask", "027", bucket=mount.bucket, name="umask")
    assert (perm(only_umask.path / "bare"), perm(only_umask.path / "implied")) == (0o640, 0o750)
    assert only_umask.umount() == 0, only_umask.log_text()
    files_only = mount_factory("--file-mode", "0604", "--umask", "077", bucket=mount.bucket, name="files")
    assert (perm(files_only.path / "bare"), perm(files_only.path / "implied")) == (0o604, 0o700)
    assert files_only.umount() == 0, files_only.log_text()


@pytest.mark.timeout(120)
@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_allow_root_lets_root_in_and_no_one_else(mount_factory: Callable[..., Mount]) -> None:
    base = Path(tempfile.mkdtemp(prefix="fusestore-allow-"))
    base.chmod(0o755)  # every user may reach the mountpoint
    launched: list[Mount] = []
    try:
        mount = mount_factory("--allow-root", "--dir-mode", "0755", "--file-mode", "0644", run=False)
        mount.path = base / "mnt"
        launched.append(mount)
        mount.client.put_object(Bucket=mount.bucket, Key="f", Body=b"hello")
        mount.start()
        assert "allow_other" in mount_options(mount.path), "the kernel lets others reach the daemon"
        assert (mount.path / "f").read_bytes() == b"hello"  # the mounting user (root)
        with pytest.raises(PermissionError):
            as_user(NOBODY, os.listdir, str(mount.path))
        assert mount.umount() == 0, mount.log_text()

        other = mount_factory("--allow-other", "--dir-mode", "0755", bucket=mount.bucket, run=False)
        other.path = mount.path
        launched.append(other)
        other.start()
        assert as_user(NOBODY, os.listdir, str(other.path)) == ["f"], "the same user, let in by allow_other"
        assert other.umount() == 0, other.log_text()
    finally:
        for started in launched:  # before the mountpoint's directory goes
            started.kill()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.timeout(60)
def test_allow_root_with_allow_other_is_one_error_and_nothing_mounted(tmp_path: Path) -> None:
    for extra in (["--allow-root", "--allow-other"], ["-o", "allow_root,allow_other"]):
        done = fusestore_cli("mount", "s3://some-bucket", str(tmp_path), *extra)
        assert done.returncode == 2
        [line] = done.stderr.strip().splitlines()
        assert line.startswith("fusestore: error: --allow-other and --allow-root exclude each other"), line
        assert not is_mounted(tmp_path)


def appears(path: Path, within: float) -> float | None:
    """Seconds until `path` can be stat-ed, or None after `within` seconds."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        try:
            os.stat(path)
            return time.monotonic() - started
        except FileNotFoundError:
            time.sleep(0.1)
    return None


@pytest.mark.timeout(120)
def test_a_name_found_absent_is_looked_up_again_after_the_negative_ttl(
    mount_factory: Callable[..., Mount],
) -> None:
    short = mount_factory("--negative-ttl", "1", "--metadata-ttl", "600")
    default = mount_factory("--metadata-ttl", "600", bucket=short.bucket, name="default")
    for mount in (short, default):
        with pytest.raises(FileNotFoundError):
            os.stat(mount.path / "late")  # the kernel and the mount now know it absent
    short.client.put_object(Bucket=short.bucket, Key="late", Body=b"made by another client")
    waited = appears(short.path / "late", within=20)
    assert waited is not None, "still absent long past --negative-ttl"
    assert (short.path / "late").read_bytes() == b"made by another client"
    # Without --negative-ttl, absence is known for the metadata TTL, as before.
    assert appears(default.path / "late", within=3) is None
    with pytest.raises(OSError) as refused:
        os.stat(default.path / "late")
    assert refused.value.errno == errno.ENOENT
    for mount in (short, default):
        assert mount.umount() == 0, mount.log_text()
