"""How conflict copies are named, and how one is recognised in a listing.

When another client changed a file before this mount's change of it went up, theirs stays
at the key and ours goes next to it under a name made from a template (`--conflict-name`,
default `{stem}.conflict-{host}-{time}{ext}`): `report.conflict-hostA-20261130T180509.txt`.
"""

from __future__ import annotations

import re
import socket
import string
import time

DEFAULT_TEMPLATE = "{stem}.conflict-{host}-{time}{ext}"
#: The template's fields: the name without its extension, the extension with its dot (or
#: nothing), this machine's short name, and the UTC time (with `-2`, `-3` … appended when
#: a copy of that name exists already).
FIELDS = ("stem", "ext", "host", "time")
_FIELD_PATTERNS = {
    "stem": ".+",
    "ext": r"(?:\.[^.]+)?",
    "host": "[A-Za-z0-9_-]+",
    "time": r"\d{8}T\d{6}(?:-\d+)?",
}


def host_name() -> str:
    """This machine's short name, as conflict copies are named after it."""
    name = socket.gethostname().split(".")[0]
    return re.sub(r"[^A-Za-z0-9_-]", "-", name) or "host"


def _fields(template: str) -> list[tuple[str, str | None]]:
    try:
        return [(literal, field) for literal, field, _spec, _conv in string.Formatter().parse(template)]
    except ValueError as exc:
        raise ValueError(f"conflict name {template!r}: {exc}") from None


class ConflictNames:
    """The names of this mount's conflict copies (`key`), and whether a name is one (by
    anyone using the same template: `is_copy`). Pure and cheap."""

    def __init__(self, template: str = DEFAULT_TEMPLATE, host: str | None = None) -> None:
        parts = _fields(template)
        used = {field for _literal, field in parts if field is not None}
        unknown = used - set(FIELDS)
        if unknown:
            raise ValueError(
                f"conflict name {template!r}: unknown field(s) {', '.join(sorted(unknown))} "
                f"(use {', '.join('{' + f + '}' for f in FIELDS)})"
            )
        if not {"stem", "time"} <= used:
            raise ValueError(f"conflict name {template!r} must hold {{stem}} and {{time}}")
        if "/" in template:
            raise ValueError(f"conflict name {template!r}: a copy stays in its file's directory (no '/')")
        self.template = template
        self.host = host or host_name()
        pattern = "".join(
            re.escape(literal) + (_FIELD_PATTERNS[field] if field else "") for literal, field in parts
        )
        self._pattern = re.compile(pattern)
        #: a piece every copy's name holds (a cheap test before the pattern's)
        self._hint = max((literal for literal, _field in parts), key=len)

    def key(self, key: str, when: float, attempt: int = 1) -> str:
        """Where our version of `key` goes (next to it) when another client changed `key`
        since we read it; `attempt` > 1 when the names before were taken."""
        head, _, name = key.rpartition("/")
        stem, dot, ext = name.rpartition(".")
        if not stem:  # no extension, or a dotfile such as .bashrc
            stem, dot, ext = name, "", ""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(when))
        if attempt > 1:
            stamp += f"-{attempt}"
        named = self.template.format(stem=stem, ext=dot + ext, host=self.host, time=stamp)
        return f"{head}/{named}" if head else named

    def is_copy(self, name: str) -> bool:
        """Whether `name` (one path component) is a conflict copy's."""
        return self._hint in name and self._pattern.fullmatch(name) is not None
