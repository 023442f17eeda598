"""A private cache whatever the umask, no credentials in logs, and the kernel's permission checks."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from fusestore import mounts

from .conftest import Mount, sh

ACCESS_KEY = "AKIAFUSESTORELEAKTEST"
SECRET_KEY = "fusestore/leak+test/Secret0123456789abcdefXYZ"


def mount_options(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as table:
        for line in table:
            fields = line.split()
            if fields[4] == str(path):
                return fields[5].split(",") + line.split(" - ")[1].split()[2].split(",")
    raise AssertionError(f"{path} is not mounted")


@pytest.mark.timeout(120)
def test_a_debug_session_under_umask_000_logs_no_secret_and_keeps_the_cache_private(
    mount_factory: Callable[..., Mount], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    old_umask = os.umask(0)  # the daemon inherits it
    try:
        mount = mount_factory("--writeback-delay", "0.2", run=False)
        mount.client.put_object(Bucket=mount.bucket, Key="theirs.txt", Body=b"written by another client")
        mount.log_level = "debug"
        mount.start()
    finally:
        os.umask(old_umask)
    sh(
        "mkdir d && echo hello > d/a && cp d/a d/b && mv d/b d/c && cat d/a d/c && ls -la d && chmod 600 d/a"
        " && rm d/c && dd if=/dev/urandom of=big bs=1M count=70 status=none && cat big >/dev/null"
        " && stat theirs.txt && cat theirs.txt",
        mount.path,
    )
    mount.wait_for_key("big", timeout=60)
    options = mount_options(mount.path)
    assert {"default_permissions", "nosuid", "nodev"} <= set(options)
    assert "allow_other" not in options
    assert mount.umount() == 0, mount.log_text()

    log = mount.log.read_text(errors="replace")
    assert "DEBUG" in log, "a debug-level log (or this test proves nothing)"
    for secret in (ACCESS_KEY, SECRET_KEY, "Signature=", "X-Amz-Signature", "Credential="):
        assert secret not in log, f"{secret!r} in the log"

    for root, dirs, files in os.walk(mount.cache):
        for name in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) == 0o700, name
        for name in files:
            mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
            assert mode == 0o600, f"{os.path.join(root, name)}: {oct(mode)}"
            with open(os.path.join(root, name), "rb") as cached:
                content = cached.read()
            for secret in (ACCESS_KEY, SECRET_KEY):
                assert secret.encode() not in content, f"{secret!r} in {os.path.join(root, name)}"
    assert stat.S_IMODE(os.stat(mount.cache).st_mode) == 0o700

    entry = mounts._entry_path(str(mount.path))  # what `fusestore umount` reads
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert stat.S_IMODE(entry.parent.stat().st_mode) == 0o700
    for secret in (ACCESS_KEY, SECRET_KEY):
        assert secret not in entry.read_text()


@pytest.mark.timeout(60)
def test_files_made_through_the_mount_get_the_modes_their_makers_ask_for(
    mount_factory: Callable[..., Mount],
) -> None:
    """The daemon's own umask (0077, for its cache) never reaches files made on the mount."""
    mount = mount_factory("--writeback-delay", "0.2")
    sh(
        "umask 022 && echo a > f644 && mkdir d755 && umask 000 && echo b > f666 && mkdir d777"
        " && umask 077 && echo c > f600 && mkdir d700",
        mount.path,
    )
    expected = {"f644": 0o644, "d755": 0o755, "f666": 0o666, "d777": 0o777, "f600": 0o600, "d700": 0o700}
    for name, mode in expected.items():
        assert stat.S_IMODE(os.stat(mount.path / name).st_mode) == mode, name
    mount.wait_for_key("f600")
    assert mount.metadata("f666")["mode"] == str(stat.S_IFREG | 0o666)
    assert mount.umount() == 0, mount.log_text()


@pytest.mark.timeout(60)
def test_allow_other_only_when_asked(mount_factory: Callable[..., Mount]) -> None:
    mount = mount_factory("--allow-other")
    assert "allow_other" in mount_options(mount.path)
    assert mount.umount() == 0
