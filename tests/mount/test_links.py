"""A second bucket linked into a mount from its config file (`[links]`): read byte-exact,
read-only for every shell change, untouched in the store, and back after a remount."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Mount, status_of


def refused(code: int, action: Callable[[], object]) -> None:
    with pytest.raises(OSError) as failure:
        action()
    assert failure.value.errno == code, failure.value


def open_for_writing(path: Path) -> None:
    with open(path, "r+b"):
        pass


@pytest.mark.timeout(180)
def test_a_linked_bucket_reads_byte_exact_refuses_writes_and_survives_a_remount(
    mount_factory: Callable[..., Mount], make_bucket: Callable[[], str], tmp_path: Path
) -> None:
    data_bucket = make_bucket()
    mount = mount_factory("--config", str(tmp_path / "mount.toml"), run=False)
    files = {"pub/a.bin": os.urandom(3 * 2**20 + 11), "pub/d/b.txt": b"b\n", "private.txt": b"not linked"}
    for key, data in files.items():
        mount.client.put_object(Bucket=data_bucket, Key=key, Body=data)
    # The link names no endpoint: it takes the mount's own (--endpoint-url).
    (tmp_path / "mount.toml").write_text(f'[links]\n"/datasets" = "s3://{data_bucket}/pub"\n')
    mount.start()

    def check(where: Mount) -> None:
        linked = where.path / "datasets"
        assert sorted(os.listdir(where.path)) == ["datasets"]
        assert sorted(os.listdir(linked)) == ["a.bin", "d"]
        for key in ("pub/a.bin", "pub/d/b.txt"):
            got = (linked / key.removeprefix("pub/")).read_bytes()
            assert hashlib.sha256(got).digest() == hashlib.sha256(files[key]).digest(), key

    check(mount)
    linked = mount.path / "datasets"
    assert (linked / "a.bin").stat().st_mode & 0o222 == 0, "shown without write permission"
    refused(errno.EROFS, lambda: (linked / "new.txt").write_bytes(b"x"))
    refused(errno.EROFS, lambda: open_for_writing(linked / "a.bin"))
    refused(errno.EROFS, lambda: (linked / "d" / "b.txt").unlink())
    refused(errno.EROFS, lambda: (linked / "sub").mkdir())
    refused(errno.EROFS, lambda: os.chmod(linked / "a.bin", 0o600))
    refused(errno.EROFS, lambda: os.rmdir(linked))
    refused(errno.EXDEV, lambda: os.rename(linked / "a.bin", mount.path / "a.bin"))
    (mount.path / "mine.txt").write_bytes(b"the mount itself stays writable")
    refused(errno.EXDEV, lambda: os.rename(mount.path / "mine.txt", linked / "mine.txt"))
    [link] = status_of(mount)["links"]
    assert link["path"] == "/datasets" and link["store"].startswith(f"s3://{data_bucket}/pub")

    mount.remount()
    check_after = sorted(os.listdir(mount.path))
    assert check_after == ["datasets", "mine.txt"]
    for key in ("pub/a.bin", "pub/d/b.txt"):
        assert (linked / key.removeprefix("pub/")).read_bytes() == files[key]
    assert mount.umount() == 0, mount.log_text()
    assert mount.get("mine.txt") == b"the mount itself stays writable"
    remote = {
        obj["Key"]: mount.client.get_object(Bucket=data_bucket, Key=obj["Key"])["Body"].read()
        for obj in mount.client.list_objects_v2(Bucket=data_bucket)["Contents"]
    }
    assert remote == files, "the linked bucket was not touched"
