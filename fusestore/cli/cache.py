"""`fusestore cache list|show|clean`: the caches on this machine (see `fusestore.cache.inspector`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ..cache import inspector
from ..cache.layout import cache_name, default_cache_root
from ..stores import InvalidStoreURL, open_store
from .common import fail, size_text


def _resolve(cache: str) -> Path:
    """A cache given by its directory, or by the store URL it belongs to (default root).

    The URL is normalised as the mount normalises it (the store's own `to_url`: options
    percent-encoded and in one order, no trailing slash), so the URL as typed on the
    command line finds the cache the mount made. One no driver accepts is taken as written.
    """
    if "://" not in cache:
        return Path(cache)
    try:
        url = open_store(cache).to_url()  # touches no network
    except InvalidStoreURL:
        url = cache
    return default_cache_root() / cache_name(url)


def _pending_text(info: inspector.CacheInfo) -> str:
    lost = f"; LOST+FOUND: {info.lost_files} file(s) not in the store" if info.lost_files else ""
    if info.pending is None:
        return f"pending: unknown ({info.pending_error}){lost}"
    if not info.pending:
        return f"nothing pending{lost}"
    refused = (
        f", {info.not_uploadable} NOT UPLOADABLE (the store refuses the name)" if info.not_uploadable else ""
    )
    return (
        f"PENDING: {info.pending_files} file(s), {size_text(info.dirty_bytes or 0)}, "
        f"{info.pending_deletes} delete(s), {info.unfinished_uploads} unfinished upload(s){refused}{lost}"
    )


@click.group("cache")
def cache_group() -> None:
    """The caches on this machine: what they hold, what they still have to upload."""


@cache_group.command("list")
@click.option("--root", type=click.Path(file_okay=False), help="Look here [default: the default cache root].")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per cache, in a list.")
def cache_list(root: str | None, as_json: bool) -> None:
    """Every cache under the default root: store, size, in use or not, pending work."""
    found = inspector.find_caches(Path(root) if root else None)
    if as_json:
        click.echo(json.dumps([info.to_json() for info in found], indent=2))
        return
    if not found:
        click.echo(f"no caches under {root or default_cache_root()}")
    for info in found:
        used = "in use" if info.in_use else "not in use"
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.last_used)) if info.last_used else "never"
        click.echo(
            f"{info.path}\n  {info.store_url}\n  {size_text(info.total_bytes)}, {used}, last used {when}"
        )
        click.echo(f"  {_pending_text(info)}")


@cache_group.command("show")
@click.argument("cache")
@click.option("--json", "as_json", is_flag=True, help="The cache and its pending items as JSON.")
def cache_show(cache: str, as_json: bool) -> None:
    """What CACHE (a directory, or a store URL) still has to upload, item by item."""
    path = _resolve(cache)
    try:
        info = inspector.describe(path)
        # An unreadable journal is shown (with what to do), not an error.
        items = inspector.pending_items(path) if info.pending_error is None else []
        lost = inspector.lost_entries(path)
    except inspector.CacheError as exc:
        fail(str(exc))
    unreadable = info.pending_error is not None
    if as_json:
        click.echo(
            json.dumps(
                {
                    **info.to_json(),
                    "items": [item.to_json() for item in items],
                    "lost_found": [entry.to_json() for entry in lost],
                },
                indent=2,
            )
        )
        return
    click.echo(f"{info.path}  ({info.store_url}, {'in use' if info.in_use else 'not in use'})")
    click.echo(f"  {_pending_text(info)}")
    for item in items:
        size = f"  {size_text(item.dirty_bytes)}" if item.dirty_bytes else ""
        key = item.key if item.key.isprintable() else repr(item.key)  # one line per item
        click.echo(f"  {item.kind:8} {key}{size}  ({item.summary()})")
    if lost:
        click.echo(f"  LOST+FOUND: {len(lost)} file(s) NOT in the store, kept in {info.path / 'lost+found'}:")
        for entry in lost:
            size = "missing" if entry.size is None else size_text(entry.size)
            click.echo(f"  {'lost':8} {entry.key or entry.name}  {size}  ({entry.reason})")
    if unreadable:
        click.echo(
            f"  the journal cannot be read: `fusestore cache recover {info.path} DIR` copies every data "
            "file that may hold changes into DIR"
        )
    elif lost:
        click.echo(f"  `fusestore cache recover {info.path} DIR` copies them into DIR")


@cache_group.command("recover")
@click.argument("cache")
@click.argument("target", type=click.Path(file_okay=False))
def cache_recover(cache: str, target: str) -> None:
    """Copy what CACHE holds that may not be in the store into TARGET (a directory, made if
    missing; a folder of the mount works too): the files of its lost+found, named by their
    keys where known (they then leave lost+found), and, when its journal cannot be read,
    every data file that is not a known copy of an object. Nothing is overwritten."""
    path = _resolve(cache)
    try:
        info = inspector.describe(path)
        done = inspector.recover(path, Path(target))
    except inspector.CacheError as exc:
        fail(str(exc))
    for what, copy in done:
        click.echo(f"recovered {what} -> {copy}")
    click.echo(f"{len(done)} file(s) recovered into {target}")
    if info.pending_error is not None:
        click.echo(
            f"the journal cannot be read ({info.pending_error}): once you have what you need, "
            f"`fusestore cache clean --force {path}` lets the store mount again"
        )


@cache_group.command("clean")
@click.argument("cache", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every cache under the default root that is not in use.")
@click.option("--force", is_flag=True, help="Also remove changes not yet in the store (asks first).")
@click.option("--yes", is_flag=True, help="With --force: do not ask.")
def cache_clean(cache: tuple[str, ...], every: bool, force: bool, yes: bool) -> None:
    """Free space: remove clean cached data of caches not in use, and caches with nothing
    pending. Changes not yet in the store are kept unless --force."""
    if not cache and not every:
        fail("which cache? give CACHE (a directory or a store URL), or --all")
    try:
        targets = inspector.find_caches() if every else [inspector.describe(_resolve(c)) for c in cache]
    except inspector.CacheError as exc:
        fail(str(exc))
    failed = False
    for info in targets:
        if every and info.in_use:
            click.echo(f"{info.path}: in use, skipped")
            continue
        if force and info.pending is not False and not yes:
            click.confirm(
                f"{info.path}: {_pending_text(info)}. Remove it all, for good?", abort=True, err=True
            )
        try:
            result = inspector.clean(info, force=force)
        except inspector.CacheError as exc:
            click.echo(f"fusestore: error: {exc}", err=True)
            failed = True
            continue
        line = f"{info.path}: removed {result.removed_files} file(s), {size_text(result.removed_bytes)}"
        if result.removed_directory:
            line += "; the cache is gone"
        click.echo(line)
        for kept in result.kept:
            click.echo(f"  kept {kept.what}: {kept.files} file(s), {size_text(kept.bytes)} ({kept.why})")
        for lost in result.discarded:
            click.echo(f"  discarded: {lost}")
    if failed:
        raise SystemExit(2)
