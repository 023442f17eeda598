"""Logging setup: one line per event on stderr, in the form journald understands when
the daemon runs under systemd (a `<priority>` prefix instead of the level name, no time:
journald stamps each line itself), else with the line's ISO-8601 time and level name;
or, with `--log-file`, appended to a file (timed the same way) that logrotate may move
away at any time. botocore's own chatter is left out: fusestore's loggers alone take the
level asked for."""

from __future__ import annotations

import logging
import logging.handlers
import os
from datetime import datetime

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


class TimedFormatter(logging.Formatter):
    """`2026-12-07T01:10:35.123+00:00 WARNING fusestore.writeback.flusher: message`: the
    local time with its UTC offset, to the millisecond (ISO 8601)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")


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
        handler.setFormatter(TimedFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("fusestore").setLevel(level.upper())


def log_to_file(path: str) -> None:
    """Send the log to `path` from now on (appended; created 0600 by the daemon's umask
    when it is made anew). The file is opened here, so a path that cannot be written
    raises OSError before anything is mounted. A `WatchedFileHandler`: before each line
    it checks that `path` is still the file it holds, and opens `path` anew when it is
    not (logrotate moved or removed it), so no signal is needed; the line that notices
    goes to the new file."""
    handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
    handler.setFormatter(TimedFormatter())
    logging.getLogger().handlers[:] = [handler]


def _file_handlers() -> list[logging.handlers.WatchedFileHandler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, logging.handlers.WatchedFileHandler)]


def logging_to_file() -> bool:
    return bool(_file_handlers())


def reopen_log_file() -> None:
    """Open the log file's path anew now (SIGHUP, as logrotate's `postrotate` sends it),
    whether or not it moved. Blocks for an open() under the handler's lock."""
    for handler in _file_handlers():
        handler.acquire()
        try:
            if handler.stream is not None:
                handler.stream.close()
            handler.stream = handler._open()
            handler._statstream()  # what the next line compares the path with
        finally:
            handler.release()


def detach_output() -> None:
    """A background daemon lets go of the terminal or pipe that started it (or whoever
    reads that pipe would wait for it forever): stdout and stderr go to /dev/null, and
    the log to syslog where there is one, unless it goes to a `--log-file`. Under
    journald stderr is the journal: kept."""
    if under_journald():
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    if logging_to_file():
        return
    if os.path.exists("/dev/log"):
        try:
            handler = logging.handlers.SysLogHandler(address="/dev/log")
        except OSError:
            return
        handler.ident = "fusestore: "
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logging.getLogger().handlers[:] = [handler]
