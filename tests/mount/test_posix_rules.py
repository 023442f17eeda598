"""The POSIX rules of each file type on a real mount, run as root and as an unprivileged
user (a mount with `--allow-other` and `--xattr`; the calls made by forked processes with
another uid and groups): create, stat, chmod, chown (allowed and refused), rename, unlink,
rmdir, truncate, utimensat (NOW, OMIT, explicit, refused), which calls change the ctime and
which do not, xattrs, sticky directories, setuid cleared; everything checked again after a
remount on a fresh cache, and the objects' metadata read with boto3 as s3fs would."""

from __future__ import annotations

import ctypes
import errno
import os
import pickle
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fusestore.stores import PosixAttrs

from .conftest import Mount

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")

ROOT = (0, [0])
#: an unprivileged user with a second group, and another user
USER = (41001, [41001, 41010])
OTHER = (41002, [41002])
WHO = {"root": ROOT, "user": USER}

OLD_NS = 1_500_000_000_123_456_789
ATIME_NS = 1_400_000_000_987_654_321
#: how far the kernel's coarse clock may lag
SLACK_NS = 50_000_000


def as_user(who: tuple[int, list[int]], fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` in a forked process with `who`'s uid and groups (umask 022); its OSError
    is raised here with the same errno."""
    uid, groups = who
    if uid == 0:
        return fn(*args)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no return from here
        try:
            os.close(read_end)
            os.setgroups(groups[1:])
            os.setresgid(groups[0], groups[0], groups[0])
            os.setresuid(uid, uid, uid)
            os.umask(0o022)
            try:
                outcome: tuple[str, Any] = ("value", fn(*args))
            except OSError as exc:
                outcome = ("errno", exc.errno)
            except BaseException as exc:
                outcome = ("error", repr(exc))
            os.write(write_end, pickle.dumps(outcome))
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data) if data else ("error", "the child died")
    if kind == "errno":
        raise OSError(value, os.strerror(value))
    if kind == "error":
        raise AssertionError(value)
    return value


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_LIBC = ctypes.CDLL(None, use_errno=True)
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
_AT_FDCWD, _AT_SYMLINK_NOFOLLOW = -100, 0x100


def utimensat(path: str, atime: int, mtime: int) -> None:
    """utimensat(2) on `path` itself (not a symlink's target): each time in ns, or
    UTIME_NOW or UTIME_OMIT."""

    def spec(value: int) -> _Timespec:
        return _Timespec(0, value) if value in (UTIME_NOW, UTIME_OMIT) else _Timespec(*divmod(value, 10**9))

    pair = (_Timespec * 2)(spec(atime), spec(mtime))
    if _LIBC.utimensat(_AT_FDCWD, os.fsencode(path), pair, _AT_SYMLINK_NOFOLLOW) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)


def _bind(path: str) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(path)


MAKERS: dict[str, Callable[[str], None]] = {
    "file": lambda p: Path(p).write_bytes(b"data"),
    "dir": lambda p: os.mkdir(p, 0o755),
    "symlink": lambda p: os.symlink("target", p),
    "fifo": lambda p: os.mkfifo(p, 0o644),
    "socket": _bind,
    "chardev": lambda p: os.mknod(p, stat.S_IFCHR | 0o644, os.makedev(1, 3)),
    "blockdev": lambda p: os.mknod(p, stat.S_IFBLK | 0o644, os.makedev(7, 1)),
}
TYPE_BITS = {
    "file": stat.S_IFREG,
    "dir": stat.S_IFDIR,
    "symlink": stat.S_IFLNK,
    "fifo": stat.S_IFIFO,
    "socket": stat.S_IFSOCK,
    "chardev": stat.S_IFCHR,
    "blockdev": stat.S_IFBLK,
}
CASES = [(who, kind) for who in WHO for kind in MAKERS if who == "root" or "dev" not in kind]


@pytest.fixture
def posix_mount(mount_factory: Callable[..., Mount]) -> Iterator[Mount]:
    """A mount every user may reach (`--allow-other`, a path under a 0755 directory) with
    `--xattr`; `u/` belongs to USER, `sticky/` is 1777."""
    base = Path(tempfile.mkdtemp(prefix="fusestore-posix-"))
    base.chmod(0o755)
    mount = mount_factory("--allow-other", "--xattr", run=False)
    mount.path = base / "mnt"
    mount.start()
    try:
        os.chmod(mount.path, 0o755)
        (mount.path / "u").mkdir()
        os.chown(mount.path / "u", USER[0], USER[1][0])
        (mount.path / "sticky").mkdir()
        os.chmod(mount.path / "sticky", 0o1777)
        yield mount
    finally:
        mount.kill()
        shutil.rmtree(base, ignore_errors=True)


def fresh_remount(mount: Mount) -> None:
    """Unmount (everything uploaded) and mount again on an empty cache."""
    assert mount.umount() == 0, mount.log_text()
    mount.cache = mount.cache.parent / f"{mount.cache.name}-fresh"
    mount.start()


def refused(code: int, who: tuple[int, list[int]], fn: Callable[..., Any], *args: Any) -> None:
    with pytest.raises(OSError) as caught:
        as_user(who, fn, *args)
    assert caught.value.errno == code, f"{fn}: {caught.value}"


def tick() -> None:
    """Past the kernel's clock tick: it stamps a regular file's changes with a coarse clock
    (4 ms here), and a change within the tick of the last keeps the same ctime."""
    time.sleep(0.01)


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


def times(path: str) -> tuple[int, int, int]:
    info = os.lstat(path)
    return info.st_atime_ns, info.st_mtime_ns, info.st_ctime_ns


@pytest.mark.timeout(240)
@pytest.mark.parametrize(("who", "kind"), CASES, ids=[f"{w}-{k}" for w, k in CASES])
def test_each_file_type_through_its_life(posix_mount: Mount, who: str, kind: str) -> None:
    user = WHO[who]
    uid, groups = user
    home = posix_mount.path / ("u" if who == "user" else "")
    path = str(home / "x")
    before = time.time_ns()
    as_user(user, MAKERS[kind], path)
    info = os.lstat(path)
    assert stat.S_IFMT(info.st_mode) == TYPE_BITS[kind]
    assert (info.st_uid, info.st_gid) == (uid, groups[0])
    assert info.st_nlink == (2 if kind == "dir" else 1)
    assert info.st_rdev == {"chardev": os.makedev(1, 3), "blockdev": os.makedev(7, 1)}.get(kind, 0)
    # (the kernel stamps a write with its coarse clock, a few ms behind)
    assert all(
        before - SLACK_NS <= t <= time.time_ns()
        for t in (info.st_atime_ns, info.st_mtime_ns, info.st_ctime_ns)
    )
    symlink = kind == "symlink"

    # chmod: the owner may, another user may not; the ctime changes only when it succeeds
    if not symlink:
        tick()
        as_user(user, os.chmod, path, 0o640)
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o640
        assert os.lstat(path).st_ctime_ns > info.st_ctime_ns
        changed = os.lstat(path).st_ctime_ns
        refused(errno.EPERM, OTHER, os.chmod, path, 0o777)
        assert os.lstat(path).st_ctime_ns == changed

    # chown: root gives a file away; a user changes the group to one of its own only
    if who == "root":
        os.lchown(path, OTHER[0], OTHER[1][0])
        assert (os.lstat(path).st_uid, os.lstat(path).st_gid) == (OTHER[0], OTHER[1][0])
        os.lchown(path, uid, groups[0])
    else:
        refused(errno.EPERM, user, os.lchown, path, OTHER[0], -1)
        refused(errno.EPERM, user, os.lchown, path, -1, 0)
        as_user(user, os.lchown, path, -1, groups[1])
        assert os.lstat(path).st_gid == groups[1]

    # reading changes neither the ctime nor the atime (the mount is noatime)
    settled = times(path)
    if kind == "file":
        assert as_user(user, Path(path).read_bytes) == b"data"
    elif kind == "dir":
        assert as_user(user, os.listdir, path) == []
    elif symlink:
        assert as_user(user, os.readlink, path) == "target"
    assert times(path) == settled

    # utimensat: explicit times by the owner; OMIT leaves one; another user may not
    as_user(user, utimensat, path, ATIME_NS, OLD_NS - 5)
    assert times(path)[:2] == (ATIME_NS, OLD_NS - 5)
    as_user(user, utimensat, path, UTIME_OMIT, OLD_NS)
    assert times(path)[:2] == (ATIME_NS, OLD_NS)
    refused(errno.EPERM, OTHER, utimensat, path, OLD_NS, OLD_NS)
    refused(errno.EPERM, OTHER, utimensat, path, UTIME_OMIT, OLD_NS)
    assert times(path)[:2] == (ATIME_NS, OLD_NS)
    ctime = times(path)[2]

    # extended attributes, on files and directories (Linux allows user.* on no other type)
    if kind in ("file", "dir"):
        tick()
        as_user(user, os.setxattr, path, "user.color", b"blue")
        assert as_user(user, os.getxattr, path, "user.color") == b"blue"
        refused(errno.EACCES, OTHER, os.getxattr, path, "user.color")  # mode 0640: no read
        refused(errno.EACCES, OTHER, os.setxattr, path, "user.color", b"red")
        ctime = times(path)[2]
    elif not symlink:
        refused(errno.EPERM, user, os.setxattr, path, "user.color", b"blue")

    # rename into a directory and back, over an entry of the same type
    as_user(user, os.mkdir, str(home / "sub"))
    ino = os.lstat(path).st_ino
    as_user(user, os.rename, path, str(home / "sub" / "y"))
    assert os.lstat(home / "sub" / "y").st_ino == ino
    as_user(user, MAKERS[kind], path)
    tick()
    as_user(user, os.rename, str(home / "sub" / "y"), path)
    assert os.lstat(path).st_ino == ino and os.listdir(home / "sub") == []
    moved = times(path)
    assert moved[:2] == (ATIME_NS, OLD_NS) and moved[2] > ctime, "a rename changes the ctime alone"

    fresh_remount(posix_mount)
    again = os.lstat(path)
    assert stat.S_IFMT(again.st_mode) == TYPE_BITS[kind]
    assert stat.S_IMODE(again.st_mode) == (0o777 if symlink else 0o640)
    assert (again.st_uid, again.st_gid) == (uid, groups[1] if who == "user" else groups[0])
    assert again.st_rdev == info.st_rdev
    assert times(path)[:2] == (ATIME_NS, OLD_NS)
    if not symlink:  # a symlink's copy keeps the metadata it had: its ctime is the rename's
        assert times(path)[2] == moved[2]
    if kind in ("file", "dir"):
        assert os.listxattr(path) == ["user.color"] and os.getxattr(path, "user.color") == b"blue"

    as_user(user, os.rmdir if kind == "dir" else os.unlink, path)
    as_user(user, os.rmdir, str(home / "sub"))
    assert not os.path.lexists(path)


@pytest.mark.timeout(120)
def test_setuid_and_setgid_are_cleared_by_a_write_of_another_user_and_by_chown(posix_mount: Mount) -> None:
    shared = posix_mount.path / "shared"
    shared.write_bytes(b"x")
    os.chown(shared, USER[0], USER[1][0])
    os.chmod(shared, 0o6777)
    as_user(OTHER, append, shared, b"more")
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o777
    os.chmod(shared, 0o6755)
    os.chown(shared, OTHER[0], -1)
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o755
    fresh_remount(posix_mount)
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o755 and os.stat(shared).st_uid == OTHER[0]


@pytest.mark.timeout(120)
def test_a_sticky_directory_keeps_others_from_removing_or_renaming_an_entry(posix_mount: Mount) -> None:
    sticky = posix_mount.path / "sticky"
    as_user(USER, lambda: (sticky / "mine").write_bytes(b"x"))
    refused(errno.EPERM, OTHER, os.unlink, str(sticky / "mine"))
    refused(errno.EPERM, OTHER, os.rename, str(sticky / "mine"), str(sticky / "theirs"))
    as_user(OTHER, lambda: (sticky / "theirs").write_bytes(b"y"))
    refused(errno.EPERM, OTHER, os.rename, str(sticky / "theirs"), str(sticky / "mine"))
    as_user(USER, os.rename, str(sticky / "mine"), str(sticky / "renamed"))
    as_user(USER, os.unlink, str(sticky / "renamed"))
    assert os.listdir(sticky) == ["theirs"]


@pytest.mark.timeout(120)
def test_utimensat_now_and_truncate_need_write_access(posix_mount: Mount) -> None:
    open_file, closed_file = posix_mount.path / "u" / "open", posix_mount.path / "u" / "closed"
    as_user(USER, lambda: open_file.write_bytes(b"data"))
    as_user(USER, lambda: closed_file.write_bytes(b"data"))
    as_user(USER, os.chmod, str(open_file), 0o666)
    as_user(USER, utimensat, str(open_file), OLD_NS, OLD_NS)
    as_user(USER, utimensat, str(closed_file), OLD_NS, OLD_NS)
    before = time.time_ns()
    as_user(OTHER, utimensat, str(open_file), UTIME_NOW, UTIME_NOW)  # write access is enough
    assert all(before - SLACK_NS <= t <= time.time_ns() for t in times(str(open_file)))
    refused(errno.EACCES, OTHER, utimensat, str(closed_file), UTIME_NOW, UTIME_NOW)
    refused(errno.EACCES, OTHER, os.truncate, str(closed_file), 1)
    as_user(OTHER, os.truncate, str(open_file), 2)
    assert open_file.read_bytes() == b"da"
    assert times(str(closed_file))[:2] == (OLD_NS, OLD_NS)


@pytest.mark.timeout(120)
def test_the_objects_carry_what_s3fs_reads(posix_mount: Mount) -> None:
    root = posix_mount.path
    os.mkfifo(root / "fifo", 0o640)
    os.mknod(root / "tty", stat.S_IFCHR | 0o600, os.makedev(4, 1))
    (root / "file").write_bytes(b"data")
    os.utime(root / "file", ns=(ATIME_NS, OLD_NS))
    os.setxattr(root / "file", "user.color", b"blue")
    ctime = os.stat(root / "file").st_ctime_ns
    assert posix_mount.umount() == 0
    fifo, tty, file = (posix_mount.metadata(key) for key in ("fifo", "tty", "file"))
    assert fifo["mode"] == str(stat.S_IFIFO | 0o640) and "rdev" not in fifo
    assert (tty["mode"], tty["rdev"]) == (str(stat.S_IFCHR | 0o600), str(os.makedev(4, 1)))
    assert (file["mtime"], file["atime"]) == ("1500000000.123456789", "1400000000.987654321")
    attrs = PosixAttrs.from_metadata(file)
    assert attrs.ctime_ns == ctime and attrs.xattrs == (("user.color", b"blue"),)
    assert file["xattr"] == "%7B%22user.color%22%3A%22Ymx1ZQ%3D%3D%22%7D"  # s3fs's form
    assert posix_mount.get("fifo") == posix_mount.get("tty") == b""


@pytest.mark.timeout(120)
def test_the_mount_is_noatime_and_a_write_keeps_the_atime(posix_mount: Mount) -> None:
    new = posix_mount.path / "new"
    new.write_bytes(b"data")
    made = times(str(new))
    tick()
    with new.open("ab") as f:
        f.write(b" more")
    assert times(str(new))[0] == made[0] < times(str(new))[1], "the atime stays the creation's"
    path = posix_mount.path / "f"
    path.write_bytes(b"data")
    utimensat(str(path), ATIME_NS, OLD_NS)
    assert "noatime" in Path("/proc/self/mounts").read_text().split(f" {posix_mount.path} ")[1].split()[1]
    assert path.read_bytes() == b"data"
    with path.open("ab") as f:
        f.write(b" more")
    atime, mtime, ctime = times(str(path))
    assert atime == ATIME_NS and mtime > OLD_NS
    new_times = times(str(new))
    fresh_remount(posix_mount)
    assert times(str(path)) == (ATIME_NS, mtime, ctime)
    assert times(str(new)) == new_times


def _tree_with_xattrs(root: Path) -> dict[str, dict[str, bytes]]:
    """A tree whose files and directories carry user xattrs; what each path carries."""
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"a")
    (root / "sub" / "b.bin").write_bytes(os.urandom(5000))
    (root / "plain").write_bytes(b"no attributes")
    os.symlink("a.txt", root / "link")
    carried = {
        "a.txt": {"user.color": b"red", "user.empty": b""},
        "sub": {"user.kind": b"folder"},
        "sub/b.bin": {"user.checksum": bytes(range(32)), "user.origin": "café".encode()},
    }
    for path, xattrs in carried.items():
        for name, value in xattrs.items():
            os.setxattr(root / path, name, value)
    return carried


def _xattrs_of(root: Path, paths: list[str]) -> dict[str, dict[str, bytes]]:
    return {p: {n: os.getxattr(root / p, n) for n in os.listxattr(root / p)} for p in paths}


@pytest.mark.timeout(180)
def test_rsync_and_cp_carry_user_xattrs_there_and_back(posix_mount: Mount, tmp_path: Path) -> None:
    if shutil.which("rsync") is None:
        pytest.skip("rsync is not installed (make test installs it)")
    carried = _tree_with_xattrs(tmp_path / "src")
    paths = [*carried, "plain"]
    expected = {**carried, "plain": {}}
    mnt = posix_mount.path
    for command in (
        ["rsync", "-aX", f"{tmp_path}/src/", f"{mnt}/rsynced/"],
        ["cp", "-a", f"{tmp_path}/src", f"{mnt}/copied"],
    ):
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0 and done.stderr == "", done.stderr
    for copy in ("rsynced", "copied"):
        assert _xattrs_of(mnt / copy, paths) == expected
        assert os.readlink(mnt / copy / "link") == "a.txt"
    # On a fresh cache a listing shows a symlink as a small file until its lookup; rsync
    # believes the listing (readdirplus), so a tree with symlinks is read back with
    # --exact-attrs, which keeps the kernel from using a listing's attributes.
    posix_mount.options.append("--exact-attrs")
    fresh_remount(posix_mount)
    subprocess.run(["rsync", "-aX", f"{mnt}/rsynced/", f"{tmp_path}/back/"], check=True, timeout=60)
    assert os.readlink(tmp_path / "back" / "link") == "a.txt"
    assert _xattrs_of(tmp_path / "back", paths) == expected
    assert (tmp_path / "back" / "sub" / "b.bin").read_bytes() == (
        tmp_path / "src" / "sub" / "b.bin"
    ).read_bytes()
    assert _xattrs_of(mnt / "copied", paths) == expected


RENAME_CASES = [(who, kind) for who, kind in CASES]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("who", sorted(WHO))
def test_rename_of_each_type_over_each_type(posix_mount: Mount, who: str) -> None:
    """Any non-directory replaces any non-directory; a directory replaces an empty
    directory only (ENOTDIR over anything else), and nothing else replaces a directory
    (EISDIR); the outcome survives a remount on a fresh cache."""
    user = WHO[who]
    home = posix_mount.path / ("u" if who == "user" else "")
    kinds = [kind for w, kind in CASES if w == who]
    outcome = {}
    for source in kinds:
        for target in kinds:
            pair = home / f"{source}-over-{target}"
            as_user(user, os.mkdir, str(pair))
            as_user(user, MAKERS[source], str(pair / "src"))
            as_user(user, MAKERS[target], str(pair / "dst"))
            ino = os.lstat(pair / "src").st_ino
            if (source == "dir") != (target == "dir"):
                code = errno.ENOTDIR if source == "dir" else errno.EISDIR
                refused(code, user, os.rename, str(pair / "src"), str(pair / "dst"))
                outcome[pair.name] = ["dst", "src"]
            else:
                as_user(user, os.rename, str(pair / "src"), str(pair / "dst"))
                assert os.lstat(pair / "dst").st_ino == ino
                outcome[pair.name] = ["dst"]
            assert sorted(os.listdir(pair)) == outcome[pair.name]
    # a directory over a directory that is not empty
    as_user(user, MAKERS["file"], str(home / "dir-over-dir" / "dst" / "inside"))
    as_user(user, os.mkdir, str(home / "dir-over-dir" / "src"))
    refused(
        errno.ENOTEMPTY,
        user,
        os.rename,
        str(home / "dir-over-dir" / "src"),
        str(home / "dir-over-dir" / "dst"),
    )
    fresh_remount(posix_mount)
    # each name looked up before its directory is listed: a listing on S3 carries no
    # metadata, and shows a symlink or special file as a file until its lookup
    for name, entries in outcome.items():
        source, target = name.split("-over-")
        kept = source if entries == ["dst"] else target
        assert stat.S_IFMT(os.lstat(home / name / "dst").st_mode) == TYPE_BITS[kept], name
        listed = sorted(os.listdir(home / name))
        assert listed == sorted({*entries, "src"} if name == "dir-over-dir" else entries)


@pytest.mark.timeout(120)
def test_times_before_1970_and_after_2262_survive_a_fresh_cache(posix_mount: Mount) -> None:
    root = posix_mount.path
    cases = {"old": (-315_619_200 * 10**9, -1), "far": (10_413_792_000 * 10**9, 253_370_764_800 * 10**9)}
    for name, (atime, mtime) in cases.items():
        (root / name).write_bytes(b"x")
        utimensat(str(root / name), atime, mtime)
        assert times(str(root / name))[:2] == (atime, mtime)
    fresh_remount(posix_mount)
    for name, (atime, mtime) in cases.items():
        assert times(str(root / name))[:2] == (atime, mtime), name
