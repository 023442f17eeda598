"""Listing pages for drivers that enumerate keys themselves (memory, file).

S3 sorts keys by their UTF-8 bytes, rolls keys up into common prefixes at the delimiter
and pages with an opaque continuation token. These helpers give the local drivers the
same behaviour, so the conformance suite holds them all to one rule.
"""

from __future__ import annotations

from collections.abc import Iterable

from .base import ListPage, ObjectInfo

#: A listing item: an object, or a common prefix (a string ending with the delimiter).
Item = ObjectInfo | str


def item_name(item: Item) -> str:
    return item if isinstance(item, str) else item.key


def roll_up(objects: Iterable[ObjectInfo], prefix: str, delimiter: str | None) -> list[Item]:
    """Objects under `prefix`, with those that hold `delimiter` after it rolled up into
    one common prefix each. `objects` must be sorted by key; the result is too."""
    items: list[Item] = []
    last_prefix = None
    for info in objects:
        if not info.key.startswith(prefix):
            continue
        if delimiter:
            cut = info.key.find(delimiter, len(prefix))
            if cut >= 0:
                common = info.key[: cut + len(delimiter)]
                if common != last_prefix:
                    items.append(common)
                    last_prefix = common
                continue
        items.append(info)
    return items


def paginate(items: Iterable[Item], token: str | None, max_keys: int) -> ListPage:
    """The page of sorted `items` that follows `token` (the last name of the page before)."""
    objects: list[ObjectInfo] = []
    prefixes: list[str] = []
    last = None
    more = False
    for item in items:
        name = item_name(item)
        if token is not None and name <= token:
            continue
        if len(objects) + len(prefixes) >= max(1, max_keys):
            more = True
            break
        if isinstance(item, str):
            prefixes.append(item)
        else:
            objects.append(item)
        last = name
    return ListPage(objects, prefixes, last if more else None)
