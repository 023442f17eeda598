"""s3:// options through the real daemon: an SSE-C bucket written, renamed, remounted and
read back on a fresh cache, its key never in the log or `fusestore status` (on SeaweedFS,
which enforces customer keys); an anonymous mount of a public bucket with no credentials
anywhere, read-only unless told otherwise, and transfer rates held by the daemon's
worker threads while the mount keeps answering (on moto)."""

from __future__ import annotations

import base64
import errno
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Mount, fusestore_cli, status_of

MiB = 1024 * 1024


def refused(code: int, action: Callable[[], object]) -> None:
    with pytest.raises(OSError) as failure:
        action()
    assert failure.value.errno == code, failure.value


@pytest.mark.timeout(300)
@pytest.mark.parametrize("server", ["seaweedfs"], indirect=True)
def test_an_sse_c_mount_round_trips_renames_and_never_shows_the_key(
    mount_factory: Callable[..., Mount], tmp_path: Path
) -> None:
    key = os.urandom(32)
    key_file = tmp_path / "customer.key"
    key_file.write_text(base64.b64encode(key).decode() + "\n")
    key_file.chmod(0o600)
    mount = mount_factory("-o", f"sse_c_key_file={key_file}", run=False)
    mount.log_level = "debug"
    mount.start()
    files = {"small.txt": b"hello, encrypted\n", "big.bin": os.urandom(20 * MiB + 5)}
    for name, data in files.items():
        (mount.path / name).write_bytes(data)
    for name in files:
        mount.wait_for_key(name)
    os.rename(mount.path / "small.txt", mount.path / "renamed.txt")  # a copy in the store
    files["renamed.txt"] = files.pop("small.txt")
    mount.wait_for_key("renamed.txt")
    status = json.dumps(status_of(mount))
    listed = fusestore_cli("status").stdout
    mount.remount()
    for name, data in files.items():
        assert (mount.path / name).read_bytes() == data, name
    assert mount.umount() == 0, mount.log_text()

    # A fresh cache: every byte comes from the store, through the key.
    fresh = mount_factory("-o", f"sse_c_key_file={key_file}", bucket=mount.bucket, name="fresh", run=False)
    fresh.log_level = "debug"
    fresh.start()
    assert sorted(os.listdir(fresh.path)) == sorted(files)
    for name, data in files.items():
        assert (fresh.path / name).read_bytes() == data, name
    assert fresh.umount() == 0, fresh.log_text()

    assert "small.txt" not in mount.objects()
    for name, data in files.items():
        with pytest.raises(Exception, match=r"customer|Bad Request|InvalidArgument|400"):
            mount.client.get_object(Bucket=mount.bucket, Key=name)["Body"].read()
        got = mount.client.get_object(
            Bucket=mount.bucket, Key=name, SSECustomerAlgorithm="AES256", SSECustomerKey=key
        )
        assert got["Body"].read() == data, name

    logs = mount.log.read_bytes() + fresh.log.read_bytes()
    assert b"DEBUG" in logs  # the level the secrets must not show at
    secrets = [key, base64.b64encode(key), key.hex().encode()]
    for text in (logs, status.encode(), listed.encode()):
        for secret in secrets:
            assert secret not in text
    assert "sse_c_key_file=" in status  # the file is named; what it holds is not


@pytest.mark.timeout(240)
def test_an_anonymous_mount_reads_a_public_bucket_with_no_credentials_and_is_read_only(
    mount_factory: Callable[..., Mount], make_bucket: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = make_bucket()
    mount = mount_factory("-o", "anonymous", bucket=bucket, run=False)
    mount.client.put_bucket_acl(Bucket=bucket, ACL="public-read")
    mount.client.put_object(Bucket=bucket, Key="data/open.txt", Body=b"for everyone\n", ACL="public-read")
    # No credentials anywhere: the shared files are /dev/null and instance metadata is off.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    mount.start()
    assert (mount.path / "data" / "open.txt").read_bytes() == b"for everyone\n"
    assert status_of(mount)["read_only"] is True
    refused(errno.EROFS, lambda: (mount.path / "new.txt").write_bytes(b"no"))
    refused(errno.EROFS, lambda: (mount.path / "data" / "dir").mkdir())
    refused(errno.EROFS, lambda: (mount.path / "data" / "open.txt").unlink())
    assert mount.umount() == 0, mount.log_text()

    # Told otherwise: writes go out unsigned (moto, like a publicly writable bucket, takes them).
    writer = mount_factory("-o", "anonymous,anonymous_writes", bucket=bucket, name="rw")
    (writer.path / "new.txt").write_bytes(b"unsigned")
    writer.wait_for_key("new.txt")
    assert writer.umount() == 0, writer.log_text()
    assert mount.get("new.txt") == b"unsigned"


@pytest.mark.timeout(180)
def test_transfer_rates_hold_in_the_daemon_and_leave_the_mount_responsive(
    mount_factory: Callable[..., Mount],
) -> None:
    mount = mount_factory("-o", "max_download_rate=512K,max_upload_rate=512K", run=False)
    data = os.urandom(2 * MiB)
    mount.client.put_object(Bucket=mount.bucket, Key="remote.bin", Body=data)
    mount.client.put_object(Bucket=mount.bucket, Key="other.txt", Body=b"x")
    mount.start()
    assert (mount.path / "other.txt").read_bytes() == b"x"
    pauses: list[float] = []
    done = threading.Event()

    def poke() -> None:  # the trio thread keeps answering while transfers wait
        while not done.is_set():
            started = time.monotonic()
            os.stat(mount.path / "other.txt")
            os.listdir(mount.path)
            pauses.append(time.monotonic() - started)
            time.sleep(0.05)

    poker = threading.Thread(target=poke)
    poker.start()
    try:
        started = time.monotonic()
        assert (mount.path / "remote.bin").read_bytes() == data
        download = time.monotonic() - started
        (mount.path / "new.bin").write_bytes(data)
        upload = mount.wait_for_key("new.bin", timeout=60)
    finally:
        done.set()
        poker.join()
    # 2 MiB at 512 KiB/s with a quarter second's burst: 3.75 s (the upload also waits
    # out the write-back delay).
    assert 3.2 < download < 20 and 3.2 < upload < 25, (download, upload)
    assert len(pauses) > 20 and max(pauses) < 1.0, max(pauses)
    assert mount.umount() == 0, mount.log_text()
    assert mount.get("new.bin") == data
