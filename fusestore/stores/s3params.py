"""The s3:// options that shape requests rather than the connection: server-side
encryption (SSE-S3, SSE-KMS, SSE-C), storage class, canned ACL, requester pays; and the
checks of the access and transfer options the client applies (anonymous, TLS, part size,
rates).

`RequestParams` adds each parameter to every request whose operation takes it, from one
botocore hook, so no request path can forget one: a new call in the driver carries them
too. The customer key of SSE-C is read from its file when the store is opened and kept
only here; no message, URL or repr shows it (botocore base64-encodes it into the request
headers, which fusestore never logs).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from typing import Any

from .base import GiB, MiB
from .errors import InvalidStoreURL
from .options import Option

SSE_MODES = ("AES256", "aws:kms")
#: S3's canned ACLs.
CANNED_ACLS = (
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
)
#: AWS's storage classes, for the message; S3-compatible servers may name others
#: (Ceph's placement targets), so any name of this form is sent as given.
AWS_STORAGE_CLASSES = ("STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR")
_STORAGE_CLASS = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
#: Operations that write an object's bytes: they take its encryption, class and ACL.
_WRITES = frozenset({"PutObject", "CreateMultipartUpload", "CopyObject"})
#: Limits of a multipart upload's parts on S3.
MIN_PART, MAX_PART = 5 * MiB, 5 * GiB


class Size(int):
    """Bytes, written as a number or with a binary unit: `8M`, `5MiB`, `1G`, `512k`."""

    noun = "size (e.g. 8M, 1G)"
    _units = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}

    def __new__(cls, value: Any) -> Size:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            text = str(value).strip().lower().removesuffix("ib").removesuffix("b")
            unit = text[-1:] if text[-1:] in cls._units and not text[-1:].isdigit() else ""
            try:
                number = int(float(text[: len(text) - len(unit)]) * cls._units[unit])
            except ValueError:
                raise ValueError(f"{value!r} is not a size") from None
        if number < 0:
            raise ValueError(f"{value!r} is negative")
        return super().__new__(cls, number)


OPTIONS: Mapping[str, Option] = {
    "sse": Option(str, None, "server-side encryption of written objects: AES256 or aws:kms"),
    "sse_kms_key_id": Option(str, None, "the KMS key (id, ARN or alias) for sse=aws:kms"),
    "sse_c_key_file": Option(
        str, None, "SSE-C: a file holding the 256-bit customer key (32 bytes, or their base64)"
    ),
    "storage_class": Option(str, None, "storage class of written objects, e.g. STANDARD_IA"),
    "acl": Option(str, None, "canned ACL of written objects, e.g. bucket-owner-full-control"),
    "requester_pays": Option(bool, False, "send x-amz-request-payer: the requester pays for requests"),
    "anonymous": Option(bool, False, "unsigned requests, no credentials (public buckets); read-only"),
    "anonymous_writes": Option(bool, False, "with anonymous: allow writes (a publicly writable bucket)"),
    "ca_bundle": Option(str, None, "PEM file of the CA certificates that TLS connections trust"),
    "verify_tls": Option(bool, True, "verify the server's TLS certificate (false: a warning is logged)"),
    "part_size": Option(Size, None, "multipart part size, 5M..5G (grown where 10,000 parts need it)"),
    "max_upload_rate": Option(Size, None, "bytes per second the store's uploads share, e.g. 10M"),
    "max_download_rate": Option(Size, None, "bytes per second the store's downloads share, e.g. 50M"),
}


def absolute_paths(config: dict[str, Any]) -> dict[str, Any]:
    """`config` with its file options made absolute (`~` expanded): the store's URL then
    names the same files from any working directory (a daemon's, a restart's)."""
    for name in ("sse_c_key_file", "ca_bundle"):
        if config[name]:
            config[name] = os.path.abspath(os.path.expanduser(config[name]))
    return config


def check_options(config: Mapping[str, Any]) -> None:
    """InvalidStoreURL, one line, for a value or combination these options cannot use.
    Reads no file but for the permission check of `ca_bundle`."""
    sse = config["sse"]
    if sse is not None and sse not in SSE_MODES:
        raise InvalidStoreURL(f"sse must be one of {', '.join(SSE_MODES)}, not {sse!r}")
    if config["sse_kms_key_id"] is not None and sse != "aws:kms":
        raise InvalidStoreURL("sse_kms_key_id needs sse=aws:kms")
    if sse is not None and config["sse_c_key_file"] is not None:
        raise InvalidStoreURL(
            "sse and sse_c_key_file exclude each other: the store encrypts with its keys, or with yours"
        )
    storage_class = config["storage_class"]
    if storage_class is not None and not _STORAGE_CLASS.match(storage_class):
        raise InvalidStoreURL(
            f"storage_class must be a name like {', '.join(AWS_STORAGE_CLASSES)} "
            f"(capitals, digits, _), not {storage_class!r}"
        )
    if config["acl"] is not None and config["acl"] not in CANNED_ACLS:
        raise InvalidStoreURL(f"acl must be one of {', '.join(CANNED_ACLS)}, not {config['acl']!r}")
    if config["anonymous_writes"] and not config["anonymous"]:
        raise InvalidStoreURL("anonymous_writes needs anonymous=true")
    bundle = config["ca_bundle"]
    if bundle is not None:
        if not config["verify_tls"]:
            raise InvalidStoreURL("verify_tls=false and ca_bundle exclude each other: verify with it, or not")
        if not os.path.isfile(bundle) or not os.access(bundle, os.R_OK):
            raise InvalidStoreURL(f"ca_bundle {bundle} cannot be read")
    part = config["part_size"]
    if part is not None and not MIN_PART <= part <= MAX_PART:
        raise InvalidStoreURL(f"part_size must be between 5 MiB and 5 GiB (S3's limits), not {part} bytes")
    for name in ("max_upload_rate", "max_download_rate"):
        if config[name] is not None and config[name] < 1:
            raise InvalidStoreURL(f"{name} must be at least 1 byte per second")


def read_customer_key(path: str) -> bytes:
    """The 32-byte SSE-C key in `path`: the bytes themselves, or their base64 on one line.
    Blocking (reads the file). Errors name the file, never what it holds."""
    try:
        with open(path, "rb") as source:
            data = source.read(1024)
    except OSError as exc:
        raise InvalidStoreURL(f"sse_c_key_file {path} cannot be read: {exc.strerror}") from None
    if len(data) == 32:
        return data
    try:
        key = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise InvalidStoreURL(
            f"sse_c_key_file {path} does not hold a 256-bit key (32 bytes, or their base64 on one line)"
        )
    return key


class RequestParams:
    """The parameters the options add to requests, by operation. Immutable once built;
    `add` is thread-safe and never blocks. Building it reads the SSE-C key file."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        check_options(config)
        written = {
            "ServerSideEncryption": config["sse"],
            "SSEKMSKeyId": config["sse_kms_key_id"],
            "StorageClass": config["storage_class"],
            "ACL": config["acl"],
        }
        self._written = {name: value for name, value in written.items() if value is not None}
        self.requester_pays: bool = config["requester_pays"]
        path = config["sse_c_key_file"]
        self.customer_key: bytes | None = None if path is None else read_customer_key(path)

    def __repr__(self) -> str:
        shown = dict(self._written)
        if self.customer_key is not None:
            shown["SSECustomerKey"] = "(hidden)"
        return f"<RequestParams {shown} requester_pays={self.requester_pays}>"

    def add(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        """botocore's `provide-client-params` hook: fill in what this operation takes
        (before botocore derives the customer key's MD5 from it)."""
        if model.name in _WRITES:
            for name, value in self._written.items():
                params.setdefault(name, value)
        members = model.input_shape.members if model.input_shape is not None else {}
        if self.customer_key is not None:
            # GET, HEAD, PUT, the multipart calls and copies: S3 needs the key for each.
            for prefix in ("SSECustomer", "CopySourceSSECustomer"):
                if f"{prefix}Key" in members:
                    params.setdefault(f"{prefix}Algorithm", "AES256")
                    params.setdefault(f"{prefix}Key", self.customer_key)
        if self.requester_pays and "RequestPayer" in members:
            params.setdefault("RequestPayer", "requester")
