"""Small helpers for the driver tests."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fusestore.stores import Store


def populate(store: Store, keys: list[str], body: bytes = b"x") -> None:
    """Put every key, eight at a time (stores are thread-safe)."""
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: store.put(k, body), keys))


def all_keys(store: Store, prefix: str = "", delimiter: str | None = None) -> list[str]:
    """Every key under `prefix`, through as many listing pages as it takes."""
    return [o.key for o in store.iter_objects(prefix, delimiter)]


def all_entries(store: Store, prefix: str = "", max_keys: int = 1000) -> tuple[list[str], list[str]]:
    """(object keys, common prefixes) of a delimited listing, page after page."""
    keys: list[str] = []
    prefixes: list[str] = []
    token = None
    while True:
        page = store.list(prefix, "/", token, max_keys)
        keys += [o.key for o in page.objects]
        prefixes += page.prefixes
        if page.next_token is None:
            return keys, prefixes
        token = page.next_token
