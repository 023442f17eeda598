"""A mount that only lists and reads a directory sends no write: the `dir/` marker an
earlier mount left, with the mtime `touch -d` gave it, survives any number of such mounts
(a fresh cache, the same cache, `--exact-attrs`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .conftest import Mount, fusestore_cli, sh, status_of

#: request kinds that change the store
WRITING = ("Put", "Copy", "Delete", "Multipart", "UploadPart")


def marker_state(mount: Mount) -> dict[str, Any]:
    head = mount.client.head_object(Bucket=mount.bucket, Key="d/")
    return {"etag": head["ETag"], "modified": head["LastModified"], "metadata": head["Metadata"]}


@pytest.mark.timeout(240)
def test_a_listing_only_mount_keeps_the_marker_and_its_mtime(mount_factory: Callable[..., Mount]) -> None:
    first = mount_factory(run=False)
    # A marker another tool made: no metadata at all, and files below it.
    first.client.put_object(Bucket=first.bucket, Key="other/", Body=b"")
    first.client.put_object(Bucket=first.bucket, Key="other/a", Body=b"a")
    first.start()
    sh("mkdir d && echo hi > d/f && touch -d 2001-02-03 d", cwd=first.path)
    mtime = sh("stat -c %Y d", cwd=first.path).strip()
    assert first.umount() == 0, first.log_text()
    marker = marker_state(first)
    assert marker["metadata"]["mtime"] == mtime
    objects = first.objects()
    assert set(objects) == {"d/", "d/f", "other/", "other/a"}

    for options, name in [((), "fresh"), ((), "mnt"), (("--exact-attrs",), "exact")]:
        # `mnt`: the first mount's own cache again
        mount = first.start() if name == "mnt" else mount_factory(*options, bucket=first.bucket, name=name)
        listing = sh("ls -l d other && cat d/f other/a", cwd=mount.path)
        assert listing.endswith("hi\na"), listing
        if name != "fresh":  # known to the cache, or read with a HEAD
            assert sh("stat -c %Y d", cwd=mount.path).strip() == mtime, name
        assert fusestore_cli("flush", str(mount.path)).returncode == 0
        requests = status_of(mount)["requests"]
        assert [kind for kind in requests if any(word in kind for word in WRITING)] == [], (name, requests)
        assert mount.umount() == 0, mount.log_text()
        assert mount.objects() == objects, name
        assert marker_state(mount) == marker, name
