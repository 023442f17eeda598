"""A mount of `s3://bucket/team/a` is confined to that prefix: the keys beside it (a
sibling sharing its first letters, the bare `team/a` object, the rest of the bucket) are
neither shown nor touched, whatever shell tools do on the mount."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from .conftest import Mount, fusestore_cli, sh

OUTSIDE = {
    "team/a": b"an object named like the prefix itself",
    "team/ab/sibling.txt": b"a sibling prefix with the same first letters",
    "team/other.txt": b"next to the prefix",
    "root.txt": b"at the top of the bucket",
}
INSIDE = {"team/a/inside.txt": b"inside", "team/a/sub/deep.txt": b"deep inside"}


class PrefixMount(Mount):
    prefix = "team/a"

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@pytest.mark.timeout(120)
def test_a_prefix_mount_neither_shows_nor_touches_keys_outside_it(
    mount_factory: Callable[..., Mount],
) -> None:
    plain = mount_factory(run=False)
    mount = PrefixMount(plain.server, plain.bucket, plain.path, plain.cache, plain.options)
    for key, data in {**OUTSIDE, **INSIDE}.items():
        mount.client.put_object(Bucket=mount.bucket, Key=key, Body=data)
    mount.start()
    try:
        assert sh("find . | sort", cwd=mount.path).split() == [".", "./inside.txt", "./sub", "./sub/deep.txt"]
        assert (mount.path / "sub" / "deep.txt").read_bytes() == b"deep inside"
        # Every kind of change, on every visible name and a few new ones.
        sh(
            "echo new > new.txt && mkdir -p made/here && echo x > made/here/f && "
            "mv sub moved && cp -r moved copied && chmod 700 made && rm inside.txt && "
            "ln -s ../new.txt made/link && mv new.txt renamed.txt",
            cwd=mount.path,
        )
        assert fusestore_cli("flush", str(mount.path)).returncode == 0, mount.log_text()
        keys = set(mount.objects())
        assert {key for key in keys if not key.startswith("team/a/")} == set(OUTSIDE)
        for key, data in OUTSIDE.items():
            assert mount.get(key) == data, f"{key} was changed"
        assert mount.get("team/a/renamed.txt") == b"new\n"
        assert mount.get("team/a/moved/deep.txt") == b"deep inside"
        assert mount.get("team/a/copied/deep.txt") == b"deep inside"
        assert mount.get("team/a/made/here/f") == b"x\n"
        assert "team/a/inside.txt" not in keys and "team/a/sub/deep.txt" not in keys

        sh("rm -rf ./*", cwd=mount.path)
        assert fusestore_cli("flush", str(mount.path)).returncode == 0, mount.log_text()
        assert set(mount.objects()) == set(OUTSIDE), "rm -rf of the whole mount removed only its own keys"
        for key, data in OUTSIDE.items():
            assert mount.get(key) == data
        assert mount.umount() == 0, mount.log_text()
    finally:
        mount.kill()


@pytest.mark.timeout(120)
def test_a_key_prefix_view_shows_and_makes_only_names_that_begin_with_it(
    mount_factory: Callable[..., Mount],
) -> None:
    plain = mount_factory("--key-prefix", "a-", run=False)
    mount = PrefixMount(plain.server, plain.bucket, plain.path, plain.cache, plain.options)
    mount.prefix = "team"
    outside = {"team/b.txt": b"b", "team/other/x": b"x", "team/a": b"no dash", "top.txt": b"t"}
    inside = {"team/a-1.txt": b"one", "team/a-dir/deep.txt": b"deep"}
    for key, data in {**outside, **inside}.items():
        mount.client.put_object(Bucket=mount.bucket, Key=key, Body=data)
    mount.start()
    try:
        assert sorted(os.listdir(mount.path)) == ["a-1.txt", "a-dir"], "names keep their start"
        assert (mount.path / "a-dir" / "deep.txt").read_bytes() == b"deep"
        (mount.path / "a-2.txt").write_bytes(b"two")
        (mount.path / "a-dir" / "any-name-below.txt").write_bytes(b"below the top, any name")
        for attempt in (
            lambda: (mount.path / "b2.txt").write_bytes(b"outside"),
            lambda: (mount.path / "newdir").mkdir(),
            lambda: os.rename(mount.path / "a-1.txt", mount.path / "renamed.txt"),
        ):
            with pytest.raises(PermissionError):
                attempt()
        sh("rm -rf ./*", cwd=mount.path)
        assert fusestore_cli("flush", str(mount.path)).returncode == 0, mount.log_text()
        assert set(mount.objects()) == set(outside)
        for key, data in outside.items():
            assert mount.get(key) == data
        assert mount.umount() == 0, mount.log_text()
    finally:
        mount.kill()
