"""kill -9 and lost answers just after the store took a write: the remount knows its own
uploads (no conflict copy, no name brought back) and leaves no multipart upload behind.

Each test runs the real daemon on a real FUSE mount against moto's server on 127.0.0.1
(whose multipart uploads all report the same `Initiated` time, 2010-11-10), the rename
test on SeaweedFS's too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import SERVERS, Mount, fusestore_cli, status_of
from .test_crash_and_outage import MiB, digest, kill_9, make_data, wait_until, write_synced


def uploads(mount: Mount) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = mount.client.list_multipart_uploads(Bucket=mount.bucket).get("Uploads", [])
    return listed


def parts_sent(mount: Mount, upload: dict[str, Any]) -> int:
    try:
        answer = mount.client.list_parts(Bucket=mount.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    except mount.client.exceptions.NoSuchUpload:
        return 0  # aborted since it was listed
    return len(answer.get("Parts", []))


def flush(mount: Mount) -> None:
    done = fusestore_cli("flush", str(mount.path), "--timeout", "120")
    assert done.returncode == 0, f"{done.stdout}{done.stderr}\n{mount.log_text()}"


@pytest.mark.timeout(240)
def test_kill_9_while_parts_go_up_leaves_no_multipart_upload(mount_factory: Callable[..., Mount]) -> None:
    """80 MiB (multipart above 64 MiB). The first start's answer is lost (moto started
    it all the same); the second upload is cut by kill -9 while its parts go up. After a
    remount, flush and umount the bucket holds the whole object and no upload."""
    data = make_data(80 * MiB, 11)
    # seed 1: the first start's answer is lost, the next ones arrive
    mount = mount_factory("--writeback-delay", "1", "--faults", "start_multipart:lost=0.5;seed=1")

    write_synced(mount.path / "big", data)

    def parts_going_up() -> bool:
        return any(parts_sent(mount, u) for u in uploads(mount))

    wait_until(parts_going_up, 60, "an upload with parts sent", mount)
    kill_9(mount)
    assert "answer to start_multipart was lost" in mount.log_text()
    assert "big" not in mount.objects()

    mount.options[-2:] = []  # no more faults
    mount.start()
    wait_until(lambda: "big" in mount.objects(), 120, "the object after the remount", mount)
    flush(mount)
    assert mount.umount() == 0, mount.log_text()
    assert uploads(mount) == [], f"orphaned multipart uploads were left\n{mount.log_text()}"
    assert digest(mount.get("big")) == digest(data)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("server", SERVERS, indirect=True)
def test_rename_and_kill_9_after_a_lost_answer_bring_nothing_back(
    mount_factory: Callable[..., Mount],
) -> None:
    """The store takes the PUT of `a` but its answer is lost; `a` is renamed to `b` and the
    daemon killed before it tries again. After the remount `a` is not listed, never
    comes back, and no conflict copy is made: the object at `a` is the mount's own."""
    data = make_data(300_000, 12)
    # seed 10: the probe's first PUT is answered, the PUT of `a` is not, the next ones are
    mount = mount_factory("--writeback-delay", "0.2", "--faults", "put:lost=0.5;seed=10")
    (mount.path / "a").write_bytes(data)
    wait_until(lambda: "a" in mount.objects(), 30, "the PUT of `a` in the bucket", mount)
    os.rename(mount.path / "a", mount.path / "b")
    kill_9(mount)
    assert "answer to put was lost" in mount.log_text()

    mount.options[-2:] = []
    mount.start()
    assert sorted(os.listdir(mount.path)) == ["b"]
    assert (mount.path / "b").read_bytes() == data
    flush(mount)
    assert sorted(os.listdir(mount.path)) == ["b"]
    assert status_of(mount)["conflicts"] == 0
    assert mount.umount() == 0, mount.log_text()
    assert sorted(mount.objects()) == ["b"], mount.log_text()
    assert mount.get("b") == data
