"""A real HTTP server on 127.0.0.1 for client-integration tests, and helpers to record and replay around it.

``running_upstream()`` starts a threaded ``http.server`` on a free loopback port and yields its base URL
(an :class:`Upstream`, a ``str`` that can also ``stop()`` the server, to prove replay needs no network).
``http.server`` is used rather than an ASGI server because it can send custom reason phrases and hand-made
chunked bodies.

``recording(tmp_path)`` and ``replaying(cassette)`` wrap the in-process record/replay dance (install the
runtime, open a recording or a replay session for a pretend inbound request, uninstall). They know nothing
about any client library, so every HTTP client integration's tests can use them.

Endpoints:

``/echo``            any method: JSON with method, path, query, body (as text) and the request headers
``/binary``          1 KiB of non-UTF-8 bytes
``/gzip``            a JSON document sent with ``Content-Encoding: gzip`` (compressed at level 1, mtime set,
                     so a re-encoded body differs in bytes and length from the original)
``/stream``          a chunked body sent in several chunks with pauses between them (newline separated)
``/reason``          status 299 with the reason phrase "Custom Reason Here"
``/error``           500 with a JSON body
``/slow?delay=S``    waits S seconds (default 2) before answering; for timeouts
``/cookies``         sets two cookies
``/redirect``        302 to ``/echo?redirected=yes``
``/flaky``           drops the connection without answering every other time (odd calls), else like ``/echo``
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from opentelemetry import context as otel_context

from timetracer_otel._context import attach_request_state
from timetracer_otel.cassette.files import iter_cassette_files, load_cassette
from timetracer_otel.cassette.model import Body, Cassette
from timetracer_otel.record.captured import CapturedHttpRequest, CapturedHttpResponse
from timetracer_otel.replay.session import ReplaySession
from timetracer_otel.runtime import install, uninstall
from timetracer_otel.settings import Mode, Settings

__all__ = [
    "BINARY",
    "GZIP_DOCUMENT",
    "STREAM_CHUNKS",
    "Recorded",
    "Upstream",
    "closed_port",
    "recording",
    "replaying",
    "running_upstream",
]

BINARY = bytes(range(256))[::-1] * 4
GZIP_DOCUMENT = {"compressed": True, "items": list(range(50)), "text": "zip " * 40}
STREAM_CHUNKS = [b'{"part": 1}\n', b'{"part": 2}\n', b'{"part": 3, "last": "no"}\n', b'{"part": 4}\n']
CUSTOM_STATUS = 299
CUSTOM_REASON = "Custom Reason Here"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.server.connections.add(self.connection)

    def finish(self) -> None:
        self.server.connections.discard(self.connection)
        super().finish()

    # -- plumbing -----------------------------------------------------------------------------------------

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        reason: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.send_response(status, reason)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, document: object, **kwargs: object) -> None:
        self._send(status, json.dumps(document).encode(), **kwargs)  # type: ignore[arg-type]

    # -- routes -------------------------------------------------------------------------------------------

    def _route(self) -> None:
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        body = self._body()
        path = parts.path
        if path == "/flaky":
            self.server.flaky_calls += 1
            if self.server.flaky_calls % 2:
                self.close_connection = True
                return
            path = "/echo"
        if path == "/echo":
            self._json(
                200,
                {
                    "method": self.command,
                    "path": path,
                    "query": query,
                    "body": body.decode("utf-8", "replace"),
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                },
            )
        elif path == "/binary":
            self._send(200, BINARY, content_type="application/octet-stream")
        elif path == "/gzip":
            raw = json.dumps(GZIP_DOCUMENT).encode()
            compressed = gzip.compress(raw, compresslevel=1, mtime=1_700_000_000)
            self._send(200, compressed, headers=(("Content-Encoding", "gzip"), ("X-Original-Length", str(len(raw)))))
        elif path == "/stream":
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in STREAM_CHUNKS:
                self.wfile.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                time.sleep(0.02)
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/reason":
            self._json(CUSTOM_STATUS, {"reason": "custom"}, reason=CUSTOM_REASON)
        elif path == "/error":
            self._json(500, {"error": "upstream exploded"})
        elif path == "/slow":
            time.sleep(float(query.get("delay", "2")))
            self._json(200, {"slow": True})
        elif path == "/cookies":
            self._json(
                200, {"cookies": 2}, headers=(("Set-Cookie", "alpha=1; Path=/"), ("Set-Cookie", "beta=2; Path=/"))
            )
        elif path == "/redirect":
            self._send(302, b"", content_type="text/plain", headers=(("Location", "/echo?redirected=yes"),))
        else:
            self._json(404, {"error": "not found", "path": path})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _route


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections: set[socket.socket] = set()
        self.flaky_calls = 0


class Upstream(str):
    """The base URL (``http://127.0.0.1:<port>``) of a running upstream server, which ``stop()`` shuts down."""

    _server: _Server
    _thread: threading.Thread

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str) -> str:
        return f"{self}{path}"

    def stop(self) -> None:
        """Stop accepting connections and close the open ones: afterwards every connection is refused."""
        server = self._server
        if self._thread.is_alive():
            server.shutdown()
            self._thread.join(5)
        server.server_close()
        for connection in list(server.connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()


@contextlib.contextmanager
def running_upstream() -> Iterator[Upstream]:
    server = _Server()
    upstream = Upstream(f"http://127.0.0.1:{server.server_address[1]}")
    upstream._server = server
    upstream._thread = threading.Thread(target=server.serve_forever, name="http-upstream", daemon=True)
    upstream._thread.start()
    try:
        yield upstream
    finally:
        upstream.stop()


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (connections to it are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- record / replay in-process ---------------------------------------------------------------------------


@dataclass
class Recorded:
    """Filled in when the ``recording()`` block ends: the cassette written and its file."""

    directory: Path
    path: Path | None = None
    cassette: Cassette | None = None

    def only_response_body(self) -> Body:
        """The response body of the one call recorded (asserting there was exactly one call, with a body)."""
        assert self.cassette is not None and self.path is not None
        (interaction,) = self.cassette.interactions
        assert interaction.response is not None and interaction.response.body is not None
        return interaction.response.body


class _PretendInbound:
    """The inbound side of the pretend request ``GET /t``: it never answers."""

    def request(self) -> CapturedHttpRequest:
        return CapturedHttpRequest("GET", "http://test/t", ())

    def response(self) -> CapturedHttpResponse | None:
        return None


@contextlib.contextmanager
def recording(directory: Path, **settings: object) -> Iterator[Recorded]:
    """Record the outbound calls made in the block as one pretend inbound request ``GET /t``."""
    runtime = install(Settings(mode=Mode.RECORD, directory=directory, **settings))  # type: ignore[arg-type]
    result = Recorded(directory)
    try:
        recorder = runtime.recorder
        assert recorder is not None, "another runtime was already installed"
        pending = recorder.admit("/t")
        assert pending is not None
        pending.inbound = _PretendInbound()
        token = attach_request_state(pending)
        try:
            yield result
        finally:
            otel_context.detach(token)  # type: ignore[arg-type]
            recorder.finish(pending)
            assert recorder.flush(10), "the cassette was not written in time"
    finally:
        uninstall()
    files = list(iter_cassette_files(directory))
    assert len(files) == 1, files
    result.path = files[0]
    result.cassette = load_cassette(files[0])


@contextlib.contextmanager
def replaying(cassette_path: Path, **settings: object) -> Iterator[ReplaySession]:
    """Replay the block's outbound calls from one cassette, as its inbound request would."""
    install(Settings(mode=Mode.REPLAY, cassette=cassette_path, **settings))  # type: ignore[arg-type]
    try:
        session = ReplaySession(load_cassette(cassette_path))
        token = session.attach()
        try:
            yield session
        finally:
            otel_context.detach(token)  # type: ignore[arg-type]
    finally:
        uninstall()


def assert_only_in_the_session_cassette(directory: Path, url: str) -> None:
    """The one call recorded below ``directory`` went to the session cassette (no request cassette exists)."""
    assert not list(iter_cassette_files(directory))
    (session_file,) = iter_cassette_files(directory, sessions=True)
    session = load_cassette(session_file)
    assert session.request is None and session.metadata.scope == "session"
    (interaction,) = session.interactions
    assert interaction.request.url == url  # type: ignore[union-attr]
