"""Instructions per request of record mode, counted by valgrind: the noise-free measure of its CPU cost.

Needs: the project installed with ``pip install -e '.[all,test]'`` and valgrind (``apt-get install -y
valgrind``). Only loopback (127.0.0.1) is contacted: the stub upstream runs as an uninstrumented uvicorn process.

Wall-clock benchmarks on a small shared machine move by 10-30% from one run to the next, more than the
difference they are meant to show. valgrind's callgrind tool counts the instructions a process executes
instead, which does not depend on what else the machine is doing. Each configuration runs the in-process
driver of ``record_cpu.py`` (the ASGI app called directly, ``--concurrency`` requests at a time) twice, with
``--short`` and ``--long`` timed requests after the same warm-up; the difference of the two totals divided by
the difference of the request counts is the cost of one request, start-up and imports cancelling out. The
app's process and timetracer's writer process (a child) are counted separately: the first is what a CPU-bound
app process pays (its throughput), the second is the CPU recording needs elsewhere.

With ``--server`` the app runs as a real uvicorn server instead (the server process itself under callgrind),
loaded by ``loadgen.py`` at concurrency 4 for ``--short-seconds`` and ``--long-seconds``; the difference in
instructions divided by the difference in requests answered is the cost of one request. The in-process driver
undercounts what recording costs a real server (it has no sockets, no keep-alive connections and a different
request rhythm), so ``--server`` is the figure to compare with wall-clock throughput.

Instructions are not time (cache misses, system calls and the kernel's own work are not in them), and the
garbage collector's full collections still land at slightly different moments from one run to another, so
repeat a run to see the spread.

Usage::

    python benchmarks/record_instructions.py                      # b, c and c-pathonly (~25 min on 2 cores)
    python benchmarks/record_instructions.py --configs b,c --short 200 --long 1700
    python benchmarks/record_instructions.py --configs b,c --server   # a real uvicorn server (~10 min)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from record_cpu import CONFIGS  # noqa: E402
from record_overhead import (  # noqa: E402
    ENDPOINTS,
    SETTINGS,
    LoadGenerator,
    bench_app,
    clean_env,
    free_port,
    seed_fullstack,
    stop,
    uvicorn_args,
    wait_for_port,
)

_SUMMARY = re.compile(rb"^summary: (\d+)", re.MULTILINE)


def _uvicorn(app: str, port: int) -> list[str]:
    # A long keep-alive: under valgrind the app is ~50x slower, and a connection the server closed while the
    # client was about to reuse it would fail the run.
    return [sys.executable, "-m", *uvicorn_args(app, port), "--timeout-keep-alive", "3600"]


def _callgrind(out: Path) -> list[str]:
    """valgrind counting instructions, one file per process (the writer process too) below ``out``."""
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/callgrind.%p", "--trace-children=yes"]


def start_upstream() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(_uvicorn("bench_upstream:app", port), env=clean_env(), stdout=subprocess.DEVNULL)
    wait_for_port(port, process)
    return process, port


def _auto_instrumentation_path() -> str:
    import opentelemetry.instrumentation.auto_instrumentation as auto

    return os.path.dirname(auto.__file__)


def _environment(config: str, upstream: int, out: Path) -> dict[str, str]:
    _, instrumented, mode, variant = CONFIGS[config]
    env = clean_env(BENCH_UPSTREAM_URL=f"http://127.0.0.1:{upstream}")
    if instrumented:
        # What opentelemetry-instrument does, minus its exec: valgrind then counts the app's own process.
        env.update(
            PYTHONPATH=_auto_instrumentation_path(),
            OTEL_TRACES_EXPORTER="none",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
            OTEL_TRACES_SAMPLER="always_on",
        )
    if mode:
        env.update(
            TIMETRACER_MODE=mode, TIMETRACER_DIR=str(out / "cassettes"), TIMETRACER_MAX_PENDING_REQUESTS="1000000"
        )
        env.update(SETTINGS.get(config, {}))
    if variant:
        env["BENCH_VARIANT"] = variant
    return env


def _totals(out: Path) -> dict[str, int]:
    """Instructions counted in each callgrind file below ``out``, by process id."""
    totals = {}
    for path in out.glob("callgrind.*"):
        match = _SUMMARY.search(path.read_bytes())
        if match:
            totals[path.name.split(".", 1)[1]] = int(match.group(1))
    return totals


def count(config: str, requests: int, args: argparse.Namespace, upstream: int, out: Path) -> dict[str, Any]:
    """Run one configuration under callgrind; instructions of the app's process and of its writer process."""
    env = _environment(config, upstream, out)
    out.mkdir(parents=True)
    command = [
        *_callgrind(out),
        sys.executable,
        str(HERE / "record_cpu.py"),
        "--child",
        "--endpoint",
        args.endpoint,
        "--requests",
        str(requests),
        "--warmup",
        str(args.warmup),
        "--concurrency",
        str(args.concurrency),
    ]
    done = subprocess.run(command, env=env, capture_output=True, check=False)
    result = next((line for line in done.stdout.decode().splitlines() if line.startswith("RESULT ")), None)
    if done.returncode != 0 or result is None:
        raise RuntimeError(f"{config} ({requests} requests) failed:\n{done.stderr.decode()[-3000:]}")
    app_pid = done.stderr.decode().split("==", 2)[1]  # valgrind prefixes its own lines with ==PID==
    totals = _totals(out)
    app = totals.pop(app_pid)
    return {"app": app, "writer": sum(totals.values()), "written": json.loads(result[len("RESULT ") :])["written"]}


def count_server(config: str, seconds: float, args: argparse.Namespace, upstream: int, out: Path) -> dict[str, Any]:
    """Run one configuration as a uvicorn server under callgrind, loaded over HTTP for ``seconds``."""
    env = _environment(config, upstream, out)
    out.mkdir(parents=True)
    port = free_port()
    process = subprocess.Popen(
        [*_callgrind(out), *_uvicorn(bench_app(config), port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process, timeout=600)  # imports under valgrind take a minute or more
        result = LoadGenerator("python", 4, None).run(f"http://127.0.0.1:{port}{ENDPOINTS[args.endpoint]}", seconds)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(600)
    totals = _totals(out)
    app_total = totals.pop(str(process.pid))
    return {"app": app_total, "writer": sum(totals.values()), "requests": int(result["requests"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Instructions per request of timetracer record mode (callgrind).")
    parser.add_argument("--configs", default="b,c,c-pathonly", help=f"comma list from {', '.join(CONFIGS)}")
    parser.add_argument("--short", type=int, default=200, help="timed requests of the short run")
    parser.add_argument("--long", type=int, default=1700, help="timed requests of the long run")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--parallel", type=int, default=os.cpu_count() or 1, help="runs at once")
    parser.add_argument("--server", action="store_true", help="count a real uvicorn server, loaded over HTTP")
    parser.add_argument("--short-seconds", type=float, default=60.0, help="with --server: the short run's load")
    parser.add_argument("--long-seconds", type=float, default=240.0, help="with --server: the long run's load")
    parser.add_argument("--endpoint", choices=tuple(ENDPOINTS), default="outbound")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)
    if not shutil.which("valgrind"):
        parser.error("valgrind is not on PATH: apt-get install -y valgrind")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown config(s) {unknown}; choose from {', '.join(CONFIGS)}")
    print(
        f"# timetracer record instructions per request: configs {','.join(configs)}, "
        + (
            f"a uvicorn server loaded {args.long_seconds:g} s - {args.short_seconds:g} s at concurrency 4"
            if args.server
            else f"{args.long} - {args.short} requests, concurrency {args.concurrency}"
        ),
        flush=True,
    )
    if args.endpoint == "fullstack":
        seed_fullstack()
    upstream, port = start_upstream()
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="tt-instructions-") as tmp, ThreadPoolExecutor(args.parallel) as pool:
            measure = count_server if args.server else count
            lengths = (args.short_seconds, args.long_seconds) if args.server else (args.short, args.long)
            jobs = {
                (config, n): pool.submit(measure, config, n, args, port, Path(tmp) / f"{config}-{n}")
                for config in configs
                for n in lengths
            }
            runs = {key: job.result() for key, job in jobs.items()}
    finally:
        stop(upstream)
    per_request = {}
    for config in configs:
        short, long = runs[config, lengths[0]], runs[config, lengths[1]]
        span = long["requests"] - short["requests"] if args.server else args.long - args.short
        per_request[config] = {part: (long[part] - short[part]) / span for part in ("app", "writer")}
    base = per_request.get("b", {}).get("app")
    where = "a uvicorn server" if args.server else "the in-process driver"
    print(f"\n### `GET {ENDPOINTS[args.endpoint]}`, {where}: instructions per request "
          f"({time.monotonic() - started:.0f} s)\n")
    print("| config | app process | vs plain OTel (b) | writer process | app + writer vs b |")
    print("|---|---:|---:|---:|---:|")
    for config in configs:
        app, writer = per_request[config]["app"], per_request[config]["writer"]
        ratio = f"{app / base:.3f}x" if base else "-"
        total = f"{(app + writer) / base:.3f}x" if base else "-"
        print(f"| {CONFIGS[config][0]} | {app / 1e6:.3f} M | {ratio} | {writer / 1e3:.0f} k | {total} |")
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps({"runs": {f"{c}/{n}": r for (c, n), r in runs.items()}, "per_request": per_request}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
