"""The writer process encodes and stores what it is sent; if it dies, this process writes instead and nothing
is lost."""

from __future__ import annotations

import io
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.factories import cassette, interaction, json_response, request
from timetracer_otel.cassette.files import load_cassette
from timetracer_otel.cassette.model import Body, Cassette, HttpResponse
from timetracer_otel.exporters._framing import LENGTH, decode_cassette, encode_cassette
from timetracer_otel.exporters._writer_process import serve
from timetracer_otel.exporters.file import FileExporter
from timetracer_otel.exporters.process import ProcessFileExporter, _child_environment
from timetracer_otel.settings import Compression


def _cassette(day: int = 28, body: bytes = b'{"n":1}') -> Cassette:
    return cassette(
        interaction(request(body=b"\xff\x00"), HttpResponse(200, body=Body(body, len(body), content_coding=None))),
        interaction(request(), json_response({"ok": True})),
        recorded_at=datetime(2026, 11, day, 12, 0, tzinfo=UTC),
    )


def _loaded(directory: Path) -> dict[str, Cassette]:
    return {str(p.relative_to(directory)): load_cassette(p) for p in sorted(directory.rglob("*")) if p.is_file()}


def test_cassettes_cross_to_the_writer_process_unchanged() -> None:
    original = _cassette(body=bytes(range(256)) * 400)
    truncated = cassette(interaction(request(), HttpResponse(200, body=Body(b"ab", 9, truncated=True, complete=False,
                                                                          content_coding="gzip"))))
    assert decode_cassette(encode_cassette(original)) == original
    assert decode_cassette(encode_cassette(truncated)) == truncated


def test_batches_are_encoded_and_written_by_the_writer_process(tmp_path: Path) -> None:
    big = b'{"blob":"' + b"x" * 100_000 + b'"}'
    exporter = ProcessFileExporter(tmp_path, Compression.GZIP)
    try:
        assert exporter.store_batch([_cassette(), _cassette(27, big)]) == (2, 0)
        assert exporter._process is not None and exporter._process.pid != os.getpid()
        assert exporter.store_batch([_cassette()]) == (1, 0)  # never replaces: a new name instead
    finally:
        exporter.close()
    loaded = _loaded(tmp_path)
    names = sorted(loaded)
    assert names == [
        "2026-11-27/POST__checkout__0123456789ab.json.gz",
        "2026-11-28/POST__checkout__0123456789ab-1.json.gz",
        "2026-11-28/POST__checkout__0123456789ab.json.gz",
    ]
    assert loaded[names[0]] == _cassette(27, big)
    assert loaded[names[1]] == loaded[names[2]] == _cassette()
    assert exporter._process is None


def test_a_cassette_that_cannot_be_stored_fails_alone(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "2026-11-27").write_text("a file where the day's folder would go")
    exporter = ProcessFileExporter(tmp_path)
    try:
        assert exporter.store_batch([_cassette(27), _cassette(28)]) == (1, 1)
    finally:
        exporter.close()
    assert (tmp_path / "2026-11-28/POST__checkout__0123456789ab.json").is_file()
    assert "could not write cassette 0123456789abcdef0123456789abcdef" in capfd.readouterr().err


def test_a_frame_the_writer_process_cannot_decode_is_counted_as_failed(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    good = encode_cassette(_cassette())
    frames = b"C" + LENGTH.pack(3) + b"\xc1\xc1\xc1" + b"C" + LENGTH.pack(len(good)) + good + b"A"
    answers = io.BytesIO()
    serve(FileExporter(tmp_path), io.BytesIO(frames), answers)
    assert answers.getvalue() == b"1 1\n"
    assert "could not decode a cassette" in caplog.text
    assert list(_loaded(tmp_path).values()) == [_cassette()]


def test_a_writer_process_that_died_between_batches_is_replaced(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    exporter = ProcessFileExporter(tmp_path)
    try:
        assert exporter.store_batch([_cassette(26)]) == (1, 0)
        assert exporter._process is not None
        exporter._process.kill()
        exporter._process.wait()
        assert exporter.store_batch([_cassette(27), _cassette(28)]) == (2, 0)
        assert exporter._process is not None and exporter._process.poll() is None, "a new writer runs"
    finally:
        exporter.close()
    assert [name[:10] for name in _loaded(tmp_path)] == ["2026-11-26", "2026-11-27", "2026-11-28"]
    assert "the writer process exited with code -9; starting a new one" in caplog.text


def test_a_batch_the_writer_process_did_not_take_is_written_here(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    exporter = ProcessFileExporter(tmp_path)
    try:
        assert exporter.store_batch([_cassette(26)]) == (1, 0)
        assert exporter._process is not None and exporter._process.stdin is not None
        exporter._process.stdin.close()  # the pipe breaks while a batch is being handed over
        assert exporter.store_batch([_cassette(27)]) == (1, 0)
        assert exporter.store_batch([_cassette(28)]) == (1, 0)
        assert exporter._process is None, "later batches are written in-process"
    finally:
        exporter.close()
    assert [name[:10] for name in _loaded(tmp_path)] == ["2026-11-26", "2026-11-27", "2026-11-28"]
    assert "the writer process stopped; writing cassettes in-process" in caplog.text


def test_the_writer_process_is_not_instrumented(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIMETRACER_MODE", "record")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setattr(sys, "path", ["/x/opentelemetry/instrumentation/auto_instrumentation", *sys.path])
    environment = _child_environment()
    assert not any(key.startswith(("TIMETRACER_", "OTEL_")) for key in environment)
    assert "auto_instrumentation" not in environment["PYTHONPATH"]
