"""Two daemons on one bucket, and boto3 as a third writer: a change based on a version
another client has since replaced is kept next to it, never over it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .conftest import SERVERS, Mount, fusestore_cli, status_of

pytestmark = pytest.mark.parametrize("server", SERVERS, indirect=True)


def flush(mount: Mount) -> None:
    done = fusestore_cli("flush", str(mount.path))
    assert done.returncode == 0, done.stderr + mount.log_text()


def copies(mount: Mount, key: str) -> dict[str, bytes]:
    stem = key.rsplit(".", 1)[0]
    return {k: mount.get(k) for k in mount.objects() if k.startswith(f"{stem}.conflict-")}


@pytest.mark.timeout(180)
def test_two_mounts_change_one_file_and_the_bucket_keeps_both(
    mount_factory: Callable[..., Mount], make_bucket: Callable[[], str]
) -> None:
    bucket = make_bucket()
    a = mount_factory("--writeback-delay", "3600", bucket=bucket, name="a", run=False)
    a.client.put_object(Bucket=bucket, Key="shared.txt", Body=b"original\n")
    a.start()
    b = mount_factory("--writeback-delay", "3600", bucket=bucket, name="b")
    assert (a.path / "shared.txt").read_bytes() == b"original\n"
    assert (b.path / "shared.txt").read_bytes() == b"original\n"

    (a.path / "shared.txt").write_bytes(b"written on a\n")
    (b.path / "shared.txt").write_bytes(b"written on b, a little longer\n")
    flush(a)  # a's upload lands first: b's is now based on a replaced version
    flush(b)

    assert a.get("shared.txt") == b"written on a\n"
    assert list(copies(a, "shared.txt").values()) == [b"written on b, a little longer\n"]
    assert status_of(b)["conflicts"] == 1 and status_of(a)["conflicts"] == 0
    assert (b.path / "shared.txt").read_bytes() == b"written on a\n", "b shows the version at the key"
    (copy,) = copies(a, "shared.txt")
    assert {p.name for p in b.path.iterdir()} == {"shared.txt", copy}, "b lists its copy at once"
    assert (b.path / copy).read_bytes() == b"written on b, a little longer\n"
    assert status_of(b)["dirty_items"] == 0
    assert a.umount() == 0, a.log_text()
    assert b.umount() == 0, b.log_text()
    assert a.get("shared.txt") == b"written on a\n", "the unmounts changed nothing more"


@pytest.mark.timeout(120)
def test_boto3_overwrites_a_file_with_unsynced_changes_and_both_are_kept(
    mount_factory: Callable[..., Mount],
) -> None:
    mount = mount_factory("--writeback-delay", "3600", run=False)
    mount.client.put_object(Bucket=mount.bucket, Key="report.csv", Body=b"a,b\n")
    mount.start()
    with open(mount.path / "report.csv", "a") as f:
        f.write("1,2\n")
    mount.client.put_object(Bucket=mount.bucket, Key="report.csv", Body=b"x,y\n")
    mount.client.put_object(Bucket=mount.bucket, Key="brand-new.txt", Body=b"theirs")
    (mount.path / "brand-new.txt").write_bytes(b"ours")  # the mount had not listed it yet
    flush(mount)

    assert mount.get("report.csv") == b"x,y\n"
    assert list(copies(mount, "report.csv").values()) == [b"a,b\n1,2\n"]
    assert mount.get("brand-new.txt") == b"theirs"
    assert list(copies(mount, "brand-new.txt").values()) == [b"ours"]
    assert status_of(mount)["conflicts"] == 2
    assert mount.umount() == 0, mount.log_text()
