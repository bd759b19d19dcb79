"""Recorded traffic replayed as regression tests: ``timetracer replay`` and ``pytest --timetracer-replay``.

Cassettes are recorded from the examples under ``opentelemetry-instrument`` against their real upstream, which is
then stopped: every replay below runs without it, in-process, with each request's calls answered from its own
cassette.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.servers import BIN, EXAMPLE, ROOT, Server, ServerProcess, free_port
from timetracer_otel.cassette.files import iter_cassette_files, load_cassette
from timetracer_otel.cassette.model import Body, Cassette, HttpRequest, HttpResponse, Metadata
from timetracer_otel.errors import ConfigurationError
from timetracer_otel.replay.compare import Answer, JsonPath, NoiseRules, compare, load_noise_config
from timetracer_otel.replay.driver import Interface, detect_interface, unreplayable

pytest_plugins = ["pytester"]

FLASK_EXAMPLE = ROOT / "examples" / "flask_requests"
CHECKOUT_TOTAL = 'total = round(price.json()["price"] * order.quantity, 2)'
FLASK_TOTAL = 'total = round(price["price"] * order.get("quantity", 1), 2)'


@dataclass(frozen=True)
class Recorded:
    fastapi: Path
    flask: Path
    #: The stopped upstream's URL: the apps must call the URL they called when recorded.
    upstream: str


def _env(upstream: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIMETRACER_", "OTEL_", "FLASK_"))}
    env["UPSTREAM_URL"] = upstream
    return env


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """Both examples recorded against one live upstream, stopped before any test replays."""
    work = tmp_path_factory.mktemp("recorded")
    with Server("upstream:app", cwd=EXAMPLE, log=work / "upstream.log") as upstream:
        env = {"TIMETRACER_MODE": "record", "UPSTREAM_URL": upstream.url}
        with Server("app:app", cwd=EXAMPLE, log=work / "fastapi.log", instrument=True,
                    env={**env, "TIMETRACER_DIR": str(work / "fastapi")}) as app, \
                httpx.Client(base_url=app.url, timeout=10) as client:
            assert client.post("/checkout", json={"item": 3}).json()["total"] == 14.49
            assert client.post("/checkout", json={"item": 10, "quantity": 2}).json()["total"] == 49.98
            assert client.get("/users/42").status_code == 200
        port = free_port()
        flask = [str(BIN / "opentelemetry-instrument"), str(BIN / "flask"), "--app", "app", "run", "--host",
                 "127.0.0.1", "--port", str(port)]
        with ServerProcess(flask, port=port, cwd=FLASK_EXAMPLE, log=work / "flask.log", dropped=("FLASK_",),
                           env={**env, "TIMETRACER_DIR": str(work / "flask")}) as app, \
                httpx.Client(base_url=app.url, timeout=10) as client:
            # The same request twice: the upstream numbers its audits, so the two answers differ.
            audits = [client.post("/checkout", json={"item": 3, "quantity": 2}).json()["audit_id"] for _ in "ab"]
            assert audits[1] == audits[0] + 1
            assert client.get("/users/42").status_code == 200
            assert client.get("/boom").status_code == 500
    assert len(list(iter_cassette_files(work / "fastapi"))) == 3
    assert len(list(iter_cassette_files(work / "flask"))) == 4
    return Recorded(work / "fastapi", work / "flask", upstream.url)


def _replay(cwd: Path, recorded: Recorded, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "timetracer"), "replay", *map(str, args)], cwd=cwd, env=_env(recorded.upstream),
                          capture_output=True, text=True, timeout=60)


def _copy(example: Path, target: Path, replacements: Mapping[str, str]) -> Path:
    shutil.copytree(example, target, ignore=shutil.ignore_patterns("__pycache__", "cassettes"))
    app = target / "app.py"
    source = app.read_text()
    for old, new in replacements.items():
        assert old in source, old
        source = source.replace(old, new)
    app.write_text(source)
    return target


def _verdicts(stdout: str) -> list[tuple[str, str, str]]:
    return re.findall(r"^(PASS|FAIL|SKIP)  (\w+) +(\S+) +\S+\.json", stdout, flags=re.MULTILINE)


@pytest.mark.slow
def test_fastapi_cassettes_pass_and_a_changed_handler_fails_on_the_changed_field(
    recorded: Recorded, tmp_path: Path
) -> None:
    result = _replay(EXAMPLE, recorded, recorded.fastapi, "--app", "app:app")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _verdicts(result.stdout) == [("PASS", "POST", "/checkout"), ("PASS", "POST", "/checkout"),
                                        ("PASS", "GET", "/users/42")]
    assert "3 passed, 0 failed" in result.stdout

    changed = _copy(EXAMPLE, tmp_path / "changed", {CHECKOUT_TOTAL: CHECKOUT_TOTAL.replace(", 2)", " + 10, 2)")})
    result = _replay(changed, recorded, recorded.fastapi, "--app", "app:app")
    assert result.returncode == 1, result.stdout + result.stderr
    assert _verdicts(result.stdout) == [("FAIL", "POST", "/checkout"), ("FAIL", "POST", "/checkout"),
                                        ("PASS", "GET", "/users/42")]
    assert "      body $.total: 14.49 -> 24.49\n" in result.stdout
    assert "      body $.total: 49.98 -> 59.98\n" in result.stdout
    # The changed total reaches the audit call too: it no longer matches its recording, and the report says why.
    assert "error: none -> timetracer_otel.errors.ReplayMismatchError" in result.stdout
    assert "body differs: recorded '{\"item\":3,\"total\":14.49}'" in result.stdout
    assert "1 passed, 2 failed" in result.stdout


NOISY = {
    'return {"id": user_id, "name": profile.json()["name"]}':
        'return {"id": user_id, "name": profile.json()["name"], "served_at": __import__("time").time()}',
    '@app.get("/health")': '''@app.middleware("http")
async def request_id(request, call_next):
    response = await call_next(request)
    response.headers["x-request-id"] = __import__("uuid").uuid4().hex
    return response


@app.get("/health")''',
}


@pytest.mark.slow
def test_noise_is_detected_and_ignored_by_header_name_and_json_path(recorded: Recorded, tmp_path: Path) -> None:
    noisy = _copy(EXAMPLE, tmp_path / "noisy", NOISY)

    result = _replay(noisy, recorded, recorded.fastapi, "--app", "app:app", "--detect-noise")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^DIFF  GET   /users/42 .*\(header x-request-id, \$\.served_at\)$", result.stdout, re.MULTILINE)
    block = result.stdout[result.stdout.index("[tool.timetracer.replay]"):]
    assert block == ('[tool.timetracer.replay]\nignore_headers = ["x-request-id"]\nignore_paths = ["$.served_at"]\n')

    # Only the header ignored: the field still fails, and nothing else does.
    result = _replay(noisy, recorded, recorded.fastapi, "--app", "app:app", "--ignore-header", "X-Request-ID")
    assert result.returncode == 1, result.stdout + result.stderr
    assert [verdict for verdict, _, _ in _verdicts(result.stdout)] == ["PASS", "PASS", "FAIL"]
    assert re.search(r"^      body \$\.served_at: added \d+\.\d+$", result.stdout, re.MULTILINE)
    assert "x-request-id" not in result.stdout

    # The proposed block, pasted into pyproject.toml, makes the run pass.
    (noisy / "pyproject.toml").write_text(block)
    result = _replay(noisy, recorded, recorded.fastapi, "--app", "app:app")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed, 0 failed" in result.stdout


@pytest.mark.slow
def test_flask_wsgi_cassettes_pass_with_each_request_answered_from_its_own_cassette(recorded: Recorded) -> None:
    result = _replay(FLASK_EXAMPLE, recorded, recorded.flask, "--app", "app:app")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _verdicts(result.stdout) == [("PASS", "POST", "/checkout"), ("PASS", "POST", "/checkout"),
                                        ("PASS", "GET", "/users/42"), ("PASS", "GET", "/boom")]
    # The second identical checkout, alone: it gets its own recording (its audit id), not the first one's.
    second = sorted((load_cassette(p) for p in iter_cassette_files(recorded.flask) if "checkout" in p.name),
                    key=lambda c: c.metadata.recorded_at)[1]
    [path] = [p for p in iter_cassette_files(recorded.flask) if second.metadata.id[:12] in p.name]
    result = _replay(FLASK_EXAMPLE, recorded, path, "--app", "app:app")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _verdicts(result.stdout) == [("PASS", "POST", "/checkout")]


@pytest.mark.slow
def test_usage_errors_exit_2(recorded: Recorded, tmp_path: Path) -> None:
    result = _replay(EXAMPLE, recorded, recorded.fastapi, "--app", "app:missing")
    assert (result.returncode, result.stderr) == (2, "error: app:missing: module app has no attribute missing\n")
    result = _replay(EXAMPLE, recorded, tmp_path / "none", "--app", "app:app", "--ignore-path", "$.items[")
    assert result.returncode == 2
    assert result.stderr.startswith("error: --ignore-path='$.items[' is not valid: expected a JSON path")


def _pytest(pytester: pytest.Pytester, recorded: Recorded, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "timetracer_otel._pytest_replay", "-p", "no:cacheprovider", "--timetracer-replay", str(recorded.flask),
        "--timetracer-app", "app:app", *args,
    )


@pytest.mark.slow
def test_pytest_collects_a_test_per_cassette(
    pytester: pytest.Pytester, recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPSTREAM_URL", recorded.upstream)
    for name in [n for n in os.environ if n.startswith(("TIMETRACER_", "OTEL_", "FLASK_"))]:
        monkeypatch.delenv(name)
    shutil.copy(FLASK_EXAMPLE / "app.py", pytester.path / "app.py")
    first = min((load_cassette(p) for p in iter_cassette_files(recorded.flask) if "checkout" in p.name),
                key=lambda c: c.metadata.recorded_at)

    # Without the first checkout: the second runs first, and still gets its own cassette.
    result = _pytest(pytester, recorded, "-v", "-k", f"not {first.metadata.id[:12]}")
    result.assert_outcomes(passed=3, deselected=1)
    result.stdout.fnmatch_lines(["*replay::POST /checkout [[]*POST__checkout__*.json] PASSED*",
                                 "*replay::GET /users/<int:user_id> [[]*.json] PASSED*",
                                 "*replay::GET /boom [[]*GET__boom__*.json] PASSED*"])

    (pytester.path / "app.py").write_text((FLASK_EXAMPLE / "app.py").read_text().replace(
        FLASK_TOTAL, FLASK_TOTAL.replace(", 2)", " + 10, 2)")))
    result = _pytest(pytester, recorded, "-m", "timetracer_replay")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["*the response differs from the one recorded in *POST__checkout__*.json:",
                                 "body $.total: 28.98 -> 38.98"])
    assert "Traceback" not in result.stdout.str()


# -- units: the comparison on its own -------------------------------------------------------------------------


def _cassette(response: HttpResponse | None, body: Body | None = None) -> Cassette:
    from datetime import UTC, datetime

    metadata = Metadata(id="0" * 32, recorded_at=datetime(2026, 1, 1, tzinfo=UTC), service="s", tool_version="0")
    return Cassette(metadata, HttpRequest("POST", "http://h/upload", body=body), response)


def test_json_paths_and_what_they_cover() -> None:
    assert JsonPath.parse("$.items[*].id").matches(("items", 3, "id"))
    assert JsonPath.parse("$.items[*].id").matches(("items", 3, "id", "deeper"))
    assert not JsonPath.parse("$.items[*].id").matches(("items", 3, "name"))
    assert JsonPath.parse("$..id").matches(("a", 0, "b", "id"))
    assert JsonPath.parse("$['odd key'][0]").matches(("odd key", 0))
    for bad in ("items.id", "$.", "$[x]", "$..", "$['open"):
        with pytest.raises(ValueError):
            JsonPath.parse(bad)


def test_comparison_names_each_difference_and_ignores_noise() -> None:
    recorded = Answer(200, (("Content-Type", "application/json"), ("Date", "Mon"), ("X-Old", "1")),
                      b'{"total": 49.98, "items": [{"id": 1, "n": true}], "at": "x"}')
    live = Answer(500, (("content-type", "application/json"), ("date", "Tue"), ("x-new", "2")),
                  b'{"total": 59.98, "items": [{"id": 2, "n": 1}, {"id": 3}]}')
    assert compare(recorded, live, NoiseRules.build()).render() == [
        "status: 200 -> 500",
        'header x-new: added "2"',
        'header x-old: removed "1"',
        "body $.total: 49.98 -> 59.98",
        "body $.items[0].id: 1 -> 2",
        "body $.items[0].n: true -> 1",
        'body $.items[1]: added {"id":3}',
        'body $.at: removed "x"',
    ]
    rules = NoiseRules.build(["x-old", "x-new"], [JsonPath.parse(p) for p in ("$.total", "$..id", "$.items[1]")])
    assert compare(recorded, live, rules).render() == ["status: 200 -> 500", "body $.items[0].n: true -> 1",
                                                       'body $.at: removed "x"']
    text = compare(Answer(200, (), b"a\nb\n"), Answer(200, (), b"a\nc\n")).render()
    assert text == ["body (text) differs:", "  --- recorded", "  +++ replayed", "  @@ -1,2 +1,2 @@", "   a",
                    "  -b", "  +c"]
    assert compare(Answer(200, (("content-type", "image/png"),), b"\x89PNG\x00"),
                   Answer(200, (("content-type", "image/png"),), b"\x89PNG\x01!")).render() == [
        "body (binary): 5 -> 6 bytes, first difference at byte 4"]


def test_a_truncated_body_is_compared_as_far_as_it_was_kept() -> None:
    response = HttpResponse(200, (("content-type", "text/plain"),), Body(b"abc", size=10, truncated=True))
    recorded = Answer.recorded(_cassette(response))
    same = compare(recorded, Answer.live(200, (("content-type", "text/plain"),), b"abcdefghij"))
    assert same.ok
    assert same.notes == ("the body was compared on its first 3 bytes only (cut at TIMETRACER_MAX_BODY_BYTES when "
                          "recorded: 3 of 10 bytes stored)",)
    assert compare(recorded, Answer.live(200, (("content-type", "text/plain"),), b"abXdefghijk")).render()[:2] == [
        "body size: 10 -> 11 bytes", "body (its first bytes) (text) differs:"]
    # A request body cut at the cap cannot be sent again: such a cassette is skipped, saying why.
    skipped = _cassette(response, Body(b"12", size=5, truncated=True))
    assert "request body was cut at TIMETRACER_MAX_BODY_BYTES (2 of 5 bytes stored)" in str(unreplayable(skipped))


def test_a_recorded_error_is_expected_again_but_not_another_one() -> None:
    recorded = Answer(500, (), b"Internal Server Error", error_type="builtins.RuntimeError")
    assert compare(recorded, Answer.live(500, (), b"Internal Server Error", RuntimeError("boom"))).ok
    other = compare(recorded, Answer.live(500, (), b"Internal Server Error", KeyError("x")))
    assert other.render() == ["error: builtins.RuntimeError -> builtins.KeyError",
                              "the app raised builtins.KeyError: 'x'"]


def test_noise_config_from_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.timetracer.replay]\nignore_headers = ["X-Trace"]\n'
                                             'ignore_paths = ["$..id"]\n')
    (tmp_path / "sub").mkdir()
    config = load_noise_config(tmp_path / "sub")
    assert config.source == tmp_path / "pyproject.toml"
    rules = config.rules()
    assert rules.ignores_header("x-trace") and rules.ignores_header("date") and rules.ignores_path(("a", "id"))
    (tmp_path / "pyproject.toml").write_text('[tool.timetracer.replay]\nignore_path = ["$.a"]\n')
    with pytest.raises(ConfigurationError, match="only the settings ignore_headers and ignore_paths"):
        load_noise_config(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.timetracer.replay]\nignore_paths = ["$.a["]\n')
    with pytest.raises(ConfigurationError, match=r"ignore_paths='\$.a\[' is not valid"):
        load_noise_config(tmp_path)


def test_asgi_and_wsgi_apps_are_told_apart() -> None:
    async def asgi(scope: object, receive: object, send: object) -> None: ...

    def wsgi(environ: object, start_response: object) -> list[bytes]:
        return []

    class Asgi3:
        def __call__(self, scope: object, receive: object, send: object) -> object: ...

    assert detect_interface(asgi) is Interface.ASGI
    assert detect_interface(Asgi3()) is Interface.ASGI
    assert detect_interface(wsgi) is Interface.WSGI
    with pytest.raises(Exception, match="say which with --interface"):
        detect_interface(lambda: None)
