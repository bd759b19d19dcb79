"""CPU per request of recording, measured in-process: where record mode's cost goes.

Needs: the project installed with ``pip install -e '.[all,test]'`` (fastapi, httpx, uvicorn, OpenTelemetry
instrumentations). Only loopback (127.0.0.1) is contacted: the stub upstream runs as a uvicorn subprocess.

``record_overhead.py`` measures what users see (req/s through uvicorn) but on a small noisy machine its
figures move by 10-20% from run to run. This script removes the HTTP server and load generator: each
configuration is a fresh ``python`` process (under ``opentelemetry-instrument`` except ``a``) that imports
``benchmarks/apps/bench_app.py`` and calls the ASGI app directly, ``--concurrency`` requests at a time, then
reads ``time.thread_time()`` (the event-loop thread) and ``time.process_time()`` (all threads, so the
timetracer writer thread too, including the flush of every cassette at the end; not the writer process, which
encodes and writes the files). Configurations run interleaved over ``--rounds``; medians are reported.

Configurations ``a``, ``b``, ``c`` are those of ``record_overhead.py``; the others are what-if variants made by
monkeypatching timetracer in the child (``apps/bench_app_variants.py``) to split the cost of ``c``:

* ``c-pathonly``: request path only (requests are dropped when they settle; nothing is assembled or written)
* ``c-capture``: request path and capture of each request on the writer thread, which is then dropped
* ``c-encode``: as ``c-capture``, plus the MessagePack encoding for the pipe to the writer process

Usage::

    python benchmarks/record_cpu.py                    # 3 rounds, /outbound and /empty
    python benchmarks/record_cpu.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from record_overhead import (  # noqa: E402
    APPS,
    PLAIN_OTEL,
    SETTINGS,
    clean_env,
    seed_fullstack,
    start_upstream,
    stop,
)

#: name -> (label, under opentelemetry-instrument, timetracer mode, variant)
CONFIGS: dict[str, tuple[str, bool, str | None, str | None]] = {
    "a": ("a: no instrumentation", False, None, None),
    "b": ("b: plain OTel", True, None, None),
    "c": ("c: OTel + timetracer record", True, "record", None),
    "c-pathonly": ("c': request path only", True, "record", "pathonly"),
    "c-capture": ("c'': request path + capture", True, "record", "captureonly"),
    "c-encode": ("c''': path + capture + MessagePack", True, "record", "encodeonly"),
    "c-nodata": ("c: without capturing SQL, Redis, MongoDB", True, "record", "nodata"),
    "c-notrack": ("c: without span tracking", True, "record", "notrack"),
    "c-noclock": ("c: TIMETRACER_RECORD_CLOCK=false", True, "record", None),
    "c-nodeterminism": ("c: no clock readings, no generated values", True, "record", None),
}
PATHS = {"outbound": ("/outbound", "id=7"), "empty": ("/empty", ""), "fullstack": ("/fullstack", "id=7")}


# -- child: drive the app in-process ------------------------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(APPS))
    app = __import__("bench_app_variants" if os.environ.get("BENCH_VARIANT") else "bench_app").app
    path, query = PATHS[args.endpoint]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"record-cpu"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def one() -> None:
        sent: list[dict[str, Any]] = []
        first = True

        async def receive() -> dict[str, Any]:
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(dict(scope), receive, send)
        if sent[0].get("status") != 200:
            raise RuntimeError(f"unexpected answer {sent[:1]}")

    async def run(count: int) -> None:
        left = [count]

        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                await one()

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))

    async def main() -> dict[str, Any]:
        from timetracer_otel.runtime import installed

        runtime = installed()
        recorder = runtime.recorder if runtime is not None else None
        await run(args.warmup)
        if recorder is not None:
            await asyncio.to_thread(recorder.flush, 60)
        written_before = recorder.stats.written if recorder is not None else 0
        wall0, proc0, thread0 = time.perf_counter(), time.process_time(), time.thread_time()
        await run(args.requests)
        wall1, proc1, thread1 = time.perf_counter(), time.process_time(), time.thread_time()
        if recorder is not None:
            await asyncio.to_thread(recorder.flush, 60)
        proc2 = time.process_time()
        return {
            "rps": args.requests / (wall1 - wall0),
            "thread_us": (thread1 - thread0) * 1e6 / args.requests,
            "process_us": (proc1 - proc0) * 1e6 / args.requests,
            "process_flushed_us": (proc2 - proc0) * 1e6 / args.requests,
            "written": (recorder.stats.written - written_before) if recorder is not None else None,
            "dropped": recorder.stats.dropped_capacity if recorder is not None else None,
        }

    print("RESULT " + json.dumps(asyncio.run(main())), flush=True)


# -- parent: run the configurations -------------------------------------------------------------------------


def run_child(config: str, endpoint: str, upstream: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    _, instrumented, mode, variant = CONFIGS[config]
    env = clean_env(BENCH_UPSTREAM_URL=f"http://127.0.0.1:{upstream}")
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--endpoint",
        endpoint,
        "--requests",
        str(args.requests),
        "--warmup",
        str(args.warmup),
        "--concurrency",
        str(args.concurrency),
    ]
    if instrumented:
        env["OTEL_TRACES_SAMPLER"] = "always_on"
        command = [*PLAIN_OTEL, *command]
    if mode:
        directory = tmp / f"{config}-{endpoint}-{time.monotonic_ns()}"
        env.update(
            TIMETRACER_MODE=mode, TIMETRACER_DIR=str(directory), TIMETRACER_MAX_PENDING_REQUESTS="1000000"
        )  # write every request: count its full cost
        env.update(SETTINGS.get(config, {}))
    if variant:
        env["BENCH_VARIANT"] = variant
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])  # type: ignore[no-any-return]
    raise RuntimeError(f"{config} {endpoint} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="In-process CPU per request of timetracer record mode.")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", default="outbound", help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=None, help="timed requests per run (default by endpoint)")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configs", default="a,b,c,c-pathonly")
    parser.add_argument("--endpoints", default="outbound,empty")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)
    if args.child:
        args.requests = args.requests or 2000
        child(args)
        return 0
    if args.quick:
        args.rounds, args.warmup = 1, 100
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    print(
        f"# timetracer record CPU per request, in-process: {args.rounds} round(s), concurrency "
        f"{args.concurrency}, {os.cpu_count()} CPUs",
        flush=True,
    )
    import tempfile

    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    if "fullstack" in endpoints:
        seed_fullstack()
    upstream, port = start_upstream(None)
    try:
        with tempfile.TemporaryDirectory(prefix="tt-record-cpu-") as tmp:
            for round_number in range(1, args.rounds + 1):
                shift = (round_number - 1) % len(configs)
                for config in configs[shift:] + configs[:shift]:
                    for endpoint in endpoints:
                        requests = args.requests or {"outbound": 2000, "fullstack": 600}.get(endpoint, 6000)
                        if args.quick:
                            requests //= 4
                        run_args = argparse.Namespace(**{**vars(args), "requests": requests})
                        result = run_child(config, endpoint, port, run_args, Path(tmp))
                        results.setdefault((config, endpoint), []).append(result)
                        print(
                            f"  round {round_number} {config:<11} {endpoint:<9} {result['rps']:7.0f} req/s  "
                            f"app thread {result['thread_us']:6.0f} us/req  process {result['process_us']:6.0f}"
                            f"  (+flush {result['process_flushed_us']:6.0f}) us/req  written "
                            f"{result['written']}",
                            flush=True,
                        )
    finally:
        stop(upstream)
    for endpoint in endpoints:
        print(f"\n### `GET {PATHS[endpoint][0]}`: CPU per request (median of {args.rounds} round(s))\n")
        print(
            "| config | req/s (in-process) | event-loop thread CPU us/req | process CPU us/req, cassettes "
            "flushed | extra vs plain OTel (b) us/req | cassettes written |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        base = results.get(("b", endpoint))
        base_cpu = statistics.median(r["process_flushed_us"] for r in base) if base else None
        for config in configs:
            runs = results.get((config, endpoint))
            if not runs:
                continue
            cpu = statistics.median(r["process_flushed_us"] for r in runs)
            extra = f"{cpu - base_cpu:+.0f}" if base_cpu is not None else "-"
            written = runs[-1]["written"]
            if "nowrite" in (CONFIGS[config][3] or ""):
                written = "none (variant)"
            print(
                f"| {CONFIGS[config][0]} | {statistics.median(r['rps'] for r in runs):.0f} | "
                f"{statistics.median(r['thread_us'] for r in runs):.0f} | {cpu:.0f} | {extra} | "
                f"{'-' if written is None else written} |"
            )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({f"{c}/{e}": r for (c, e), r in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
