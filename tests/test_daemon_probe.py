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


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_driver_bug_at_the_probe_is_one_line_and_the_traceback_is_logged(tmp_path: Path) -> None:
    daemon = Daemon(BrokenDriver(), str(tmp_path / "mnt"), MountSettings(), str(tmp_path / "cache"))
    # The daemon's own logger, whatever earlier tests made of the logging setup.
    logger, kept = logging.getLogger("fusestore.service.daemon"), Kept()
    saved = (logger.level, logger.disabled)
    logger.addHandler(kept)
    logger.setLevel(logging.DEBUG)
    logger.disabled = False
    try:
        with pytest.raises(SetupError) as caught:
            daemon._probe()
    finally:
        logger.removeHandler(kept)
        logger.level, logger.disabled = saved
    message = str(caught.value)
    assert "\n" not in message
    assert "ValueError: Token credential is only supported with HTTPS." in message
    assert any(record.exc_info for record in kept.records), "the traceback goes to the log"
