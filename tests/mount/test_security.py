"""A private cache whatever the umask, no credentials in logs, the kernel's permission checks,
and no other local user standing in for a mount's daemon."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fusestore.service import mounts
from fusestore.testing.s3server import S3ServerProcess

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


# -- another local user ----------------------------------------------------------------------

#: A fake daemon: answers every request on the socket at argv[1] as a mount of another store.
FAKE_DAEMON = r"""
import json, os, socket, sys
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)
server.listen(8)
print("ready", flush=True)
while True:
    conn, _ = server.accept()
    request = json.loads(conn.makefile("rb").readline())
    status = {"mountpoint": sys.argv[2], "store": "s3://not-your-bucket", "dirty_items": 0}
    answer = {"done": True, "status": status} if request["cmd"] == "flush" else status
    conn.sendall(json.dumps(answer).encode() + b"\n")
    conn.close()
"""


@dataclass
class Users:
    """Two unprivileged users: `a` mounts, `b` attacks; `home` is a's own directory."""

    a: int
    b: int
    home: Path

    def run(self, uid: int, *args: str, env: dict[str, str] | None = None) -> list[str]:
        # The interpreter may be installed where only root can look: the capability to
        # read (never to write) anywhere lets it start as another user, and changes nothing
        # the checks under test look at (owners and modes).
        return [
            "setpriv",
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "--inh-caps=+dac_read_search",
            "--ambient-caps=+dac_read_search",
            *args,
        ]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
        return {**env, "HOME": str(self.home), "XDG_CACHE_HOME": str(self.home / ".cache")}


@pytest.fixture
def users() -> Iterator[Users]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("running commands as other users needs root and setpriv")
    a = 41000 + os.getpid() % 4000 * 2  # its own uids: runtime directories are per uid
    home = Path(tempfile.mkdtemp(prefix="fusestore-user-"))
    os.chown(home, a, a)
    os.chmod(home, 0o755)
    try:
        yield Users(a, a + 1, home)
    finally:
        for path in (home, Path(f"/tmp/fusestore-{a}")):
            if path.is_symlink():
                path.unlink()
            else:
                shutil.rmtree(path, ignore_errors=True)


def hostile_runtime_dir(users: Users, case: str) -> Path:
    """What user b prepares before user a mounts: a's runtime directory, theirs."""
    runtime = Path(f"/tmp/fusestore-{users.a}")
    if case == "symlink":
        target = users.home / "b-dir"
        target.mkdir()
        os.chown(target, users.b, users.b)
        runtime.symlink_to(target)
        os.lchown(runtime, users.b, users.b)
        return runtime
    runtime.mkdir()
    owner = users.a if case == "mine, mode 777" else users.b
    os.chown(runtime, owner, owner)
    os.chmod(runtime, 0o777)
    return runtime


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", ["theirs, mode 777", "mine, mode 777", "symlink"])
def test_a_mount_refuses_a_runtime_directory_another_user_could_change(
    users: Users, server: S3ServerProcess, make_bucket: Callable[[], str], case: str
) -> None:
    runtime = hostile_runtime_dir(users, case)
    point = users.home / "mnt"
    point.mkdir()
    os.chown(point, users.a, users.a)
    command = [sys.executable, "-m", "fusestore", "mount", f"s3://{make_bucket()}", str(point)]
    command += ["--endpoint-url", server.endpoint_url]
    done = subprocess.run(
        users.run(users.a, *command), env=users.env(), capture_output=True, text=True, timeout=50
    )
    try:
        assert done.returncode == 2, done.stderr
        [line] = done.stderr.strip().splitlines()
        assert line.startswith(f"fusestore: error: runtime directory {runtime} "), line
        assert f"remove it (rm -rf {runtime})" in line and "XDG_RUNTIME_DIR" in line, line
        assert not mounts.is_mounted(point)
        assert os.listdir(runtime) == [], "nothing of the mount's is left where another user can reach"
    finally:
        if mounts.is_mounted(point):
            mounts.lazy_unmount(point)


@pytest.mark.timeout(60)
def test_status_and_flush_refuse_a_control_socket_another_user_planted(
    users: Users, mount_factory: Callable[..., Mount]
) -> None:
    """User b made /tmp/fusestore-A mode 777 and put a registry entry and a socket of their
    own for a's mount there: a's status showed b's fake store, and flush said all was
    uploaded."""
    mount = mount_factory()  # a fusestore mount at the mountpoint a asks about
    runtime = hostile_runtime_dir(users, "theirs, mode 777")
    digest = hashlib.sha256(str(mount.path).encode()).hexdigest()[:24]
    socket_path = runtime / f"{digest}.sock"
    fake = subprocess.Popen(
        users.run(users.b, sys.executable, "-c", FAKE_DAEMON, str(socket_path), str(mount.path)),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout is not None and fake.stdout.readline() == "ready\n"
        entry = {"mountpoint": str(mount.path), "pid": fake.pid, "uid": users.a, "control": str(socket_path)}
        (runtime / f"{digest}.json").write_text(json.dumps(entry))
        os.chown(runtime / f"{digest}.json", users.b, users.b)
        for command in (["status", str(mount.path), "--json"], ["flush", str(mount.path)]):
            done = subprocess.run(
                users.run(users.a, sys.executable, "-m", "fusestore", *command),
                env=users.env(),
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert "not-your-bucket" not in done.stdout + done.stderr
            assert done.returncode == 2, (command, done.stdout, done.stderr)
            [line] = done.stderr.strip().splitlines()
            assert line.startswith(f"fusestore: error: runtime directory {runtime} belongs to uid {users.b}")
    finally:
        fake.kill()
        fake.wait(10)
    assert mount.umount() == 0
