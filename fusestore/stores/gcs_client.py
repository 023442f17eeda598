"""The gs:// driver's SDK client: credentials chosen from the options, and a connection
pool of the store's size.

Building one reads a key file or the Application Default Credentials chain and sends
nothing: tokens are fetched at the first request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import google.auth
import requests
from google.api_core.client_info import ClientInfo
from google.auth.credentials import AnonymousCredentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import storage
from google.oauth2 import service_account

from ..version import __version__
from .errors import AccessDenied

GOOGLE_ENDPOINT = "https://storage.googleapis.com"
_SCOPE_RW = "https://www.googleapis.com/auth/devstorage.read_write"
_SCOPE_RO = "https://www.googleapis.com/auth/devstorage.read_only"


def endpoint_from_env() -> str | None:
    """STORAGE_EMULATOR_HOST as the SDK reads it (a scheme is optional there)."""
    host = os.environ.get("STORAGE_EMULATOR_HOST")
    if not host:
        return None
    return host if "://" in host else f"http://{host}"


def credentials(config: Mapping[str, Any], *, emulated: bool) -> tuple[Any, str | None]:
    """(credentials, their project): the key file's, none (anonymous, an emulator), or
    Application Default Credentials'. AccessDenied names a bad key file, never its content."""
    scopes = [_SCOPE_RO if config["read_only"] or config["anonymous"] else _SCOPE_RW]
    path = config["credentials_file"]
    if path is not None:
        try:
            found = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                path, scopes=scopes
            )
        except (ValueError, KeyError, OSError) as exc:
            raise AccessDenied(
                f"credentials_file {path} is not a service-account key ({type(exc).__name__})"
            ) from None
        return found, found.project_id
    if config["anonymous"] or emulated:
        return AnonymousCredentials(), None  # type: ignore[no-untyped-call]
    found, project = google.auth.default(scopes=scopes)
    return found, project


def make_client(config: Mapping[str, Any], endpoint: str, *, emulated: bool) -> Any:
    """A `google.cloud.storage.Client` for `endpoint`, pooled to `max_connections`."""
    creds, project = credentials(config, emulated=emulated)
    session = AuthorizedSession(creds)  # type: ignore[no-untyped-call]
    size = config["max_connections"]
    adapter = requests.adapters.HTTPAdapter(pool_connections=size, pool_maxsize=size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return storage.Client(
        # Object requests need no project; naming one keeps the SDK from looking it up.
        project=config["project"] or project or "<none>",
        credentials=creds,
        _http=session,
        client_info=ClientInfo(user_agent=f"fusestore/{__version__}"),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": endpoint},
    )
