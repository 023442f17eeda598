"""`fusestore pin` and `unpin`: keep files whole in a live mount's cache for offline work."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import click

from ..core.pinning import key_of
from ..service import mounts
from ..service.control import ControlError
from .common import Progress, daemon_of, fail, size_text


def _mount_of(path: str) -> tuple[str, str]:
    """The fusestore mountpoint holding `path`, and `path` relative to it."""
    full = Path(os.path.abspath(path))
    for candidate in (full, *full.parents):
        if mounts.mount_type(candidate) == "fuse.fusestore":
            return str(candidate), str(full.relative_to(candidate))
    fail(f"{path} is not on a fusestore mount")


class PinProgress(Progress):
    """Files and bytes done of the total, the fetch rate and the time left."""

    def update(self, progress: dict[str, Any]) -> None:
        if progress["files_done"] == progress["files_total"]:
            self.last_print = -float("inf")  # the last line is always shown, terminal or not
        super().update(progress)

    def line(self, progress: dict[str, Any]) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-3)
        fetched = progress["bytes_fetched"]
        rate = fetched / elapsed
        left_bytes = progress["bytes_total"] - progress["bytes_done"]
        eta = f", about {left_bytes / rate:.0f}s left" if rate > 0 and left_bytes > 0 else ""
        return (
            f"{self.verb} {progress['path']}: {progress['files_done']}/{progress['files_total']} files, "
            f"{size_text(progress['bytes_done'])} of {size_text(progress['bytes_total'])}, "
            f"{size_text(rate)}/s{eta}"
        )


@click.command("pin")
@click.argument("path", type=click.Path(exists=True))
def pin_command(path: str) -> None:
    """Fetch PATH (a file, or a folder and everything below it) into the cache and keep it
    there: it stays readable while the store is unreachable. Shows progress; refused up
    front when it would not fit in the cache.

    \b
    Examples:
      fusestore pin /mnt/photos/2026
      fusestore unpin /mnt/photos/2026
    """
    point, relative = _mount_of(path)
    _entry, client = daemon_of(point)
    client.timeout = None
    progress = PinProgress("pinning")
    try:
        final = client.follow("pin", progress.update, path=relative)
    except ControlError as exc:
        progress.done()
        fail(str(exc))
    progress.done()
    if final is None:
        fail(f"the daemon serving {point} stopped before the pin was done")
    result, status = final["pin"], final["status"]
    took = time.monotonic() - progress.started
    click.echo(
        f"pinned {result['path']}: {result['files_done']} file(s), {size_text(result['bytes_total'])} "
        f"({size_text(result['bytes_fetched'])} fetched) in {took:.1f}s; "
        f"{size_text(status['pinned_bytes'])} pinned on {point} in all"
    )
    if result["errors"]:
        for error in result["errors"][:10]:
            click.echo(f"  not fetched: {error}", err=True)
        fail(f"{len(result['errors'])} file(s) could not be fetched; run the pin again to retry them")


@click.command("unpin")
@click.argument("path", type=click.Path())
def unpin_command(path: str) -> None:
    """Let the data under PATH, pinned before, be evicted again (it stays cached until then)."""
    point, relative = _mount_of(path)
    _entry, client = daemon_of(point)
    try:
        final = client.call("unpin", path=relative)
    except ControlError as exc:
        fail(str(exc))
    pinned = size_text(final["status"]["pinned_bytes"])
    click.echo(f"unpinned /{key_of(relative)}; {pinned} pinned on {point} in all")
