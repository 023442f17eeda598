"""POSIX behaviour of each file type on a real mount (as root), checked again after a remount
on a fresh cache: create, stat, chmod, rename (within and across directories, over an entry
of the same type), unlink and rmdir; `.` and `..` with their inode numbers; an inode number
that stays with a file across renames while the kernel knows it."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Mount, sh

#: name -> (how to make it under a directory, its st_mode type)
TYPES: dict[str, tuple[Callable[[Path], None], int]] = {
    "file": (lambda p: p.write_bytes(b"data"), stat.S_IFREG),
    "dir": (lambda p: p.mkdir(), stat.S_IFDIR),
    "symlink": (lambda p: p.symlink_to("elsewhere"), stat.S_IFLNK),
    "fifo": (lambda p: os.mkfifo(p, 0o644), stat.S_IFIFO),
    "socket": (lambda p: _bind(p), stat.S_IFSOCK),
    "chardev": (lambda p: os.mknod(p, stat.S_IFCHR | 0o644, os.makedev(1, 3)), stat.S_IFCHR),
    "blockdev": (lambda p: os.mknod(p, stat.S_IFBLK | 0o644, os.makedev(7, 0)), stat.S_IFBLK),
}


def _bind(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


def _dots(directory: Path) -> dict[str, int]:
    """The inode numbers `ls -fai` shows for `.` and `..` (readdir's own entries)."""
    found = {}
    for line in sh("ls -fai", cwd=directory).splitlines():
        ino, name = line.split(maxsplit=1)
        if name in (".", ".."):
            found[name] = int(ino)
    return found


@pytest.mark.parametrize("kind", sorted(TYPES))
def test_each_file_type_through_its_life(mounted: Mount, kind: str) -> None:
    root = mounted.path
    make, type_bits = TYPES[kind]
    (root / "a").mkdir()
    (root / "b").mkdir()
    made = root / "a" / "x"
    make(made)
    info = os.lstat(made)
    assert stat.S_IFMT(info.st_mode) == type_bits
    assert (info.st_uid, info.st_gid) == (0, 0)
    assert info.st_nlink == (2 if kind == "dir" else 1)
    if kind in ("chardev", "blockdev"):
        assert info.st_rdev == (os.makedev(1, 3) if kind == "chardev" else os.makedev(7, 0))
    if kind != "symlink":
        os.chmod(made, 0o600)
        assert stat.S_IMODE(os.lstat(made).st_mode) == 0o600
    ino = info.st_ino
    os.rename(made, root / "a" / "y")  # within the directory
    assert os.lstat(root / "a" / "y").st_ino == ino
    os.rename(root / "a" / "y", root / "b" / "z")  # across directories
    assert os.lstat(root / "b" / "z").st_ino == ino
    make(root / "b" / "w")
    os.rename(root / "b" / "z", root / "b" / "w")  # over an entry of the same type
    assert os.lstat(root / "b" / "w").st_ino == ino
    assert sorted(os.listdir(root / "b")) == ["w"]

    mounted.umount()
    mounted.cache = mounted.cache.parent / "fresh-cache"
    mounted.start()
    again = os.lstat(root / "b" / "w")
    assert stat.S_IFMT(again.st_mode) == type_bits
    if kind != "symlink":
        assert stat.S_IMODE(again.st_mode) == 0o600
    if kind in ("chardev", "blockdev"):
        assert again.st_rdev == info.st_rdev
    (os.rmdir if kind == "dir" else os.unlink)(root / "b" / "w")
    assert os.listdir(root / "b") == []
    assert mounted.umount() == 0
    assert not any(key.startswith("b/w") for key in mounted.objects())


def test_dot_and_dotdot_name_the_directory_and_its_parent(mounted: Mount) -> None:
    root = mounted.path
    (root / "d" / "e").mkdir(parents=True)
    dots = _dots(root / "d" / "e")
    assert dots == {".": os.stat(root / "d" / "e").st_ino, "..": os.stat(root / "d").st_ino}
    assert _dots(root)["."] == os.stat(root).st_ino


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_an_open_file_or_directory_that_was_removed_has_no_links(mounted: Mount, kind: str) -> None:
    """fstat of a descriptor whose name was unlinked (or rmdir-ed, or renamed over) shows
    `st_nlink` 0, as the kernel asks the daemon again after the change (it showed 1)."""
    path = mounted.path / "x"
    other = mounted.path / "y"
    if kind == "dir":
        path.mkdir()
        other.mkdir()
    else:
        path.write_bytes(b"data")
        other.write_bytes(b"other")
    fd = os.open(path, os.O_RDONLY)
    try:
        (os.rmdir if kind == "dir" else os.unlink)(path)
        assert os.fstat(fd).st_nlink == 0
    finally:
        os.close(fd)
    fd = os.open(other, os.O_RDONLY)
    try:
        (path.mkdir if kind == "dir" else path.write_bytes)(*([] if kind == "dir" else [b"new"]))
        os.rename(path, other)  # over the open one
        assert os.fstat(fd).st_nlink == 0
        assert os.stat(other).st_nlink == (2 if kind == "dir" else 1)
    finally:
        os.close(fd)
