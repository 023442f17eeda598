"""Commands that talk to running daemons: `status`, `flush`, `umount`.

They find a mount's daemon through its registry entry and reach it over the control
socket (see `fusestore.service.control`), which only the user who mounted and root may use.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..cache import inspector
from ..cache.layout import cache_name, default_cache_root
from ..service import mounts
from ..service.control import ControlClient, ControlError, ControlTimeout, ControlUntrusted
from .common import Progress, daemon_of, fail, mountpoint_from, registered, size_text

#: files of lost+found named one by one (a rebuilt index can put thousands there)
LOST_LISTED = 20
#: conflict copies and pinned paths named one by one in the text `status`
SHOWN = 5


@click.command("status")
@click.argument("mountpoint", required=False, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object per mount, in a list.")
@click.option(
    "--watch",
    is_flag=True,
    help="Show it again every --interval until Ctrl-C: a live view on a terminal (rates, dirty "
    "data and cache as bars, uploads in flight, recent failures and conflicts); else one line per "
    "mount per interval, and one per new failure or conflict.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="Seconds between two views of --watch.",
)
def status_command(mountpoint: str | None, as_json: bool, watch: bool, interval: float) -> None:
    """Show each mount (or MOUNTPOINT): store, dirty data, uploads, cache, requests.

    \b
    Examples:
      fusestore status
      fusestore status /mnt/photos --json
      fusestore status --watch
    """
    if watch and as_json:
        fail("--watch and --json do not go together (poll `status --json` instead)")
    point = os.path.realpath(mountpoint) if mountpoint else None
    client = daemon_of(point)[1] if point else None  # exit 2 now when no daemon serves it
    if watch:
        from .watch import watch as watch_statuses  # rich: only for --watch

        # A daemon gone meanwhile is a line of the view, not the end of it.
        watch_statuses(lambda: _statuses(point, client, strict=False), interval, sys.stdout)
        return
    results = _statuses(point, client)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    if not results:
        click.echo("no fusestore mounts")
    for status in results:
        click.echo(_render(status))


def _statuses(
    point: str | None, client: ControlClient | None, *, strict: bool = True
) -> list[dict[str, Any]]:
    """The status answer of `point`'s daemon (through `client`; exit 2 when it fails, or
    an error entry unless `strict`), or of every mount of this machine (an error entry for
    each that does not answer)."""
    if point is not None and client is not None:
        try:
            return [client.call("status")]
        except ControlError as exc:
            if not strict:
                return [{"mountpoint": point, "error": str(exc)}]
            fail(f"{point}: {exc}")
    results: list[dict[str, Any]] = []
    for each in mounts.fusestore_mounts():
        entry = registered(each)
        if not entry or not entry.get("control"):
            results.append({"mountpoint": each, "error": "no daemon of yours serves it"})
            continue
        try:
            results.append(ControlClient(entry["control"]).call("status"))
        except ControlError as exc:
            results.append({"mountpoint": each, "error": str(exc)})
    return results


def _render(s: dict[str, Any]) -> str:
    if "error" in s:
        return f"{s['mountpoint']}: {s['error']}"
    age = s.get("oldest_dirty_age")
    links = s.get("links", [])
    # The daemon sends at most 100 copies; the total counts them all (older daemons: the list).
    copies = s.get("conflict_copies_total", len(s.get("conflict_copies", [])))
    lines = [
        f"{s['mountpoint']}  ←  {s['store']}   (pid {s['pid']}, {s['state']}"
        f"{', read-only' if s.get('read_only') else ''})",
        f"  store:      {'answers' if s['store_online'] else 'DOES NOT ANSWER'}",
        f"  dirty:      {s['dirty_items']} item(s), {size_text(s['dirty_bytes'])}"
        + (f", oldest {age:.0f}s" if age is not None else "")
        + f"  (limit {size_text(s['dirty_limit'])})"
        + (
            f"; {s['not_uploadable']} NOT UPLOADABLE (the store refuses the name: rename it)"
            if s.get("not_uploadable")
            else ""
        ),
        f"  uploads:    {s['uploads_in_flight']} in flight, {s['deletes_pending']} delete(s) pending, "
        f"{s['failed_attempts']} failed attempt(s)",
        f"  conflicts:  {s.get('conflicts', 0)} here (another client changed a file first: both versions "
        f"kept); {copies} conflict cop(ies) listed"
        + _some(s.get("conflict_copies", []), copies, "fusestore status --json lists 100"),
        f"  conditions: {s.get('conditional_writes', '?')}",
        f"  cache:      {size_text(s['cache_used'])} of {size_text(s['cache_limit'])} in {s['cache_dir']}",
        "  links:      "
        + ("\n              ".join(f"{link['path']}  ←  {link['store']}" for link in links) or "none"),
        f"  pinned:     {size_text(s.get('pinned_bytes', 0))} under {len(s.get('pinned', []))} path(s)"
        + _some(s.get("pinned", []), len(s.get("pinned", [])), "fusestore status --json lists them all"),
        "  requests:   " + (", ".join(f"{k} {v}" for k, v in s["requests"].items()) or "none"),
    ]
    return "\n".join(lines)


def _some(paths: list[str], total: int, where_all: str) -> str:
    """The first few of `total` paths, one per line, and how many more there are."""
    shown = paths[:SHOWN]
    more = f"\n              … and {total - len(shown)} more ({where_all})" if total > len(shown) else ""
    return "".join(f"\n              {path}" for path in shown) + more


@click.command("flush")
@click.argument("mountpoint", required=False, type=click.Path())
@click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), help="Take MOUNTPOINT from this file."
)
@click.option(
    "--timeout", type=click.FloatRange(min=0), default=None, help="Give up after this many seconds (exit 1)."
)
def flush_command(mountpoint: str | None, config_file: str | None, timeout: float | None) -> None:
    """Upload every change of a live mount now, showing progress; exit 0 once the store
    holds every change, 1 when some cannot be uploaded (a name the store refuses)."""
    point = mountpoint_from(mountpoint, config_file)
    _entry, client = daemon_of(point)
    client.timeout = timeout
    progress = Progress("flushing")
    try:
        client.flush(progress.update)
    except ControlTimeout:
        click.echo(f"fusestore: not everything is uploaded after {timeout:g}s; uploads go on", err=True)
        sys.exit(1)
    except ControlUntrusted as exc:
        fail(str(exc))
    except ControlError as exc:
        click.echo(f"fusestore: {point}: {exc}", err=True)
        sys.exit(1)
    finally:
        progress.done()
    click.echo(f"fusestore: {point}: the store holds every change", err=True)


@click.command("umount")
@click.argument("mountpoint", required=False, type=click.Path())
@click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), help="Take MOUNTPOINT from this file."
)
@click.option(
    "--no-wait",
    is_flag=True,
    help="Detach the mount now (lazily) and return; the daemon uploads the rest, then exits.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Give up waiting after this many seconds (the daemon keeps syncing).",
)
def umount_command(
    mountpoint: str | None, config_file: str | None, no_wait: bool, timeout: float | None
) -> None:
    """Upload every change with a progress bar, then unmount MOUNTPOINT."""
    point = mountpoint_from(mountpoint, config_file)
    entry = registered(point)
    pid = entry.get("pid") if entry else None
    ours = mounts.mount_type(point) == "fuse.fusestore"  # never detach another file system
    if not ours and entry and entry.get("exit_code") == 0 and not mounts.is_mounted(point):
        # Its daemon already synced and exited (fusermount3 -u, a signal): nothing to do,
        # which is what a service's ExecStop must hear.
        click.echo(f"fusestore: {point} is already unmounted; the store holds every change", err=True)
        return
    if not pid or not mounts.process_alive(pid) or not ours:
        if ours:
            store_url = (entry or {}).get("store") or mounts.mount_source(point)
            mounts.lazy_unmount(point)
            head = f"fusestore: {point} unmounted; its daemon had died"
            sys.exit(left_behind(point, store_url, (entry or {}).get("cache"), head))
        fail(f"{point} is not a fusestore mount")
    if no_wait:
        mounts.lazy_unmount(point)
        click.echo(
            f"fusestore: {point} detached; the daemon (pid {pid}) uploads the rest, then exits", err=True
        )
        return
    assert entry is not None
    started = time.monotonic()
    followed = False
    if entry.get("control"):
        progress = Progress("uploading before unmounting")
        try:
            ControlClient(entry["control"], timeout=timeout).follow("unmount", progress.update)
            followed = True
        except ControlTimeout:
            fail(f"still syncing after {timeout:g}s; the daemon (pid {pid}) carries on")
        except ControlUntrusted as exc:
            fail(str(exc))  # never a signal to a pid such a socket's registry names
        except ControlError:
            pass  # an older daemon, or it is going already: the signal below says the same
        finally:
            progress.done()
    if not followed:
        os.kill(pid, signal.SIGTERM)
        click.echo(f"fusestore: uploading pending changes of {point}, then unmounting…", err=True)
    left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
    if not mounts.wait_exit(pid, left):
        fail(f"still syncing after {timeout:g}s; the daemon (pid {pid}) carries on")
    result = (registered(point) or {}).get("exit_code")
    if result not in (0, None):
        head = f"fusestore: {point} unmounted, but not everything is in the store"
        sys.exit(left_behind(point, entry.get("store"), entry.get("cache"), head) or 1)
    click.echo(f"fusestore: {point} unmounted; the store holds every change", err=True)


def left_behind(point: str, store_url: str | None, cache: str | None, head: str) -> int:
    """After a mount ended without its daemon uploading everything (it died, or the store
    did not take it all): what its cache still has to upload, and the command that uploads
    it, and the files its lost+found holds. The exit code: 0 only when the cache says the
    store holds every change and lost+found is empty, else 1 (as for a daemon that could
    not upload)."""
    if cache is None and store_url:
        cache = str(default_cache_root() / cache_name(store_url))  # the registry entry is gone
    try:
        info = inspector.describe(cache) if cache else None
    except inspector.CacheError as exc:
        click.echo(f"{head}, and its cache cannot be read ({exc})", err=True)
        info = None
    if info is not None and info.pending is False:
        if not info.lost_files:
            click.echo(f"{head}; the store holds every change", err=True)
            return 0
        click.echo(f"{head}: nothing its journal names is pending, but lost+found is not empty", err=True)
        _lost_found(info.path)
        return 1
    if info is None:
        click.echo(
            f"{head}; whatever it had not uploaded is in its cache and goes up at the next mount "
            "of the same store with the same cache",
            err=True,
        )
        return 1
    what = (
        f"{info.pending_files} file(s) ({size_text(info.dirty_bytes or 0)}), "
        f"{info.pending_dirs} director(ies), {info.pending_deletes} delete(s)"
        if info.pending
        else f"unknown ({info.pending_error})"
    )
    command = ["fusestore", "mount", info.store_url or store_url or "URL", point]
    if info.store_url is None or info.path != default_cache_root() / cache_name(info.store_url):
        command += ["--cache-dir", str(info.path)]
    click.echo(
        f"{head} with changes not yet in the store: {what}. They are kept in its cache and go up at "
        f"the next mount of the same store with that cache:\n  {shlex.join(command)}\n"
        f"Details: fusestore cache show {shlex.quote(str(info.path))}",
        err=True,
    )
    if info.not_uploadable:
        with contextlib.suppress(inspector.CacheError):
            for item in inspector.pending_items(info.path):
                if item.not_uploadable is not None:
                    click.echo(f"Not uploadable: {item.key!r}: {item.not_uploadable} (rename it)", err=True)
    if info.lost_files:
        _lost_found(info.path)
    return 1


def _lost_found(cache: Path) -> None:
    """Name the files the lost+found of `cache` holds (not in the store), and the command
    that copies them out."""
    with contextlib.suppress(inspector.CacheError):
        entries = inspector.lost_entries(cache)
        click.echo(
            f"{len(entries)} file(s) that may hold changes are NOT in the store, kept in "
            f"{cache / 'lost+found'}; `fusestore cache recover {shlex.quote(str(cache))} DIR` "
            "copies them into DIR (a folder of the mount works too):",
            err=True,
        )
        for entry in entries[:LOST_LISTED]:
            click.echo(f"  lost: {entry.key or entry.name!r} ({entry.reason})", err=True)
        if len(entries) > LOST_LISTED:
            click.echo(
                f"  … and {len(entries) - LOST_LISTED} more: fusestore cache show {shlex.quote(str(cache))}",
                err=True,
            )
