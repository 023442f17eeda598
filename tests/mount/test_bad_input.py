"""Bad input to `fusestore mount`: one line on stderr naming the problem and the fix,
exit code 2, and nothing left behind (no mount, no process)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from fusestore.service.mounts import lazy_unmount
from fusestore.testing.s3server import CREDENTIALS, LocalS3Server, free_port

from .conftest import Mount

#: Seconds one refused `fusestore mount` may take (an unreachable store is tried for ~7 s).
REFUSAL_TIMEOUT = 30


def mounts_below(root: Path) -> set[str]:
    """Mount points at or below `root`, per /proc/self/mountinfo."""
    found = set()
    with open("/proc/self/mountinfo") as table:
        for line in table:
            point = line.split()[4]
            if point == str(root) or point.startswith(f"{root}/"):
                found.add(point)
    return found


def processes_naming(root: Path) -> set[int]:
    """Live processes (other than this one) whose command line names a path below `root`."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if str(root).encode() in cmdline.read():
                    found.add(int(entry))
        except OSError:
            continue
    return found


@pytest.fixture
def no_leftovers(tmp_path: Path) -> Iterator[None]:
    """Whatever a test does, nothing it started survives it."""
    mounts, pids = mounts_below(tmp_path), processes_naming(tmp_path)
    yield
    for pid in processes_naming(tmp_path) - pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for point in mounts_below(tmp_path) - mounts:
        lazy_unmount(point)


def refused(root: Path, url: str, mountpoint: Path, *options: str, env: dict[str, str] | None = None) -> str:
    """Run `fusestore mount`, expect a refusal, and return its one line (prefix removed)."""
    mounts, pids = mounts_below(root), processes_naming(root)
    done = subprocess.run(
        [sys.executable, "-m", "fusestore", "mount", url, str(mountpoint), *options],
        capture_output=True,
        text=True,
        env=env,
        timeout=REFUSAL_TIMEOUT,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("fusestore: error: "), lines[0]
    assert mounts_below(root) == mounts, "a refused mount left a mount behind"
    assert processes_naming(root) <= pids, "a refused mount left a process behind"
    return lines[0].removeprefix("fusestore: error: ")


def assert_says(line: str, problem: str, fix: str) -> None:
    assert problem in line, f"the problem ({problem!r}) is not named: {line}"
    assert fix in line, f"the fix ({fix!r}) is not named: {line}"


# -- the store: missing, unreachable, wrong credentials ----------------------------------


@dataclass
class AuthServer:
    """A server that checks signatures: `admin` may do anything, `nobody` nothing."""

    server: LocalS3Server
    admin: dict[str, str]
    nobody: dict[str, str]


@pytest.fixture(scope="module")
def auth_server() -> Iterator[AuthServer]:
    with LocalS3Server() as server:
        server.create_bucket("locked")
        iam = boto3.client("iam", endpoint_url=server.endpoint_url, region_name="us-east-1", **CREDENTIALS)
        keys = {}
        for user in ("admin", "nobody"):
            iam.create_user(UserName=user)
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = {
                "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            }
        iam.put_user_policy(
            UserName="admin",
            PolicyName="everything",
            PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            ),
        )
        server.require_auth()
        yield AuthServer(server, keys["admin"], keys["nobody"])


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("case", "problem", "fix"),
    [
        pytest.param(
            "unknown access key",
            "it does not know the access key",
            "check AWS_ACCESS_KEY_ID",
            id="unknown access key",
        ),
        pytest.param(
            "wrong secret key",
            "the secret key does not match",
            "check AWS_SECRET_ACCESS_KEY",
            id="wrong secret key",
        ),
        pytest.param(
            "no permission",
            "refused access to bucket 'locked'",
            "check that these credentials may use it",
            id="no permission",
        ),
    ],
)
def test_refused_credentials(
    auth_server: AuthServer, tmp_path: Path, no_leftovers: None, case: str, problem: str, fix: str
) -> None:
    env = dict(os.environ)  # the test credentials, unknown to this server
    if case == "wrong secret key":
        env.update(auth_server.admin, AWS_SECRET_ACCESS_KEY="fusestore/Wrong+Secret/0123456789abcdefghij")
    elif case == "no permission":
        env.update(auth_server.nobody)
    (tmp_path / "mnt").mkdir()
    line = refused(
        tmp_path,
        "s3://locked",
        tmp_path / "mnt",
        "--endpoint-url",
        auth_server.server.endpoint_url,
        "--cache-dir",
        str(tmp_path / "cache"),
        env=env,
    )
    assert_says(line, problem, fix)
    assert env["AWS_SECRET_ACCESS_KEY"] not in line and env["AWS_ACCESS_KEY_ID"] not in line


@pytest.mark.timeout(60)
def test_the_right_credentials_are_accepted_by_the_auth_server(auth_server: AuthServer) -> None:
    """The control for the test above: it is the credentials that are refused, nothing else."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fusestore",
            "check",
            "s3://locked",
            "--endpoint-url",
            auth_server.server.endpoint_url,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **auth_server.admin},
        timeout=REFUSAL_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("case", "problem", "fix"),
    [
        pytest.param(
            "missing bucket",
            "bucket 'no-such-bucket-here' does not exist at http://127.0.0.1:",
            "create it",
            id="missing bucket",
        ),
        pytest.param(
            "unreachable", "cannot reach http://127.0.0.1:", "check that the store is up", id="unreachable"
        ),
        pytest.param(
            "bad endpoint",
            "not an endpoint URL: 'not a url'",
            "write http(s)://HOST[:PORT]",
            id="bad endpoint",
        ),
        pytest.param(
            "ftp endpoint",
            "not an endpoint URL: 'ftp://127.0.0.1:21'",
            "write http(s)://HOST[:PORT]",
            id="ftp endpoint",
        ),
        pytest.param(
            "no secret key",
            "no usable AWS credentials",
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            id="no secret key",
        ),
        pytest.param(
            "unknown profile",
            "profile (no-such-profile) could not be found",
            "check ~/.aws/config",
            id="unknown profile",
        ),
        pytest.param(
            "missing linked bucket",
            "--link /data=s3://no-such-linked-bucket: bucket 'no-such-linked-bucket' does not exist",
            "create it",
            id="missing linked bucket",
        ),
        pytest.param(
            "link without a path",
            "Invalid value for '--link': a link is PATH=URL",
            "e.g. /datasets=s3://public-bucket/prefix (not 's3://x')",
            id="link without a path",
        ),
    ],
)
def test_store_problems(
    s3_server: LocalS3Server, tmp_path: Path, no_leftovers: None, case: str, problem: str, fix: str
) -> None:
    url, endpoint, options, env = "s3://some-bucket", s3_server.endpoint_url, [], dict(os.environ)
    if case == "missing bucket":
        url = "s3://no-such-bucket-here"
    elif case == "unreachable":
        endpoint = f"http://127.0.0.1:{free_port()}"
    elif case == "bad endpoint":
        endpoint = "not a url"
    elif case == "ftp endpoint":
        endpoint = "ftp://127.0.0.1:21"
    elif case == "no secret key":
        del env["AWS_SECRET_ACCESS_KEY"]
    elif case == "unknown profile":
        options = ["--profile", "no-such-profile"]
    elif case == "missing linked bucket":
        options = ["--link", "/data=s3://no-such-linked-bucket"]
    elif case == "link without a path":
        options = ["--link", "s3://x"]
    (tmp_path / "mnt").mkdir()
    line = refused(
        tmp_path,
        url,
        tmp_path / "mnt",
        "--endpoint-url",
        endpoint,
        "--cache-dir",
        str(tmp_path / "cache"),
        *options,
        env=env,
    )
    assert_says(line, problem, fix)


# -- the URL -----------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("url", "problem", "fix"),
    [
        pytest.param("s3://", "no bucket in the URL 's3://'", "write s3://BUCKET", id="s3://"),
        pytest.param(
            "s3:///photos", "no bucket in the URL 's3:///photos'", "write s3://BUCKET", id="s3:///photos"
        ),
        pytest.param(
            "s3:/x",
            "not a store URL: 's3:/x'",
            "expected SCHEME://..., one of: az://, file://, gs://, memory://, s3://",
            id="s3:/x",
        ),
        pytest.param("not a url", "not a store URL: 'not a url'", "expected SCHEME://", id="not a url"),
        pytest.param("", "not a store URL: ''", "expected SCHEME://", id="empty"),
        pytest.param(
            "ftp://x",
            "unknown store scheme 'ftp://'",
            "known schemes: az://, file://, gs://, memory://, s3://",
            id="ftp://x",
        ),
        pytest.param("s3://a", "not a valid bucket name: 'a'", "3-255 letters", id="s3://a"),
        pytest.param(
            "s3://user:Top-Secret-99@bucket",
            "credentials do not go in an s3:// URL",
            "use AWS_ACCESS_KEY_ID",
            id="s3://user:Top-Secret-99@bucket",
        ),
        pytest.param(
            "s3://bucket?colour=blue",
            "unknown option 'colour'",
            "(known: acl, anonymous, anonymous_writes, ca_bundle, checksums, connect_timeout",
            id="s3://bucket?colour=blue",
        ),
        pytest.param(
            "s3://bucket/p#part", "store URLs have no #fragment", "s3://bucket/p", id="s3://bucket/p#part"
        ),
    ],
)
def test_bad_urls(
    s3_server: LocalS3Server, tmp_path: Path, no_leftovers: None, url: str, problem: str, fix: str
) -> None:
    (tmp_path / "mnt").mkdir()
    line = refused(
        tmp_path,
        url,
        tmp_path / "mnt",
        "--endpoint-url",
        s3_server.endpoint_url,
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert_says(line, problem, fix)
    assert "Top-Secret-99" not in line
    assert not (tmp_path / "cache").exists(), "a bad URL must be refused before the cache is touched"


# -- the mountpoint ----------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("case", "problem", "fix"),
    [
        pytest.param("missing", "does not exist", "create it with: mkdir -p ", id="missing"),
        pytest.param("a file", "is not a directory", "mount on an empty directory", id="a file"),
        pytest.param("below a file", "Not a directory", "mount on an empty directory", id="below a file"),
        pytest.param("not empty", "is not empty", "use an empty directory", id="not empty"),
        pytest.param(
            "already a mount",
            "is already a mount point",
            "unmount it first (fusestore umount ",
            id="already a mount",
        ),
    ],
)
def test_bad_mountpoints(
    no_leftovers: None,
    s3_server: LocalS3Server,
    make_bucket: Callable[[], str],
    mount_factory: Callable[..., Mount],
    tmp_path: Path,
    case: str,
    problem: str,
    fix: str,
) -> None:
    bucket = make_bucket()
    target = tmp_path / "target"
    if case == "a file":
        target.write_text("x")
    elif case == "below a file":
        (tmp_path / "file").write_text("x")
        target = tmp_path / "file" / "target"
    elif case == "not empty":
        target.mkdir()
        (target / "x").write_text("x")
    elif case == "already a mount":
        target = mount_factory(bucket=bucket).path
    line = refused(
        tmp_path,
        f"s3://{bucket}",
        target,
        "--endpoint-url",
        s3_server.endpoint_url,
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert_says(line, problem, fix)
    assert str(target) in line
    if case == "not empty":
        assert (target / "x").read_text() == "x"


@pytest.mark.timeout(60)
def test_a_missing_mountpoint_is_named_before_missing_credentials(no_leftovers: None, tmp_path: Path) -> None:
    """Without credentials and with a missing mountpoint, the mountpoint is what is named:
    it is checked before the store is asked anything."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_EC2_METADATA_DISABLED="true"
    )
    target = tmp_path / "missing"
    line = refused(
        tmp_path, "s3://some-bucket", target, "--endpoint-url", f"http://127.0.0.1:{free_port()}", env=env
    )
    assert_says(line, f"mountpoint {target} does not exist", "create it with: mkdir -p ")


@pytest.mark.timeout(60)
def test_a_bad_mountpoint_is_reported_at_once_with_a_dead_endpoint(
    no_leftovers: None, tmp_path: Path
) -> None:
    """A store that does not answer is tried for seconds; a bad mountpoint is reported
    before any of that."""
    target = tmp_path / "a-file"
    target.write_text("x")
    started = time.monotonic()
    line = refused(tmp_path, "s3://some-bucket", target, "--endpoint-url", f"http://127.0.0.1:{free_port()}")
    assert_says(line, "is not a directory", "mount on an empty directory")
    assert time.monotonic() - started < 3.0


# -- the cache directory -----------------------------------------------------------------


def make_unwritable(path: Path) -> Callable[[], None] | None:
    """Make the directory `path` unwritable even for root; returns how to undo it, or None."""
    if os.geteuid() != 0:
        path.chmod(0o500)
        return lambda: path.chmod(0o700)
    if (
        shutil.which("chattr")
        and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
    ):
        return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,mode=0700", "tmpfs", str(path)]).returncode == 0:
        return lambda: subprocess.run(["umount", str(path)], check=True)
    return None


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("case", "problem", "fix"),
    [
        pytest.param(
            "another user's",
            "belongs to uid 12345, not to you",
            "choose another --cache-dir",
            id="another user's",
        ),
        pytest.param("unwritable", "is not writable", "choose another --cache-dir", id="unwritable"),
        pytest.param("a file", "exists and is not a directory", "choose another --cache-dir", id="a file"),
        pytest.param("below a file", "(Not a directory)", "choose another --cache-dir", id="below a file"),
        pytest.param(
            "another store's",
            "belongs to s3://another-bucket, not s3://",
            "choose another --cache-dir",
            id="another store's",
        ),
        pytest.param(
            "in use", "is in use by another fusestore daemon", "unmount that one first", id="in use"
        ),
    ],
)
def test_bad_cache_directories(
    no_leftovers: None,
    s3_server: LocalS3Server,
    make_bucket: Callable[[], str],
    mount_factory: Callable[..., Mount],
    tmp_path: Path,
    case: str,
    problem: str,
    fix: str,
) -> None:
    bucket = make_bucket()
    (tmp_path / "mnt").mkdir()
    cache = tmp_path / "cache"
    undo = None
    if case == "another user's":
        cache.mkdir(mode=0o700)
        os.chown(cache, 12345, 12345)
    elif case == "unwritable":
        cache.mkdir(mode=0o700)
        undo = make_unwritable(cache)
        if undo is None:
            pytest.skip("no way to make a directory unwritable for root here")
    elif case == "a file":
        cache.write_text("x")
    elif case == "below a file":
        (tmp_path / "file").write_text("x")
        cache = tmp_path / "file" / "cache"
    elif case == "another store's":
        cache.mkdir(mode=0o700)
        (cache / "store.json").write_text(json.dumps({"url": "s3://another-bucket"}))
    elif case == "in use":
        cache = mount_factory(bucket=bucket, name="first").cache
    try:
        line = refused(
            tmp_path,
            f"s3://{bucket}",
            tmp_path / "mnt",
            "--endpoint-url",
            s3_server.endpoint_url,
            "--cache-dir",
            str(cache),
        )
    finally:
        if undo is not None:
            undo()
    assert_says(line, problem, fix)
    assert str(cache) in line


# -- fusestore umount --------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_umount_never_detaches_another_file_system(tmp_path: Path, no_leftovers: None) -> None:
    other = tmp_path / "other"
    other.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(other)]).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "fusestore", "umount", str(other)],
            capture_output=True,
            text=True,
            timeout=REFUSAL_TIMEOUT,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == [f"fusestore: error: {other} is not a fusestore mount"]
        assert mounts_below(tmp_path) == {str(other)}
    finally:
        subprocess.run(["umount", "-l", str(other)], check=False)
