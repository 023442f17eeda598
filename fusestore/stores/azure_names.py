"""What the az:// driver writes into names Azure constrains: user-metadata names, and the
block ids that carry a multipart upload.

Metadata names. Azure stores metadata names as C# identifiers (letters, digits and `_`,
not starting with a digit) and compares them without case; fusestore's names are
`[a-z0-9][a-z0-9_-]*`. One reversible mapping joins the two:

- `_` is written `__`, and `-` is written `_h`;
- a name that starts with a digit gets `_d` in front.

So `mode` stays `mode`, `owner-tag` is `owner_htag`, `build_42` is `build__42` and
`9lives` is `_d9lives`. Names read back are lower-cased before they are decoded; a name
that no fusestore name maps to (set by another tool) is left out of what the driver
reports.

Block ids. Azure names the blocks of a blob by ids of up to 64 bytes, all of one length
per blob. Each id this driver stages is 64 ASCII bytes: the 16-character upload id
(8 hex digits of the start time in epoch seconds, 8 random hex digits), a kind (`p`: a
part; `m`: a piece of the upload's metadata), a 5-digit number, and a payload padded to
42 characters. Part blocks carry no payload. Metadata blocks carry, in order, the upload's
metadata as compact JSON, so the blocks themselves hold everything `complete_multipart`
needs: a process restarted between start and completion finds the upload in the blob's
uncommitted block list alone.

Nothing here touches the network.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import NamedTuple

#: The parts of a block id; its whole length.
UPLOAD_ID_LENGTH = 16
_NUMBER_DIGITS = 5
PAYLOAD_LENGTH = 42
BLOCK_ID_LENGTH = UPLOAD_ID_LENGTH + 1 + _NUMBER_DIGITS + PAYLOAD_LENGTH  # 64
PART, META = "p", "m"

_UPLOAD_ID = re.compile(r"^[0-9a-f]{16}$")
_FUSESTORE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


# -- metadata names -----------------------------------------------------------------------


def encode_name(name: str) -> str:
    """The Azure metadata name for the fusestore name `name` (`[a-z0-9][a-z0-9_-]*`)."""
    escaped = name.replace("_", "__").replace("-", "_h")
    return f"_d{escaped}" if escaped[:1].isdigit() else escaped


def decode_name(stored: str) -> str | None:
    """The fusestore name an Azure metadata name stands for; None when it stands for none."""
    text = stored.lower()
    if text.startswith("_d"):
        text = text[2:]
        if not text[:1].isdigit():
            return None
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "_":
            follower = text[i + 1 : i + 2]
            if follower == "_":
                out.append("_")
            elif follower == "h":
                out.append("-")
            else:
                return None
            i += 2
        else:
            out.append(char)
            i += 1
    name = "".join(out)
    return name if _FUSESTORE_NAME.match(name) and encode_name(name) == stored.lower() else None


def encode_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    return {encode_name(name): value for name, value in metadata.items()}


def decode_metadata(stored: Mapping[str, str] | None) -> dict[str, str]:
    decoded: dict[str, str] = {}
    for raw, value in (stored or {}).items():
        name = decode_name(raw)
        if name is not None:
            decoded[name] = value
    return decoded


# -- block ids ----------------------------------------------------------------------------


def new_upload_id(now: float | None = None) -> str:
    """A fresh upload id: its start time (epoch seconds, hex) and 32 random bits."""
    started = int(time.time() if now is None else now) & 0xFFFFFFFF
    return f"{started:08x}{secrets.token_hex(4)}"


def is_upload_id(text: str) -> bool:
    return bool(_UPLOAD_ID.match(text))


def upload_started(upload_id: str) -> float:
    return float(int(upload_id[:8], 16))


def part_block_id(upload_id: str, number: int) -> str:
    return f"{upload_id}{PART}{number:0{_NUMBER_DIGITS}d}".ljust(BLOCK_ID_LENGTH, "-")


def metadata_block_ids(upload_id: str, metadata: Mapping[str, str]) -> list[str]:
    """The ids of the blocks that carry `metadata` (at least one, for `{}` too)."""
    text = json.dumps(dict(metadata), separators=(",", ":"), sort_keys=True)
    pieces = [text[i : i + PAYLOAD_LENGTH] for i in range(0, len(text), PAYLOAD_LENGTH)]
    if len(pieces) >= 10**_NUMBER_DIGITS:
        raise ValueError("metadata too large to carry in block ids")
    return [
        f"{upload_id}{META}{n:0{_NUMBER_DIGITS}d}{piece.ljust(PAYLOAD_LENGTH)}"
        for n, piece in enumerate(pieces)
    ]


class ParsedBlock(NamedTuple):
    upload_id: str
    kind: str
    number: int
    payload: str


def parse_block_id(block_id: str) -> ParsedBlock | None:
    """The parts of an id this driver staged; None for any other block's id."""
    if len(block_id) != BLOCK_ID_LENGTH or not block_id.isascii():
        return None
    upload_id, kind = block_id[:UPLOAD_ID_LENGTH], block_id[UPLOAD_ID_LENGTH]
    number = block_id[UPLOAD_ID_LENGTH + 1 : UPLOAD_ID_LENGTH + 1 + _NUMBER_DIGITS]
    if not is_upload_id(upload_id) or kind not in (PART, META) or not number.isdigit():
        return None
    return ParsedBlock(upload_id, kind, int(number), block_id[UPLOAD_ID_LENGTH + 1 + _NUMBER_DIGITS :])


def uploads_in(block_ids: Iterable[str]) -> dict[str, dict[str, str] | None]:
    """The uploads whose metadata blocks are among `block_ids`, each with its metadata
    (None where some of its metadata blocks are missing or unreadable)."""
    pieces: dict[str, dict[int, str]] = {}
    for block_id in block_ids:
        parsed = parse_block_id(block_id)
        if parsed is not None and parsed.kind == META:
            pieces.setdefault(parsed.upload_id, {})[parsed.number] = parsed.payload
    found: dict[str, dict[str, str] | None] = {}
    for upload_id, numbered in pieces.items():
        if sorted(numbered) != list(range(len(numbered))):
            found[upload_id] = None
            continue
        text = "".join(numbered[n] for n in range(len(numbered))).rstrip(" ")
        try:
            value = json.loads(text)
        except ValueError:
            found[upload_id] = None
            continue
        ok = isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )
        found[upload_id] = value if ok else None
    return found
