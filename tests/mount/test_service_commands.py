"""Running it like a service: status, flush and umount against a real mount, the
`mount -t fusestore` helper, `--background`, the config file, and the Python API."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pty
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

import fusestore
from fusestore import SyncMode
from fusestore.service.mounts import is_mounted, lazy_unmount, registered
from fusestore.testing.s3server import LocalS3Server

from .conftest import Mount, fusestore_cli, status_of

MiB = 2**20


@contextlib.contextmanager
def watching(mountpoint: Path, interval: str) -> Iterator[tuple[subprocess.Popen[str], IO[str]]]:
    """`fusestore status MOUNTPOINT --watch` writing into a pipe (killed at the end if the
    test did not end it): the process and its stdout."""
    watcher = subprocess.Popen(
        [sys.executable, "-m", "fusestore", "status", str(mountpoint), "--watch", "--interval", interval],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_as_on_a_terminal,
    )
    try:
        assert watcher.stdout is not None
        yield watcher, watcher.stdout
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(10)


def ctrl_c_as_on_a_terminal() -> None:
    """In the child: SIGINT raises KeyboardInterrupt, as for a command typed at a terminal.
    The suite may run as a background job, whose SIGINT is ignored and would be inherited
    (Python then never raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.timeout(120)
def test_status_follows_a_write_until_flush_uploads_it(mount_factory: Callable[..., Mount]) -> None:
    mount = mount_factory("--writeback-delay", "3600")
    before = status_of(mount)
    assert before["store"].startswith(f"s3://{mount.bucket}")
    assert before["mountpoint"] == str(mount.path)
    assert before["dirty_items"] == 0 and before["dirty_bytes"] == 0 and before["oldest_dirty_age"] is None
    for field in ("uploads_in_flight", "failed_attempts", "cache_used", "cache_limit", "requests"):
        assert field in before

    data = os.urandom(3 * MiB)
    (mount.path / "f").write_bytes(data)
    time.sleep(0.3)
    dirty = status_of(mount)
    assert dirty["dirty_items"] == 1 and dirty["dirty_bytes"] == len(data)
    assert dirty["oldest_dirty_age"] > 0
    assert dirty["cache_used"] >= len(data)
    assert mount.objects() == {}, "nothing uploaded before the flush"

    flushed = fusestore_cli("flush", str(mount.path))
    assert flushed.returncode == 0, flushed.stderr
    assert "the store holds every change" in flushed.stderr
    assert mount.get("f") == data
    after = status_of(mount)
    assert after["dirty_items"] == 0 and after["dirty_bytes"] == 0
    assert after["requests"].get("PutObject", 0) + after["requests"].get("CompleteMultipartUpload", 0) >= 1

    text = fusestore_cli("status")  # every mount, for people
    assert text.returncode == 0 and str(mount.path) in text.stdout and "dirty:" in text.stdout


@pytest.mark.timeout(120)
def test_umount_shows_progress_and_leaves_the_bucket_complete(mount_factory: Callable[..., Mount]) -> None:
    mount = mount_factory("--writeback-delay", "3600", "--faults", "put*:latency=0.2")
    files = {f"f{i}": os.urandom(100_000 + i) for i in range(15)}
    for name, data in files.items():
        (mount.path / name).write_bytes(data)
    done = fusestore_cli("umount", str(mount.path))
    assert done.returncode == 0, done.stderr
    assert "uploading before unmounting:" in done.stderr and "item(s)" in done.stderr
    assert "the store holds every change" in done.stderr
    assert mount.wait() == 0
    assert set(mount.objects()) == set(files)
    for name, data in files.items():
        assert mount.get(name) == data


@pytest.mark.timeout(60)
def test_only_the_owner_or_root_may_use_the_control_socket(mount_factory: Callable[..., Mount]) -> None:
    mount = mount_factory()
    control = registered(str(mount.path))["control"]  # type: ignore[index]
    assert os.stat(control).st_mode & 0o077 == 0, "the socket is private"
    if os.geteuid() != 0:
        pytest.skip("becoming another user needs root")
    child = os.fork()
    if child == 0:  # another user tries
        code = 5
        try:
            os.setgid(65534)
            os.setuid(65534)
            # A raw connection: the client library would refuse another user's socket itself.
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(control)
                sock.sendall(b'{"cmd": "status"}\n')
                code = 3 if b"permission denied" in sock.recv(4096) else 0
        except PermissionError:
            code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 3, "another user was not refused"


# -- starting mounts the other ways ------------------------------------------------------


@pytest.fixture
def detached(tmp_path: Path) -> Iterator[Callable[[], Path]]:
    """Makes mountpoints for daemons started in the background; whatever happens, they are
    unmounted at the end."""
    points: list[Path] = []

    def new_point() -> Path:
        point = tmp_path / f"mnt{len(points)}"
        point.mkdir()
        points.append(point)
        return point

    yield new_point
    for point in points:
        entry = registered(str(point)) or {}
        if is_mounted(point):
            fusestore_cli("umount", str(point), timeout=60)
        pid = entry.get("pid")
        if pid and is_mounted(point):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
            lazy_unmount(point)


def wait_gone(pid: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (
        Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(") ")[1][:1]
    ):
        assert time.monotonic() < deadline, f"pid {pid} still running"
        time.sleep(0.05)


@pytest.mark.timeout(120)
def test_background_and_config_file(
    s3_server: LocalS3Server, make_bucket: Callable[[], str], tmp_path: Path, detached: Callable[[], Path]
) -> None:
    bucket = make_bucket()
    point = detached()
    config = tmp_path / "photos.toml"
    config.write_text(
        f'url = "s3://{bucket}"\nmountpoint = "{point}"\nendpoint_url = "{s3_server.endpoint_url}"\n'
        f'cache_dir = "{tmp_path / "cache"}"\nwriteback-delay = 0.2\n'
    )
    started = fusestore_cli("mount", "--config", str(config), "--background", "--metadata-ttl", "5")
    assert started.returncode == 0, started.stderr
    assert is_mounted(point), "ready when --background returns"
    (point / "hello.txt").write_bytes(b"hi")
    stopped = fusestore_cli("umount", "--config", str(config))
    assert stopped.returncode == 0, stopped.stderr
    assert not is_mounted(point)
    assert s3_server.client().get_object(Bucket=bucket, Key="hello.txt")["Body"].read() == b"hi"
    again = fusestore_cli("umount", "--config", str(config))  # a unit's ExecStop after the fact
    assert again.returncode == 0, again.stderr

    failed = fusestore_cli(
        "mount",
        "--background",
        "s3://no-such-bucket",
        str(point),
        "-o",
        "endpoint_url=" + s3_server.endpoint_url,
    )
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1].startswith("fusestore: error:")
    assert "no-such-bucket" in failed.stderr
    assert not is_mounted(point)


@pytest.mark.timeout(120)
def test_a_background_file_mount_lets_go_of_its_output_and_directory(
    tmp_path: Path, detached: Callable[[], Path]
) -> None:
    """A file:// mount's listing helper process holds neither the output of the command
    that started the mount (a caller reading it to the end, as mount(8), systemd or a
    script's `$(...)` do, would wait for the unmount) nor its working directory."""
    store = tmp_path / "store"
    (store / "d").mkdir(parents=True)
    (store / "d" / "f").write_bytes(b"x")
    point = detached()
    started = fusestore_cli(
        "mount", f"file://{store}", str(point), "--background", "--cache-dir", str(tmp_path / "c"), timeout=30
    )
    assert started.returncode == 0, started.stderr
    assert os.listdir(point / "d") == ["f"]
    daemon = (registered(str(point)) or {})["pid"]
    helpers = [
        int(pid)
        for task in Path(f"/proc/{daemon}/task").iterdir()
        for pid in (task / "children").read_text().split()
    ]
    assert helpers, "the listing helper process runs"
    for pid in helpers:
        assert os.readlink(f"/proc/{pid}/cwd") == "/"
        for fd in ("0", "1", "2"):
            assert os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/null"
    assert fusestore_cli("umount", str(point)).returncode == 0
    for pid in helpers:
        wait_gone(pid, timeout=30)


@pytest.mark.timeout(120)
@pytest.mark.skipif(shutil.which("mount") is None, reason="no mount(8)")
def test_mount_t_fusestore_through_the_helper(
    s3_server: LocalS3Server, make_bucket: Callable[[], str], tmp_path: Path, detached: Callable[[], Path]
) -> None:
    helper = Path(sys.executable).parent / "mount.fusestore"
    assert helper.exists(), "the package installs mount.fusestore"
    if os.geteuid() != 0:
        pytest.skip("installing a mount(8) helper needs root")
    # mount(8) looks only in /sbin, /sbin/fs.d and /sbin/fs (no PATH, no option to point
    # it elsewhere): the helper goes into the real /sbin, and only where there is none.
    sbin = Path("/sbin/mount.fusestore")
    if sbin.exists() or sbin.is_symlink():
        pytest.skip("a mount.fusestore is installed on this machine already")
    bucket = make_bucket()
    point = detached()
    # The helper runs `python -P`: this checkout's fusestore through PYTHONPATH.
    env = {**os.environ, "PYTHONPATH": str(Path(fusestore.__file__).parent.parent)}
    try:
        installed = fusestore_cli("install-helper")
        assert installed.returncode == 0, installed.stderr
        options = ",".join(
            [
                "_netdev",
                "nofail",
                f"endpoint_url={s3_server.endpoint_url}",
                f"cache_dir={tmp_path / 'cache'}",
                "writeback_delay=0.1",
            ]
        )
        done = subprocess.run(
            ["mount", "-t", "fusestore", f"s3://{bucket}", str(point), "-o", options],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        assert is_mounted(point)
        pid = registered(str(point))["pid"]  # type: ignore[index]
        (point / "via-fstab").write_bytes(b"mounted by mount(8)")
        unmounted = subprocess.run(
            ["umount", str(point)], capture_output=True, text=True, timeout=60, check=False
        )
        assert unmounted.returncode == 0, unmounted.stderr
        wait_gone(pid)  # the daemon uploads what the kernel handed it, then exits
        assert not is_mounted(point)
        body = s3_server.client().get_object(Bucket=bucket, Key="via-fstab")["Body"].read()
        assert body == b"mounted by mount(8)"
    finally:  # (`detached` unmounts whatever is left)
        removed = fusestore_cli("install-helper", "--remove")  # only the file it wrote
        assert removed.returncode == 0 and not sbin.exists(), removed.stderr


@pytest.mark.timeout(120)
def test_the_python_api_example(
    s3_server: LocalS3Server, make_bucket: Callable[[], str], tmp_path: Path, detached: Callable[[], Path]
) -> None:
    bucket = make_bucket()
    point = detached()
    options = {
        "endpoint_url": s3_server.endpoint_url,
        "cache_dir": str(tmp_path / "cache"),
        "writeback_delay": 3600,
    }
    client = s3_server.client()

    with fusestore.mount(f"s3://{bucket}/prefix", str(point), sync_mode=SyncMode.SYNC_ALL, **options) as m:
        (m.path / "hello.txt").write_bytes(b"hi")
        assert m.status()["dirty_items"] == 1
        m.sync_all()  # returns when everything is in the store
        assert client.get_object(Bucket=bucket, Key="prefix/hello.txt")["Body"].read() == b"hi"
        (m.path / "later.txt").write_bytes(b"written last")
    assert not is_mounted(point), "leaving the block unmounts"
    assert client.get_object(Bucket=bucket, Key="prefix/later.txt")["Body"].read() == b"written last"
    m.unlink()  # safe twice

    with pytest.raises(ZeroDivisionError), fusestore.mount(f"s3://{bucket}/prefix", point, **options) as m:
        (m.path / "before-the-error.txt").write_bytes(b"kept")
        1 / 0  # noqa: B018
    assert not is_mounted(point), "an exception in the block still unmounts"
    assert client.get_object(Bucket=bucket, Key="prefix/before-the-error.txt")["Body"].read() == b"kept"

    root_options = {**options, "cache_dir": str(tmp_path / "cache-root")}  # one cache per store URL
    with fusestore.mount(f"s3://{bucket}", point, sync_mode=SyncMode.NONE, **root_options) as m:
        (m.path / "unsynced.txt").write_bytes(b"left for the next mount")
    assert not is_mounted(point)
    with pytest.raises(client.exceptions.NoSuchKey):
        client.get_object(Bucket=bucket, Key="unsynced.txt")
    with fusestore.mount(f"s3://{bucket}", point, **root_options):
        pass
    assert client.get_object(Bucket=bucket, Key="unsynced.txt")["Body"].read() == b"left for the next mount"

    with pytest.raises(fusestore.MountError, match="no-such-bucket"):
        fusestore.mount("s3://no-such-bucket", point, **options)
    assert not is_mounted(point)


@pytest.mark.timeout(60)
def test_systemd_hears_ready_status_and_stopping(
    mount_factory: Callable[..., Mount], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `Type=notify` needs: READY=1 once the mount answers, STATUS=, STOPPING=1."""
    address = tmp_path / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(address))
    listener.settimeout(20)
    with listener:
        mount = mount_factory(run=False)
        monkeypatch.setenv("NOTIFY_SOCKET", str(address))
        mount.start()
        first = listener.recv(4096).decode().splitlines()
        assert "READY=1" in first and any(line.startswith("STATUS=serving") for line in first)
        assert os.listdir(mount.path) == [], "ready means it answers"
        assert mount.umount() == 0
        heard = [listener.recv(4096).decode() for _ in range(2)]
        assert "STOPPING=1" in heard[0] and heard[1].startswith("STATUS=unmounting")


@pytest.mark.timeout(60)
def test_read_only_refuses_every_change(mount_factory: Callable[..., Mount]) -> None:
    mount = mount_factory(run=False)
    mount.client.put_object(Bucket=mount.bucket, Key="kept", Body=b"read me")
    mount.options.append("--read-only")
    mount.start()
    assert (mount.path / "kept").read_bytes() == b"read me"
    for change in (
        lambda: (mount.path / "new").write_bytes(b"x"),
        lambda: (mount.path / "kept").unlink(),
        lambda: (mount.path / "dir").mkdir(),
        lambda: os.chmod(mount.path / "kept", 0o600),
    ):
        with pytest.raises(OSError) as refused:
            change()
        assert refused.value.errno == errno.EROFS
    assert status_of(mount)["read_only"] is True
    assert mount.umount() == 0
    assert set(mount.objects()) == {"kept"}


@pytest.mark.timeout(60)
def test_umount_no_wait_detaches_at_once_and_the_daemon_finishes(mount_factory: Callable[..., Mount]) -> None:
    mount = mount_factory("--writeback-delay", "3600", "--faults", "put*:latency=1")
    files = {f"f{i}": os.urandom(5000 + i) for i in range(8)}
    for name, data in files.items():
        (mount.path / name).write_bytes(data)
    done = fusestore_cli("umount", "--no-wait", str(mount.path))
    assert done.returncode == 0, done.stderr
    assert not is_mounted(mount.path), "detached at once"
    assert mount.objects() == {}, "returned before the uploads"
    assert mount.wait() == 0
    assert set(mount.objects()) == set(files)


@pytest.mark.timeout(120)
def test_the_python_api_links_stores_and_pins_on_a_live_mount(
    s3_server: LocalS3Server, make_bucket: Callable[[], str], tmp_path: Path, detached: Callable[[], Path]
) -> None:
    bucket, data_bucket = make_bucket(), make_bucket()
    client = s3_server.client()
    client.put_object(Bucket=data_bucket, Key="set/x.csv", Body=b"1,2\n")
    options = {"endpoint_url": s3_server.endpoint_url, "cache_dir": str(tmp_path / "cache")}
    point = detached()
    with fusestore.mount(f"s3://{bucket}", point, link={"/first": f"s3://{data_bucket}/set"}, **options) as m:
        assert (m.path / "first" / "x.csv").read_bytes() == b"1,2\n", "linked when mounting"
        m.link("/later/data", f"s3://{data_bucket}/set")
        assert (m.path / "later" / "data" / "x.csv").read_bytes() == b"1,2\n", "linked while mounted"
        assert [link["path"] for link in m.status()["links"]] == ["/first", "/later/data"]
        result = m.pin("later/data")
        assert (result["files_done"], result["bytes_total"], result["errors"]) == (1, 4, [])
        assert m.status()["pinned"] == ["/later/data"]
        m.unpin(str(m.path / "later" / "data"))
        m.unlink_store("/later/data")
        assert not (m.path / "later").exists()
        with pytest.raises(fusestore.MountError, match="nothing is linked at /later/data"):
            m.unlink_store("later/data")
        with pytest.raises(fusestore.MountError, match="cannot link s3://no-such-bucket at /x"):
            m.link("/x", "s3://no-such-bucket")
    assert [obj["Key"] for obj in client.list_objects_v2(Bucket=data_bucket)["Contents"]] == ["set/x.csv"]


@pytest.mark.timeout(60)
def test_status_watch_into_a_pipe_prints_a_line_per_interval_and_ctrl_c_exits_0(
    mount_factory: Callable[..., Mount],
) -> None:
    mount = mount_factory("--writeback-delay", "3600")
    (mount.path / "f").write_bytes(b"x" * MiB)
    with watching(mount.path, "0.5") as (watcher, stdout):
        lines = [stdout.readline() for _ in range(3)]  # three intervals
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=10)
    assert watcher.returncode == 0, err
    assert err == ""
    for line in lines:
        assert re.fullmatch(
            rf"\d\d:\d\d:\d\d {re.escape(str(mount.path))}: store answers; up \S+( \S+)?, down \S+( \S+)?; "
            r"dirty 1\.0 MiB of 2\.0 GiB \(1 item\(s\)\); cache 1\.0 MiB of 10\.0 GiB; "
            r"0 upload\(s\) in flight; 0 conflict\(s\), 0 failed attempt\(s\)\n",
            line,
        ), line
    assert "\x1b" not in "".join(lines) + out, "no escape codes into a pipe"
    assert lines[0].split("up ")[1].startswith("…"), "no rate before two answers"
    assert lines[1].split("up ")[1].startswith("0 B/s")


@pytest.mark.timeout(60)
def test_status_watch_refuses_what_it_cannot_watch(tmp_path: Path) -> None:
    done = fusestore_cli("status", str(tmp_path), "--watch", timeout=20)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "is not a fusestore mount" in done.stderr
    both = fusestore_cli("status", "--watch", "--json", timeout=20)
    assert both.returncode == 2 and "--watch and --json" in both.stderr


@pytest.mark.timeout(60)
def test_status_watch_on_a_terminal_redraws_a_live_view(mount_factory: Callable[..., Mount]) -> None:
    mount = mount_factory("--writeback-delay", "3600")
    (mount.path / "f").write_bytes(b"x" * MiB)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 250, 0, 0))  # rows, columns
    watcher = subprocess.Popen(
        [sys.executable, "-m", "fusestore", "status", str(mount.path), "--watch", "--interval", "0.3"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "TERM": "xterm-256color"},
        preexec_fn=ctrl_c_as_on_a_terminal,
    )
    os.close(follower)
    seen = b""
    try:
        deadline = time.monotonic() + 20
        while seen.count(b"1.0 MiB of 2.0 GiB") < 2 and time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                seen += os.read(leader, 65536)
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(10) == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(10)
        with contextlib.suppress(OSError):
            while select.select([leader], [], [], 0.2)[0]:
                seen += os.read(leader, 65536)
        os.close(leader)
    text = seen.decode(errors="replace")
    assert text.count("1.0 MiB of 2.0 GiB") >= 2, "redrawn each interval:\n" + text
    assert f"{mount.path}  ←  s3://{mount.bucket}" in text
    assert "\x1b[" in text, "drawn with a terminal's controls"
    assert "Traceback" not in text and "Aborted" not in text


@pytest.mark.timeout(60)
def test_status_watch_goes_on_when_the_daemon_ends(mount_factory: Callable[..., Mount]) -> None:
    mount = mount_factory()
    with watching(mount.path, "0.3") as (watcher, stdout):
        assert "store answers" in stdout.readline()
        assert mount.umount() == 0, mount.log_text()
        for _ in range(50):
            line = stdout.readline()
            if "store answers" not in line:
                break
        assert re.fullmatch(rf"\d\d:\d\d:\d\d {re.escape(str(mount.path))}: .*not running.*\n", line), line
        watcher.send_signal(signal.SIGINT)
        _out, err = watcher.communicate(timeout=10)
    assert watcher.returncode == 0 and err == "", err
