"""The file store's listing helper process: pages built there are the store's pages; a
helper that dies, is interrupted or fails costs no listing; it ends with the process that
started it, even after kill -9."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fusestore.stores import StoreError
from fusestore.stores.file import FileStore
from fusestore.stores.file_scanner import HELPER, _Server

pytestmark = pytest.mark.timeout(120)


def _fill(directory: Path, count: int) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    names = [f"f{i:04d}" for i in range(count)]
    for name in names:
        (directory / name).write_bytes(name.encode())
    return names


def _helper_pid() -> int:
    process = HELPER._process
    assert process is not None and process.poll() is None, "no helper process"
    return process.pid


def _gone(pid: int) -> bool:
    """Whether process `pid` exited (a zombie left for its new parent counts)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_pages_are_built_in_another_process(tmp_path: Path) -> None:
    _fill(tmp_path / "d", 5)
    fs = FileStore(str(tmp_path))
    assert fs.lists_ahead  # its listings cost this process little: worth reading ahead
    page = fs.list("d/")
    assert [o.key for o in page.objects] == [f"d/f{i:04d}" for i in range(5)]
    assert page.objects[0].size == 5 and page.objects[0].etag == fs.head("d/f0000").etag
    assert _helper_pid() != os.getpid()
    assert not FileStore(str(tmp_path), listing_process=False).lists_ahead


def test_a_helper_killed_between_pages_costs_no_listing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = _fill(tmp_path / "d", 30)
    fs = FileStore(str(tmp_path))
    first = fs.list("d/", "/", None, 10)
    os.kill(_helper_pid(), signal.SIGKILL)
    with caplog.at_level(logging.WARNING, logger="fusestore.stores.file"):
        second = fs.list("d/", "/", first.next_token, 10)
    assert "listing helper process stopped answering" in caplog.text
    assert HELPER._process is None
    third = fs.list("d/", "/", second.next_token, 10)
    assert HELPER._process is None  # in this process until HELPER_RETRY passed
    listed = [o.key for o in first.objects + second.objects + third.objects]
    assert listed == [f"d/{name}" for name in names] and third.next_token is None
    # Then a new helper builds the pages again.
    now = time.monotonic()
    monkeypatch.setattr("fusestore.stores.file.time.monotonic", lambda: now + 61)
    assert len(fs.list("d/").objects) == 30
    _helper_pid()


def test_an_error_building_a_page_is_the_same_error_in_either_process(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to("loop")  # ELOOP when the listing opens it
    errors = []
    for listing_process in (False, True):
        with pytest.raises(StoreError) as caught:
            FileStore(str(tmp_path), listing_process=listing_process).list("loop/")
        errors.append((type(caught.value), str(caught.value)))
    assert errors[0] == errors[1]
    assert FileStore(str(tmp_path)).list("").objects == []  # the helper lives on


def test_ctrl_c_to_the_foreground_group_leaves_the_helper_serving(tmp_path: Path) -> None:
    _fill(tmp_path / "d", 3)
    fs = FileStore(str(tmp_path))
    fs.list("d/")
    pid = _helper_pid()
    os.kill(pid, signal.SIGINT)
    time.sleep(0.2)
    assert len(fs.list("d/").objects) == 3
    assert _helper_pid() == pid


def test_the_helper_ends_when_the_process_that_started_it_is_killed(tmp_path: Path) -> None:
    _fill(tmp_path / "d", 3)
    script = textwrap.dedent(
        f"""
        import sys, time
        from fusestore.stores.file import FileStore
        from fusestore.stores.file_scanner import HELPER
        assert len(FileStore({str(tmp_path)!r}).list("d/").objects) == 3
        print(HELPER._process.pid, flush=True)
        time.sleep(120)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        helper = int(parent.stdout.readline())
        assert not _gone(helper)
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 20
        while not _gone(helper) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(helper), "the helper outlived the daemon"
    finally:
        parent.kill()
        parent.wait(10)


def test_a_page_built_ahead_answers_only_the_same_request_while_fresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper builds the page after the one it answered while nothing else is asked.
    That page answers the request for it within AHEAD_FRESH; any other request, or that
    one later, gets a page built when asked (here: without a file removed meanwhile)."""
    _fill(tmp_path / "d", 25)
    server = _Server()
    root, path = str(tmp_path), str(tmp_path / "d")
    page1 = (root, ("d", path, "d/", "/", None, 10))
    reply = server.answer(*page1)
    page2 = (root, ("d", path, "d/", "/", reply[1][-1], 10))

    def keys(answer: tuple[bool, object]) -> list[str]:
        assert answer[0], answer
        return answer[1][0]  # type: ignore[index,no-any-return]

    server.build_next(*page1, reply)
    os.unlink(tmp_path / "d" / "f0012")
    assert "d/f0012" in keys(server.answer(*page2))  # built before the removal
    assert server.ahead is None  # used once
    server.build_next(*page1, reply)
    second = server.answer(*page2)
    server.build_next(*page2, second)  # page 3 is ahead now
    os.unlink(tmp_path / "d" / "f0013")
    assert "d/f0013" not in keys(server.answer(*page2))
    server.build_next(*page1, reply)
    os.unlink(tmp_path / "d" / "f0014")
    later = time.monotonic() + 2
    monkeypatch.setattr("fusestore.stores.file_scanner.time.monotonic", lambda: later)
    assert "d/f0014" not in keys(server.answer(*page2))
