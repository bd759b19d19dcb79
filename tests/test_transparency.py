"""Recording must never change what the app receives or what the client gets back."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.servers import ROOT, Server
from timetracer_otel import load_cassette
from timetracer_otel.cassette.files import iter_cassette_files

pytestmark = pytest.mark.slow

TWO_MIB = bytes((n * 31 + 7) % 256 for n in range(2 * 1024 * 1024))
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def _exchange(base: str) -> list[tuple[int, dict[str, str], bytes]]:
    calls = [
        ("POST", "/echo/raw", {"json": {"name": "page", "password": "s3cret", "nested": {"a": [1, 2]}}}),
        ("POST", "/echo/form", {"data": {"page": "2", "q": "x y", "many": ["1", "2"]}}),
        ("POST", "/echo/form", {"data": {"title": "photo"}, "files": {"upload": ("p.png", PNG, "image/png")}}),
        ("POST", "/echo/raw", {"content": PNG, "headers": {"content-type": "application/octet-stream"}}),
        ("POST", "/echo/raw", {"content": b"\xff\xfe not utf-8 \x00", "headers": {"content-type": "text/plain"}}),
        ("POST", "/echo/raw", {"content": TWO_MIB, "headers": {"content-type": "application/octet-stream"}}),
        ("POST", "/echo/raw", {"content": b""}),
        ("GET", "/blob?size=3000000", {}),
        ("GET", "/stream", {}),
        ("DELETE", "/nothing", {}),
    ]
    out = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for method, path, kwargs in calls:
            response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
            headers = {k: v for k, v in response.headers.items() if k not in ("date", "server")}
            out.append((response.status_code, headers, response.content))
    return out


def test_recording_changes_nothing_the_app_or_client_sees(tmp_path: Path) -> None:
    apps = ROOT / "tests" / "apps"
    with Server("echo_app:app", cwd=apps, log=tmp_path / "plain.log", instrument=True) as plain:
        expected = _exchange(plain.url)
    cassettes = tmp_path / "cassettes"
    env = {"TIMETRACER_MODE": "record", "TIMETRACER_DIR": str(cassettes)}
    with Server("echo_app:app", cwd=apps, log=tmp_path / "record.log", env=env, instrument=True) as recording:
        seen = _exchange(recording.url)

    assert [s for s, _, _ in seen] == [200, 200, 200, 200, 200, 200, 200, 200, 200, 204]
    for number, (got, want) in enumerate(zip(seen, expected, strict=True)):
        assert got == want, f"call {number} differs when recording"

    recorded = [load_cassette(p) for p in iter_cassette_files(cassettes)]
    assert len(recorded) == len(seen), recording.output()
    big = next(c for c in recorded if c.request.body is not None and c.request.body.size == len(TWO_MIB))
    assert big.request.body.truncated and len(big.request.body.data) == 1024 * 1024  # type: ignore[union-attr]
    blob = next(c for c in recorded if c.request.url.endswith("size=3000000"))
    assert blob.response.body.truncated and blob.response.body.size == 3_000_000  # type: ignore[union-attr]
    streamed = next(c for c in recorded if c.request.url.endswith("/stream"))
    assert streamed.response.body.data == b"".join(f"chunk-{n}\n".encode() for n in range(5))  # type: ignore[union-attr]
    upload = next(c for c in recorded if c.request.body is not None and PNG in c.request.body.data)
    assert upload.request.route == "/echo/form"


def test_a_bare_asgi_app_under_the_otel_middleware_is_served_and_recorded(tmp_path: Path) -> None:
    apps = ROOT / "tests" / "apps"
    cassettes = tmp_path / "cassettes"
    env = {"TIMETRACER_MODE": "record", "TIMETRACER_DIR": str(cassettes)}
    with Server("raw_asgi_app:app", cwd=apps, log=tmp_path / "raw.log", env=env, instrument=True) as server:
        response = httpx.get(f"{server.url}/there", timeout=10)
    assert (response.status_code, response.text) == (200, "hello /there"), server.output()
    assert "factory" not in server.output()
    [cassette] = [load_cassette(p) for p in iter_cassette_files(cassettes)]
    assert cassette.response is not None and cassette.response.body.data == b"hello /there"  # type: ignore[union-attr]
