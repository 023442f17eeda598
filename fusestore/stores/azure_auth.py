"""Where an az:// store's account, endpoint and credential come from (see `AzureStore` for
the order). Reads the environment and the key or token files the options name; touches
no network. Errors are one line, `InvalidStoreURL` (a bad option) or `AccessDenied` (no
usable credential), and never show a secret.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential

from .errors import AccessDenied, InvalidStoreURL

CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
ACCOUNT = "AZURE_STORAGE_ACCOUNT"
KEY = "AZURE_STORAGE_KEY"
SAS_TOKEN = "AZURE_STORAGE_SAS_TOKEN"


@dataclass(frozen=True)
class Access:
    """The account, the blob service's URL, and the credential (None: anonymous) to use;
    `source` says which link of the chain gave it, for messages."""

    account: str
    endpoint: str
    credential: Any = field(repr=False)
    source: str


def parse_connection_string(text: str) -> dict[str, str]:
    """`Name=value;...` as a dict of lower-cased names (values may hold `=`)."""
    parts: dict[str, str] = {}
    for item in text.split(";"):
        name, sep, value = item.strip().partition("=")
        if sep and name:
            parts[name.strip().lower()] = value.strip()
    return parts


def _read_secret(path: str, option: str) -> str:
    try:
        with open(path, encoding="utf-8") as source:
            text = source.read(64 * 1024).strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise InvalidStoreURL(f"{option} {path} cannot be read: {reason}") from None
    if not text:
        raise InvalidStoreURL(f"{option} {path} is empty")
    return text


def _default_endpoint(account: str) -> str:
    return f"https://{account}.blob.core.windows.net"


def _connection_endpoint(parts: Mapping[str, str], account: str) -> str:
    if parts.get("blobendpoint"):
        return parts["blobendpoint"].rstrip("/")
    protocol = parts.get("defaultendpointsprotocol", "https")
    suffix = parts.get("endpointsuffix", "core.windows.net")
    return f"{protocol}://{account}.blob.{suffix}"


def resolve(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Access:
    """The access the options and the environment give, following the chain in order.

    Blocking only to read the key or token file an option names.
    """
    env = os.environ if environ is None else environ
    account: str | None = config["account"]
    endpoint: str | None = config["endpoint"]

    if config["anonymous"]:
        account = account or env.get(ACCOUNT)
        if not account and not endpoint:
            raise InvalidStoreURL("an anonymous az:// store needs account=NAME or endpoint=URL")
        return Access(account or "", endpoint or _default_endpoint(account or ""), None, "anonymous")

    connection = env.get(CONNECTION_STRING, "").strip()
    if connection:
        parts = parse_connection_string(connection)
        named = parts.get("accountname", "")
        # A connection string for another account is not for this store.
        if named and (account is None or account == named):
            where = endpoint or _connection_endpoint(parts, named)
            if parts.get("accountkey"):
                credential: Any = AzureNamedKeyCredential(named, parts["accountkey"])
                return Access(named, where, credential, CONNECTION_STRING)
            if parts.get("sharedaccesssignature"):
                credential = AzureSasCredential(parts["sharedaccesssignature"])
                return Access(named, where, credential, CONNECTION_STRING)

    account = account or env.get(ACCOUNT) or None
    if not account:
        raise InvalidStoreURL(
            f"no storage account for the az:// store: give account=NAME, or set {ACCOUNT} "
            f"(or {CONNECTION_STRING})"
        )
    where = endpoint or _default_endpoint(account)

    key_file = config["account_key_file"]
    key = _read_secret(key_file, "account_key_file") if key_file else env.get(KEY, "").strip()
    if key:
        source = "account_key_file" if key_file else KEY
        return Access(account, where, AzureNamedKeyCredential(account, key), source)

    sas_file = config["sas_token_file"]
    sas = _read_secret(sas_file, "sas_token_file") if sas_file else env.get(SAS_TOKEN, "").strip()
    if sas:
        source = "sas_token_file" if sas_file else SAS_TOKEN
        return Access(account, where, AzureSasCredential(sas.removeprefix("?")), source)

    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise AccessDenied(
            f"no credentials for storage account {account!r}: set {CONNECTION_STRING}, or "
            f"{KEY} (or account_key_file), or {SAS_TOKEN} (or sas_token_file), "
            "or install azure-identity for Entra ID sign-in"
        ) from None
    return Access(account, where, DefaultAzureCredential(), "DefaultAzureCredential")
