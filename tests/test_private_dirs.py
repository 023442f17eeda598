"""Directories only their user can change: the cache directory, the runtime directory and
the control socket's, and a control client that believes only its own user's daemon."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest

from fusestore.cache import CacheDir
from fusestore.cache.layout import CacheUnusable
from fusestore.service.control import ControlClient, ControlUntrusted

OTHER_UID = 40123

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="owning files as another user needs root")


@pytest.mark.parametrize("case", ["writable by others", "symlink", "parent writable by others"])
def test_a_cache_directory_others_could_change_is_refused(tmp_path: Path, case: str) -> None:
    """Before, a 0777 cache directory was made 0700 and used, whatever others had put in it,
    and a symlink was followed."""
    path = tmp_path / "cache"
    if case == "writable by others":
        path.mkdir()
        os.chmod(path, 0o777)
    elif case == "symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        path.symlink_to(tmp_path / "elsewhere")
    else:
        shared = tmp_path / "shared"
        shared.mkdir()
        os.chmod(shared, 0o777)  # not sticky: anyone may rename what is in it
        path = shared / "cache"
    with pytest.raises(CacheUnusable) as refused:
        CacheDir.for_store("memory://one", str(path)).open()
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"cache directory {path} ")
    assert message.endswith("choose another --cache-dir"), message
    assert not (path / "store.json").exists() and not (path / "lock").exists()
    if case == "parent writable by others":
        assert not path.exists(), "a refused directory is not made"


@needs_root
def test_a_cache_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cache"
    path.mkdir(mode=0o700)
    os.chown(path, OTHER_UID, OTHER_UID)
    with pytest.raises(CacheUnusable, match=f"belongs to uid {OTHER_UID}, not to you"):
        CacheDir.for_store("memory://one", str(path)).open()


def test_a_sticky_shared_parent_and_a_readable_cache_are_fine(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp: others may not rename what is ours
    path = shared / "cache"
    path.mkdir()
    os.chmod(path, 0o755)
    CacheDir.for_store("memory://one", str(path)).open().close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


@needs_root
def test_the_client_believes_no_daemon_of_another_user(tmp_path: Path) -> None:
    """The daemon checks who connects (SO_PEERCRED); the client checks who answers: a
    socket served by another user is refused before anything is sent."""
    directory = tmp_path / "run"
    directory.mkdir(mode=0o700)
    path = directory / "x.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    ready_read, ready_write = os.pipe()
    child = os.fork()
    if child == 0:  # another user serves it: its credentials are taken at listen()
        code = 1
        try:
            os.setgid(OTHER_UID)
            os.setuid(OTHER_UID)
            listener.listen(1)
            os.write(ready_write, b"!")
            listener.settimeout(20)
            conn, _ = listener.accept()
            conn.settimeout(5)
            try:
                if conn.recv(4096):
                    conn.sendall(json.dumps({"store": "s3://not-yours"}).encode() + b"\n")
            except OSError:
                pass
            conn.close()
            code = 0
        finally:
            os._exit(code)
    listener.close()
    os.close(ready_write)
    try:
        assert os.read(ready_read, 1) == b"!"
        with pytest.raises(ControlUntrusted, match=f"served by uid {OTHER_UID}"):
            ControlClient(path, timeout=10).call("status")
    finally:
        os.close(ready_read)
        os.waitpid(child, 0)
