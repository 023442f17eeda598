"""`Container`: what the az:// driver's helpers (uploads, deletes) use of the store.

A protocol rather than the `AzureStore` class itself, so that those modules need not import
the driver that imports them.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, ClassVar, Protocol

from .azure_errors import ErrorMap
from .base import ObjectInfo
from .keys import KeySpace


class Container(Protocol):
    """One container of an account, as `AzureStore` presents it. The calls block on the
    network, as the store's own do."""

    keys: KeySpace
    config: dict[str, Any]
    errors: ErrorMap
    max_parts: ClassVar[int]

    @property
    def endpoint(self) -> str: ...

    @property
    def client(self) -> Any:
        """The SDK's ContainerClient."""

    def blob(self, full_key: str) -> Any:
        """The SDK's BlobClient for a full blob name."""

    def check_writable(self) -> None:
        """AccessDenied when the store refuses writes."""

    def translate(self, key: str | None, *, condition: str | None = None) -> AbstractContextManager[Any]:
        """SDK errors raised inside become StoreErrors about `key`."""

    def conditional(self, key: str, condition: str | None) -> AbstractContextManager[None]:
        """`translate` for a conditional write (NotFound told from PreconditionFailed)."""

    def head(self, key: str) -> ObjectInfo: ...
