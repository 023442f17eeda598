"""The S3 driver's request log (`stores/s3requests.py`): at DEBUG one line per HTTP
request, each retry one of its own with its attempt number, and no secret in any line.
Against a server on 127.0.0.1 that answers 503 once, and a port nobody listens on."""

from __future__ import annotations

import http.server
import logging
import re
import threading
from collections.abc import Iterator

import pytest

from fusestore.stores import NotFound, StoreUnavailable, open_store
from fusestore.testing.s3server import CREDENTIALS, HOST, free_port

LINE = re.compile(
    r"^store request: op=(\w+) key=('.*'|-) status=(\S+) bytes=(\d+) ms=(\d+\.\d) attempt=(\d+)$"
)


class Flaky(http.server.BaseHTTPRequestHandler):
    """503 for the first request of each path, then 404 (HEAD) or a 200 with a body (GET)."""

    seen: set[str] = set()

    def _answer(self, body: bytes) -> None:
        if self.path not in self.seen:
            self.seen.add(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.command == "HEAD":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"0123456789abcdef0123456789abcdef"')
        self.send_header("Last-Modified", "Mon, 07 Dec 2026 01:00:00 GMT")
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self._answer(b"")

    def do_GET(self) -> None:
        self._answer(b"0123456789")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def flaky_endpoint() -> Iterator[str]:
    Flaky.seen = set()
    server = http.server.ThreadingHTTPServer((HOST, 0), Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, ...]]:
    found = []
    for record in caplog.records:
        match = LINE.match(record.getMessage())
        if match is not None:
            op, key, status, size, _, attempt = match.groups()
            found.append((op, key, status, size, attempt))
    return found


@pytest.mark.timeout(60)
def test_each_attempt_is_a_line_with_its_number(
    flaky_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="fusestore")
    store = open_store("s3://bucket", endpoint_url=flaky_endpoint, max_attempts=3)
    with pytest.raises(NotFound):
        store.head("a key")
    assert store.get_range("obj", 0, 10) == b"0123456789"
    assert lines(caplog) == [
        ("HeadObject", "'a key'", "503", "0", "1"),
        ("HeadObject", "'a key'", "404", "0", "2"),
        ("GetObject", "'obj'", "503", "0", "1"),
        ("GetObject", "'obj'", "200", "10", "2"),  # this server ignores the range
    ]
    for secret in (*CREDENTIALS.values(), "Authorization", "Signature", "Credential="):
        assert secret not in caplog.text


@pytest.mark.timeout(60)
def test_a_request_without_an_answer_is_a_line_naming_the_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="fusestore")
    nobody = f"http://{HOST}:{free_port()}"
    store = open_store("s3://bucket", endpoint_url=nobody, max_attempts=2, connect_timeout=1)
    with pytest.raises(StoreUnavailable):
        store.head("k")
    assert lines(caplog) == [
        ("HeadObject", "'k'", "EndpointConnectionError", "0", "1"),
        ("HeadObject", "'k'", "EndpointConnectionError", "0", "2"),
    ]


@pytest.mark.timeout(60)
def test_nothing_is_written_below_debug(flaky_endpoint: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fusestore")
    store = open_store("s3://bucket", endpoint_url=flaky_endpoint, max_attempts=3)
    with pytest.raises(NotFound):
        store.head("k")
    assert not lines(caplog)
