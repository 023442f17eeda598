"""Extended attributes: `user.*` names kept with the object in s3fs's `xattr` metadata
(URL-encoded JSON of base64 values), read back from it, also when s3fs wrote it; other
namespaces answered at once without a request (absent, and ENOTSUP to set); the limits
(E2BIG) and flags (EEXIST, ENODATA) as Linux has them; garbage metadata ignored."""

from __future__ import annotations

import errno
import os
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from fusestore.core.attributes import XATTR_ROOM
from fusestore.stores import StoreUnavailable

from .conftest import Env, resolve, write_file

pytestmark = pytest.mark.trio

#: what s3fs writes for user.other = b"test" (its own tests' value)
S3FS_XATTR = urllib.parse.quote('{"user.other":"dGVzdA=="}', safe="")


async def test_set_get_list_and_remove(env: Env) -> None:
    async with env.mount() as fs:
        node = await write_file(fs, "f", b"data")
        await fs.attributes.setxattr(node, "user.b", b"\x00binary\xff")
        await fs.attributes.setxattr(node, "user.a", b"")
        assert await fs.attributes.listxattr(node) == ["user.a", "user.b"]
        assert await fs.attributes.getxattr(node, "user.b") == b"\x00binary\xff"
        assert await fs.attributes.getxattr(node, "user.a") == b""
        await fs.attributes.removexattr(node, "user.b")
        assert await fs.attributes.listxattr(node) == ["user.a"]
        with pytest.raises(OSError) as caught:
            await fs.attributes.getxattr(node, "user.b")
        assert caught.value.errno == errno.ENODATA


async def test_create_and_replace_flags(env: Env) -> None:
    async with env.mount() as fs:
        node = await write_file(fs, "f", b"data")
        with pytest.raises(OSError) as caught:
            await fs.attributes.setxattr(node, "user.a", b"1", os.XATTR_REPLACE)
        assert caught.value.errno == errno.ENODATA
        await fs.attributes.setxattr(node, "user.a", b"1", os.XATTR_CREATE)
        with pytest.raises(OSError) as caught:
            await fs.attributes.setxattr(node, "user.a", b"2", os.XATTR_CREATE)
        assert caught.value.errno == errno.EEXIST
        await fs.attributes.setxattr(node, "user.a", b"3", os.XATTR_REPLACE)
        assert await fs.attributes.getxattr(node, "user.a") == b"3"


async def test_attributes_beyond_the_room_in_the_metadata_are_refused_whole(env: Env) -> None:
    async with env.mount() as fs:
        node = await write_file(fs, "f", b"data")
        await fs.attributes.setxattr(node, "user.a", b"x" * 600)
        with pytest.raises(OSError) as caught:
            await fs.attributes.setxattr(node, "user.b", b"y" * 600)
        assert caught.value.errno == errno.E2BIG
        assert await fs.attributes.listxattr(node) == ["user.a"], "nothing of the refused one"
        await fs.attributes.setxattr(node, "user.b", b"y" * 400)
    assert len(env.metadata("f")["xattr"]) <= XATTR_ROOM


async def test_stored_as_s3fs_does_and_read_back_on_a_fresh_cache(env: Env, tmp_path: Path) -> None:
    async with env.mount() as fs:
        node = await write_file(fs, "f", b"data")
        await fs.attributes.setxattr(node, "user.other", b"test")
        d = await fs.mkdir(1, "d", 0o755, 0, 0)
        await fs.attributes.setxattr(d, "user.dir", b"yes")
    assert env.metadata("f")["xattr"] == S3FS_XATTR
    assert "xattr" in env.metadata("d/")
    env.cache_dir = tmp_path / "fresh-cache"
    env.bare_listings = True
    async with env.mount() as fs:
        assert await fs.attributes.getxattr(await resolve(fs, "f"), "user.other") == b"test"
        assert await fs.attributes.listxattr(await resolve(fs, "d")) == ["user.dir"]


async def test_what_s3fs_wrote_is_read_with_one_head_and_kept_across_a_chmod(env: Env) -> None:
    env.put("big", b"x" * 5000, {"mode": "33188", "xattr": S3FS_XATTR})  # too big to be a symlink
    env.bare_listings = True
    async with env.mount() as fs:
        node = await resolve(fs, "big")
        assert env.called("head") == [], "a big listed file needs no HEAD to be looked up"
        assert await fs.attributes.listxattr(node) == ["user.other"]
        assert await fs.attributes.getxattr(node, "user.other") == b"test"
        assert len(env.called("head")) == 1
        await fs.setattr(node.ino, mode=0o600)
    assert env.metadata("big")["xattr"] == S3FS_XATTR


async def test_other_namespaces_ask_nothing_and_are_not_kept(env: Env) -> None:
    env.put("big", b"x" * 5000, {"xattr": S3FS_XATTR})
    env.bare_listings = True
    async with env.mount() as fs:
        node = await resolve(fs, "big")
        for name in ("security.selinux", "system.posix_acl_access", "trusted.x", "security.capability"):
            with pytest.raises(OSError) as caught:
                await fs.attributes.getxattr(node, name)
            assert caught.value.errno == errno.ENODATA
            with pytest.raises(OSError) as caught:
                await fs.attributes.setxattr(node, name, b"v")
            assert caught.value.errno == errno.ENOTSUP
        assert env.called("head") == [], "no request for a name the mount does not keep"


async def test_a_read_while_the_store_is_down_fails_rather_than_saying_none(env: Env) -> None:
    env.put("big", b"x" * 5000, {"xattr": S3FS_XATTR})
    env.bare_listings = True
    async with env.mount() as fs:
        node = await resolve(fs, "big")

        def down(*args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable("test: down")

        fs.store.head = down  # type: ignore[method-assign]
        with pytest.raises(StoreUnavailable):
            await fs.attributes.listxattr(node)


@pytest.mark.parametrize(
    "garbage",
    [
        "not json",
        urllib.parse.quote("[1, 2]", safe=""),
        urllib.parse.quote('{"user.a": 5, "user.b": "!!!", "": "AA==", "user.ok": "b2s="}', safe=""),
        "%E0%A4%A",
        urllib.parse.quote("{" * 100000, safe=""),
    ],
)
async def test_garbage_xattr_metadata_is_ignored_member_by_member(env: Env, garbage: str) -> None:
    env.put("f", b"x", {"xattr": garbage})
    async with env.mount() as fs:
        node = await resolve(fs, "f")
        expected = ["user.ok"] if "b2s" in garbage else []
        assert await fs.attributes.listxattr(node) == expected
        await fs.attributes.setxattr(node, "user.new", b"1")
    assert urllib.parse.unquote(env.metadata("f")["xattr"]).startswith("{")


async def test_the_root_refuses_xattrs_it_could_not_keep(env: Env) -> None:
    """The mount's root has no object to keep them in: refused, rather than lost at unmount."""
    async with env.mount() as fs:
        root = fs.node(1)
        with pytest.raises(OSError) as caught:
            await fs.attributes.setxattr(root, "user.a", b"1")
        assert caught.value.errno == errno.ENOTSUP
        assert await fs.attributes.listxattr(root) == []
