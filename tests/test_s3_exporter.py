"""Recording to S3 (a real SeaweedFS): every cassette reaches the bucket, an outage spills and catches up
without losing or duplicating one, wrong credentials are named, and replay reads straight from s3://."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import time
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from msgspec.structs import replace

from tests.factories import cassette
from tests.s3server import SeaweedFS, client, credentials_env
from tests.servers import BIN, EXAMPLE, Server
from tests.test_writer_process import _captured as captured_request
from timetracer_otel.cassette.codec import cassette_from_bytes
from timetracer_otel.cassette.model import Cassette
from timetracer_otel.exporters.s3 import S3Exporter, _Outcome, _Upload
from timetracer_otel.exporters.spec import ExporterSpec
from timetracer_otel.record.writer_process import WriterProcess
from timetracer_otel.s3.client import S3Options
from timetracer_otel.s3.location import S3Location
from timetracer_otel.settings import Compression

pytestmark = pytest.mark.slow

SERVICE = "shop-api"


def _app(tmp_path: Path, name: str, env: dict[str, str]) -> Server:
    return Server("app:app", cwd=EXAMPLE, log=tmp_path / f"{name}.log", env=env, instrument=True)


def _record_env(tmp_path: Path, endpoint: str, bucket: str, upstream: Server, **extra: str) -> dict[str, str]:
    return {**credentials_env(endpoint), "TIMETRACER_MODE": "record", "TIMETRACER_DIR": f"s3://{bucket}/recordings",
            "TIMETRACER_SERVICE": SERVICE, "TIMETRACER_S3_SPILL_DIR": str(tmp_path / "spill"),
            "UPSTREAM_URL": upstream.url, **extra}


def _objects(endpoint: str, bucket: str) -> dict[str, dict[str, Any]]:
    s3 = client(endpoint)
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            found[item["Key"]] = item
    return found


def _request_objects(endpoint: str, bucket: str) -> dict[str, dict[str, Any]]:
    return {key: item for key, item in _objects(endpoint, bucket).items() if "/_session/" not in key}


def _wait_for_objects(endpoint: str, bucket: str, count: int, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        objects = _request_objects(endpoint, bucket)
        if len(objects) >= count or time.monotonic() > deadline:
            return objects
        time.sleep(0.2)


def _cassette(endpoint: str, bucket: str, key: str) -> Cassette:
    body = client(endpoint).get_object(Bucket=bucket, Key=key)["Body"].read()
    return cassette_from_bytes(gzip.decompress(body) if key.endswith(".gz") else body)


def _timetracer(endpoint: str, *arguments: str) -> str:
    environment = {**os.environ, **credentials_env(endpoint), "TIMETRACER_S3_CACHE_DIR": "/nonexistent-cache"}
    done = subprocess.run([str(BIN / "timetracer"), *arguments], env=environment, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _spilled(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "spill").rglob("*") if p.is_file() and not p.name.startswith(".")]


def _distinct(original: Cassette) -> Cassette:
    return replace(original, metadata=replace(original.metadata, id=uuid.uuid4().hex))


def _users(base: str, ids: range) -> list[tuple[int, bytes]]:
    with httpx.Client(base_url=base, timeout=10) as http:
        return [(r.status_code, r.content) for r in (http.get(f"/users/{n}") for n in ids)]


def test_every_cassette_reaches_the_bucket_and_replays_from_s3(
    tmp_path: Path, upstream: Server, s3_endpoint: str, s3_bucket: str
) -> None:
    env = _record_env(tmp_path, s3_endpoint, s3_bucket, upstream, TIMETRACER_COMPRESSION="gzip",
                      TIMETRACER_S3_SSE="AES256")
    with _app(tmp_path, "record", env) as app:
        recorded = _users(app.url, range(1, 6))
        with httpx.Client(base_url=app.url, timeout=10) as http:
            checkout = http.post("/checkout", json={"item": 3})
        objects = _wait_for_objects(s3_endpoint, s3_bucket, 6)
    assert [status for status, _ in recorded] == [200] * 5 and checkout.status_code == 200

    day = time.strftime("%Y-%m-%d", time.gmtime())
    assert len(objects) == 6
    for key in objects:  # the local layout below prefix/service
        assert key.startswith(f"recordings/{SERVICE}/{day}/") and key.endswith(".json.gz"), key
    head = client(s3_endpoint).head_object(Bucket=s3_bucket, Key=next(iter(objects)))
    assert head["ContentType"] == "application/json"
    assert head["ContentEncoding"] == "gzip"
    assert head["Metadata"]["cassette-id"]
    assert head["ServerSideEncryption"] == "AES256"
    cassettes = [_cassette(s3_endpoint, s3_bucket, key) for key in objects]
    assert sorted(c.request.url.rsplit("/", 1)[-1] for c in cassettes if c.request and "users" in c.request.url) \
        == ["1", "2", "3", "4", "5"]
    # The exporter's own S3 calls are never part of what was recorded (nor are any other calls to S3).
    port = s3_endpoint.rsplit(":", 1)[-1]
    every_object = _objects(s3_endpoint, s3_bucket)
    for key in every_object:
        document = _cassette(s3_endpoint, s3_bucket, key)
        assert all(f":{port}" not in str(i.request) for i in document.interactions)
    assert not _spilled(tmp_path)

    # The command line lists and pulls what was recorded.
    prefix = f"s3://{s3_bucket}/recordings/{SERVICE}"
    listed = json.loads(_timetracer(s3_endpoint, "s3", "ls", prefix, "--json"))
    assert sorted(entry["key"] for entry in listed) == sorted(
        key.removeprefix(f"recordings/{SERVICE}/") for key in every_object)
    _timetracer(s3_endpoint, "s3", "pull", prefix, str(tmp_path / "pulled"), "--no-progress")
    assert "GET" in _timetracer(s3_endpoint, "list", str(tmp_path / "pulled"))
    assert len(list((tmp_path / "pulled" / day).iterdir())) == 6

    upstream.stop()
    replay_env = {**credentials_env(s3_endpoint), "TIMETRACER_MODE": "replay",
                  "TIMETRACER_CASSETTE": f"s3://{s3_bucket}/recordings/{SERVICE}",
                  "TIMETRACER_S3_CACHE_DIR": str(tmp_path / "cache"), "UPSTREAM_URL": upstream.url}
    with _app(tmp_path, "replay", replay_env) as app:
        assert _users(app.url, range(1, 6)) == recorded
    assert list((tmp_path / "cache" / s3_bucket / "recordings" / SERVICE / day).iterdir())


def test_s3_down_mid_run_spills_and_every_cassette_arrives_once(
    tmp_path: Path, upstream: Server
) -> None:
    s3 = SeaweedFS(tmp_path / "seaweedfs")
    try:
        client(s3.endpoint).create_bucket(Bucket="outage")
        env = _record_env(tmp_path, s3.endpoint, "outage", upstream)
        with _app(tmp_path, "record", env) as app:
            before = _users(app.url, range(0, 15))
            assert len(_wait_for_objects(s3.endpoint, "outage", 15)) == 15

            s3.stop()
            during = _users(app.url, range(15, 40))
            deadline = time.monotonic() + 20
            while len(_spilled(tmp_path)) < 25 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert len(_spilled(tmp_path)) == 25, "every cassette recorded while S3 was down waits on disk"

            s3.restart()
            after = _users(app.url, range(40, 50))
            objects = _wait_for_objects(s3.endpoint, "outage", 50, timeout=60)
        assert [status for status, _ in before + during + after] == [200] * 50
        assert "cassettes are kept in the spill folder" in app.output()
        assert len(objects) == 50, "none lost, none duplicated"
        users = sorted(int(_cassette(s3.endpoint, "outage", key).request.url.rsplit("/", 1)[-1])
                       for key in objects)
        assert users == list(range(50))
        assert not _spilled(tmp_path), "the spill folder is empty once everything is uploaded"
    finally:
        s3.stop()


def test_wrong_credentials_are_named_and_requests_are_unaffected(
    tmp_path: Path, upstream: Server, s3_endpoint: str, s3_bucket: str
) -> None:
    with _app(tmp_path, "reference", {"UPSTREAM_URL": upstream.url}) as app:
        reference = _users(app.url, range(1, 4))
    env = _record_env(tmp_path, s3_endpoint, s3_bucket, upstream, AWS_SECRET_ACCESS_KEY="not-the-secret")
    with _app(tmp_path, "record", env) as app:
        assert _users(app.url, range(1, 4)) == reference
        deadline = time.monotonic() + 20
        while len(_spilled(tmp_path)) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
    log = app.output()
    assert f"S3 refused the credentials for s3://{s3_bucket}/recordings/{SERVICE}" in log
    assert "SignatureDoesNotMatch" in log and "AWS_SECRET_ACCESS_KEY" in log
    assert len(_spilled(tmp_path)) == 3, "nothing is lost: the cassettes wait for working credentials"
    assert {path.stat().st_mode & 0o777 for path in _spilled(tmp_path)} == {0o600}
    assert (tmp_path / "spill").stat().st_mode & 0o777 == 0o700
    assert not _request_objects(s3_endpoint, s3_bucket)


def test_shutdown_with_s3_down_keeps_the_queue_on_disk_within_the_deadline(
    tmp_path: Path, upstream: Server
) -> None:
    s3 = SeaweedFS(tmp_path / "seaweedfs")
    client(s3.endpoint).create_bucket(Bucket="deadline")
    s3.stop()
    env = _record_env(tmp_path, s3.endpoint, "deadline", upstream, TIMETRACER_FLUSH_TIMEOUT_S="2")
    with _app(tmp_path, "record", env) as app:
        assert [status for status, _ in _users(app.url, range(10))] == [200] * 10
        started = time.monotonic()
        app.stop(signal.SIGTERM, timeout=30)
        stopped_in = time.monotonic() - started
    assert stopped_in < 15, f"shutdown took {stopped_in:.1f} s"
    assert len(_spilled(tmp_path)) == 10

    # The next start uploads what the previous run left.
    s3.restart()
    try:
        with _app(tmp_path, "next", env):
            objects = _wait_for_objects(s3.endpoint, "deadline", 10)
        assert len(objects) == 10
        assert not _spilled(tmp_path)
    finally:
        s3.stop()


def test_a_full_queue_spills_instead_of_waiting(tmp_path: Path, s3_endpoint: str, s3_bucket: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in credentials_env(s3_endpoint).items():
        monkeypatch.setenv(name, value)
    options = S3Options(endpoint_url=s3_endpoint, spill_dir=tmp_path / "spill")
    exporter = S3Exporter(S3Location(s3_bucket, "q"), options, SERVICE, Compression.NONE, queue_bytes=1)
    try:
        cassettes = [_distinct(cassette()) for _ in range(5)]
        assert exporter.store_batch(cassettes) == (5, 0)
        assert exporter.take_counts()["spilled"] == 5
        deadline = time.monotonic() + 20
        while _request_objects(s3_endpoint, s3_bucket).__len__() < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        exporter.close()
    assert len(_request_objects(s3_endpoint, s3_bucket)) == 5
    assert exporter.counts.uploaded_from_spill == 5 and exporter.counts.dropped == 0
    assert not _spilled(tmp_path)


def test_the_writer_process_reports_the_exporters_counters(tmp_path: Path, s3_endpoint: str, s3_bucket: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in credentials_env(s3_endpoint).items():
        monkeypatch.setenv(name, value)
    spec = ExporterSpec(SERVICE, s3=S3Location(s3_bucket, "w"),
                        s3_options=S3Options(endpoint_url=s3_endpoint, spill_dir=tmp_path / "spill"))
    with closing(WriterProcess(spec)) as writer:
        writer.store_batch([captured_request(27), captured_request(28)])
        assert writer.drain(10) == (2, 0)
        assert len(_wait_for_objects(s3_endpoint, s3_bucket, 2)) == 2
        writer.store_batch([])  # the acknowledgement carries the uploads made since the previous one
        writer.drain(10)
        assert writer.take_counts() == {"uploaded": 2}
    assert sorted(_request_objects(s3_endpoint, s3_bucket)) == [
        f"w/{SERVICE}/2026-11-27/POST__checkout__0123456789ab.json",
        f"w/{SERVICE}/2026-11-28/POST__checkout__0123456789ab.json",
    ]


def test_an_object_s3_refuses_does_not_stop_the_others(tmp_path: Path, s3_endpoint: str, s3_bucket: str,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    for name, value in credentials_env(s3_endpoint).items():
        monkeypatch.setenv(name, value)
    options = S3Options(endpoint_url=s3_endpoint, spill_dir=tmp_path / "spill")
    exporter = S3Exporter(S3Location(s3_bucket, "r"), options, SERVICE, Compression.NONE)
    try:
        # SeaweedFS answers 400 InvalidRequest for a key with a '..' segment: about this object only.
        refused = exporter._put(_Upload("r/../refused.json", b"{}", {}))
        assert refused is _Outcome.REJECTED
        assert "S3 refused the cassette r/../refused.json" in caplog.text
        assert exporter.store_batch([_distinct(cassette())]) == (1, 0)
        assert len(_wait_for_objects(s3_endpoint, s3_bucket, 1)) == 1
    finally:
        exporter.close()
    assert exporter.counts.uploaded == 1 and exporter.counts.spilled == 0
