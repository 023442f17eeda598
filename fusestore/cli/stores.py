"""`fusestore stores` and `check`: which store URLs this installation opens, and whether
one answers."""

from __future__ import annotations

import sys

import click

from ..stores import InvalidStoreURL, StoreError, available_schemes, open_store
from ..stores.registry import load_driver
from .common import fail, store_options, with_s3_options


@click.command("stores")
def stores_command() -> None:
    """List the store URL schemes this installation can open, with their options."""
    for scheme, target in available_schemes().items():
        try:
            cls = load_driver(scheme, target)
        except InvalidStoreURL as exc:
            click.echo(f"{scheme}://  (unavailable: {exc})")
            continue
        summary = (sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
        click.echo(summary if summary.startswith("`") else f"{scheme}://  {summary}")
        for name, option in cls.options.items():
            default = "" if option.default is None else f" [default: {option.render(option.default)}]"
            click.echo(f"    {name}: {option.help}{default}")


@click.command("check")
@click.argument("url")
@with_s3_options
def check_command(url: str, endpoint_url: str | None, region: str | None, profile: str | None) -> None:
    """Check that URL's store exists and answers with the credentials at hand.

    \b
    Examples:
      fusestore check s3://my-bucket/photos
      fusestore check s3://demo --endpoint-url http://127.0.0.1:9000
      fusestore check file:///srv/objects
    """
    try:
        store = open_store(url, **store_options(endpoint_url, region, profile))
        store.probe()
    except (InvalidStoreURL, StoreError) as exc:
        fail(str(exc))
    click.echo(f"ok: {store.to_url()} answers")
    store.close()
