"""What several command groups share: the one-line error convention, the S3 options,
sizes and progress lines, and finding the live daemon that serves a mount.

Every command module imports this one; it imports none of them.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, NoReturn

import click

from ..mountoptions import BY_NAME
from ..private import UnsafeDirectory
from ..service import mounts
from ..service.control import ControlClient


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit 2: the convention for every bad input."""
    click.echo(f"fusestore: error: {message}", err=True)
    sys.exit(2)


def store_options(endpoint_url: str | None, region: str | None, profile: str | None) -> dict[str, Any]:
    """The S3 command-line options that were given, as driver options."""
    given = {"endpoint_url": endpoint_url, "region": region, "profile": profile}
    return {name: value for name, value in given.items() if value is not None}


s3_options = [BY_NAME[name].click_option() for name in ("endpoint_url", "region", "profile")]


def with_s3_options(func: Any) -> Any:
    for option in reversed(s3_options):
        func = option(func)
    return func


def size_text(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class Progress:
    """One line on stderr, redrawn in place on a terminal (one line per few seconds
    otherwise): items and bytes left, and the upload rate."""

    def __init__(self, verb: str) -> None:
        self.verb = verb
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.first_uploaded: int | None = None
        self.last_print = 0.0
        self.width = 0

    def line(self, progress: dict[str, Any]) -> str:
        uploaded = progress.get("uploaded_bytes", 0)
        if self.first_uploaded is None:
            self.first_uploaded = uploaded
        elapsed = max(time.monotonic() - self.started, 1e-3)
        rate = (uploaded - self.first_uploaded) / elapsed
        offline = "" if progress.get("store_online", True) else "  (the store does not answer; waiting)"
        return (
            f"{self.verb}: {progress['dirty_items']} item(s), {size_text(progress['dirty_bytes'])} left"
            f"  {size_text(rate)}/s{offline}"
        )

    def update(self, progress: dict[str, Any]) -> None:
        line = self.line(progress)
        now = time.monotonic()
        if self.tty:
            click.echo("\r" + line.ljust(self.width), nl=False, err=True)
            self.width = len(line)
        elif now - self.last_print >= 2.0:
            click.echo(line, err=True)
            self.last_print = now

    def done(self) -> None:
        if self.tty and self.width:
            click.echo(err=True)


def mountpoint_from(mountpoint: str | None, config_file: str | None) -> str:
    """MOUNTPOINT as given, else the `mountpoint` of `--config FILE`; a one-line error
    (exit 2) when neither names one."""
    if mountpoint:
        return os.path.realpath(mountpoint)
    if config_file:
        from .. import config

        try:
            value = config.load_file(config_file).get("mountpoint")
        except config.ConfigError as exc:
            fail(str(exc))
        if value:
            return os.path.realpath(str(value))
        fail(f"config file {config_file} names no mountpoint")
    fail("which mount? give MOUNTPOINT (or --config FILE)")


def registered(mountpoint: str) -> dict[str, Any] | None:
    """The registry entry of `mountpoint`; a one-line error (exit 2) when the runtime
    directory holding it is not private to this user (another user could have written it)."""
    try:
        return mounts.registered(mountpoint)
    except UnsafeDirectory as exc:
        fail(str(exc))


def daemon_of(mountpoint: str) -> tuple[dict[str, Any], ControlClient]:
    """The registry entry and a control client of the live daemon serving `mountpoint`;
    a one-line error (exit 2) when it is not a fusestore mount or no daemon of this user's
    serves it."""
    entry = registered(mountpoint)
    if mounts.mount_type(mountpoint) != "fuse.fusestore":
        fail(f"{mountpoint} is not a fusestore mount")
    if (
        not entry
        or not entry.get("pid")
        or not mounts.process_alive(entry["pid"])
        or not entry.get("control")
    ):
        fail(f"no daemon of yours serves {mountpoint} (mounted by another user, or its daemon died)")
    return entry, ControlClient(entry["control"])
