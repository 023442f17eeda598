"""Two daemons on one bucket, and boto3 as a third writer: a change based on a version
another client has since replaced is kept next to it, never over it."""

from __future__ import annotations

import errno
import os
import random
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .conftest import ALL_SERVERS, Mount, fusestore_cli, status_of

pytestmark = pytest.mark.parametrize("server", ALL_SERVERS, indirect=True)

#: The metadata TTL of the mounts whose freshness is timed.
TTL = 2.0


def flush(mount: Mount) -> None:
    done = fusestore_cli("flush", str(mount.path))
    assert done.returncode == 0, done.stderr + mount.log_text()


def copies(mount: Mount, key: str) -> dict[str, bytes]:
    stem = key.rsplit(".", 1)[0]
    return {k: mount.get(k) for k in mount.objects() if k.startswith(f"{stem}.conflict-")}


@pytest.mark.timeout(180)
def test_two_mounts_change_one_file_and_the_bucket_keeps_both(
    mount_factory: Callable[..., Mount], make_bucket: Callable[[], str]
) -> None:
    bucket = make_bucket()
    options = ("--writeback-delay", "3600", "--metadata-ttl", str(TTL))
    a = mount_factory(*options, bucket=bucket, name="a", run=False)
    a.put_object("shared.txt", b"original\n")
    a.start()
    b = mount_factory(*options, bucket=bucket, name="b")
    assert (a.path / "shared.txt").read_bytes() == b"original\n"
    assert (b.path / "shared.txt").read_bytes() == b"original\n"

    (a.path / "shared.txt").write_bytes(b"written on a\n")
    (b.path / "shared.txt").write_bytes(b"written on b, a little longer\n")
    flush(a)  # a's upload lands first: b's is now based on a replaced version
    flush(b)

    assert a.get("shared.txt") == b"written on a\n"
    assert list(copies(a, "shared.txt").values()) == [b"written on b, a little longer\n"]
    (copy,) = copies(a, "shared.txt")
    assert status_of(b)["conflicts"] == 1 and status_of(a)["conflicts"] == 0, "b made the copy"
    assert status_of(b)["conflict_copies"] == [f"/{copy}"]
    assert (b.path / "shared.txt").read_bytes() == b"written on a\n", "b shows the version at the key"
    flushed = time.monotonic()
    while copy not in os.listdir(a.path):  # a lists it once its listing expires
        assert time.monotonic() < flushed + TTL + 1, "a never listed the copy"
        time.sleep(0.1)
    assert status_of(a)["conflict_copies"] == [f"/{copy}"], "a's status reports it too"
    assert {p.name for p in b.path.iterdir()} == {"shared.txt", copy}, "b lists its copy at once"
    assert (b.path / copy).read_bytes() == b"written on b, a little longer\n"
    assert status_of(b)["dirty_items"] == 0
    assert a.umount() == 0, a.log_text()
    assert b.umount() == 0, b.log_text()
    assert a.get("shared.txt") == b"written on a\n", "the unmounts changed nothing more"


@pytest.mark.timeout(120)
def test_on_a_server_that_ignores_conditions_a_head_still_keeps_both(
    mount_factory: Callable[..., Mount],
) -> None:
    faults = "put:unconditional=1;complete_multipart:unconditional=1"
    mount = mount_factory("--writeback-delay", "3600", "--faults", faults, run=False)
    mount.put_object("report.csv", b"a,b\n")
    mount.start()
    with open(mount.path / "report.csv", "a") as f:
        f.write("1,2\n")
    mount.put_object("report.csv", b"x,y\n")
    flush(mount)
    assert mount.get("report.csv") == b"x,y\n"
    assert list(copies(mount, "report.csv").values()) == [b"a,b\n1,2\n"]
    status = status_of(mount)
    assert status["conflicts"] == 1 and status["conditional_writes"].startswith("IGNORED"), status
    shown = fusestore_cli("status", str(mount.path)).stdout
    assert "conditions: IGNORED by the store" in shown and "1 conflict cop(ies) listed" in shown, shown
    assert not [key for key in mount.objects() if key.startswith(".fusestore-probe-")]
    assert mount.umount() == 0, mount.log_text()


@pytest.mark.timeout(120)
def test_boto3_overwrites_a_file_with_unsynced_changes_and_both_are_kept(
    mount_factory: Callable[..., Mount],
) -> None:
    mount = mount_factory("--writeback-delay", "3600", run=False)
    mount.put_object("report.csv", b"a,b\n")
    mount.start()
    with open(mount.path / "report.csv", "a") as f:
        f.write("1,2\n")
    mount.put_object("report.csv", b"x,y\n")
    mount.put_object("brand-new.txt", b"theirs")
    (mount.path / "brand-new.txt").write_bytes(b"ours")  # the mount had not listed it yet
    flush(mount)

    assert mount.get("report.csv") == b"x,y\n"
    assert list(copies(mount, "report.csv").values()) == [b"a,b\n1,2\n"]
    assert mount.get("brand-new.txt") == b"theirs"
    assert list(copies(mount, "brand-new.txt").values()) == [b"ours"]
    assert status_of(mount)["conflicts"] == 2
    assert mount.umount() == 0, mount.log_text()


def read_until(path: Path, wanted: bytes, allowed: set[bytes], deadline: float) -> float:
    """Read `path` (through `cat`, a new process each time) until it shows `wanted`; when,
    as time.monotonic(). Every read in between must be one of `allowed`, whole."""
    while True:
        seen = subprocess.run(["cat", str(path)], capture_output=True, timeout=30, check=True).stdout
        if seen == wanted:
            return time.monotonic()
        assert seen in allowed, f"a read showed bytes of no version: {seen[:80]!r}"
        assert time.monotonic() < deadline, f"still the old version at the deadline: {seen[:80]!r}"
        time.sleep(0.05)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("change", ["same size", "longer"])
def test_a_file_synced_on_a_is_read_on_b_within_the_ttl_even_from_b_s_page_cache(
    mount_factory: Callable[..., Mount], make_bucket: Callable[[], str], change: str
) -> None:
    bucket = make_bucket()
    old = b"version one\n" * 1000
    new = old.replace(b"one", b"two") if change == "same size" else old + b"and more\n"
    ttl = ("--metadata-ttl", str(TTL))
    a = mount_factory(*ttl, bucket=bucket, name="a", run=False)
    a.put_object("shared.txt", old)
    a.start()
    b = mount_factory(*ttl, bucket=bucket, name="b")
    with open(b.path / "shared.txt", "rb") as reader:  # b's pages of the old version, kept
        assert reader.read() == old
        assert (b.path / "shared.txt").read_bytes() == old

        (a.path / "shared.txt").write_bytes(new)
        flush(a)
        synced = time.monotonic()
        assert a.get("shared.txt") == new
        shown = read_until(b.path / "shared.txt", new, {old}, deadline=synced + TTL + 1)
        assert shown - synced <= TTL + 1

        reader.seek(0)
        assert reader.read() == old, "a descriptor opened before goes on with its version"
    assert os.stat(b.path / "shared.txt").st_size == len(new)
    assert a.umount() == 0, a.log_text()
    assert b.umount() == 0, b.log_text()
    assert a.get("shared.txt") == new and [k for k in a.objects() if "conflict" in k] == []


@pytest.mark.timeout(120)
def test_a_remote_delete_while_b_has_the_file_open(
    mount_factory: Callable[..., Mount], make_bucket: Callable[[], str]
) -> None:
    bucket = make_bucket()
    data = os.urandom(40 * 2**20)
    b = mount_factory("--metadata-ttl", str(TTL), bucket=bucket, name="b", run=False)
    b.put_object("dir/big.bin", data)
    b.put_object("dir/other", b"stays")
    b.start()
    with open(b.path / "dir" / "big.bin", "rb", buffering=0) as reader:
        assert reader.read(4096) == data[:4096]
        b.delete_object("dir/big.bin")  # a third writer
        deleted = time.monotonic()
        while "big.bin" in os.listdir(b.path / "dir"):
            assert time.monotonic() < deadline_after(deleted), "still listed after the TTL"
            time.sleep(0.1)
        assert not (b.path / "dir" / "big.bin").exists()
        assert os.listdir(b.path / "dir") == ["other"]

        # The open descriptor reads its version: what is cached of it, and ESTALE for
        # what is not (documented in docs/semantics.md); never other bytes.
        reader.seek(0)
        assert reader.read(4096) == data[:4096]
        reader.seek(36 * 2**20)
        try:
            tail = reader.read(4096)
        except OSError as exc:
            assert exc.errno == errno.ESTALE, exc
        else:
            assert tail == data[36 * 2**20 : 36 * 2**20 + 4096]
    b.put_object("dir/big.bin", b"created again")
    assert b.umount() == 0, b.log_text()
    assert b.get("dir/big.bin") == b"created again", "closing the descriptor deleted nothing"


def deadline_after(start: float) -> float:
    return start + TTL + 1


# -- two writers rewriting the same files: every stored object is one whole version ---------

#: Encoded mtimes (2001-2004): a version's own is MTIME_BASE + writer * 10**6 + number.
MTIME_BASE = 1_000_000_000


def version_bytes(writer: int, number: int, name: str, length: int) -> bytes:
    """A version that says, all along, who wrote it, which it is and how long it is."""
    head = f"{writer}:{number}:{name}:{length}\n".encode()
    fill = f"<{writer}.{number}>".encode()
    return (head + fill * (length // len(fill) + 1))[:length]


def whole_version(data: bytes) -> tuple[int, int] | None:
    """(writer, number) of `data` when it is one version written whole, else None."""
    try:
        writer, number, name, length = data.split(b"\n", 1)[0].decode().split(":")
        whole = version_bytes(int(writer), int(number), name, int(length))
    except ValueError:
        return None
    return (int(writer), int(number)) if data == whole else None


def rewrite_files(mount: Mount, writer: int, names: list[str], until: float, errors: list[str]) -> int:
    """Rewrite random files of `names` in place (O_TRUNC, one write, close, then an mtime
    saying which version this is) until `until`; how many versions were written."""
    rng = random.Random(writer)
    number = 0
    while time.monotonic() < until:
        number += 1
        name = rng.choice(names)
        data = version_bytes(writer, number, name, rng.randrange(1024, 512 * 1024))
        try:
            fd = os.open(mount.path / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            stamp = MTIME_BASE + writer * 10**6 + number
            os.utime(mount.path / name, (stamp, stamp))
        except OSError as exc:
            errors.append(f"writer {writer}, {name}: {exc}")
        time.sleep(rng.uniform(0, 0.03))  # pauses: some files go quiet, and go up mid-rewrite
    return number


@pytest.mark.timeout(240)
def test_two_mounts_rewriting_the_same_files_store_only_whole_versions(
    mount_factory: Callable[..., Mount], make_bucket: Callable[[], str]
) -> None:
    bucket = make_bucket()
    names = [f"f{i:02}.dat" for i in range(20)]
    options = ("--writeback-delay", "0.5", "--metadata-ttl", "1")
    a = mount_factory(*options, bucket=bucket, name="a", run=False)
    for name in names:
        a.put_object(name, version_bytes(0, 0, name, 4096))
    a.start()
    b = mount_factory(*options, bucket=bucket, name="b")
    errors: list[str] = []
    until = time.monotonic() + 20
    with ThreadPoolExecutor(2) as pool:
        written = list(
            pool.map(lambda job: rewrite_files(job[0], job[1], names, until, errors), [(a, 1), (b, 2)])
        )
    assert not errors, errors[:5]
    flush(a)
    flush(b)
    assert a.umount() == 0, a.log_text()
    assert b.umount() == 0, b.log_text()

    stored = a.objects()
    copies = [key for key in stored if ".conflict-" in key]
    assert set(stored) - set(copies) == set(names), sorted(stored)
    assert copies, f"no conflict in {sum(written)} versions: the test proves nothing"
    for key in stored:
        data = a.get(key)
        made = whole_version(data)
        assert made is not None, f"{key}: {len(data)} bytes of no version, starting {data[:40]!r}"
        if key in copies:
            # A copy's attributes are its version's: the mtime set after it was written, or
            # the time it was written (when it went up before the mtime was set).
            mtime = float(a.metadata(key).get("mtime", "0"))
            encoded = MTIME_BASE <= mtime < MTIME_BASE + 10 * 10**6
            wanted = MTIME_BASE + made[0] * 10**6 + made[1]
            assert mtime == wanted or not encoded, f"{key}: version {made} with another's mtime {mtime}"
