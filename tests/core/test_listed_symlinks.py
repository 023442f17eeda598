"""Symlinks known only from an S3 listing (no metadata) on a fresh cache: a symlink is one
at its first lookup, and one listed as a small file (`ls -l` hands the kernel every entry
without a lookup) becomes one when it is used."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from fusestore.core import Kind

from .conftest import Env, listdir, read_path, resolve, write_file

pytestmark = pytest.mark.trio


async def make_tree(env: Env, tmp_path: Path) -> None:
    """A tree made by one mount, then a fresh cache that knows nothing of its metadata."""
    async with env.mount() as fs:
        await write_file(fs, "f", b"hi\n")
        await fs.symlink(1, "link", "f", 1000, 1000)
        await fs.symlink(1, "other", "f", 1000, 1000)
        await write_file(fs, "big", b"b" * 5000, mode=0o600)
        await write_file(fs, "small", b"s" * 4095, mode=0o600)
    env.cache_dir = tmp_path / "fresh-cache"
    env.bare_listings = True
    env.calls.clear()


@pytest.mark.parametrize("exact_attrs", [False, True])
async def test_a_symlink_is_a_symlink_at_its_first_lookup(
    env: Env, tmp_path: Path, exact_attrs: bool
) -> None:
    await make_tree(env, tmp_path)
    async with env.mount(exact_attrs=exact_attrs) as fs:
        link = await resolve(fs, "link")
        assert link.kind is Kind.SYMLINK and stat.S_ISLNK(link.mode)
        assert await fs.readlink(link.ino) == "f"
        small = await resolve(fs, "small")
        assert small.mode == stat.S_IFREG | 0o600, "read with the HEAD that looked for a symlink"
        big = await resolve(fs, "big")
        assert big.kind is Kind.FILE
        heads = sorted(args[0] for args in env.called("head"))
        assert heads == (["big", "link", "small"] if exact_attrs else ["link", "small"])
        assert (big.mode == stat.S_IFREG | 0o600) == exact_attrs, "no HEAD for a bigger object"
        # Once read, the metadata is remembered: no HEAD again.
        env.calls.clear()
        for name in ("link", "small", "big"):
            await resolve(fs, name)
        assert env.called("head") == []


@pytest.mark.parametrize("exact_attrs", [False, True])
async def test_a_symlink_listed_as_a_file_becomes_one_when_opened(
    env: Env, tmp_path: Path, exact_attrs: bool
) -> None:
    await make_tree(env, tmp_path)
    async with env.mount(exact_attrs=exact_attrs) as fs:
        listed = await listdir(fs)
        assert listed["link"].kind is Kind.FILE and listed["other"].kind is Kind.FILE
        assert env.called("head") == [], "a listing sends no HEAD per entry"
        # What the kernel gets with each entry of the listing: with exact_attrs, attributes
        # it must not keep (its next use looks the name up: a HEAD).
        expected = 0.0 if exact_attrs else fs.settings.metadata_ttl
        assert fs.listings.attr_timeout(listed["link"]) == expected
        assert (fs.listings.entry_timeout(listed["link"]) == 0.0) == exact_attrs
        assert fs.listings.attr_timeout(listed["f"]) == expected
        assert fs.listings.attr_timeout(listed["big"]) == expected

        # The kernel opens (or stats, for exec's permission check) what it was told is a
        # file: ESTALE makes it look the name up again, and find the symlink.
        with pytest.raises(OSError) as exc:
            await fs.open(listed["link"].ino, os.O_RDONLY)
        assert exc.value.errno == errno.ESTALE
        with pytest.raises(OSError) as exc:
            await fs.getattr(listed["other"].ino)
        assert exc.value.errno == errno.ESTALE
        for name in ("link", "other"):
            node = await fs.lookup(1, name)
            assert node is not None and node.kind is Kind.SYMLINK
            assert node.ino != listed[name].ino, "a new inode: the kernel keeps an inode's type"
            assert await fs.readlink(node.ino) == "f"
        assert await read_path(fs, "f") == b"hi\n"
        assert await read_path(fs, "small") == b"s" * 4095
    assert set(env.objects()) == {"f", "link", "other", "big", "small"}
    assert [name for name, _ in env.calls if name in ("put", "copy", "delete_many")] == []


async def test_a_change_to_a_symlink_listed_as_a_file_goes_to_the_symlink(env: Env, tmp_path: Path) -> None:
    await make_tree(env, tmp_path)
    async with env.mount() as fs:
        listed = await listdir(fs)
        for call in (
            fs.setattr(listed["link"].ino, mode=0o600),
            fs.open(listed["other"].ino, os.O_WRONLY | os.O_APPEND),
        ):
            with pytest.raises(OSError) as exc:
                await call
            assert exc.value.errno == errno.ESTALE, "never the symlink's body rewritten as a file"
        node = await fs.lookup(1, "other")
        assert node is not None and node.kind is Kind.SYMLINK
    assert env.objects()["other"] == b"f" and env.objects()["link"] == b"f"
    assert [name for name, _ in env.calls if name in ("put", "copy", "delete_many")] == []
