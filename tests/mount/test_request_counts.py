"""What common commands cost in S3 requests (deterministic, unlike their durations): the
counts the daemon reports in `status`, for a directory of 1100 objects uploaded by
another client — more than one listing page."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import Mount, fusestore_cli, sh, status_of

COUNT = 1100  # two pages of a listing


def requests_since(before: dict[str, int], mount: Mount) -> dict[str, int]:
    after: dict[str, int] = status_of(mount)["requests"]
    return {kind: n - before.get(kind, 0) for kind, n in after.items() if n != before.get(kind, 0)}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ls_stat_mv_and_rm_of_a_big_directory(mount_factory: Callable[..., Mount]) -> None:
    # Counts, not freshness: with the default TTL (60 s) a loaded machine that takes a
    # minute over the mv and its flush lists `moved` again before rm (seen: 2 LISTs).
    mount = mount_factory("--metadata-ttl", "3600", run=False)
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: mount.client.put_object(Bucket=mount.bucket, Key=f"d/f{i:04}", Body=b"x" * i),
                range(COUNT),
            )
        )
    mount.start()
    path = mount.path

    before = status_of(mount)["requests"]
    assert sh("ls", cwd=path).split() == ["d"]
    assert requests_since(before, mount) == {}, "the root was listed by the mount's first request"
    before = status_of(mount)["requests"]
    listing = sh("ls -l d", cwd=path)
    assert len(listing.splitlines()) == COUNT + 1  # and "total"
    assert requests_since(before, mount) == {"ListObjectsV2": 2}, "one LIST per 1000 objects, no HEAD"

    before = status_of(mount)["requests"]
    sh("stat d/f0000 d/f0999 d/f1099 > /dev/null", cwd=path)
    sh("find d -type f -size +1000c | wc -l", cwd=path)
    # The files' attributes come from the listing; the directory's, which no listing of
    # its parent carries, from its marker (one HEAD, once per cache, when the kernel asks).
    assert requests_since(before, mount) in ({}, {"HeadObject": 1}), "stat and find answer from the listing"

    before = status_of(mount)["requests"]
    sh("mv d moved", cwd=path)
    assert fusestore_cli("flush", str(path)).returncode == 0
    moved = requests_since(before, mount)
    # One recursive listing of the tree (the rename must move every object below it),
    # a copy per file and no HEAD, and the old keys deleted 1000 at a time.
    assert moved == {"ListObjectsV2": 2, "CopyObject": COUNT, "DeleteObjects": 2}

    before = status_of(mount)["requests"]
    sh("rm -rf moved", cwd=path)
    assert fusestore_cli("flush", str(path)).returncode == 0
    # rmdir asks the store whether anything unlisted is left below (one LIST). The keys
    # go 1000 at a time: a full batch, then the rest at the flush, or one more if a loaded
    # machine stalls rm for half the time it ran (one request per key would be 1100).
    removed = requests_since(before, mount)
    assert removed.pop("ListObjectsV2") == 1
    assert removed.keys() == {"DeleteObjects"} and 2 <= removed["DeleteObjects"] <= 3, removed
    assert mount.objects() == {}
    assert mount.umount() == 0, mount.log_text()


@pytest.mark.timeout(120)
def test_stored_modes_show_with_exact_attrs_at_one_head_per_file(mount_factory: Callable[..., Mount]) -> None:
    plain = mount_factory(run=False)
    body = b"x" * 5000  # bigger than a symlink: no HEAD on lookup without --exact-attrs
    for name in ("a", "b", "c"):
        plain.client.put_object(Bucket=plain.bucket, Key=name, Body=body, Metadata={"mode": "33152"})  # 0600
    plain.start()
    before = status_of(plain)["requests"]
    assert sh("stat -c %a a b c", cwd=plain.path).split() == ["644"] * 3, "listing attributes: the defaults"
    assert requests_since(before, plain) == {}
    assert plain.umount() == 0, plain.log_text()

    exact = mount_factory("--exact-attrs", bucket=plain.bucket, name="exact")
    before = status_of(exact)["requests"]
    assert sh("stat -c %a a b c", cwd=exact.path).split() == ["600"] * 3
    assert requests_since(before, exact) == {"HeadObject": 3}
    assert exact.umount() == 0, exact.log_text()


@pytest.mark.timeout(120)
def test_a_cold_read_is_one_get_and_a_warm_reread_none(mount_factory: Callable[..., Mount]) -> None:
    """(b) and (c) of the bench: one streamed GET for a whole sequential read; reading it
    again asks the store nothing, not even a HEAD (the page cache or the cache file)."""
    mount = mount_factory(run=False)
    data = os.urandom(24 * 1024 * 1024 + 3)
    mount.client.put_object(Bucket=mount.bucket, Key="big", Body=data)
    mount.start()
    digest = hashlib.sha256(data).hexdigest()
    before = status_of(mount)["requests"]
    assert sh("sha256sum big", cwd=mount.path).split()[0] == digest
    assert requests_since(before, mount) == {"GetObject": 1}
    before = status_of(mount)["requests"]
    assert sh("sha256sum big", cwd=mount.path).split()[0] == digest
    assert requests_since(before, mount) == {}, "the re-read asked the store"
    assert mount.umount() == 0, mount.log_text()


SMALL = {"f010": ("symbolic link 777", b"f000", "41471"), "f020": ("fifo 644", b"", "4516")}


@pytest.mark.timeout(120)
def test_stat_of_small_files_in_order_reads_ahead_one_head_each(mount_factory: Callable[..., Mount]) -> None:
    """`stat` of a directory's small files (each may be a symlink or a special file, so
    its lookup reads its metadata) reads the next ones' ahead: still one HEAD per object,
    none twice, and every type and mode is its own, a symlink and a FIFO among them."""
    mount = mount_factory(run=False)
    names = [f"f{i:03}" for i in range(60)]
    expected = []
    for i, name in enumerate(names):
        shown, body, mode = SMALL.get(name, (f"regular file {600 + i % 8}", b"x" * i, str(0o100600 + i % 8)))
        mount.client.put_object(Bucket=mount.bucket, Key=f"d/{name}", Body=body, Metadata={"mode": mode})
        expected.append(f"d/{name} {shown}")
    mount.start()
    before = status_of(mount)["requests"]
    # Named, not globbed: a glob lists the directory, and the kernel then holds every
    # entry with the listing's attributes, sending no lookup (see docs/semantics.md).
    paths = " ".join(f"d/{name}" for name in names)
    lines = sh(f"stat -c '%n %F %a' {paths}", cwd=mount.path).splitlines()
    assert [line.replace("regular empty file", "regular file") for line in lines] == expected
    # The LIST of d, the HEAD of its marker (none there), and one HEAD per file.
    assert requests_since(before, mount) == {"ListObjectsV2": 1, "HeadObject": 1 + len(names)}
    assert sh("cat d/f010", cwd=mount.path) == "", "the symlink resolves (to the empty f000)"
    assert mount.umount() == 0, mount.log_text()
