from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import EXAMPLE, Server


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Server]:
    """The example's pricing upstream, a real HTTP server on 127.0.0.1."""
    with Server("upstream:app", cwd=EXAMPLE, log=tmp_path / "upstream.log") as server:
        yield server
