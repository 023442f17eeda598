"""The `fusestore` command group: global options, the one-line error convention for
click's own errors, and every command group's commands registered on it.

Only this module imports the command modules; they import `common` and nothing else here.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import __version__
from ..mountoptions import LOG_LEVELS
from . import cache, control, helper, manpage, mount, pin, stores
from .common import fail


class OneLineErrors(click.Group):
    """click's usage errors as one line (`fusestore: error: …`, exit code 2), like every
    other refusal of bad input, instead of a usage banner."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("standalone_mode", True) is False:
            return super().main(*args, **kwargs)
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.format_message())  # plain `fusestore`: the help, not an error
            sys.exit(0)
        except click.UsageError as exc:
            where = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            fail(f"{exc.format_message()}{where}")
        except click.ClickException as exc:
            fail(exc.format_message())
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
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
    from ..service.logs import setup

    # The level applies to fusestore's own loggers: botocore's debug output is a flood.
    setup(log_level)


for command in (
    stores.stores_command,
    stores.check_command,
    mount.mount_command,
    control.status_command,
    control.flush_command,
    control.umount_command,
    cache.cache_group,
    pin.pin_command,
    pin.unpin_command,
    helper.install_helper_command,
    manpage.man_command,
):
    main.add_command(command)
