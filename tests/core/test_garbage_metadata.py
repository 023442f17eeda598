"""Objects whose metadata holds garbage (out-of-range owners, impossible modes, times that
are no times, values that are not even text) work like objects without metadata: the
mount's defaults apply, every operation works, and no garbage is written back."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusestore.core import Kind, Node
from fusestore.core.filesystem import Filesystem
from fusestore.service.fuse_ops import FuseOperations
from fusestore.stores import PosixAttrs
from fusestore.stores.memory import MemoryStore, _etag, _Object
from fusestore.writeback.landings import TOKEN

from .conftest import Env, listdir, read_path, resolve

GARBAGE = [
    {"uid": "4294967296"},
    {"gid": "99999999999999999999"},
    {"uid": "-5", "gid": "4294967295"},
    {"mode": "4294967295"},
    {"mode": str(stat.S_IFIFO | 0o644)},
    {"mode": str(stat.S_IFDIR | 0o755)},
    {"mode": "-1", "mtime": "nan"},
    {"mtime": "inf"},
    {"mtime": "-9223372036854775809"},
    {"mtime": "1" * 40},
    {"mode": "0x1ff", "uid": "root", "gid": "", "mtime": "yesterday"},
]


def plant(env: Env, key: str, data: bytes, metadata: dict[str, Any]) -> str:
    """An object as another tool may have left it: metadata the store's own `put` would
    refuse (not ASCII, not even text) goes straight into the backend."""
    backend = env.store._backend
    etag = _etag(data + uuid.uuid4().bytes)
    with backend.lock:
        backend.objects[key] = _Object(data, dict(metadata), etag, 1_600_000_000.0)
    return etag


def attributes_of(fs: Filesystem, node: Node) -> Any:
    """What the kernel is told about `node` (the conversion that raised OverflowError)."""
    ops = FuseOperations(fs)
    fs.kernel.forget = None  # no kernel here
    return ops.attributes(node)


def written(env: Env) -> list[str]:
    """Keys the mount wrote to (puts and copies)."""
    keys = [args[0] for args in env.called("put")] + [args[1] for args in env.called("copy")]
    return keys + [args[0] for args in env.called("start_multipart")]


def valid_attrs(metadata: dict[str, str], *, directory: bool = False) -> PosixAttrs:
    """The attributes of written metadata, each one present and valid."""
    assert set(metadata) - {"unrelated", TOKEN, "atime"} == {"mode", "uid", "gid", "mtime", "ctime"}, metadata
    attrs = PosixAttrs.from_metadata(metadata, directory=directory)
    assert None not in (attrs.mode, attrs.uid, attrs.gid, attrs.mtime_ns, attrs.ctime_ns), metadata
    return attrs


@pytest.mark.trio
@pytest.mark.parametrize("garbage", GARBAGE, ids=lambda g: ",".join(f"{k}={v[:12]}" for k, v in g.items()))
@pytest.mark.parametrize("exact_attrs", [False, True])
@pytest.mark.parametrize("bare_listings", [False, True], ids=["listing-metadata", "s3-listing"])
async def test_garbage_metadata_shows_the_defaults_and_nothing_fails(
    env: Env, garbage: dict[str, str], exact_attrs: bool, bare_listings: bool
) -> None:
    for name in ("read", "appended", "chmodded", "moved"):
        plant(env, f"d/{name}", b"hello", garbage)
    plant(env, "d/sub/", b"", garbage)
    plant(env, "d/sub/x", b"x", {})
    untouched = {key: (env.store.head(key).etag, env.metadata(key)) for key in ("d/read", "d/sub/")}
    env.bare_listings = bare_listings
    env.calls.clear()
    async with env.mount(exact_attrs=exact_attrs) as fs:
        uid, gid = fs.settings.uid, fs.settings.gid
        entries = await listdir(fs, "d")
        assert sorted(entries) == ["appended", "chmodded", "moved", "read", "sub"]
        for name in entries:
            node = await resolve(fs, f"d/{name}")
            node = await fs.getattr(node.ino)
            attributes_of(fs, node)
            assert node.kind is (Kind.DIR if name == "sub" else Kind.FILE)
            assert 0 <= node.uid < 2**32 - 1 and 0 <= node.gid < 2**32 - 1
            assert 0 <= node.mtime_ns < 2**63
            if "uid" in garbage:
                assert node.uid == uid
            if "gid" in garbage:
                assert node.gid == gid
            if "mode" in garbage:
                assert node.mode == (stat.S_IFDIR | 0o755 if name == "sub" else stat.S_IFREG | 0o644)
            if "mtime" in garbage and name != "sub":
                assert node.mtime_ns == 1_600_000_000 * 10**9, "the object's Last-Modified"
        assert await read_path(fs, "d/read") == b"hello"

        node = await resolve(fs, "d/appended")
        fh, _ = await fs.open(node.ino, os.O_WRONLY | os.O_APPEND)
        assert await fs.write(fh, 5, b" world") == 6
        fs.flush(fh)
        fs.release(fh)
        attributes_of(fs, await fs.getattr(node.ino))
        assert await read_path(fs, "d/appended") == b"hello world"

        node = await resolve(fs, "d/chmodded")
        attributes_of(fs, await fs.setattr(node.ino, mode=0o600))
        sub = await resolve(fs, "d/sub")
        attributes_of(fs, await fs.setattr(sub.ino, mtime_ns=1_700_000_000 * 10**9))
        d = await resolve(fs, "d")
        await fs.rename(d.ino, "moved", d.ino, "renamed", 0)
        await fs.flusher.sync_all()

    objects = env.objects()
    assert objects["d/appended"] == b"hello world" and objects["d/renamed"] == b"hello"
    assert {key: (env.store.head(key).etag, env.metadata(key)) for key in untouched} == {
        "d/read": untouched["d/read"],
        "d/sub/": (env.store.head("d/sub/").etag, env.metadata("d/sub/")),
    }
    assert untouched["d/read"] == (env.store.head("d/read").etag, env.metadata("d/read"))
    assert "d/read" not in written(env), "a file only read is never written"

    # What fusestore writes for another reason is its own valid values: what it showed.
    appended = valid_attrs(env.metadata("d/appended"))
    chmodded = valid_attrs(env.metadata("d/chmodded"))
    marker = valid_attrs(env.metadata("d/sub/"), directory=True)
    assert chmodded.mode == stat.S_IFREG | 0o600
    assert marker.mtime_ns == 1_700_000_000 * 10**9
    for attrs in (appended, chmodded):
        if "uid" in garbage:
            assert attrs.uid == uid
        if "gid" in garbage:
            assert attrs.gid == gid
    if "mode" in garbage:
        assert appended.mode == stat.S_IFREG | 0o644
        assert marker.mode == stat.S_IFDIR | 0o755
    valid_attrs(env.metadata("d/renamed"))


# -- fuzzing -------------------------------------------------------------------------------

#: Values as a driver may hand them over: text of every kind, numbers in text and not,
#: bytes, nothing.
VALUES = st.one_of(
    st.text(max_size=30),
    st.text(alphabet="0123456789-+.eE xnaifNAIF", max_size=30),
    st.integers().map(str),
    st.integers(min_value=0, max_value=0o177777).map(str),
    st.sampled_from([stat.S_IFLNK | 0o777, stat.S_IFREG | 0o644, stat.S_IFDIR | 0o755]).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
    st.integers(),
    st.floats(),
    st.binary(max_size=20),
    st.none(),
)
#: Every metadata name fusestore reads (`stores/posix.py`), and one it does not.
FIELDS = ("mode", "uid", "gid", "mtime", "unrelated")
METADATA = st.dictionaries(st.sampled_from(FIELDS), VALUES)

#: What a kernel request may fail with on such objects: a symlink opened (ELOOP), a
#: listed file found to be a symlink by the request's own HEAD (ESTALE: the kernel looks
#: the name up again).
ALLOWED = {errno.ELOOP, errno.ESTALE}


async def _exercise(fs: Filesystem, env: Env) -> None:
    async def step(call: Any) -> Any:
        try:
            return await call
        except OSError as exc:
            assert exc.errno in ALLOWED, exc
            return None

    for name in sorted(await listdir(fs, "d")):
        node = await fs.lookup((await resolve(fs, "d")).ino, name)
        assert node is not None
        attributes_of(fs, node)
        node = await step(fs.getattr(node.ino))
        if node is None:
            continue
        attributes_of(fs, node)
        if node.kind is Kind.SYMLINK:
            await fs.readlink(node.ino)
            continue
        if node.is_dir:
            attributes_of(fs, await fs.setattr(node.ino, mode=0o700))
            continue
        fh_and_keep = await step(fs.open(node.ino, os.O_RDWR | os.O_APPEND))
        if fh_and_keep is None:
            continue
        fh = fh_and_keep[0]
        data = await fs.read(fh, 0, 1 << 16)
        assert await fs.write(fh, len(data), b"+") == 1
        fs.flush(fh)
        fs.release(fh)
        attributes_of(fs, await fs.setattr(node.ino, uid=fs.settings.uid, mtime_ns=time.time_ns()))
    await fs.flusher.sync_all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    file_meta=METADATA,
    link_meta=METADATA,
    marker_meta=METADATA,
    big_meta=METADATA,
    bare_listings=st.booleans(),
    exact_attrs=st.booleans(),
)
def test_fuzzed_metadata_never_fails_a_request(
    file_meta: dict[str, Any],
    link_meta: dict[str, Any],
    marker_meta: dict[str, Any],
    big_meta: dict[str, Any],
    bare_listings: bool,
    exact_attrs: bool,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = Env(f"fuzz-{uuid.uuid4().hex[:12]}", Path(tmp) / "cache")
        try:
            plant(env, "d/file", b"data", file_meta)
            plant(env, "d/link", b"file", link_meta)
            plant(env, "d/big", b"b" * 5000, big_meta)
            plant(env, "d/sub/", b"", marker_meta)
            env.bare_listings = bare_listings

            async def main() -> None:
                async with env.mount(exact_attrs=exact_attrs) as fs:
                    await _exercise(fs, env)
                # A second mount on the same cache: what it remembered of the metadata.
                async with env.mount(exact_attrs=exact_attrs) as fs:
                    await _exercise(fs, env)

            trio.run(main)
            for key in written(env):
                if key in env.objects():
                    valid_attrs(env.metadata(key), directory=key.endswith("/"))
        finally:
            MemoryStore.forget(env.name)


@pytest.mark.trio
@pytest.mark.parametrize("exact_attrs", [False, True])
async def test_another_tools_metadata_is_kept_with_the_same_bytes(env: Env, exact_attrs: bool) -> None:
    """Names fusestore does not use are written back as they were (those a store can
    carry: printable ASCII) by a chmod and a rename; new bytes go up without them (they
    may describe the old ones: a checksum)."""
    theirs = {"color": "blue", "sha256": "0" * 64, "uid": "4294967296"}
    for name in ("chmodded", "appended", "moved"):
        plant(env, f"d/{name}", b"hello", {**theirs, "note": "caf\u00e9"})
    env.bare_listings = True
    async with env.mount(exact_attrs=exact_attrs) as fs:
        d = await resolve(fs, "d")
        chmodded = await resolve(fs, "d/chmodded")
        await fs.setattr(chmodded.ino, mode=0o600)
        appended = await resolve(fs, "d/appended")
        fh, _ = await fs.open(appended.ino, os.O_WRONLY | os.O_APPEND)
        await fs.write(fh, 5, b"!")
        fs.release(fh)
        await resolve(fs, "d/moved")
        await fs.rename(d.ino, "moved", d.ino, "renamed", 0)
    for key in ("d/chmodded", "d/renamed"):
        metadata = env.metadata(key)
        assert (metadata.get("color"), metadata.get("sha256")) == ("blue", "0" * 64)
        assert metadata["uid"] == str(fs.settings.uid), "an ignored attribute is the default shown"
        assert "note" not in metadata, "not ASCII: no store takes it back"
    assert set(env.metadata("d/appended", without_token=True)) - {"atime"} == {
        "mode",
        "uid",
        "gid",
        "mtime",
        "ctime",
    }


@pytest.mark.trio
async def test_a_listing_remembers_only_metadata_fusestore_would_write_back(env: Env) -> None:
    """A listing that carries metadata (file://) is read again next time anyway: the index
    keeps an object's metadata only for the names a chmod or rename must carry over. A
    write per listed object cost more than the rest of a cold `find` together."""
    for i in range(50):
        env.put(f"d/plain{i}", b"x", {"mode": "33188", "uid": "0", "gid": "0", "mtime": "1"})
    plant(env, "d/theirs", b"x", {"color": "blue"})
    env.put("d/ours", b"x", {"mode": "33188", TOKEN: "abc"})
    async with env.mount() as fs:
        assert len(await listdir(fs, "d")) == 52
        index = fs.ns.meta_index
        assert [k for k in (f"d/plain{i}" for i in range(50)) if ("meta", k) in index] == []
        assert ("meta", "d/ours") not in index, "the upload token is never carried over"
        assert index[("meta", "d/theirs")][1] == {"color": "blue"}
