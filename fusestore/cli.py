"""The `fusestore` command line."""

from __future__ import annotations

import logging
import sys
from typing import Any, NoReturn

import click

from . import __version__
from .stores import InvalidStoreURL, StoreError, available_schemes, open_store
from .stores.registry import load_driver

LOG_LEVELS = ["debug", "info", "warning", "error"]


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit 2: the convention for every bad input."""
    click.echo(f"fusestore: error: {message}", err=True)
    sys.exit(2)


def store_options(endpoint_url: str | None, region: str | None, profile: str | None) -> dict[str, Any]:
    """The S3 command-line options that were given, as driver options."""
    given = {"endpoint_url": endpoint_url, "region": region, "profile": profile}
    return {name: value for name, value in given.items() if value is not None}


s3_options = [
    click.option("--endpoint-url", help="S3 endpoint of a non-AWS server (MinIO, Ceph, SeaweedFS)."),
    click.option("--region", help="S3 region (default: from the AWS config, else us-east-1)."),
    click.option("--profile", help="Profile in ~/.aws/config and ~/.aws/credentials."),
]


def with_s3_options(func: Any) -> Any:
    for option in reversed(s3_options):
        func = option(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fusestore")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="warning",
    envvar="FUSESTORE_LOG_LEVEL",
    show_default=True,
    help="How much to log (to stderr).",
)
def main(log_level: str) -> None:
    """Mount an object store (S3, MinIO, Ceph, SeaweedFS, a directory) as a directory."""
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")


@main.command("stores")
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


@main.command("check")
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
