"""Ordinary tools on a real mount: what users do first, checked byte for byte in the bucket,
on moto's server and on SeaweedFS."""

from __future__ import annotations

import hashlib
import os
import random
import socket
import stat
import sys
import tarfile
from pathlib import Path

import pytest

from fusestore.writeback.landings import TOKEN

from .conftest import ALL_SERVERS, Mount, sh

pytestmark = pytest.mark.parametrize("server", ALL_SERVERS, indirect=True)


def make_tree(root: Path, files: int = 220, seed: int = 3) -> dict[str, bytes]:
    """A tree of `files` files of assorted sizes in nested directories; returns path -> bytes."""
    rng = random.Random(seed)
    made = {}
    for i in range(files):
        depth = rng.randint(0, 3)
        rel = "/".join(f"d{rng.randint(0, 4)}" for _ in range(depth)) + ("/" if depth else "") + f"f{i}.bin"
        size = rng.choice([0, 1, 100, 4096, 70_000, 300_000, 1_100_000])
        data = rng.randbytes(size)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        made[rel] = data
    return made


def test_cp_r_then_sha256sum_and_bucket(mounted: Mount, tmp_path: Path) -> None:
    source = tmp_path / "src"
    tree = make_tree(source)
    sh(f"cp -r {source} {mounted.path}/tree", cwd=tmp_path)
    listing = sh("find . -type f | sort | xargs sha256sum", cwd=mounted.path / "tree")
    expected = sh("find . -type f | sort | xargs sha256sum", cwd=source)
    assert listing == expected
    assert mounted.umount() == 0
    objects = mounted.objects()
    files = {k: v for k, v in objects.items() if not k.endswith("/")}
    assert set(files) == {f"tree/{rel}" for rel in tree}
    for rel, data in random.Random(1).sample(sorted(tree.items()), 40):
        assert mounted.get(f"tree/{rel}") == data
        meta = mounted.metadata(f"tree/{rel}")
        assert int(meta["mode"]) == stat.S_IFREG | (source / rel).stat().st_mode & 0o7777
        # TOKEN: see landings; the atime is the file's creation (noatime: the writes kept it)
        assert set(meta) - {"atime", "ctime"} == {"mode", "uid", "gid", "mtime", TOKEN}
    assert [k for k in objects if k.endswith("/")] == [], "no markers: no directory is empty"


def test_tar_xf_of_a_real_tarball(mounted: Mount, tmp_path: Path) -> None:
    stdlib = Path(os.__file__).parent
    tarball = tmp_path / "json.tar"
    with tarfile.open(tarball, "w") as tar:
        for name in ("json", "email", "http"):
            tar.add(
                stdlib / name, arcname=name, filter=lambda info: None if "__pycache__" in info.name else info
            )
    sh(f"tar xf {tarball}", cwd=mounted.path)
    sh(f"mkdir ref && tar xf {tarball} -C ref", cwd=tmp_path)
    assert sh("find . -type f | sort | xargs sha256sum", cwd=mounted.path) == sh(
        "find . -type f | sort | xargs sha256sum", cwd=tmp_path / "ref"
    )
    assert sh("tar df " + str(tarball), cwd=mounted.path) == ""
    assert mounted.remount()
    assert sh("find . -type f | sort | xargs sha256sum", cwd=mounted.path) == sh(
        "find . -type f | sort | xargs sha256sum", cwd=tmp_path / "ref"
    )


def test_mv_file_and_directory_then_rm_r(mounted: Mount, tmp_path: Path) -> None:
    root = mounted.path
    sh(
        "mkdir -p a/sub && for i in $(seq 1 120); do echo file $i > a/sub/f$i; done && echo one > a/one",
        cwd=root,
    )
    sh("mv a/one a/uno", cwd=root)
    mounted.wait_for_key("a/sub/f120")
    sh("mv a/sub moved", cwd=root)
    assert sorted(os.listdir(root / "moved")) == sorted(f"f{i}" for i in range(1, 121))
    assert (root / "moved/f77").read_text() == "file 77\n"
    assert not (root / "a/sub").exists()
    assert mounted.umount() == 0
    keys = set(mounted.objects())
    assert keys == {"a/uno"} | {f"moved/f{i}" for i in range(1, 121)}
    assert mounted.get("moved/f5") == b"file 5\n"
    mounted.start()
    sh("rm -r moved", cwd=root)
    assert sorted(os.listdir(root)) == ["a"]
    assert mounted.umount() == 0
    assert set(mounted.objects()) == {"a/uno"}


def test_ls_l_chmod_touch_survive_remount(mounted: Mount) -> None:
    root = mounted.path
    sh("echo hello > f && chmod 640 f && touch -d '2001-02-03 04:05:06' f && mkdir -m 700 private", cwd=root)
    line = sh("ls -l --time-style=+%Y-%m-%dT%H:%M:%S f", cwd=root)
    assert line.startswith("-rw-r----- 1 ") and " 6 2001-02-03T04:05:06 f" in line
    mounted.remount()
    info = (root / "f").stat()
    assert stat.S_IMODE(info.st_mode) == 0o640
    assert int(info.st_mtime) == int(os.stat(root / "f").st_mtime)
    line = sh("ls -l --time-style=+%Y-%m-%dT%H:%M:%S f", cwd=root)
    assert line.startswith("-rw-r----- 1 ") and " 6 2001-02-03T04:05:06 f" in line, line
    assert stat.S_IMODE((root / "private").stat().st_mode) == 0o700
    assert mounted.umount() == 0
    meta = mounted.metadata("f")
    assert meta["mode"] == str(stat.S_IFREG | 0o640) and meta["mtime"].startswith("981173106")
    assert "private/" in mounted.objects()


def test_symlink_and_readlink(mounted: Mount) -> None:
    root = mounted.path
    sh("echo target > t && ln -s t link && ln -s /absolute/elsewhere dangling", cwd=root)
    assert sh("readlink link dangling", cwd=root) == "t\n/absolute/elsewhere\n"
    assert (root / "link").read_text() == "target\n"
    mounted.remount()
    assert os.readlink(root / "link") == "t"
    assert (root / "link").read_text() == "target\n"
    assert stat.S_ISLNK(os.lstat(root / "dangling").st_mode)
    assert mounted.umount() == 0
    assert mounted.get("dangling") == b"/absolute/elsewhere"
    assert stat.S_ISLNK(int(mounted.metadata("dangling")["mode"]))


def test_fifos_sockets_and_devices_survive_a_remount_on_a_fresh_cache(mounted: Mount) -> None:
    root = mounted.path
    sh("mkfifo -m 640 pipe && mknod -m 620 tty c 4 1 && mknod -m 660 disk b 8 16", cwd=root)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
    # The kernel carries a FIFO's data; the mount is nodev: a device opens nothing.
    assert sh("(echo through > pipe &) ; cat pipe", cwd=root, timeout=30) == "through\n"
    with pytest.raises(PermissionError):
        open(root / "tty", "rb")  # noqa: SIM115

    def check() -> None:
        kinds = {name: os.lstat(root / name) for name in ("pipe", "tty", "disk", "sock")}
        assert stat.S_ISFIFO(kinds["pipe"].st_mode) and stat.S_IMODE(kinds["pipe"].st_mode) == 0o640
        assert stat.S_ISCHR(kinds["tty"].st_mode) and kinds["tty"].st_rdev == os.makedev(4, 1)
        assert stat.S_ISBLK(kinds["disk"].st_mode) and kinds["disk"].st_rdev == os.makedev(8, 16)
        assert stat.S_ISSOCK(kinds["sock"].st_mode)
        assert all(info.st_size == 0 and info.st_nlink == 1 for info in kinds.values())

    check()
    assert mounted.umount() == 0
    mounted.cache = mounted.cache.parent / "fresh-cache"
    mounted.start()
    check()
    sh("mv tty tty2 && chmod 600 tty2 && rm pipe", cwd=root)
    assert stat.S_ISCHR(os.lstat(root / "tty2").st_mode)
    assert mounted.umount() == 0
    assert mounted.metadata("tty2")["mode"] == str(stat.S_IFCHR | 0o600)
    assert mounted.metadata("tty2")["rdev"] == str(os.makedev(4, 1))
    assert mounted.get("disk") == b"" and "pipe" not in mounted.objects()


def test_hard_link_is_refused_clearly(mounted: Mount) -> None:
    (mounted.path / "f").write_text("x")
    with pytest.raises(PermissionError):
        os.link(mounted.path / "f", mounted.path / "g")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dd_300_mib_multipart_then_cmp_after_remount(mounted: Mount, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    sh(f"dd if=/dev/urandom of={source} bs=1M count=300 status=none", cwd=tmp_path)
    sh(f"dd if={source} of={mounted.path}/big.bin bs=1M status=none", cwd=tmp_path)
    mounted.remount()
    sh(f"cmp {source} {mounted.path}/big.bin", cwd=tmp_path)
    assert mounted.umount() == 0
    assert mounted.objects()["big.bin"]["size"] == 300 * 2**20
    if mounted.client is not None:
        head = mounted.client.head_object(Bucket=mounted.bucket, Key="big.bin")
        assert "-" in head["ETag"], "a 300 MiB file goes up as a multipart upload"
    digest = hashlib.sha256(mounted.get("big.bin"))
    assert digest.hexdigest() == hashlib.sha256(source.read_bytes()).hexdigest()


def test_append_and_truncate(mounted: Mount) -> None:
    root = mounted.path
    sh("printf 'one\\n' > log && printf 'two\\n' >> log && printf 'three\\n' >> log", cwd=root)
    assert (root / "log").read_text() == "one\ntwo\nthree\n"
    sh("truncate -s 3 log", cwd=root)
    assert (root / "log").read_bytes() == b"one"
    sh("truncate -s 10000 log", cwd=root)
    assert (root / "log").read_bytes() == b"one" + bytes(9997)
    sh("printf 'end' >> log", cwd=root)
    mounted.remount()
    assert (root / "log").read_bytes() == b"one" + bytes(9997) + b"end"
    assert mounted.umount() == 0
    assert mounted.get("log") == b"one" + bytes(9997) + b"end"


def test_objects_written_before_the_mount_appear(mount_factory, make_bucket) -> None:  # type: ignore[no-untyped-def]
    bucket = make_bucket()
    mount = mount_factory(bucket=bucket, run=False)
    mount.put_object("top.txt", b"top")
    mount.put_object("deep/er/file.bin", bytes(3 * 2**20 + 5))
    mount.put_object("empty/", b"")
    mount.start()
    assert sorted(os.listdir(mount.path)) == ["deep", "empty", "top.txt"]
    assert (mount.path / "deep/er/file.bin").stat().st_size == 3 * 2**20 + 5
    assert (mount.path / "deep/er/file.bin").read_bytes() == bytes(3 * 2**20 + 5)
    assert os.listdir(mount.path / "empty") == []
    assert (mount.path / "top.txt").read_text() == "top"
    assert mount.umount() == 0
    assert set(mount.objects()) == {"top.txt", "deep/er/file.bin", "empty/"}, (
        "a mount that only reads writes nothing"
    )


def test_new_file_visible_to_boto3_without_unmounting(mounted: Mount) -> None:
    (mounted.path / "fresh.txt").write_text("fresh")
    seconds = mounted.wait_for_key("fresh.txt", timeout=0.5 + 5)
    assert mounted.get("fresh.txt") == b"fresh"
    print(f"visible after {seconds:.2f}s", file=sys.stderr)
