"""Opening a store from a URL: built-in drivers by scheme, third-party ones by entry point.

A third-party driver is a `Store` subclass published in the entry-point group
`fusestore.stores` under its URL scheme, e.g. in its pyproject.toml::

    [project.entry-points."fusestore.stores"]
    gcs = "fusestore_gcs:GCSStore"
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .base import Store
from .errors import InvalidStoreURL

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "fusestore.stores"

BUILTIN: dict[str, str] = {
    "s3": "fusestore.stores.s3:S3Store",
    "file": "fusestore.stores.file:FileStore",
    "memory": "fusestore.stores.memory:MemoryStore",
    "az": "fusestore.stores.azure:AzureStore",
    "gs": "fusestore.stores.gcs:GCSStore",
}

#: Built-in drivers whose SDK is an optional extra: scheme -> (the SDK's top package,
#: what it is called, the extra that installs it).
EXTRAS: dict[str, tuple[str, str, str]] = {
    "az": ("azure", "the Azure Blob Storage SDK", "azure"),
    "gs": ("google", "the Google Cloud Storage SDK", "gcs"),
}


def available_schemes() -> dict[str, str]:
    """Every scheme that can be opened, with the `module:Class` that serves it.

    Built-ins win over an entry point that claims the same scheme.
    """
    schemes = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    schemes.update(BUILTIN)
    return dict(sorted(schemes.items()))


def load_driver(scheme: str, target: str) -> type[Store]:
    """The Store class `target` (`module:Class`) names; InvalidStoreURL if it cannot load."""
    module_name, _, attr = target.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except ImportError as exc:
        sdk = EXTRAS.get(scheme)
        missing = exc.name or ""
        if sdk is not None and (missing == sdk[0] or missing.startswith(sdk[0] + ".")):
            raise InvalidStoreURL(
                f"{scheme}:// needs {sdk[1]}, which is not installed: pip install 'fusestore[{sdk[2]}]'"
            ) from None
        raise InvalidStoreURL(f"the driver for {scheme}:// ({target}) cannot be loaded: {exc}") from exc
    except AttributeError as exc:
        raise InvalidStoreURL(f"the driver for {scheme}:// ({target}) cannot be loaded: {exc}") from exc
    if not (isinstance(obj, type) and issubclass(obj, Store)):
        raise InvalidStoreURL(f"the driver for {scheme}:// ({target}) is not a Store class")
    return obj


def open_store(url: str, **options: Any) -> Store:
    """The store `url` names, configured by the URL's query and then `options`.

    Touches no network and no backend. Raises InvalidStoreURL, with a one-line message
    naming the problem, for a malformed URL, an unknown scheme or a bad option.
    """
    if "://" not in url:
        raise InvalidStoreURL(
            f"not a store URL: {url!r}; expected SCHEME://..., one of: "
            + ", ".join(f"{s}://" for s in available_schemes())
        )
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidStoreURL(f"malformed store URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    schemes = available_schemes()
    if scheme not in schemes:
        raise InvalidStoreURL(
            f"unknown store scheme {scheme + '://'!r} in {url!r}; known schemes: "
            + ", ".join(f"{s}://" for s in schemes)
        )
    if parts.fragment:
        raise InvalidStoreURL(f"store URLs have no #fragment: {url!r}")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    cls = load_driver(scheme, schemes[scheme])
    return cls.from_url(parts._replace(query=""), {**query, **options})
