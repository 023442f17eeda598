"""The sd_notify protocol (READY=1, STATUS=..., STOPPING=1) without a libsystemd binding.

When systemd starts the daemon with `Type=notify` it sets NOTIFY_SOCKET to a datagram
socket (a path, or an abstract name starting with `@`). Outside systemd every call is a
no-op. Sending never blocks for long: it is one datagram to a local socket.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(*fields: str) -> bool:
    """Send `KEY=value` fields to systemd; returns whether there was a socket to send to."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode())
    except OSError as exc:
        log.debug("sd_notify to %r failed: %s", address, exc)
        return False
    return True
