"""Record the example app against its upstream, stop the upstream, replay, and compare every response.

    python examples/fastapi_httpx/demo.py [--workdir DIR]

Everything listens on 127.0.0.1. Exit status 0 means every replayed response was byte-identical.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from demo_support import BIN, free_port, report, start, stop  # noqa: E402

REQUESTS = [
    ("POST", "/checkout", {"item": 3}),
    ("POST", "/checkout", {"item": 10, "quantity": 2}),
    ("GET", "/users/42", None),
]


def exchange(port: int) -> list[tuple[int, bytes]]:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        answers = [client.request(method, path, json=body) for method, path, body in REQUESTS]
    return [(answer.status_code, answer.content) for answer in answers]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(".demo"))
    workdir: Path = parser.parse_args().workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    cassettes = workdir / "cassettes"
    workdir.mkdir(parents=True)
    for name in ("TIMETRACER_MODE", "OTEL_TRACES_EXPORTER"):
        os.environ.pop(name, None)

    upstream_port, app_port = free_port(), free_port()
    upstream_url = f"http://127.0.0.1:{upstream_port}"
    upstream = start("upstream:app", upstream_port, {}, workdir / "upstream.log", cwd=HERE, instrument=False)
    print(f"1. upstream pricing service on {upstream_url}")
    record_env = {"TIMETRACER_MODE": "record", "TIMETRACER_DIR": str(cassettes), "UPSTREAM_URL": upstream_url}
    app = start("app:app", app_port, record_env, workdir / "record.log", cwd=HERE, instrument=True)
    recorded = exchange(app_port)
    stop(app)
    print(f"2. recorded {len(recorded)} requests under opentelemetry-instrument into {cassettes}:")
    subprocess.run([str(BIN / "timetracer"), "list", str(cassettes)], check=True)

    stop(upstream)
    print("3. upstream stopped; replaying with TIMETRACER_MODE=replay")
    replay_env = {"TIMETRACER_MODE": "replay", "TIMETRACER_CASSETTE": str(cassettes), "UPSTREAM_URL": upstream_url}
    app = start("app:app", app_port, replay_env, workdir / "replay.log", cwd=HERE, instrument=True)
    replayed = exchange(app_port)
    stop(app)

    return report(REQUESTS, recorded, replayed, workdir, "no upstream running")

if __name__ == "__main__":
    sys.exit(main())
