"""Linked stores: other stores shown read-only at paths of a mount (`--link /datasets=URL`).

`LinkedStores` wraps the mount's own store and answers for the whole tree. A key under a
link's path is served by the linked store, with the path taken off; every other key by the
mount's own store. Listings of the directories above a link show it, and the mount's own
keys at or under a link's path are hidden while it is linked. Nothing is ever written to a
linked store: writes under a link fail with AccessDenied (the file system refuses them
before that, with EROFS).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .base import ListPage, ObjectInfo, ObjectReader, Store
from .errors import AccessDenied, NotFound
from .wrapper import WrappedStore


@dataclass(frozen=True)
class Link:
    """A store shown at `path` (a key without slashes at either end: `datasets`, `a/b`)."""

    path: str
    store: Store

    @property
    def prefix(self) -> str:
        return self.path + "/"


def parse_link(spec: str) -> tuple[str, str]:
    """`/datasets=s3://bucket/prefix` → (`datasets`, the URL); ValueError saying the form."""
    path, equals, url = spec.partition("=")
    if not equals or "://" not in url:
        raise ValueError(f"a link is PATH=URL, e.g. /datasets=s3://public-bucket/prefix (not {spec!r})")
    return link_path(path), url


def open_linked(url: str, defaults: Mapping[str, Any], main_scheme: str) -> Store:
    """The store to link from `url`, read-only. The mount's own store options
    (`defaults`: endpoint, region, profile) apply to a link of the same scheme unless its
    URL's query sets them."""
    from .registry import available_schemes, load_driver, open_store

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    given = {name.replace("-", "_") for name, _ in parse_qsl(parts.query, keep_blank_values=True)}
    options = {
        name: value
        for name, value in defaults.items()
        if scheme == main_scheme and value is not None and name not in given
    }
    target = available_schemes().get(scheme)
    if target is not None and "read_only" in load_driver(scheme, target).options:
        options["read_only"] = True
    return open_store(url, **options)


def link_path(path: str) -> str:
    """`/datasets/` → `datasets`; ValueError for a path that cannot hold a link."""
    parts = [part for part in path.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise ValueError(f"a link needs a path below the mount root, like /datasets (not {path!r})")
    return "/".join(parts)


class LinkedStores(WrappedStore):
    """The mount's store (`inner`) with other stores linked into its tree. Thread-safe: the
    links are replaced, never changed in place, so a worker thread always routes by one set."""

    def __init__(self, main: Store) -> None:
        super().__init__(main)
        self.links: dict[str, Link] = {}

    @property
    def main(self) -> Store:
        """The mount's own store."""
        return self.inner

    def close(self) -> None:
        self.inner.close()
        for link in self.links.values():
            link.store.close()

    # -- the links ------------------------------------------------------------------------

    def add(self, path: str, store: Store) -> Link:
        """Show `store` at `path`; ValueError when that path is taken or overlaps a link."""
        path = link_path(path)
        for other in self.links:
            if path == other or path.startswith(other + "/") or other.startswith(path + "/"):
                raise ValueError(f"/{path} overlaps the link at /{other}")
        link = Link(path, store)
        self.links = {**self.links, path: link}
        return link

    def remove(self, path: str) -> Link:
        path = link_path(path)
        links = dict(self.links)
        try:
            link = links.pop(path)
        except KeyError:
            raise ValueError(f"nothing is linked at /{path}") from None
        self.links = links
        return link

    def link_of(self, key: str) -> Link | None:
        """The link `key` (a key or a listing prefix) lies in, if any (its path included)."""
        for path, link in self.links.items():
            if key == path or key.startswith(link.prefix):
                return link
        return None

    def _route(self, key: str) -> tuple[Store, str, Link | None]:
        link = self.link_of(key)
        if link is None:
            return self.main, key, None
        return link.store, key[len(link.prefix) :], link

    def check_write(self, keys: Iterable[str]) -> None:
        for key in keys:
            link = self.link_of(key)
            if link is not None:
                raise AccessDenied(f"{key!r} is in the read-only store linked at /{link.path}", key=key)

    @staticmethod
    def _shown(info: ObjectInfo, link: Link) -> ObjectInfo:
        return dataclasses.replace(info, key=link.prefix + info.key)

    # -- reading ------------------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo:
        store, inner, link = self._route(key)
        if link is None:
            return store.head(key)
        if not inner:
            raise NotFound(f"/{link.path} is a linked store, not an object", key=key)
        return self._shown(store.head(inner), link)

    def list(
        self, prefix: str = "", delimiter: str | None = "/", token: str | None = None, max_keys: int = 1000
    ) -> ListPage:
        link = self.link_of(prefix.rstrip("/")) if prefix else None
        if link is not None:
            page = link.store.list(prefix[len(link.prefix) :], delimiter, token, max_keys)
            return ListPage(
                [self._shown(info, link) for info in page.objects],
                [link.prefix + sub for sub in page.prefixes],
                page.next_token,
            )
        page = self.main.list(prefix, delimiter, token, max_keys)
        paths = [path for path in self.links if path.startswith(prefix)]
        if not paths:
            return page
        # Where a link lies below, its first name here is a directory, and the mount's own
        # keys at or under the link's path are hidden.
        dirs = {prefix + path[len(prefix) :].split("/")[0] for path in paths}

        def shown(key: str) -> bool:
            return key not in dirs and not any(key == path or key.startswith(path + "/") for path in paths)

        objects = [info for info in page.objects if shown(info.key)]
        prefixes = [sub for sub in page.prefixes if shown(sub[:-1])]
        if delimiter == "/" and token is None:
            prefixes = sorted({*prefixes, *(path + "/" for path in dirs)})
        return ListPage(objects, prefixes, page.next_token)

    def open_range(
        self, key: str, start: int = 0, length: int | None = None, etag: str | None = None
    ) -> ObjectReader:
        store, inner, _link = self._route(key)
        return store.open_range(inner, start, length, etag)

    def request_counts(self) -> dict[str, int]:
        counts = Counter(self.main.request_counts())
        for link in self.links.values():
            counts.update(link.store.request_counts())
        return dict(counts)
