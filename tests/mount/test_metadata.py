"""Metadata on a real mount: symlinks made here are symlinks for a mount with a fresh
cache (which learns their type from a HEAD, S3 listings carrying no metadata), and objects
whose metadata is garbage work with the mount's defaults and get no garbage written back."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable

import pytest

from fusestore.stores import PosixAttrs
from fusestore.writeback.landings import TOKEN

from .conftest import Mount, sh


@pytest.mark.timeout(240)
@pytest.mark.parametrize("exact_attrs", [False, True], ids=["listing-attrs", "exact-attrs"])
def test_symlinks_and_a_venv_work_from_a_fresh_cache(
    mount_factory: Callable[..., Mount], exact_attrs: bool
) -> None:
    first = mount_factory()
    sh(
        "mkdir d && echo hi > d/f && ln -s f d/link && ln -s f d/listed && ln -s ../d d/up"
        f" && {sys.executable} -m venv --without-pip venv",
        cwd=first.path,
    )
    assert first.umount() == 0, first.log_text()
    assert int(first.metadata("d/link")["mode"]) == stat.S_IFLNK | 0o777
    assert first.get("d/link") == b"f"

    # Another machine: a cache that knows nothing of the bucket.
    second = mount_factory(*(["--exact-attrs"] if exact_attrs else []), bucket=first.bucket, name="second")
    path = second.path
    assert sh("stat -c %F d/link", cwd=path).strip() == "symbolic link", "at its first lookup"
    assert sh("readlink d/link", cwd=path).strip() == "f"
    assert sh("cat d/link", cwd=path) == "hi\n"
    assert sh("cat d/up/up/f", cwd=path) == "hi\n", "a path through symlinks to directories"

    # A listing hands the kernel every entry without a lookup (no HEAD for each); a
    # symlink listed so still works when used.
    listing = sh("ls -l d", cwd=path)
    assert len(listing.splitlines()) == 5  # total, f, link, listed, up
    assert sh("cat d/listed", cwd=path) == "hi\n"
    assert sh("readlink d/listed", cwd=path).strip() == "f"
    assert sh("stat -c %F d/listed", cwd=path).strip() == "symbolic link"
    if exact_attrs:
        assert sh("stat -c %F d/up", cwd=path).strip() == "symbolic link"

    # A Python venv: bin/python -> python3 -> the interpreter, listed first.
    sh("ls -l venv/bin > /dev/null", cwd=path)
    prefix = sh("venv/bin/python -c 'import sys; print(sys.prefix)'", cwd=path).strip()
    assert os.path.realpath(prefix) == os.path.realpath(path / "venv")
    assert sh("readlink venv/bin/python", cwd=path).strip() != ""
    assert second.umount() == 0, second.log_text()
    # Nothing was changed: the links are as the first mount made them.
    assert first.get("d/listed") == b"f" and int(first.metadata("d/listed")["mode"]) == stat.S_IFLNK | 0o777


GARBAGE = {
    "big-gid": {"gid": "99999999999999999999"},
    "big-uid": {"uid": "4294967296"},
    "all-ones-mode": {"mode": "4294967295"},
    "fifo-mode": {"mode": str(stat.S_IFIFO | 0o600)},
    "words": {"mode": "rw-r--r--", "uid": "-1", "gid": "wheel", "mtime": "nan"},
    "far-future": {"mtime": "99999999999999999999.5"},
}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("exact_attrs", [False, True], ids=["listing-attrs", "exact-attrs"])
def test_garbage_metadata_on_a_real_mount(mount_factory: Callable[..., Mount], exact_attrs: bool) -> None:
    mount = mount_factory(*(["--exact-attrs"] if exact_attrs else []), run=False)
    client, bucket = mount.client, mount.bucket
    for name, meta in GARBAGE.items():
        for use in ("read", "append", "chmod"):
            client.put_object(Bucket=bucket, Key=f"{use}/{name}", Body=b"hello\n", Metadata=meta)
    before = {
        key: (client.head_object(Bucket=bucket, Key=key)["ETag"], mount.metadata(key))
        for key in mount.objects()
    }
    mount.start()
    path = mount.path
    uid, gid = os.getuid(), os.getgid()
    for use in ("read", "append", "chmod"):
        assert len(sh(f"ls -l {use}", cwd=path).splitlines()) == len(GARBAGE) + 1
    for name, meta in GARBAGE.items():
        shown = sh(f"stat -c '%u %g %a %F' read/{name}", cwd=path).split()
        assert shown[3:] == ["regular", "file"]
        if "uid" in meta:
            assert int(shown[0]) == uid
        if "gid" in meta:
            assert int(shown[1]) == gid
        if "mode" in meta:
            assert shown[2] == "644"
        assert sh(f"cat read/{name}", cwd=path) == "hello\n"
        sh(f"echo more >> append/{name} && chmod 600 chmod/{name}", cwd=path)
        assert sh(f"cat append/{name}", cwd=path) == "hello\nmore\n"
        assert sh(f"stat -c %a chmod/{name}", cwd=path).strip() == "600"
    for use in ("read", "append", "chmod"):
        sh(f"ls -l {use} > /dev/null", cwd=path)
    assert mount.umount() == 0, mount.log_text()
    assert "OverflowError" not in mount.log_text()

    for name, meta in GARBAGE.items():
        key = f"read/{name}"
        assert (client.head_object(Bucket=bucket, Key=key)["ETag"], mount.metadata(key)) == before[key], (
            "a file only read is left as it is"
        )
        for use, perm in (("append", 0o644), ("chmod", 0o600)):
            written = mount.metadata(f"{use}/{name}")
            assert set(written) - {TOKEN, "ctime", "atime"} == {"mode", "uid", "gid", "mtime"}, written
            attrs = PosixAttrs.from_metadata(written)
            assert ("ctime" in written) <= (attrs.ctime_ns is not None), "a valid ctime, if any"
            assert ("atime" in written) <= (attrs.atime_ns is not None), "a valid atime, if any"
            if "mode" in meta or use == "chmod":
                assert int(written["mode"]) == stat.S_IFREG | perm
            if "uid" in meta:
                assert int(written["uid"]) == uid, "what the mount showed, not the garbage"
            if "gid" in meta:
                assert int(written["gid"]) == gid
            assert 0 < float(written["mtime"]) < 2**33
        assert mount.get(f"append/{name}") == b"hello\nmore\n"
