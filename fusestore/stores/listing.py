"""Listing pages for drivers that enumerate keys themselves (memory, file).

S3 sorts keys by their UTF-8 bytes, rolls keys up into common prefixes at the delimiter
and pages with an opaque continuation token. These helpers give the local drivers the
same behaviour, so the conformance suite holds them all to one rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

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


#: A key from a sorted source, with what makes it an object for the page: the object's
#: info, or None when it turned out not to be one (removed meanwhile). Keys rolled up
#: into a common prefix are never materialized.
Candidate = tuple[str, Callable[[], ObjectInfo | None]]


def _successor(common: str) -> str | None:
    """The least key that sorts after every key starting with `common`."""
    last = ord(common[-1])
    return None if last >= 0x10FFFF else common[:-1] + chr(last + 1)


def _first_key(prefix: str, delimiter: str | None, token: str | None) -> str:
    """The least key a listing may return after `token` (the last name it returned)."""
    if token is None:
        return prefix
    if delimiter and token.startswith(prefix):
        cut = token.find(delimiter, len(prefix))
        after = _successor(token[: cut + len(delimiter)]) if cut >= 0 else None
        if after is not None:
            return max(prefix, after)  # skip the whole common prefix at once
    return max(prefix, token + "\x00")  # the least string after the token


def page_from(
    seek: Callable[[str], Iterator[Candidate]],
    prefix: str,
    delimiter: str | None,
    token: str | None,
    max_keys: int,
) -> ListPage:
    """The page that follows `token`, from a source that yields its keys in byte order.

    `seek(key)` yields every candidate whose key is at least `key`, in order, lazily: the
    page pulls only the entries it returns plus one look-ahead, and seeks past a common
    prefix instead of reading the keys below it, so a page costs O(page size) when the
    source seeks in O(1) or O(log n).
    """
    limit = max(1, max_keys)
    objects: list[ObjectInfo] = []
    prefixes: list[str] = []
    last: str | None = token
    start: str | None = _first_key(prefix, delimiter, token)
    while start is not None:
        after, start = start, None
        for key, materialize in seek(after):
            if not key.startswith(prefix):
                break  # sorted, and at least `prefix`: past every key under it
            cut = key.find(delimiter, len(prefix)) if delimiter else -1
            if cut >= 0:
                common = key[: cut + len(delimiter or "")]
                if last is not None and common <= last:
                    continue  # the rest of a common prefix already returned
                if len(objects) + len(prefixes) >= limit:
                    return ListPage(objects, prefixes, last)
                prefixes.append(common)
                last = common
                start = _successor(common)
                if start is not None:
                    break  # seek past the keys under it
                continue
            info = materialize()
            if info is None:
                continue
            if len(objects) + len(prefixes) >= limit:
                return ListPage(objects, prefixes, last)
            objects.append(info)
            last = key
    return ListPage(objects, prefixes, None)
