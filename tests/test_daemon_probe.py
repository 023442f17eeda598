"""The daemon's check of its store before mounting: whatever the driver raises, the user
gets one line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from fusestore.core.settings import MountSettings
from fusestore.service.daemon import Daemon, SetupError
from fusestore.stores.memory import MemoryStore


class BrokenDriver(MemoryStore):
    """A driver with a bug: its listing raises what no driver should."""

    def list(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError("Token credential is only supported with HTTPS.")


def test_a_driver_bug_at_the_probe_is_one_line_and_the_traceback_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = Daemon(BrokenDriver(), str(tmp_path / "mnt"), MountSettings(), str(tmp_path / "cache"))
    with caplog.at_level(logging.DEBUG), pytest.raises(SetupError) as caught:
        daemon._probe()
    message = str(caught.value)
    assert "\n" not in message
    assert "ValueError: Token credential is only supported with HTTPS." in message
    assert any(record.exc_info for record in caplog.records), "the traceback goes to the log"
