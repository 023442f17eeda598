"""Objects whose keys are no valid paths: skipped (and untouched) or shown, per docs/semantics.md."""

from __future__ import annotations

import errno

import pytest

from fusestore.stores import KeyTooLong, errno_for

from .conftest import Env, listdir, mkdir, read_path, write_file

pytestmark = pytest.mark.trio

ODD = {
    "a//b": b"empty name",
    "/lead": b"leading slash",
    "./x": b"dot",
    "../x": b"dot dot",
    "y/./z": b"inner dot",
    "y/../z": b"inner dot dot",
    "n" * 256: b"name too long",
    "bad\udcff/utf8": b"not UTF-8 (a file store's name, read with surrogateescape)",
    "k": b"file shadowed by a directory",
    "k/x": b"inside k",
    "d/": b"a marker holding data",
    "sp ace /t ": b"spaces are fine",
}


async def test_odd_keys_are_skipped_or_shown_and_never_touched(env: Env) -> None:
    for key, data in ODD.items():
        env.put_raw(key, data)  # past the driver's checks, as another tool may have
    async with env.mount() as fs:
        root = await listdir(fs)
        assert sorted(root) == ["a", "d", "k", "sp ace ", "y"]
        assert root["k"].is_dir and await read_path(fs, "k/x") == b"inside k"
        assert sorted(await listdir(fs, "a")) == []
        assert sorted(await listdir(fs, "y")) == []
        assert root["d"].is_dir
        assert await read_path(fs, "sp ace /t ") == b"spaces are fine"
        await write_file(fs, "new", b"a file next to them")
        await mkdir(fs, "newdir")
    objects = env.objects()
    for key, data in ODD.items():
        assert objects[key] == data, key
    assert set(objects) - set(ODD) == {"new", "newdir/"}


async def test_new_names_too_long_fail_with_enametoolong(env: Env) -> None:
    async with env.mount() as fs:
        with pytest.raises(OSError) as long_name:
            await write_file(fs, "n" * 256, b"")
        assert long_name.value.errno == errno.ENAMETOOLONG
        parent = ""
        for i in range(4):  # 4 levels of 250 bytes: the key passes 1024 bytes
            name = f"{i}" * 250
            await mkdir(fs, f"{parent}{name}")
            parent += name + "/"
        with pytest.raises(KeyTooLong) as long_key:
            await write_file(fs, f"{parent}{'f' * 30}", b"")
        assert errno_for(long_key.value) == errno.ENAMETOOLONG
