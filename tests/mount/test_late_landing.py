"""A daemon killed with an upload on its way, which the store takes only after the next
daemon found it missing: that object is the mount's own, not another client's."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from .conftest import SERVERS, Mount
from .late_request import LateRequest
from .test_crash_and_outage import kill_9


def wait_for(check: Callable[[], bool], what: str, mount: Mount, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not after {timeout}s\n{mount.log_text()}"
        time.sleep(0.05)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("server", SERVERS, indirect=True)
def test_an_upload_the_store_takes_after_the_next_mount_asked_is_no_conflict(
    mount_factory: Callable[..., Mount],
) -> None:
    """f is rewritten and its PUT sent; the daemon is killed before the store has it. The
    next daemon asks (HEAD f: the old version), and the store then takes the PUT, before
    that daemon's own upload of f, whose condition fails on it. That object is this
    mount's own: f ends with the new bytes, and no conflict copy is made."""
    old, new = b"o" * 300_000, b"n" * 300_000
    mount = mount_factory(run=False)
    mount.client.put_object(Bucket=mount.bucket, Key="f", Body=old)
    with LateRequest(mount.server.endpoint_url, mount.bucket, "f") as link:
        mount.options += ["--endpoint-url", link.endpoint_url]
        try:
            mount.start()
            with open(mount.path / "f", "r+b") as f:  # the same size: one PUT of it all
                f.write(new)
            wait_for(lambda: link.held >= len(new), "the PUT of f held", mount)
            time.sleep(0.2)
            kill_9(mount)
            assert mount.get("f") == old, "the PUT was held"

            mount.start()  # asks about the upload (HEAD f): the held PUT lands after that
            wait_for(link.answered.is_set, "the held PUT answered", mount)
            assert " 200 " in link.late_status, f"the store took the late PUT: {link.late_status}"
            assert mount.umount() == 0, mount.log_text()
        finally:
            mount.kill()  # before the link goes
    keys = sorted(mount.objects())
    assert keys == ["f"], f"no conflict copy of this mount's own upload:\n{mount.log_text()}"
    assert mount.get("f") == new
