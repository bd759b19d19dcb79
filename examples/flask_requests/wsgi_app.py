"""The same kind of app without a framework: a plain WSGI app under OpenTelemetry's WSGI middleware, served by
the standard library's wsgiref (``python wsgi_app.py PORT``)."""

from __future__ import annotations

import json
import os
import sys
from wsgiref.simple_server import make_server

import requests
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

UPSTREAM_URL = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:8001")


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/users/"):
        answer = requests.get(f"{UPSTREAM_URL}/users/{int(path.rsplit('/', 1)[1])}", timeout=5).json()
    elif path == "/echo":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length))
        answer = {"got": body, **requests.get(f"{UPSTREAM_URL}/price", params={"item": body["item"]},
                                                timeout=5).json()}
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    payload = json.dumps(answer).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [payload]


app = OpenTelemetryMiddleware(application)

if __name__ == "__main__":
    with make_server("127.0.0.1", int(sys.argv[1]), app) as server:
        server.serve_forever()
