"""The ``timetracer`` command line: ``--version``, ``list`` and ``show`` against real cassette files."""

from __future__ import annotations

import gzip
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from timetracer_otel._version import __version__
from timetracer_otel.cassette.codec import cassette_from_bytes
from timetracer_otel.cassette.files import cassette_relative_path, dump_cassette
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
from timetracer_otel.cli import main
from timetracer_otel.settings import Compression

USER = b'{"id":42,"name":"Ada"}'


def _meta(
    cassette_id: str,
    recorded_at: datetime,
    duration_ms: float,
    *,
    trace_id: str | None = "4bf92f3577b34da6a3ce929d0e0e4736",
    incomplete: bool = False,
) -> Metadata:
    return Metadata(
        id=cassette_id,
        recorded_at=recorded_at,
        service="shop-api",
        tool_version="0.1.0",
        trace_id=trace_id,
        duration_ms=duration_ms,
        incomplete=incomplete,
    )


def user_cassette() -> Cassette:
    """A successful GET with two outbound calls from two libraries."""
    return Cassette(
        metadata=_meta(
            "3f2a9c0e5b7d4e1f8a6b2c3d4e5f6a7b", datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC), 48.25
        ),
        request=HttpRequest(
            method="GET",
            url="http://shop.local/users/42?expand=orders",
            route="/users/{user_id}",
            headers=(("host", "shop.local"),),
        ),
        response=HttpResponse(
            status=200, headers=(("content-type", "application/json"),), body=Body.of(USER)
        ),
        interactions=(
            Interaction(
                kind="http",
                library="httpx",
                request=HttpRequest(method="GET", url="https://users.internal/v1/users/42"),
                response=HttpResponse(status=200, reason="OK", http_version="HTTP/1.1", body=Body.of(USER)),
                start_ms=3.125,
                duration_ms=21.5,
                span_id="00f067aa0ba902b7",
                parent_span_id="53995c3f42cd8ad8",
            ),
            Interaction(
                kind="http",
                library="requests",
                request=HttpRequest(method="GET", url="https://stock.internal/items/A-1"),
                response=HttpResponse(status=404, body=Body.of(b"not here")),
                start_ms=25.5,
                duration_ms=17.0,
            ),
        ),
        spans=(
            SpanSummary(
                name="GET /users/{user_id}",
                kind="SERVER",
                span_id="53995c3f42cd8ad8",
                parent_span_id=None,
                start_ms=0.0,
                duration_ms=48.25,
            ),
        ),
    )


def failed_cassette() -> Cassette:
    """A POST whose app raised (no response) after an outbound call that timed out. Recorded earliest."""
    return Cassette(
        metadata=_meta(
            "9d8c7b6a5f4e3d2c1b0a998877665544", datetime(2025, 3, 14, 8, 0, 0, tzinfo=UTC), 5012.5
        ),
        request=HttpRequest(
            method="POST", url="http://shop.local/orders", route="/orders", body=Body.of(b"{}")
        ),
        error=RecordedError(type="httpx.ConnectTimeout", message="timed out"),
        interactions=(
            Interaction(
                kind="http",
                library="httpx",
                request=HttpRequest(method="POST", url="https://payments.example.com/charge"),
                error=RecordedError(type="httpx.ConnectTimeout", message="timed\nout"),
                start_ms=10.0,
                duration_ms=5000.25,
            ),
        ),
    )


def routeless_cassette() -> Cassette:
    """No route template, a truncated response body, and an incomplete recording. Recorded latest."""
    return Cassette(
        metadata=_meta(
            "1234abcd1234abcd1234abcd1234abcd",
            datetime(2025, 3, 15, 16, 2, 0, tzinfo=UTC),
            2.0,
            trace_id=None,
            incomplete=True,
        ),
        request=HttpRequest(method="DELETE", url="http://shop.local/carts/7?force=1"),
        response=HttpResponse(status=404, body=Body(data=b"x" * 16, size=90000, truncated=True)),
    )


def write(directory: Path, cassette: Cassette, compression: Compression) -> Path:
    path = directory / cassette_relative_path(cassette, compression)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(dump_cassette(cassette, compression))
    return path


@pytest.fixture
def india_time() -> Iterator[None]:
    """A fixed non-UTC local zone (UTC+05:30, no tzdata needed) so local-time output is predictable."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "IST-5:30"
    time.tzset()
    yield
    if saved is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = saved
    time.tzset()


@pytest.fixture
def cassettes(tmp_path: Path) -> dict[str, Path]:
    """One cassette per compression; file-name order (GET < POST) differs from recording order."""
    directory = tmp_path / "cassettes"
    return {
        "user": write(directory, user_cassette(), Compression.NONE),
        "failed": write(directory, failed_cassette(), Compression.GZIP),
        "routeless": write(directory, routeless_cassette(), Compression.ZSTD),
    }


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def assert_clean_error(result: Result, *fragments: str) -> None:
    """Exit 2 with one ``error:`` line naming the problem, and never a traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr
    assert result.stdout == ""


# -- version ----------------------------------------------------------------------------------------------


def test_version_prints_program_name_and_package_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout == f"timetracer {__version__}\n"


def test_console_script_points_at_main() -> None:
    (script,) = entry_points(group="console_scripts", name="timetracer")
    assert script.load() is main


# -- list -------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("india_time")
def test_list_table_rows_sorted_by_recording_time_in_local_time(cassettes: dict[str, Path]) -> None:
    directory = cassettes["user"].parents[1]
    result = run("list", str(directory))
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["time", "method", "route", "status", "duration", "interactions", "file"]
    assert [row.split() for row in rows] == [
        [
            "2025-03-14T13:30:00+05:30",
            "POST",
            "/orders",
            "httpx.ConnectTimeout",
            "5012.5",
            "ms",
            "1",
            "2025-03-14/POST__orders__9d8c7b6a5f4e.json.gz",
        ],
        [
            "2025-03-14T14:56:53+05:30",
            "GET",
            "/users/{user_id}",
            "200",
            "48.2",
            "ms",
            "2",
            "2025-03-14/GET__users-user-id__3f2a9c0e5b7d.json",
        ],
        [
            "2025-03-15T21:32:00+05:30",
            "DELETE",
            "/carts/7",
            "404",
            "2.0",
            "ms",
            "0",
            cassettes["routeless"].relative_to(directory).as_posix(),
        ],
    ]
    assert result.stderr == ""


def test_list_table_columns_are_aligned(cassettes: dict[str, Path]) -> None:
    result = run("list", str(cassettes["user"].parents[1]))
    lines = result.stdout.splitlines()
    # Every line starts its "file" column (the last one, left-aligned) at the same offset.
    offsets = {line.index("2025-03-1", 20) for line in lines[1:]} | {lines[0].index("file")}
    assert len(offsets) == 1
    assert all(line == line.rstrip() for line in lines)


def test_list_json_has_every_field_with_numbers_as_numbers(cassettes: dict[str, Path]) -> None:
    directory = cassettes["user"].parents[1]
    result = run("list", "--json", str(directory))
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [r["id"][:4] for r in records] == ["9d8c", "3f2a", "1234"]
    failed, user, routeless = records
    assert user == {
        "id": "3f2a9c0e5b7d4e1f8a6b2c3d4e5f6a7b",
        "time": "2025-03-14T09:26:53+00:00",
        "method": "GET",
        "route": "/users/{user_id}",
        "status": 200,
        "scope": "request",
        "error": None,
        "duration_ms": 48.25,
        "interactions": 2,
        "file": "2025-03-14/GET__users-user-id__3f2a9c0e5b7d.json",
    }
    assert (failed["status"], failed["error"], failed["duration_ms"]) == (
        None,
        "httpx.ConnectTimeout",
        5012.5,
    )
    assert failed["file"].endswith(".json.gz")
    assert (routeless["route"], routeless["status"], routeless["interactions"]) == ("/carts/7", 404, 0)
    assert routeless["file"].endswith(".json.zst")


def test_list_defaults_to_timetracer_dir_then_to_cassettes(
    cassettes: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "elsewhere"
    write(other, failed_cassette(), Compression.NONE)
    from_env = run("list", "--json", env={"TIMETRACER_DIR": str(other), "OTEL_TIMETRACER_DIR": None})
    assert [r["id"][:4] for r in json.loads(from_env.stdout)] == ["9d8c"]

    monkeypatch.chdir(tmp_path)
    default = run("list", "--json", env={"TIMETRACER_DIR": None, "OTEL_TIMETRACER_DIR": None})
    assert len(json.loads(default.stdout)) == 3


def test_list_skips_an_unreadable_cassette_and_exits_1(cassettes: dict[str, Path]) -> None:
    directory = cassettes["user"].parents[1]
    bad = directory / "2025-03-14" / "GET__broken__0000.json"
    bad.write_text('{"schema": 1, "metadata": ')
    result = run("list", str(directory))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"skipped {bad}: not valid JSON")
    assert "truncated?" in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stdout.splitlines()) == 4  # header + the three good cassettes


def test_list_json_still_lists_the_good_cassettes_when_one_is_skipped(cassettes: dict[str, Path]) -> None:
    directory = cassettes["user"].parents[1]
    (directory / "future.json").write_text(json.dumps({"schema": 99}))
    result = run("list", "--json", str(directory))
    assert result.exit_code == 1
    assert len(json.loads(result.stdout)) == 3
    assert "schema version 99 is not supported" in result.stderr


def test_list_missing_directory_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = run("list", str(missing))
    assert_clean_error(result, f"no cassettes at {missing}")


def test_list_a_file_instead_of_a_directory_exits_2(cassettes: dict[str, Path]) -> None:
    assert_clean_error(run("list", str(cassettes["user"])), "is not a directory")


def test_list_empty_directory_says_so_and_exits_0(tmp_path: Path) -> None:
    result = run("list", str(tmp_path))
    assert result.exit_code == 0
    assert result.stdout == f"no cassettes in {tmp_path}\n"
    assert run("list", "--json", str(tmp_path)).stdout == "[]\n"


# -- show -------------------------------------------------------------------------------------------------


def summary_of(result: Result) -> dict[str, str]:
    lines = result.stdout.split("\n\n")[0].splitlines()
    return {line[:14].strip(): line[14:] for line in lines}


@pytest.mark.usefixtures("india_time")
def test_show_summarises_a_successful_cassette(cassettes: dict[str, Path]) -> None:
    result = run("show", str(cassettes["user"]))
    assert result.exit_code == 0, result.output
    assert summary_of(result) == {
        "cassette": "3f2a9c0e5b7d4e1f8a6b2c3d4e5f6a7b",
        "recorded at": "2025-03-14T14:56:53+05:30",
        "service": "shop-api",
        "recorded by": "timetracer-otel 0.1.0",
        "trace id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "duration": "48.2 ms",
        "request": "GET http://shop.local/users/42?expand=orders",
        "route": "/users/{user_id}",
        "response": "200, body 22 bytes",
        "interactions": "2 (http/httpx: 1, http/requests: 1)",
    }
    assert "start ms" not in result.stdout  # events only with --events


def test_show_reports_the_app_error_and_missing_response(cassettes: dict[str, Path]) -> None:
    summary = summary_of(run("show", str(cassettes["failed"])))
    assert summary["response"] == "none"
    assert summary["error"] == "httpx.ConnectTimeout: timed out"
    assert summary["interactions"] == "1 (http/httpx: 1)"


def test_show_flags_truncated_bodies_and_incomplete_recordings(cassettes: dict[str, Path]) -> None:
    summary = summary_of(run("show", str(cassettes["routeless"])))
    assert summary["response"] == "404, body 90000 bytes (truncated: 16 stored)"
    assert summary["incomplete"].startswith("yes")
    assert summary["trace id"] == "-"
    assert summary["route"] == "/carts/7"
    assert summary["interactions"] == "0"


def test_show_events_lists_each_call_with_status_or_error(cassettes: dict[str, Path]) -> None:
    result = run("show", "--events", str(cassettes["user"]))
    events = result.stdout.split("\n\n")[1].splitlines()
    assert events[0].split() == ["#", "start", "ms", "duration", "ms", "library", "method", "url", "status"]
    assert events[1].split() == [
        "1",
        "3.1",
        "21.5",
        "httpx",
        "GET",
        "https://users.internal/v1/users/42",
        "200",
    ]
    assert events[2].split() == [
        "2",
        "25.5",
        "17.0",
        "requests",
        "GET",
        "https://stock.internal/items/A-1",
        "404",
    ]

    failed = run("show", "--events", str(cassettes["failed"])).stdout.split("\n\n")[1].splitlines()
    # The message's newline is folded so each call stays on one line.
    assert failed[1].split() == [
        "1",
        "10.0",
        "5000.2",
        "httpx",
        "POST",
        "https://payments.example.com/charge",
        "httpx.ConnectTimeout:",
        "timed",
        "out",
    ]
    assert len(failed) == 2


def test_show_escapes_terminal_control_characters(tmp_path: Path) -> None:
    hostile = Cassette(
        metadata=_meta("abcdefabcdefabcdefabcdefabcdefab", datetime(2025, 1, 1, tzinfo=UTC), 1.0),
        request=HttpRequest(method="GET", url="http://x/\x1b[2Jboom"),
        interactions=(
            Interaction(
                kind="http",
                library="httpx",
                request=HttpRequest(method="GET", url="http://y/\x1b]0;title\x07"),
                response=HttpResponse(status=200),
            ),
        ),
    )
    result = run("show", "--events", str(write(tmp_path, hostile, Compression.NONE)))
    assert result.exit_code == 0
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "http://x/\\x1b[2Jboom" in result.stdout
    assert "http://y/\\x1b]0;title\\x07" in result.stdout


def test_show_json_round_trips(cassettes: dict[str, Path]) -> None:
    for name, original in (("user", user_cassette()), ("failed", failed_cassette())):
        result = run("show", "--json", "--events", str(cassettes[name]))
        assert result.exit_code == 0
        assert cassette_from_bytes(result.stdout.encode()) == original


def test_show_missing_file(tmp_path: Path) -> None:
    assert_clean_error(run("show", str(tmp_path / "gone.json")), "gone.json: no cassette here")


def test_show_truncated_gzip(cassettes: dict[str, Path], tmp_path: Path) -> None:
    cut = tmp_path / "cut.json.gz"
    cut.write_bytes(cassettes["failed"].read_bytes()[:120])
    assert_clean_error(run("show", str(cut)), "cut.json.gz", "corrupt or truncated gzip data")


def test_show_invalid_json(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema": 1,, }')
    assert_clean_error(run("show", str(broken)), "not valid JSON at line 1 column 14")


def test_show_tampered_body_size(cassettes: dict[str, Path], tmp_path: Path) -> None:
    document = json.loads(gzip.decompress(cassettes["failed"].read_bytes()))
    document["request"]["body"]["size"] = 3
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(document))
    assert_clean_error(run("show", str(tampered)), "request.body: a JSON body", "its size says 3 (was the")


def test_show_a_directory(cassettes: dict[str, Path]) -> None:
    assert_clean_error(run("show", str(cassettes["user"].parent)), "is a directory")
