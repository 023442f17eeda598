"""Logging setup: one line per event on stderr, in the form journald understands when
the daemon runs under systemd (a `<priority>` prefix instead of the level name), with
botocore's request-level chatter left out unless asked for at DEBUG."""

from __future__ import annotations

import logging
import logging.handlers
import os

#: syslog priorities of logging's levels (sd-daemon(3) prefixes)
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    """`<4>fusestore.writeback.flusher: message`: journald takes the priority from the prefix and
    adds its own timestamps."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6)
        text = (
            super().format(record).replace("\n", "\n" + f"<{priority}>")
        )  # tracebacks stay one entry each line
        return f"<{priority}>{text}"


def under_journald() -> bool:
    """Whether stderr is connected to the journal (systemd sets JOURNAL_STREAM=dev:inode)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in stream.split(":"))
        info = os.fstat(2)
    except (ValueError, OSError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


def setup(level: str) -> None:
    """Configure the root handler once; `level` applies to fusestore's own loggers."""
    handler = logging.StreamHandler()
    if under_journald():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("fusestore").setLevel(level.upper())


def detach_output() -> None:
    """A background daemon lets go of the terminal or pipe that started it (or whoever
    reads that pipe would wait for it forever): stdout and stderr go to /dev/null, and
    the log to syslog where there is one. Under journald stderr is the journal: kept."""
    if under_journald():
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    if os.path.exists("/dev/log"):
        try:
            handler = logging.handlers.SysLogHandler(address="/dev/log")
        except OSError:
            return
        handler.ident = "fusestore: "
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logging.getLogger().handlers[:] = [handler]
