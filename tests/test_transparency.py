"""Recording must never change what the app receives or what the client gets back, in any framework.

The transparency corpus (``tests/apps/corpus``) is one app per framework answering the same requests the same
way; a view that receives data answers with a description of exactly what it saw. Each app is served under
``opentelemetry-instrument`` once per mode: recording off (the reference), full recording (sampling at 1.0),
sampling at 0.0, and errors only. Every answer must be byte-identical to the reference (status line, headers
but ``date`` and ``server``, body), which proves the views saw identical request data too; and the cassettes
of the recording modes must say what happened.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from websockets.sync.client import connect

from tests.apps.corpus import seen
from tests.servers import BIN, ROOT, Server, ServerProcess, free_port
from timetracer_otel import Cassette, load_cassette
from timetracer_otel.cassette.files import iter_cassette_files
from timetracer_otel.cassette.schema import cassette_schema

pytestmark = pytest.mark.slow

#: TIMETRACER_MAX_BODY_BYTES's default: a cassette keeps a body up to this, and notes its whole size.
BODY_CAP = 1024 * 1024
FIVE_MIB = random.Random(5).randbytes(5 * 1024 * 1024)
BLOB_SIZE = 3_000_000
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
NOT_UTF8 = b"\xff\xfe not utf-8 \x00\xc3\x28"
CHUNKED = (b'{"sent": ', b'"in pieces"', b"}")
DOCUMENT = {"name": "page", "password": "s3cret", "nested": {"a": [1, 2]}, "text": "café"}
FORM = {"page": "2", "q": "x y", "many": ["1", "2"]}
FORM_FIELDS = [("page", "2"), ("q", "x y"), ("many", "1"), ("many", "2")]
URLENCODED = "application/x-www-form-urlencoded"
#: httpx picks a random boundary, which the views would see (and describe) differently on every run.
MULTIPART = "multipart/form-data; boundary=corpus-boundary"
WEBSOCKET_MESSAGES = ("one", "two", "three")
#: Names each corpus request, so that its cassette can be told from the others; the apps ignore it.
CALL_HEADER = "x-corpus-call"
VALIDATOR = Draft202012Validator(cassette_schema())


# -- the corpus --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request of the corpus, and what the reference (recording off) must answer."""

    name: str
    method: str
    path: str
    status: int
    #: The body every framework answers with; None where the framework writes it (its 500 page, its redirect).
    answer: bytes | None
    #: The route template the cassette must name, in Starlette's spelling (see ``Framework.routes``).
    route: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    #: The request body; a tuple is sent piece by piece, so httpx sends it chunked (no Content-Length).
    content: bytes | tuple[bytes, ...] | None = None
    json: Any = None
    data: Mapping[str, Any] | None = None
    files: Mapping[str, tuple[str, bytes, str]] | None = None

    @property
    def chunked(self) -> bool:
        return isinstance(self.content, tuple)

    def send(self, client: httpx.Client) -> tuple[httpx.Response, bytes]:
        """The response, and the request body as sent."""
        content = iter(self.content) if isinstance(self.content, tuple) else self.content
        request = client.build_request(self.method, self.path, headers={CALL_HEADER: self.name, **self.headers},
                                       content=content, json=self.json, data=self.data, files=self.files)
        # A chunked body goes out as it is produced: httpx keeps no copy. Others (a multipart body is a stream
        # too) are read first, and then sent as exactly these bytes.
        sent = b"".join(self.content) if isinstance(self.content, tuple) else request.read()
        return client.send(request), sent


def _raw(name: str, body: bytes | tuple[bytes, ...], content_type: str = seen.OCTETS) -> Call:
    whole = b"".join(body) if isinstance(body, tuple) else body
    return Call(name, "POST", "/echo/raw", 200, seen.raw_body("POST", content_type, whole),
                headers={"content-type": content_type}, content=body)


CORPUS = (
    Call("json", "POST", "/echo/json", 200, seen.json_body("POST", seen.JSON, DOCUMENT), json=DOCUMENT),
    Call("urlencoded form", "POST", "/echo/form", 200, seen.form("POST", URLENCODED, FORM_FIELDS, []), data=FORM),
    Call("multipart upload", "POST", "/echo/form", 200,
         seen.form("POST", MULTIPART, [("title", "photo")], [seen.uploaded_file("upload", "p.png", "image/png", PNG)]),
         headers={"content-type": MULTIPART}, data={"title": "photo"}, files={"upload": ("p.png", PNG, "image/png")}),
    _raw("binary body", PNG),
    _raw("non-UTF-8 body", NOT_UTF8, "text/plain; charset=utf-8"),
    _raw("5 MiB body", FIVE_MIB),
    _raw("empty body", b""),
    _raw("chunked body", CHUNKED),
    Call("path parameter", "GET", "/items/1", 200, seen.item(1), route="/items/{item_id}"),
    Call("HEAD", "HEAD", "/items/1", 200, b"", route="/items/{item_id}"),
    Call("response over the size cap", "GET", f"/blob?size={BLOB_SIZE}", 200, seen.blob(BLOB_SIZE)),
    Call("204", "GET", "/nothing", 204, b""),
    Call("204 to DELETE", "DELETE", "/nothing", 204, b""),
    Call("200 with an ETag", "GET", "/cached", 200, seen.CACHED_BODY),
    Call("304", "GET", "/cached", 304, b"", headers={"if-none-match": seen.ETAG}),
    Call("redirect", "GET", "/redirect", 302, None),
    Call("streaming response", "GET", "/stream", 200, b"".join(seen.STREAM_CHUNKS)),
    Call("server-sent events", "GET", "/events", 200, b"".join(seen.SSE_EVENTS)),
    Call("excluded path", "GET", "/health", 200, seen.HEALTHY),
)
MOUNTED = Call("mounted sub-app", "GET", "/sub/items/7", 200, seen.item(7), route="/sub/items/{item_id}")
#: Sent last: uvicorn closes the connection when the app raised after its response started (as Starlette's 500
#: handler does), so a request already on its way over the same connection would be reset.
BOOM = Call("view raises", "GET", "/boom", 500, None)
#: Excluded by TIMETRACER_EXCLUDE_PATHS's defaults: never recorded.
EXCLUDED = "/health"


# -- the frameworks ----------------------------------------------------------------------------------------

#: Starts an app under ``opentelemetry-instrument`` with this log and these variables added to the environment.
Serve = Callable[[Path, Mapping[str, str]], ServerProcess]
#: Read when OpenTelemetry's Django instrumentation is set up, before the project's own code runs.
DJANGO_ENV = {"DJANGO_SETTINGS_MODULE": "tests.apps.corpus.django_site.settings"}


def _uvicorn(app: str, extra_env: Mapping[str, str] | None = None) -> Serve:
    def serve(log: Path, env: Mapping[str, str]) -> ServerProcess:
        return Server(app, cwd=ROOT, log=log, env={**(extra_env or {}), **env}, instrument=True)

    return serve


def _instrumented(command: list[str], port: int, log: Path, env: Mapping[str, str], *,
                  dropped: tuple[str, ...] = ()) -> ServerProcess:
    return ServerProcess([str(BIN / "opentelemetry-instrument"), *command], port=port, cwd=ROOT, log=log, env=env,
                         dropped=dropped)


def _flask(log: Path, env: Mapping[str, str]) -> ServerProcess:
    port = free_port()
    command = [str(BIN / "flask"), "--app", "tests.apps.corpus.flask_app", "run", "--host", "127.0.0.1",
               "--port", str(port)]
    # FLASK_DEBUG and the like from the test's environment would change the answers.
    return _instrumented(command, port, log, env, dropped=("FLASK_",))


def _django_runserver(log: Path, env: Mapping[str, str]) -> ServerProcess:
    port = free_port()
    command = [str(BIN / "python"), "-m", "django", "runserver", "--noreload", "--skip-checks", f"127.0.0.1:{port}"]
    return _instrumented(command, port, log, {**DJANGO_ENV, **env})


#: How Flask and Django spell the route template of ``/items/{item_id}``.
ANGLE_BRACKET_ROUTES = {"/items/{item_id}": "/items/<int:item_id>"}


@dataclass(frozen=True)
class Framework:
    id: str
    serve: Serve
    #: Route templates in the framework's own spelling, where it differs from Starlette's.
    routes: Mapping[str, str] = field(default_factory=dict)
    #: Starlette and FastAPI: a mounted sub-app and a websocket endpoint too.
    mounts_and_websockets: bool = False
    #: Django under WSGI reads Content-Length bytes, and runserver does not de-chunk: a chunked request body
    #: reaches the view empty (with recording off just as on).
    reads_chunked_bodies: bool = True

    @property
    def corpus(self) -> tuple[Call, ...]:
        return (*CORPUS, MOUNTED, BOOM) if self.mounts_and_websockets else (*CORPUS, BOOM)

    def route(self, call: Call) -> str:
        route = call.route or httpx.URL(call.path).path
        return self.routes.get(route, route)

    def body_seen_by_view(self, call: Call, sent: bytes) -> bytes:
        return b"" if call.chunked and not self.reads_chunked_bodies else sent

    def expected_answer(self, call: Call) -> bytes | None:
        if call.chunked and not self.reads_chunked_bodies:
            return seen.raw_body(call.method, call.headers["content-type"], b"")
        return call.answer


FASTAPI = Framework("fastapi", _uvicorn("tests.apps.corpus.fastapi_app:app"), mounts_and_websockets=True)
STARLETTE = Framework("starlette", _uvicorn("tests.apps.corpus.starlette_app:app"), mounts_and_websockets=True)
FRAMEWORKS = (
    FASTAPI,
    STARLETTE,
    Framework("flask", _flask, routes=ANGLE_BRACKET_ROUTES),
    Framework("django-wsgi", _django_runserver, routes=ANGLE_BRACKET_ROUTES, reads_chunked_bodies=False),
    Framework("django-asgi", _uvicorn("tests.apps.corpus.django_site.asgi:application", DJANGO_ENV),
              routes=ANGLE_BRACKET_ROUTES),
    Framework("litestar", _uvicorn("tests.apps.corpus.litestar_app:app")),
)


@dataclass(frozen=True)
class Mode:
    """How the app is served: the variables set, and which corpus calls must then leave a cassette."""

    env: Mapping[str, str]
    records: Callable[[Call], bool]


#: Each mode is one server start per framework; "off" is the reference the others are compared with.
MODES = {
    "off": Mode({}, lambda call: False),
    "record": Mode({"TIMETRACER_MODE": "record", "TIMETRACER_SAMPLE_RATE": "1.0"}, lambda call: call.path != EXCLUDED),
    "sampled-out": Mode({"TIMETRACER_MODE": "record", "TIMETRACER_SAMPLE_RATE": "0.0"}, lambda call: False),
    # Only answers of status 500 and up, or requests whose view raised.
    "errors-only": Mode({"TIMETRACER_MODE": "record", "TIMETRACER_ERRORS_ONLY": "true"}, lambda call: call is BOOM),
}
RECORDING_MODES = [name for name in MODES if name != "off"]


# -- serving the corpus ------------------------------------------------------------------------------------


def _digest(data: bytes) -> str:
    return f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:12]}"


#: Response headers that differ between two runs of the same app: when, and which server software answered.
PER_RUN = ("date", "server")


@dataclass(frozen=True)
class Answer:
    """What the client got, less the headers that legitimately differ per run."""

    http_version: str
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @classmethod
    def of(cls, response: httpx.Response) -> Answer:
        headers = tuple((k.lower(), v) for k, v in response.headers.multi_items() if k.lower() not in PER_RUN)
        return cls(response.http_version, response.status_code, response.reason_phrase, headers, response.content)

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)

    def differences(self, other: Answer) -> list[str]:
        found = [f"{name}: {getattr(self, name)!r} != {getattr(other, name)!r}"
                 for name in ("http_version", "status", "reason", "headers")
                 if getattr(self, name) != getattr(other, name)]
        if self.body != other.body:
            found.append(f"body: {_digest(self.body)} != {_digest(other.body)}")
        return found


@dataclass(frozen=True)
class CorpusRun:
    """One server start of a framework's app in one mode, and what the corpus got from it."""

    url: str
    answers: dict[str, Answer]
    #: Each call's request body as sent.
    sent: dict[str, bytes]
    #: What the websocket endpoint echoed (Starlette and FastAPI only).
    echoes: list[str]
    cassette_files: list[Path]
    cassettes: list[Cassette]
    log: str

    def cassettes_by_call(self) -> dict[str, Cassette]:
        by_call: dict[str, Cassette] = {}
        for cassette in self.cassettes:
            name = _call_name(cassette)
            assert name not in by_call, f"two cassettes for {name!r}"
            by_call[name] = cassette
        return by_call


def _call_name(cassette: Cassette) -> str:
    assert cassette.request is not None
    return dict(cassette.request.headers).get(CALL_HEADER, f"(no corpus call: {cassette.request.url})")


def _websocket_echoes(url: str) -> list[str]:
    with connect(url.replace("http://", "ws://", 1) + "/ws", open_timeout=10) as websocket:
        echoes = []
        for message in WEBSOCKET_MESSAGES:
            websocket.send(message)
            echoes.append(str(websocket.recv(timeout=10)))
    return echoes


def _wait_for_cassettes(directory: Path, count: int, server: ServerProcess, timeout: float = 15.0) -> None:
    """Until the background writer has written ``count`` cassettes: stopping the server sooner could catch
    the last request between its response's last byte and its end, and write it as incomplete."""
    deadline = time.monotonic() + timeout
    while count and len(list(iter_cassette_files(directory)) if directory.exists() else []) < count:
        assert time.monotonic() < deadline, f"fewer than {count} cassettes after {timeout}s:\n{server.output()}"
        time.sleep(0.05)


def _serve_corpus(framework: Framework, mode: str, directory: Path) -> CorpusRun:
    directory.mkdir(parents=True)
    cassettes = directory / "cassettes"
    answers, sent, echoes = {}, {}, []
    with framework.serve(directory / "server.log", {"TIMETRACER_DIR": str(cassettes), **MODES[mode].env}) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:  # redirects are answers: not followed
            for call in framework.corpus:
                response, sent[call.name] = call.send(client)
                answers[call.name] = Answer.of(response)
        if framework.mounts_and_websockets:
            echoes = _websocket_echoes(server.url)
        _wait_for_cassettes(cassettes, sum(map(MODES[mode].records, framework.corpus)), server)
    # Stopped with SIGTERM, which writes whatever is still pending: only now is the set of cassettes final.
    files = list(iter_cassette_files(cassettes)) if cassettes.exists() else []
    return CorpusRun(server.url, answers, sent, echoes, files, [load_cassette(path) for path in files], server.output())


class CorpusRuns:
    """Serves each (framework, mode) once, when a test first asks for it."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._runs: dict[tuple[str, str], CorpusRun] = {}

    def get(self, framework: Framework, mode: str) -> CorpusRun:
        key = (framework.id, mode)
        if key not in self._runs:
            self._runs[key] = _serve_corpus(framework, mode, self._directory / f"{framework.id}-{mode}")
        return self._runs[key]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> CorpusRuns:
    return CorpusRuns(tmp_path_factory.mktemp("corpus"))


# Module-scoped, so pytest runs every test of one framework before starting the next framework's servers.
@pytest.fixture(scope="module", params=FRAMEWORKS, ids=lambda framework: framework.id)
def framework(request: pytest.FixtureRequest) -> Framework:
    return request.param  # type: ignore[no-any-return]


# -- the tests ---------------------------------------------------------------------------------------------


def test_the_reference_answers_what_the_views_saw(framework: Framework, runs: CorpusRuns) -> None:
    # The corpus itself must work with recording off, or "identical to the reference" would prove little.
    reference = runs.get(framework, "off")
    for call in framework.corpus:
        answer = reference.answers[call.name]
        assert answer.status == call.status, f"{call.name}: {answer}\n{reference.log}"
        expected = framework.expected_answer(call)
        if expected is not None:
            assert answer.body == expected, call.name
    assert reference.answers["redirect"].header("location") == seen.REDIRECT_TARGET
    assert reference.answers["200 with an ETag"].header("etag") == seen.ETAG
    assert (reference.answers["server-sent events"].header("content-type") or "").startswith("text/event-stream")
    if framework.mounts_and_websockets:
        assert reference.echoes == [f"echo: {message}" for message in WEBSOCKET_MESSAGES]


@pytest.mark.parametrize("mode", RECORDING_MODES)
def test_recording_changes_nothing_the_client_or_the_view_sees(
    framework: Framework, runs: CorpusRuns, mode: str
) -> None:
    reference, run = runs.get(framework, "off"), runs.get(framework, mode)
    differences = {name: answer.differences(run.answers[name]) for name, answer in reference.answers.items()}
    assert {name: found for name, found in differences.items() if found} == {}, run.log
    assert run.echoes == reference.echoes, "the websocket works the same"


@pytest.mark.parametrize("mode", RECORDING_MODES)
def test_each_mode_writes_a_cassette_for_exactly_the_requests_it_records(
    framework: Framework, runs: CorpusRuns, mode: str
) -> None:
    # Recording: every request but the excluded path's; a websocket is passed through, never recorded.
    # Sampling at 0.0: none. Errors only: the view that raised.
    run = runs.get(framework, mode)
    expected = sorted(call.name for call in framework.corpus if MODES[mode].records(call))
    assert sorted(_call_name(cassette) for cassette in run.cassettes) == expected, run.log


def test_every_cassette_names_its_route_template_and_the_url_as_sent(framework: Framework, runs: CorpusRuns) -> None:
    run = runs.get(framework, "record")
    recorded = run.cassettes_by_call()
    for call in framework.corpus:
        if call.path == EXCLUDED:
            continue
        request = recorded[call.name].request
        assert request is not None
        assert (request.method, request.route) == (call.method, framework.route(call)), call.name
        assert request.url == run.url + call.path, call.name


def test_cassettes_hold_what_crossed_the_wire(framework: Framework, runs: CorpusRuns) -> None:
    run = runs.get(framework, "record")
    recorded = run.cassettes_by_call()
    for call in framework.corpus:
        if call.path == EXCLUDED:
            continue
        cassette, answer = recorded[call.name], run.answers[call.name]
        assert cassette.request is not None and cassette.request.body is not None, call.name
        assert cassette.response is not None and cassette.response.body is not None, call.name
        request_body, response_body = cassette.request.body, cassette.response.body
        seen_by_view = framework.body_seen_by_view(call, run.sent[call.name])
        if len(seen_by_view) > BODY_CAP:  # the 5 MiB upload: the view got all of it, the cassette the cap
            assert (request_body.size, request_body.truncated) == (len(seen_by_view), True), call.name
            assert request_body.data == seen_by_view[:BODY_CAP], call.name
        else:
            assert request_body.data == seen_by_view and not request_body.truncated, call.name
        assert cassette.response.status == answer.status, call.name
        if call.method == "HEAD":  # the app's body, which the server does not send for HEAD
            continue
        if len(answer.body) > BODY_CAP:
            assert (response_body.size, response_body.truncated) == (len(answer.body), True), call.name
            assert response_body.data == answer.body[:BODY_CAP], call.name
        else:  # streamed bodies and server-sent events included: captured whole
            assert (response_body.data, response_body.complete) == (answer.body, True), call.name
        assert (cassette.error is None) == (call is not BOOM), call.name


@pytest.mark.parametrize("mode", ["record", "errors-only"])
def test_the_failing_view_is_recorded_with_its_exception_and_500(
    framework: Framework, runs: CorpusRuns, mode: str
) -> None:
    run = runs.get(framework, mode)
    boom = run.cassettes_by_call()[BOOM.name]
    assert boom.error is not None, run.log
    failure = f"{seen.__name__}.CorpusFailure"
    assert (boom.error.type, boom.error.message) == (failure, seen.BOOM_MESSAGE)
    assert boom.error.traceback is not None and boom.error.traceback.endswith(f"{failure}: {seen.BOOM_MESSAGE}\n")
    assert 'seen.py", line' in boom.error.traceback, "down to the frame that raised"
    assert boom.response is not None and boom.response.body is not None, "the framework's 500 answer"
    assert (boom.response.status, boom.response.body.data) == (500, run.answers[BOOM.name].body)


def test_every_cassette_validates_against_the_schema(framework: Framework, runs: CorpusRuns) -> None:
    files = [path for mode in ("record", "errors-only") for path in runs.get(framework, mode).cassette_files]
    assert files
    for path in files:
        # Written uncompressed (TIMETRACER_COMPRESSION is unset): the file is the JSON document itself.
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(json.loads(path.read_bytes()))]
        assert errors == [], path.name


@pytest.mark.parametrize("framework", [FASTAPI, STARLETTE], ids=lambda framework: framework.id)
def test_a_mounted_sub_app_is_recorded_under_its_full_route(framework: Framework, runs: CorpusRuns) -> None:
    run = runs.get(framework, "record")
    request = run.cassettes_by_call()[MOUNTED.name].request
    assert request is not None
    assert (request.route, request.url) == ("/sub/items/{item_id}", f"{run.url}/sub/items/7")


@pytest.mark.parametrize("framework", [FASTAPI, STARLETTE], ids=lambda framework: framework.id)
def test_websockets_pass_through_unrecorded(framework: Framework, runs: CorpusRuns) -> None:
    run = runs.get(framework, "record")
    assert run.echoes == runs.get(framework, "off").echoes == [f"echo: {m}" for m in WEBSOCKET_MESSAGES]
    assert [c.request.url for c in run.cassettes if c.request is not None and "/ws" in c.request.url] == []


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
