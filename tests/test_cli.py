"""The command line as a user meets it: exit codes and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from fusestore.testing.s3server import LocalS3Server


def fusestore(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fusestore", *args], capture_output=True, text=True, timeout=60
    )


def test_check_reports_a_working_bucket(s3_server: LocalS3Server, make_bucket: Callable[[], str]) -> None:
    bucket = make_bucket()
    result = fusestore("check", f"s3://{bucket}/some/prefix", "--endpoint-url", s3_server.endpoint_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ok: s3://{bucket}/some/prefix?endpoint_url=")


def test_check_names_a_missing_bucket(s3_server: LocalS3Server) -> None:
    result = fusestore("check", "s3://nonexistent-bucket", "--endpoint-url", s3_server.endpoint_url)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"fusestore: error: bucket 'nonexistent-bucket' does not exist at {s3_server.endpoint_url}; "
        "create it or fix the URL"
    ]


def test_unknown_scheme_and_wrong_options_are_one_line_errors(tmp_path: Path) -> None:
    result = fusestore("check", "ftp://host/dir")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "fusestore: error: unknown store scheme 'ftp://' in 'ftp://host/dir'; "
        "known schemes: az://, file://, gs://, memory://, s3://"
    )
    result = fusestore("check", f"file://{tmp_path}", "--endpoint-url", "http://127.0.0.1:1")
    assert result.returncode == 2
    assert "unknown option 'endpoint_url' for file:// stores" in result.stderr


def test_check_of_a_directory_store(tmp_path: Path) -> None:
    assert fusestore("check", f"file://{tmp_path}").returncode == 0
    result = fusestore("check", f"file://{tmp_path}/missing")
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_stores_lists_every_scheme_with_its_options() -> None:
    result = fusestore("stores")
    assert result.returncode == 0
    for expected in (
        "`s3://bucket[/prefix]`",
        "`file:///abs/path`",
        "`memory://NAME[/prefix]`",
        "endpoint_url:",
    ):
        assert expected in result.stdout


def test_version() -> None:
    result = fusestore("--version")
    assert result.returncode == 0 and "fusestore, version" in result.stdout


CONFIG_ERRORS = {
    "unknown key": ('cache_sise = "1G"\n', "unknown option 'cache_sise'"),
    "bad size": ('cache-size = "10Q"\n', "cache_size = '10Q': '10Q' is not a size"),
    "bad ttl": ('metadata_ttl = "soon"\n', "metadata_ttl = 'soon'"),
    "not toml": ("cache_size = \n", "is not valid TOML"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", sorted(CONFIG_ERRORS))
def test_a_bad_config_file_is_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    body, message = CONFIG_ERRORS[case]
    config = tmp_path / "bad.toml"
    config.write_text(f'url = "s3://some-bucket"\nmountpoint = "{tmp_path}"\n{body}')
    result = fusestore("mount", "--config", str(config))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"fusestore: error: config file {config}") and message in line, line


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cache-size", "10Q"], "Invalid value for '--cache-size': '10Q' is not a size"),
        (["--metadata-ttl", "-1"], "Invalid value for '--metadata-ttl'"),
        (["-o", "cache_size=10Q"], "-o: cache_size = '10Q'"),
        (["-o", "bogus=1,_netdev"], "-o: unknown option 'bogus'"),
        (["--file-mode", "0689"], "Invalid value for '--file-mode': '0689' is not an octal mode like 0644"),
        (["--dir-mode", "17777"], "'--dir-mode': '17777' is not an octal mode from 0 to 7777"),
        (["--umask", "-1"], "Invalid value for '--umask': '-1' is not an octal mode from 0 to 777"),
        (["-o", "file_mode=rw"], "-o: file_mode = 'rw': 'rw' is not an octal mode like 0644"),
        (["--negative-ttl", "-1"], "Invalid value for '--negative-ttl'"),
        (["--negative-ttl", "soon"], "Invalid value for '--negative-ttl'"),
        (["--allow-root", "--allow-other"], "--allow-other and --allow-root exclude each other"),
        (["--log-file", "/nonexistent-dir/f.log"], "--log-file /nonexistent-dir/f.log: No such file"),
    ],
    ids=[
        "--cache-size 10Q",
        "bad ttl",
        "-o bad size",
        "-o unknown",
        "file-mode 8",
        "dir-mode too big",
        "negative umask",
        "-o file_mode",
        "negative ttl",
        "ttl not a number",
        "allow_root+allow_other",
        "log file in no directory",
    ],
)
def test_bad_mount_options_are_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    from fusestore.service.mounts import is_mounted

    result = fusestore("mount", "s3://some-bucket", str(tmp_path), *args)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("fusestore: error:") and message in line, line
    assert not is_mounted(tmp_path)


@pytest.mark.timeout(60)
def test_shell_completion_is_offered() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "fusestore")],
        env={**os.environ, "_FUSESTORE_COMPLETE": "bash_source"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "_FUSESTORE_COMPLETE=bash_complete" in done.stdout, done.stderr


def test_the_mount_helper_translates_mount8_arguments() -> None:
    from fusestore.cli.fstab import translate

    assert translate(["s3://b/p", "/mnt/x", "-n", "-o", "rw,_netdev,cache_size=1G"]) == [
        "mount",
        "--background",
        "s3://b/p",
        "/mnt/x",
        "-o",
        "rw,_netdev,cache_size=1G",
    ]


@pytest.mark.parametrize("journal", [True, False], ids=["under journald", "elsewhere"])
def test_lines_carry_an_iso_time_except_under_journald(
    monkeypatch: pytest.MonkeyPatch, journal: bool
) -> None:
    import logging
    import re

    from fusestore.service import logs

    info = os.fstat(2)
    stream = f"{info.st_dev}:{info.st_ino}" if journal else f"{info.st_dev}:{info.st_ino + 1}"
    monkeypatch.setenv("JOURNAL_STREAM", stream)
    saved = logging.getLogger().handlers[:]
    try:
        logs.setup("warning")
        [handler] = logging.getLogger().handlers
    finally:
        logging.getLogger().handlers[:] = saved
    record = logging.LogRecord("fusestore.x", logging.WARNING, __file__, 1, "the store is down", None, None)
    line = handler.format(record)
    if journal:
        assert line == "<4>fusestore.x: the store is down", "journald stamps lines itself"
    else:
        assert re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d WARNING fusestore.x: the store is down", line
        ), line


def test_journald_gets_priorities_and_a_terminal_gets_level_names() -> None:
    import logging

    from fusestore.service.logs import JournalFormatter

    record = logging.LogRecord(
        "fusestore.writeback.flusher", logging.WARNING, __file__, 1, "upload failed", None, None
    )
    assert (
        JournalFormatter("%(name)s: %(message)s").format(record)
        == "<4>fusestore.writeback.flusher: upload failed"
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "args",
    [
        ["s3://mybucket/../x"],
        ["s3://mybucket/a/./x"],
        ["s3://mybucket/a//b"],
        ["s3://mybucket/a", "--link", "/d=s3://other/../x"],
    ],
    ids=["dotdot", "dot", "empty name", "--link dotdot"],
)
def test_mount_refuses_a_url_whose_prefix_has_dot_dotdot_or_empty_names(
    tmp_path: Path, args: list[str]
) -> None:
    """Refused before anything is mounted or any request sent (the endpoint does not exist)."""
    url, *more = args
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    result = fusestore(
        "mount",
        url,
        str(mountpoint),
        "--endpoint-url",
        "http://127.0.0.1:9",
        "--cache-dir",
        str(tmp_path / "cache"),
        *more,
    )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("fusestore: error:") and "an empty, '.' or '..' name" in line, line
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    ("argv", "mounts"),
    [
        (["mount", "s3://b", "/mnt"], True),
        (["--log-level", "debug", "mount", "s3://b", "/mnt"], True),
        (["--log-level=debug", "mount"], True),
        (["status", "/mnt"], False),
        (["--log-level", "mount", "status"], False),  # "mount" is the option's value there
        (["--version"], False),
        ([], False),
    ],
)
def test_only_a_mount_runs_itself_on_the_c_allocator(argv: list[str], mounts: bool) -> None:
    from fusestore.cli.process import is_mount

    assert is_mount(argv) is mounts


def test_a_pythonmalloc_the_user_set_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from fusestore.cli import process

    calls: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr(process.os, "execve", lambda path, argv, env: calls.append((path, argv, env)))
    monkeypatch.setattr(process.sys, "argv", ["/usr/bin/fusestore", "mount", "s3://b", "/mnt"])
    monkeypatch.setenv("PYTHONMALLOC", "pymalloc")
    process.run_on_c_allocator()
    assert calls == []
    monkeypatch.delenv("PYTHONMALLOC")
    process.run_on_c_allocator()
    ((path, argv, env),) = calls
    assert path == sys.executable
    assert argv == [sys.executable, "-P", "/usr/bin/fusestore", "mount", "s3://b", "/mnt"]
    assert env["PYTHONMALLOC"] == "malloc"


def test_a_mount_collects_cycles_lazily() -> None:
    import gc

    from fusestore.cli.process import setup_daemon_process

    before = gc.get_threshold()
    try:
        setup_daemon_process()
        assert gc.get_threshold() == (50_000, *before[1:])
    finally:
        gc.set_threshold(*before)


_PART_BUFFERS = """
import os, sys, threading
from fusestore.cli import process
process.setup_daemon_process()

def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) // 1024

kept = []

def upload_worker():
    for _ in range(40):
        part = os.urandom(8 << 20)  # a part read from the cache file
        body = part + b"-"  # the SDK's copy of it
        kept.append(bytearray(200))  # something small allocated meanwhile, that stays
        del part, body

before = rss()
workers = [threading.Thread(target=upload_worker) for _ in range(4)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
print(rss() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_mounts_freed_part_buffers_go_back_to_the_system() -> None:
    """Upload workers allocate and free a part's buffers (8 MiB, and the SDK's copies)
    in their own threads: glibc's allocator, after the first such buffer is freed, serves
    the next from its heaps (its dynamic mmap threshold) and kept about 70 MiB of them
    here, by fragmentation (gs:// writing 1 GiB: 225 MiB of RSS against 61 idle)."""
    env = {**os.environ, "PYTHONMALLOC": "malloc"}
    grown = subprocess.run(
        [sys.executable, "-c", _PART_BUFFERS], env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert int(grown) < 16, f"{grown.strip()} MiB kept after the buffers were freed"


_READ_REPLIES = """
import os, resource
from fusestore.cli import process
process.setup_daemon_process()
kept = []
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    reply = os.urandom(1 << 20)  # a 1 MiB read's reply, read from the cache file
    kept.append(bytearray(64))
    del reply
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_mounts_heap_keeps_the_room_of_its_1_mib_buffers() -> None:
    """A cold read makes and frees a 1 MiB buffer per kernel request: the heap keeps that
    room for the next one rather than giving it back and faulting it in again (with the
    mmap threshold fixed, glibc's trim threshold stays at 128 KiB unless set)."""
    env = {**os.environ, "PYTHONMALLOC": "malloc"}
    faults = subprocess.run(
        [sys.executable, "-c", _READ_REPLIES], env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert int(faults) < 5000, f"{faults.strip()} page faults for 200 buffers of 1 MiB"


@pytest.mark.parametrize(
    ("url", "sdk", "extra"),
    [("az://container", "azure.storage.blob", "azure"), ("gs://bucket", "google.cloud.storage", "gcs")],
)
def test_a_store_whose_sdk_is_not_installed_says_which_extra_to_install(
    url: str, sdk: str, extra: str, tmp_path: Path
) -> None:
    """As on a machine with the core install only: the SDK cannot be imported."""
    blocked = f"import sys; sys.modules[{sdk!r}] = None; from fusestore.cli import run; run()"
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    for args in (["check", url], ["mount", url, str(mountpoint)]):
        result = subprocess.run(
            [sys.executable, "-c", blocked, *args], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"fusestore: error: {url.split(':')[0]}:// needs "
            + ("the Azure Blob Storage SDK" if extra == "azure" else "the Google Cloud Storage SDK")
            + f", which is not installed: pip install 'fusestore[{extra}]'"
        ]
    listed = subprocess.run(
        [sys.executable, "-c", blocked, "stores"], capture_output=True, text=True, timeout=60
    )
    assert f"pip install 'fusestore[{extra}]'" in listed.stdout
