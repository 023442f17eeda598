"""`fusestore man`: the manual page, fusestore(1), written from the commands themselves.

Every command, its usage line, its help and its options come from click's own
declarations (the same text `--help` prints), so the page cannot fall behind the command
line. The output is troff for the `man` macros: `fusestore man > fusestore.1`, or
`fusestore man | man -l -` to read it.
"""

from __future__ import annotations

import datetime
import inspect
from collections.abc import Iterator

import click

from .. import __version__


def escape(text: str) -> str:
    """`text` safe in troff: backslashes and hyphens as troff writes them, and a line
    starting with a control character kept as text."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    text = "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in text)  # troff reads ASCII
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.split("\n"))


def _paragraphs(help_text: str) -> list[str]:
    """Help text as troff paragraphs; click's `\\b` (keep as written) blocks stay unfilled."""
    out: list[str] = []
    for block in inspect.cleandoc(help_text).split("\n\n"):
        if block.startswith("\b"):
            out.append(".nf\n" + escape(block.removeprefix("\b").strip("\n")) + "\n.fi")
        else:
            out.append(".PP\n" + escape(" ".join(block.split())))
    return out


def _summary(help_text: str) -> str:
    """The help's first sentence as the NAME line's description: `mount an object store ...`."""
    first = inspect.cleandoc(help_text).split("\n\n")[0].split(". ")[0]
    first = " ".join(first.split()).rstrip(".")
    return first[:1].lower() + first[1:]


def walk(command: click.Command, path: list[str]) -> Iterator[tuple[list[str], click.Command]]:
    """Every command below `command` (itself first), with its words after `fusestore`."""
    yield path, command
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            sub = command.commands[name]
            if not sub.hidden:
                yield from walk(sub, [*path, name])


def _options(command: click.Command, ctx: click.Context) -> list[str]:
    lines: list[str] = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        lines += [".TP", f"\\fB{escape(names)}\\fR", escape(" ".join(help_text.split())) or "\\&"]
    return lines


def _section(words: list[str], command: click.Command, parent: click.Context) -> list[str]:
    ctx = click.Context(command, info_name=words[-1], parent=parent)
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines = [
        f'.SS "fusestore {escape(" ".join(words))}"',
        f"\\fBfusestore {escape(' '.join(words))}\\fR {escape(usage)}",
    ]
    lines += _paragraphs(command.help or "")
    lines += _options(command, ctx)
    return lines


def render(group: click.Group, today: datetime.date | None = None) -> str:
    """fusestore(1) for the command group `group` (the `fusestore` command)."""
    date = (today or datetime.date.today()).isoformat()
    root = click.Context(group, info_name="fusestore")
    lines = [
        f'.TH FUSESTORE 1 "{date}" "fusestore {escape(__version__)}" "User Commands"',
        ".SH NAME",
        "fusestore \\- " + escape(_summary(group.help or "")),
        ".SH SYNOPSIS",
        "\\fBfusestore\\fR [\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
        ".br",
        "\\fBmount \\-t fusestore\\fR \\fISTORE\\-URL\\fR \\fIMOUNTPOINT\\fR [\\fB\\-o\\fR \\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        *_paragraphs(group.help or ""),
        ".SH OPTIONS",
        *_options(group, root),
        ".SH COMMANDS",
    ]
    for words, command in walk(group, []):
        if words:
            lines += _section(words, command, root)
    lines += [
        ".SH MOUNT HELPER",
        ".PP",
        escape(
            "mount(8) runs /sbin/mount.fusestore for `mount -t fusestore` and for fstab lines of type "
            "fusestore; `fusestore install-helper` (as root) puts it there. It turns mount(8)'s "
            "arguments into `fusestore mount --background STORE-URL MOUNTPOINT -o OPTIONS` and returns "
            "once the mount is ready."
        ),
        ".SH EXIT STATUS",
        ".PP",
        escape(
            "0: done (for mount and umount: the store holds every change); 1: some changes are not in "
            "the store yet (they go up at the next mount of the same store and cache); 2: bad input "
            "or setup, with one line on stderr naming the problem and the fix."
        ),
        ".SH SEE ALSO",
        "\\fBmount\\fR(8), \\fBfstab\\fR(5), \\fBumount\\fR(8), \\fBfusermount3\\fR(1)",
    ]
    return "\n".join(lines) + "\n"


@click.command("man")
@click.pass_context
def man_command(ctx: click.Context) -> None:
    """Print the manual page, fusestore(1), as troff: `fusestore man > fusestore.1`, or
    `fusestore man | man -l -` to read it."""
    group = ctx.find_root().command
    assert isinstance(group, click.Group)
    click.echo(render(group), nl=False)
