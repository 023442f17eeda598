"""The command line as a user meets it: exit codes and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

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
        "known schemes: file://, memory://, s3://"
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
