from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.s3server import SeaweedFS
from tests.s3server import client as s3client
from tests.servers import EXAMPLE, Server


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Server]:
    """The example's pricing upstream, a real HTTP server on 127.0.0.1."""
    with Server("upstream:app", cwd=EXAMPLE, log=tmp_path / "upstream.log") as server:
        yield server


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The run's S3 server: the one scripts/services.sh started, else a private SeaweedFS."""
    endpoint = os.environ.get("TIMETRACER_TEST_S3_ENDPOINT")
    if endpoint:
        yield endpoint
        return
    with SeaweedFS(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server.endpoint


@pytest.fixture
def s3_bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> str:
    """A new, empty bucket for this test."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    bucket = f"{name}-{uuid.uuid4().hex[:8]}"
    s3client(s3_endpoint).create_bucket(Bucket=bucket)
    return bucket
