"""The writer process assembles, encodes and stores the requests it is sent; if it dies, this process writes
instead and nothing is lost."""

from __future__ import annotations

import io
import os
import signal
import sys
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from opentelemetry.trace import SpanKind

from timetracer_otel._version import __version__
from timetracer_otel.cassette.files import load_cassette
from timetracer_otel.cassette.model import (
    Body,
    Cassette,
    HttpRequest,
    HttpResponse,
    Interaction,
    Metadata,
    RecordedError,
    SpanSummary,
)
from timetracer_otel.exporters.file import FileExporter
from timetracer_otel.exporters.spec import ExporterSpec
from timetracer_otel.record import writer_process
from timetracer_otel.record._writer_main import serve
from timetracer_otel.record.assembly import AssemblingWriter, assemble
from timetracer_otel.record.captured import (
    CapturedBody,
    CapturedCall,
    CapturedHttpRequest,
    CapturedHttpResponse,
    CapturedRequest,
    decode_captured,
    encode_captured,
)
from timetracer_otel.record.writer_process import LENGTH, WriterProcess, _child_environment
from timetracer_otel.settings import Compression

_MS = 1_000_000
_ID = "0123456789abcdef0123456789abcdef"


def _body(data: bytes, **flags: Any) -> CapturedBody:
    return CapturedBody(data, flags.pop("size", len(data)), **flags)


def _request(method: str = "GET", url: str = "http://api.test/items", body: bytes | None = None) -> CapturedHttpRequest:
    # Header pairs as servers and clients hold them: bytes in lists or tuples, or text.
    headers = [[b"Host", b"api.test"], (b"x-name", b"caf\xe9"), ("x-text", "plain")]
    return CapturedHttpRequest(method, url, headers, None if body is None else _body(body))


def _json_response(data: bytes = b'{"ok":true}') -> CapturedHttpResponse:
    return CapturedHttpResponse(200, [(b"content-type", b"application/json")], _body(data))


def _call(start_ms: int, response: CapturedHttpResponse | None, error: RecordedError | None = None,
          body: bytes | None = None) -> CapturedCall:
    start = _START_NS + start_ms * _MS
    return CapturedCall("http", "httpx", _request(body=body), response, error, start, start + 2 * _MS,
                        0xA0 + start_ms, 0xB0)


_START_NS = int(datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()) * 1_000_000_000


def _captured(day: int = 28, body: bytes = b'{"n":1}') -> CapturedRequest:
    started_at = datetime(2026, 11, day, 12, 0, tzinfo=UTC).timestamp()
    return CapturedRequest(
        id=_ID,
        started_at=started_at,
        start_ns=_START_NS,
        trace_id="0af7651916cd43dd8448eb211c80319c",
        incomplete=False,
        request=_request("POST", "http://app.test/checkout", b'{"item":3}'),
        response=_json_response(),
        error=None,
        # Out of start order: the cassette lists calls as they started.
        calls=(_call(5, _json_response()), _call(1, CapturedHttpResponse(200, (), _body(body)), body=b"\xff\x00")),
        spans=(("GET /checkout", SpanKind.SERVER.value, 0xB0, None, _START_NS, _START_NS + 9 * _MS),),
    )


def _cassette(day: int = 28, body: bytes = b'{"n":1}') -> Cassette:
    return assemble(_captured(day, body), "test")


def _loaded(directory: Path) -> dict[str, Cassette]:
    return {str(p.relative_to(directory)): load_cassette(p) for p in sorted(directory.rglob("*")) if p.is_file()}


def _days(directory: Path) -> list[str]:
    """The day folder of each cassette stored below ``directory``, in name order."""
    return [name[:10] for name in _loaded(directory)]


def test_a_captured_request_becomes_a_cassette_with_offsets_span_summaries_and_calls_in_start_order() -> None:
    headers = (("Host", "api.test"), ("x-name", "caf\xe9"), ("x-text", "plain"))
    json_response = HttpResponse(200, (("content-type", "application/json"),), Body(b'{"ok":true}', 11))
    assert assemble(_captured(), "checkout-svc") == Cassette(
        metadata=Metadata(id=_ID, recorded_at=datetime(2026, 11, 28, 12, 0, tzinfo=UTC), service="checkout-svc",
                          tool_version=__version__, trace_id="0af7651916cd43dd8448eb211c80319c", duration_ms=9.0),
        request=HttpRequest("POST", "http://app.test/checkout", headers, Body(b'{"item":3}', 10)),
        response=json_response,
        interactions=(
            Interaction("http", "httpx", HttpRequest("GET", "http://api.test/items", headers, Body(b"\xff\x00", 2)),
                        HttpResponse(200, (), Body(b'{"n":1}', 7)), start_ms=1.0, duration_ms=2.0,
                        span_id="00000000000000a1", parent_span_id="00000000000000b0"),
            Interaction("http", "httpx", HttpRequest("GET", "http://api.test/items", headers), json_response,
                        start_ms=5.0, duration_ms=2.0, span_id="00000000000000a5", parent_span_id="00000000000000b0"),
        ),
        spans=(SpanSummary("GET /checkout", "SERVER", "00000000000000b0", None, 0.0, 9.0),),
    )


def test_captured_requests_cross_to_the_writer_process_unchanged() -> None:
    original = _captured(body=bytes(range(256)) * 400)
    truncated = CapturedHttpResponse(200, (), _body(b"ab", size=9, truncated=True, complete=False,
                                                    content_coding="gzip"))
    failed = msgspec.structs.replace(original, calls=(_call(3, None, RecordedError("httpx.ConnectError", "no")),
                                                      _call(4, truncated)), incomplete=True, trace_id=None)
    for captured in (original, failed):
        # Header pairs arrive as lists where they left as tuples; the cassette is the same.
        assert assemble(decode_captured(encode_captured(captured)), "s") == assemble(captured, "s")
    assert assemble(failed, "s").interactions[1].response == HttpResponse(
        200, (), Body(b"ab", 9, truncated=True, complete=False, content_coding="gzip")
    )


def test_batches_are_encoded_and_written_by_the_writer_process(tmp_path: Path) -> None:
    big = b'{"blob":"' + b"x" * 100_000 + b'"}'
    with closing(WriterProcess(ExporterSpec("test", Compression.GZIP, tmp_path))) as writer:
        writer.store_batch([_captured(), _captured(27, big)])
        assert writer.drain(10) == (2, 0)
        assert writer._process is not None and writer._process.pid != os.getpid()
        writer.store_batch([_captured()])  # never replaces: a new name instead
        assert writer.drain(10) == (1, 0)
    loaded = _loaded(tmp_path)
    names = sorted(loaded)
    assert names == [
        "2026-11-27/POST__checkout__0123456789ab.json.gz",
        "2026-11-28/POST__checkout__0123456789ab-1.json.gz",
        "2026-11-28/POST__checkout__0123456789ab.json.gz",
    ]
    assert loaded[names[0]] == _cassette(27, big)
    assert loaded[names[1]] == loaded[names[2]] == _cassette()
    assert writer._process is None


def test_a_cassette_that_cannot_be_stored_fails_alone(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "2026-11-27").write_text("a file where the day's folder would go")
    with closing(WriterProcess(ExporterSpec("test", Compression.NONE, tmp_path))) as writer:
        writer.store_batch([_captured(27), _captured(28)])
        assert writer.drain(10) == (1, 1)
    assert (tmp_path / "2026-11-28/POST__checkout__0123456789ab.json").is_file()
    assert "could not write cassette 0123456789abcdef0123456789abcdef" in capfd.readouterr().err


def test_a_frame_the_writer_process_cannot_decode_is_counted_as_failed(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    good = encode_captured(_captured())
    frames = b"C" + LENGTH.pack(3) + b"\xc1\xc1\xc1" + b"C" + LENGTH.pack(len(good)) + good + b"A"
    answers = io.BytesIO()
    serve(AssemblingWriter(FileExporter(tmp_path), "test"), io.BytesIO(frames), answers)
    assert answers.getvalue() == b"1 1\n"
    assert "could not decode a captured request" in caplog.text
    assert list(_loaded(tmp_path).values()) == [_cassette()]


def test_a_writer_process_that_died_between_batches_is_replaced(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    with closing(WriterProcess(ExporterSpec("test", Compression.NONE, tmp_path))) as writer:
        writer.store_batch([_captured(26)])
        assert writer.drain(10) == (1, 0)
        assert writer._process is not None
        writer._process.kill()
        writer._process.wait()
        writer.store_batch([_captured(27), _captured(28)])
        assert writer.drain(10) == (2, 0)
        assert writer._process is not None and writer._process.poll() is None, "a new writer runs"
    assert _days(tmp_path) == ["2026-11-26", "2026-11-27", "2026-11-28"]
    assert "the writer process exited with code -9; starting a new one" in caplog.text


def test_a_batch_the_writer_process_did_not_take_is_written_here(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    with closing(WriterProcess(ExporterSpec("test", Compression.NONE, tmp_path))) as writer:
        writer.store_batch([_captured(26)])
        assert writer.drain(10) == (1, 0)
        assert writer._process is not None and writer._process.stdin is not None
        writer._process.stdin.close()  # the pipe breaks while a batch is being handed over
        assert writer.store_batch([_captured(27)]) == (1, 0)
        assert writer.store_batch([_captured(28)]) == (1, 0)
        assert writer._process is None, "later batches are written in-process"
    assert _days(tmp_path) == ["2026-11-26", "2026-11-27", "2026-11-28"]
    assert "the writer process stopped; writing cassettes in-process" in caplog.text


def test_batches_in_flight_when_the_writer_process_dies_are_written_here(tmp_path: Path) -> None:
    with closing(WriterProcess(ExporterSpec("test", Compression.NONE, tmp_path))) as writer:
        writer.store_batch([_captured(25)])
        assert writer.drain(10) == (1, 0)
        process = writer._process
        assert process is not None
        os.kill(process.pid, signal.SIGSTOP)  # it reads nothing more: the next batches wait in the pipe
        assert writer.store_batch([_captured(26)]) == (0, 0)
        assert writer.store_batch([_captured(27)]) == (0, 0)
        process.kill()
        process.wait()
        assert writer.store_batch([_captured(28)]) == (2, 0), "26 and 27 were written here"
        assert writer.drain(10) == (1, 0), "28 by a new writer process"
    assert _days(tmp_path) == ["2026-11-25", "2026-11-26", "2026-11-27", "2026-11-28"]


def test_a_hung_writer_process_is_replaced_by_writing_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(writer_process, "_STALLED_SECONDS", 0.5)
    with closing(WriterProcess(ExporterSpec("test", Compression.NONE, tmp_path))) as writer:
        writer.store_batch([_captured(20)])
        assert writer._process is not None
        os.kill(writer._process.pid, signal.SIGSTOP)
        counts = [writer.store_batch([_captured(day)]) for day in range(21, 27)]
        assert writer._process is None, "a writer process that acknowledges nothing is given up"
        writer.store_batch([_captured(27)])
    assert sum(stored for stored, _ in counts) == 7, counts  # 20 to 26, whoever wrote them
    assert _days(tmp_path) == [f"2026-11-{day}" for day in range(20, 28)]
    assert "the writer process acknowledged nothing for 0.5 s" in caplog.text


def test_the_writer_process_is_not_instrumented(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIMETRACER_MODE", "record")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setattr(sys, "path", ["/x/opentelemetry/instrumentation/auto_instrumentation", *sys.path])
    environment = _child_environment()
    assert not any(key.startswith(("TIMETRACER_", "OTEL_")) for key in environment)
    assert "auto_instrumentation" not in environment["PYTHONPATH"]
