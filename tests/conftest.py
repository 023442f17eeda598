"""Fixtures shared by every test layer: an isolated AWS environment and moto's S3 server."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator

import pytest

from fusestore.testing.s3server import LocalS3Server, isolated_aws_environment


@pytest.fixture(scope="session", autouse=True)
def _isolated_aws_environment() -> Iterator[None]:
    """No test sees the machine's AWS credentials or config, or reaches AWS."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(isolated_aws_environment())
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[LocalS3Server]:
    """moto's S3 server over HTTP on 127.0.0.1, one per test session."""
    with LocalS3Server() as server:
        yield server


_bucket_numbers = itertools.count()


@pytest.fixture
def make_bucket(s3_server: LocalS3Server, request: pytest.FixtureRequest) -> Callable[[], str]:
    """Creates fresh, uniquely named buckets on the session's server."""

    def make() -> str:
        stem = "".join(c for c in request.node.name.lower() if c.isalnum())[:40]
        name = f"t{next(_bucket_numbers)}-{stem}"
        s3_server.create_bucket(name)
        return name

    return make
