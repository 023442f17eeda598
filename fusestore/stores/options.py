"""Driver options: declared once per driver, parsed from URL queries or keyword arguments.

A store's configuration round-trips through its URL: `store.to_url()` writes every option
that differs from its default into the query string, and `open_store(url)` reads it back.
Secrets never go into options; credentials come from the backend's own chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from .errors import InvalidStoreURL

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Option:
    """One driver option: its type, default and a one-line description for --help."""

    type: type
    default: Any
    help: str

    def parse(self, name: str, value: Any) -> Any:
        """`value` (a URL string or a Python value) converted to the option's type."""
        if value is None:
            return None
        if self.type is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise InvalidStoreURL(f"option {name}={value!r} is not a yes/no value")
        try:
            parsed = self.type(value)
        except (TypeError, ValueError):
            noun = getattr(self.type, "noun", self.type.__name__)
            raise InvalidStoreURL(f"option {name}={value!r} is not a valid {noun}") from None
        if self.type in (int, float) and parsed < 0:
            raise InvalidStoreURL(f"option {name}={value!r} must not be negative")
        return parsed

    def render(self, value: Any) -> str:
        if self.type is bool:
            return "true" if value else "false"
        return str(value)


def parse_options(scheme: str, declared: Mapping[str, Option], given: Mapping[str, Any]) -> dict[str, Any]:
    """All declared options, from `given` where present, else their defaults.

    Names may use dashes or underscores (`endpoint-url` = `endpoint_url`); an unknown name
    is an error that lists the known ones.
    """
    values = {name: opt.default for name, opt in declared.items()}
    for raw_name, value in given.items():
        name = raw_name.replace("-", "_")
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise InvalidStoreURL(f"unknown option {raw_name!r} for {scheme}:// stores (known: {known})")
        values[name] = declared[name].parse(name, value)
    return values


def options_query(declared: Mapping[str, Option], values: Mapping[str, Any]) -> str:
    """The query string (without `?`) holding every option that differs from its default."""
    items = [
        (name, opt.render(values[name]))
        for name, opt in declared.items()
        if values.get(name) is not None and values[name] != opt.default
    ]
    return urlencode(items)
