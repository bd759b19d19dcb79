"""The writer process stores what it is sent; if it dies, this process writes instead and nothing is lost."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from timetracer_otel.exporters.process import ProcessFileExporter, _child_environment


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_batches_are_written_by_the_writer_process(tmp_path: Path) -> None:
    exporter = ProcessFileExporter(tmp_path)
    try:
        assert exporter.store_batch([("d/a.json", b"1"), ("d/b.json", b"2" * 100_000)]) == (2, 0)
        assert exporter._process is not None and exporter._process.pid != os.getpid()
        assert exporter.store_batch([("d/a.json", b"3")]) == (1, 0)  # never replaces: a new name instead
    finally:
        exporter.close()
    assert _files(tmp_path) == {"d/a.json": b"1", "d/a-1.json": b"3", "d/b.json": b"2" * 100_000}
    assert exporter._process is None


def test_a_bad_item_fails_alone(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    exporter = ProcessFileExporter(tmp_path / "inside")
    try:
        assert exporter.store_batch([("../escape.json", b"x"), ("ok.json", b"y")]) == (1, 1)
    finally:
        exporter.close()
    assert _files(tmp_path) == {"inside/ok.json": b"y"}
    assert "could not write cassette ../escape.json" in capfd.readouterr().err


def test_a_writer_process_that_died_between_batches_is_replaced(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    exporter = ProcessFileExporter(tmp_path)
    try:
        assert exporter.store_batch([("a.json", b"1")]) == (1, 0)
        assert exporter._process is not None
        exporter._process.kill()
        exporter._process.wait()
        assert exporter.store_batch([("b.json", b"2"), ("c.json", b"3")]) == (2, 0)
        assert exporter._process is not None and exporter._process.poll() is None, "a new writer runs"
    finally:
        exporter.close()
    assert _files(tmp_path) == {"a.json": b"1", "b.json": b"2", "c.json": b"3"}
    assert "the writer process exited with code -9; starting a new one" in caplog.text


def test_a_batch_the_writer_process_did_not_take_is_written_here(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    exporter = ProcessFileExporter(tmp_path)
    try:
        assert exporter.store_batch([("a.json", b"1")]) == (1, 0)
        assert exporter._process is not None and exporter._process.stdin is not None
        exporter._process.stdin.close()  # the pipe breaks while a batch is being handed over
        assert exporter.store_batch([("b.json", b"2")]) == (1, 0)
        assert exporter.store_batch([("c.json", b"3")]) == (1, 0)
        assert exporter._process is None, "later batches are written in-process"
    finally:
        exporter.close()
    assert _files(tmp_path) == {"a.json": b"1", "b.json": b"2", "c.json": b"3"}
    assert "the writer process stopped; writing cassettes in-process" in caplog.text


def test_the_writer_process_is_not_instrumented(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIMETRACER_MODE", "record")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setattr(sys, "path", ["/x/opentelemetry/instrumentation/auto_instrumentation", *sys.path])
    environment = _child_environment()
    assert not any(key.startswith(("TIMETRACER_", "OTEL_")) for key in environment)
    assert "auto_instrumentation" not in environment["PYTHONPATH"]
