"""What recording costs a live app: throughput and latency of one app in three configurations.

Needs: the project installed with ``pip install -e '.[all,test]'`` (fastapi, httpx, uvicorn and the
OpenTelemetry instrumentations come from those extras). Optional: ``wrk`` on PATH (``apt-get install -y wrk``)
as the load generator; without it the stdlib asyncio generator in ``benchmarks/loadgen.py`` is used.
Only loopback (127.0.0.1) is ever contacted.

Configurations, each a single-worker uvicorn subprocess on 127.0.0.1 (``--log-level warning --no-access-log``)
serving ``benchmarks/apps/bench_app.py``, which calls a stub upstream (``benchmarks/apps/bench_upstream.py``,
its own uninstrumented uvicorn subprocess):

* ``a`` baseline: ``uvicorn bench_app:app``
* ``b`` plain OpenTelemetry: ``opentelemetry-instrument --traces_exporter none --metrics_exporter none
  --logs_exporter none uvicorn bench_app:app`` with ``OTEL_TRACES_SAMPLER=always_on`` (timetracer's distro is
  installed but ``TIMETRACER_MODE`` is unset, so its hooks do nothing)
* ``c`` record: the same as ``b`` plus ``TIMETRACER_MODE=record TIMETRACER_DIR=<fresh temp dir>``

Every endpoint (``/outbound``: one httpx call to the upstream with a ~1 KB JSON answer; ``/empty``: ``{}``;
``/fullstack``, only when named in ``--endpoints``: the httpx call plus 3 SQL queries on PostgreSQL, 2 Redis commands
and 1 MongoDB ``find_one``, against data this script seeds; see ``apps/bench_app.py``) is loaded at a fixed
concurrency, after a warm-up, for ``--seconds``. Configurations are interleaved over
``--rounds`` rounds, their order rotated each round, and medians are reported, so slow drifts of a noisy
machine hit every configuration alike. Ratios are the median of the per-round ratios.

After each ``c`` run the server is stopped (SIGTERM, so pending cassettes are flushed) and the cassette files
are counted against the requests the server answered; fewer files than requests means recording shed load
(TIMETRACER_MAX_PENDING_REQUESTS) and the ``c`` figures flatter it. The server's capacity warnings are counted too.

Usage::

    python benchmarks/record_overhead.py                      # 3 rounds x 10 s per config and endpoint
    python benchmarks/record_overhead.py --quick              # smoke run, ~30 s
    python benchmarks/record_overhead.py --seconds 10 --rounds 5 --concurrency 16 --json-out results.json

The experimental configuration ``c-pathonly`` starts ``apps/bench_app_variants.py``, which
monkeypatches timetracer in the server process to estimate what a proposed change would gain; see
``docs/performance.md``. They never change timetracer's files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: Plain OpenTelemetry auto-instrumentation with every exporter off: configuration b, and the base of c.
PLAIN_OTEL = (
    "opentelemetry-instrument",
    "--traces_exporter",
    "none",
    "--metrics_exporter",
    "none",
    "--logs_exporter",
    "none",
)
APPS = HERE / "apps"
BIN = Path(sys.executable).parent

#: config name -> (label, uses opentelemetry-instrument, timetracer mode, app variant patches)
CONFIGS: dict[str, tuple[str, bool, str | None, str | None]] = {
    "a": ("a: no instrumentation", False, None, None),
    "b": ("b: plain OTel (exporters off)", True, None, None),
    "c": ("c: OTel + timetracer record", True, "record", None),
    # What-if experiments (monkeypatches in apps/bench_app_variants.py; not timetracer as shipped):
    "c-pathonly": ("c': record, request path only (nothing assembled or written)", True, "record", "pathonly"),
    "c-capture": ("c'': record, request path + capture (nothing sent)", True, "record", "captureonly"),
    "c-encode": ("c''': record, path + capture + MessagePack (nothing sent)", True, "record", "encodeonly"),
    "c-notrack": ("c: record without span tracking", True, "record", "notrack"),
    "c-nohttpx": ("c: record without capturing httpx calls", True, "record", "nohttpx"),
    "c-nodata": ("c: record without capturing SQL, Redis and MongoDB calls", True, "record", "nodata"),
    "c-nosql": ("c: record without capturing SQL calls", True, "record", "nosql"),
    "c-noredis": ("c: record without capturing Redis calls", True, "record", "noredis"),
    "c-nomongo": ("c: record without capturing MongoDB calls", True, "record", "nomongo"),
    # Settings, not patches: what the clock and generated-value recording cost (see SETTINGS).
    "c-noclock": ("c: record with TIMETRACER_RECORD_CLOCK=false", True, "record", None),
    "c-nodeterminism": ("c: record with neither clock readings nor generated values", True, "record", None),
}
#: config name -> the TIMETRACER_* settings it runs with besides the mode and directory.
SETTINGS: dict[str, dict[str, str]] = {
    "c-noclock": {"TIMETRACER_RECORD_CLOCK": "false"},
    "c-nodeterminism": {"TIMETRACER_RECORD_CLOCK": "false", "TIMETRACER_GENERATED": ""},
}
ENDPOINTS = {"outbound": "/outbound?id=7", "empty": "/empty", "fullstack": "/fullstack?id=7"}
#: Outbound calls a good cassette of each endpoint holds (/fullstack: 1 HTTP, BEGIN + 3 SQL + ROLLBACK, 2 Redis,
#: 1 MongoDB).
EXPECTED_CALLS = {"/outbound": 1, "/empty": 0, "/fullstack": 9}

_WRK_SCRIPT = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "status_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"mean_us": %f, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
"""


@dataclass
class Sample:
    config: str
    endpoint: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    #: Server process CPU (user+system, all threads) per answered request, and as a share of one core.
    cpu_us_per_request: float = float("nan")
    cpu_util: float = float("nan")
    #: Context switches (voluntary + involuntary, all threads of the server) per answered request.
    switches_per_request: float = float("nan")


@dataclass
class RecordCheck:
    round: int
    answered: int
    cassettes: int
    capacity_warnings: int
    stderr_tail: str = ""
    #: Cassettes read back with ``load_cassette`` (a sample) and how many of those were not as expected.
    checked: int = 0
    bad: int = 0


@dataclass
class Results:
    samples: list[Sample] = field(default_factory=list)
    checks: dict[str, list[RecordCheck]] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIMETRACER_", "OTEL_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


def uvicorn_args(app: str, port: int) -> list[str]:
    return [
        "uvicorn",
        app,
        "--app-dir",
        str(APPS),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
        "--no-access-log",
    ]


def pinned(command: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *command] if cpus else command


def move_children(pid: int, cpus: str) -> None:
    """Pin the server's child processes (timetracer's writer process) to ``cpus``, away from the server."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                subprocess.run(["taskset", "-a", "-p", "-c", cpus, child], capture_output=True, check=False)


class LoadGenerator:
    def __init__(self, kind: str, concurrency: int, cpus: str | None, rate: float = 0.0) -> None:
        self.kind = kind
        self.concurrency = concurrency
        self.rate = rate
        self.cpus = cpus
        self._script: Path | None = None
        if kind == "wrk":
            handle, name = tempfile.mkstemp(prefix="tt-wrk-", suffix=".lua")
            os.write(handle, _WRK_SCRIPT.encode())
            os.close(handle)
            self._script = Path(name)

    def run(self, url: str, seconds: float) -> dict[str, Any]:
        if self.kind == "wrk":
            assert self._script is not None
            command = [
                "wrk",
                "-t1",
                f"-c{self.concurrency}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                str(self._script),
                url,
            ]
        else:
            command = [
                sys.executable,
                str(HERE / "loadgen.py"),
                url,
                "--seconds",
                str(seconds),
                "--concurrency",
                str(self.concurrency),
                "--rate",
                str(self.rate),
            ]
        out = subprocess.run(pinned(command, self.cpus), capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("WRKJSON "):
                return json.loads(line[len("WRKJSON ") :])  # type: ignore[no-any-return]
            if line.startswith("{"):
                return json.loads(line)  # type: ignore[no-any-return]
        raise RuntimeError(f"no result from the load generator:\n{out}")

    def close(self) -> None:
        if self._script is not None:
            self._script.unlink(missing_ok=True)


def start_upstream(cpus: str | None) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        pinned(uvicorn_args("bench_upstream:app", port), cpus), env=clean_env(), stdout=subprocess.DEVNULL
    )
    wait_for_port(port, process)
    return process, port


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def process_counters(pid: int) -> tuple[float, int] | None:
    """(CPU seconds, context switches) of a process so far, all threads; None where /proc is absent."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks
        switches = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                for line in (task / "status").read_text().splitlines():
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        switches += int(line.split()[1])
        return cpu, switches
    except (OSError, ValueError, IndexError):
        return None


def cassette_files(directory: Path) -> list[Path]:
    """The request cassettes (session cassettes hold the calls made outside requests: not one per request)."""
    from timetracer_otel.cassette.files import iter_cassette_files

    return list(iter_cassette_files(directory))


def seed_fullstack() -> None:
    """The rows, keys and documents ``/fullstack`` reads (BENCH_DATABASE_URL, BENCH_REDIS_URL, BENCH_MONGO_URI)."""
    import asyncio

    import asyncpg
    import redis
    from apps.bench_app import DATABASE_URL, MONGO_URI, REDIS_URL
    from pymongo import MongoClient

    async def tables() -> None:
        connection = await asyncpg.connect(DATABASE_URL.replace("+asyncpg", ""))
        try:
            await connection.execute(
                "DROP TABLE IF EXISTS bench_products; CREATE TABLE bench_products (id int PRIMARY KEY, "
                "name text NOT NULL, price numeric(10, 2) NOT NULL, category text NOT NULL, stock int NOT NULL)"
            )
            await connection.executemany(
                "INSERT INTO bench_products VALUES ($1, $2, $3, $4, $5)",
                [(n, f"product {n}", n * 1.25, f"c{n % 10}", n % 17) for n in range(1, 1001)],
            )
        finally:
            await connection.close()

    asyncio.run(tables())
    cache = redis.Redis.from_url(REDIS_URL)
    cache.set("bench:badge:7", "bestseller")
    with MongoClient(MONGO_URI) as mongo:
        mongo["bench"]["reviews"].drop()
        mongo["bench"]["reviews"].insert_many([{"product": n, "stars": n % 5 + 1, "text": f"review {n}"}
                                               for n in range(1, 101)])


def check_cassettes(files: list[Path], sample: int = 20) -> tuple[int, int]:
    """Load an evenly spread sample with ``load_cassette``: (checked, bad). A good cassette holds the endpoint's
    calls (``EXPECTED_CALLS``), every HTTP one with a 200 answer."""
    from timetracer_otel.cassette.files import load_cassette
    from timetracer_otel.cassette.model import CallResponse, HttpResponse

    step = max(1, len(files) // sample)
    picked = files[::step][:sample]
    bad = 0
    for path in picked:
        try:
            cassette = load_cassette(path)
        except Exception as exc:
            print(f"  unreadable cassette {path}: {exc}", file=sys.stderr)
            bad += 1
            continue
        calls = cassette.interactions
        url_path = "" if cassette.request is None else cassette.request.url.split("?")[0]
        expected = next((n for suffix, n in EXPECTED_CALLS.items() if url_path.endswith(suffix)), -1)
        ok = (
            len(calls) == expected
            and cassette.response is not None
            and cassette.response.status == 200
            and all(
                isinstance(c.response, CallResponse)
                or (isinstance(c.response, HttpResponse) and c.response.status == 200)
                for c in calls
            )
        )
        if not ok:
            print(f"  unexpected cassette {path}: {len(calls)} calls", file=sys.stderr)
            bad += 1
    return len(picked), bad


def bench_app(config: str) -> str:
    """The ASGI app a configuration serves: the bench app, or the bench app with its what-if patches."""
    return "bench_app_variants:app" if CONFIGS[config][3] else "bench_app:app"


def server_launch(
    config: str, port: int, upstream_port: int, cassette_dir: Path | None
) -> tuple[list[str], dict[str, str]]:
    """The command and environment of a configuration's uvicorn server (``cassette_dir`` for record modes)."""
    _, instrumented, mode, variant = CONFIGS[config]
    env = clean_env(BENCH_UPSTREAM_URL=f"http://127.0.0.1:{upstream_port}")
    command = uvicorn_args(bench_app(config), port)
    if instrumented:
        env["OTEL_TRACES_SAMPLER"] = "always_on"
        env["OTEL_SERVICE_NAME"] = "timetracer-bench"
        command = [*PLAIN_OTEL, *command]
    if mode is not None:
        assert cassette_dir is not None, f"{config} records: it needs a cassette directory"
        env["TIMETRACER_MODE"] = mode
        env["TIMETRACER_DIR"] = str(cassette_dir)
        env.update(SETTINGS.get(config, {}))
    if variant:
        env["BENCH_VARIANT"] = variant
    return command, env


def run_config(
    config: str,
    round_number: int,
    upstream_port: int,
    loadgen: LoadGenerator,
    args: argparse.Namespace,
    results: Results,
) -> None:
    port = free_port()
    cassette_dir = None
    if CONFIGS[config][2] is not None:
        cassette_dir = Path(tempfile.mkdtemp(prefix=f"tt-bench-{config}-", dir=args.cassette_root))
    command, env = server_launch(config, port, upstream_port, cassette_dir)
    stderr_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen(
        pinned(command, args.server_cpus), env=env, stdout=subprocess.DEVNULL, stderr=stderr_file
    )
    answered = 0
    try:
        wait_for_port(port, process)
        for endpoint, path in ENDPOINTS.items():
            if endpoint not in args.endpoints:
                continue
            url = f"http://127.0.0.1:{port}{path}"
            if args.warmup > 0:
                warm = loadgen.run(url, args.warmup)
                answered += int(warm["requests"])
            if args.other_cpus:
                move_children(process.pid, args.other_cpus)
            before = process_counters(process.pid)
            started = time.monotonic()
            result = loadgen.run(url, args.seconds)
            elapsed = time.monotonic() - started
            after = process_counters(process.pid)
            answered += int(result["requests"])
            errors = sum(
                int(result[k]) for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
            )
            sample = Sample(
                config=config,
                endpoint=endpoint,
                round=round_number,
                rps=result["requests"] / (result["duration_us"] / 1e6),
                p50_ms=result["p50_us"] / 1000,
                p99_ms=result["p99_us"] / 1000,
                requests=int(result["requests"]),
                errors=errors,
            )
            if before is not None and after is not None and result["requests"]:
                sample.cpu_us_per_request = (after[0] - before[0]) * 1e6 / result["requests"]
                sample.cpu_util = (after[0] - before[0]) / elapsed
                sample.switches_per_request = (after[1] - before[1]) / result["requests"]
            results.samples.append(sample)
            print(
                f"  round {round_number} {config:<10} {endpoint:<9} {sample.rps:8.1f} req/s  "
                f"p50 {sample.p50_ms:7.2f} ms  p99 {sample.p99_ms:7.2f} ms  "
                f"server CPU {sample.cpu_us_per_request:6.0f} us/req ({sample.cpu_util:.0%} of a core), "
                f"{sample.switches_per_request:.2f} ctx sw/req" + (f"  ERRORS {errors}" if errors else ""),
                flush=True,
            )
    finally:
        stop(process, timeout=60)
        stderr_file.seek(0)
        stderr = stderr_file.read().decode("utf-8", "replace")
        stderr_file.close()
    if process.returncode not in (0, -signal.SIGTERM):
        print(f"  (server exited with {process.returncode}; stderr tail:)\n{stderr[-2000:]}", file=sys.stderr)
    if cassette_dir is not None:
        files = cassette_files(cassette_dir)
        written = len(files)
        checked, bad = check_cassettes(files)
        warnings = stderr.count("waiting to be written")
        results.checks.setdefault(config, []).append(
            RecordCheck(round_number, answered, written, warnings, stderr[-1500:], checked, bad)
        )
        print(
            f"  round {round_number} {config:<10} cassettes written: {written} for {answered} answered requests"
            f", {checked} loaded back, {bad} bad"
            + (f" ({warnings} capacity warning(s) in the server log)" if warnings else ""),
            flush=True,
        )
        if not args.keep_cassettes:
            shutil.rmtree(cassette_dir, ignore_errors=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(results: Results, configs: list[str], args: argparse.Namespace) -> str:
    lines: list[str] = []
    rounds = sorted({s.round for s in results.samples})
    for endpoint in [e for e in ENDPOINTS if e in args.endpoints]:
        by = {(s.config, s.round): s for s in results.samples if s.endpoint == endpoint}
        lines.append(f"\n### `GET {ENDPOINTS[endpoint]}` ({len(rounds)} round(s), medians)\n")
        lines.append(
            "| config | req/s | p50 ms | p99 ms | req/s vs plain OTel (b) | req/s vs baseline (a) "
            "| server CPU us/req | server CPU use | ctx switches/req |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for config in configs:
            mine = [by[(config, r)] for r in rounds if (config, r) in by]
            if not mine:
                continue

            def ratio(other: str, mine: list[Sample] = mine, by: dict[Any, Sample] = by) -> str:
                per_round = [s.rps / by[(other, s.round)].rps for s in mine if (other, s.round) in by]
                if not per_round or other == mine[0].config:
                    return "1.00" if other == mine[0].config else "-"
                spread = f" ({min(per_round):.2f}-{max(per_round):.2f})" if len(per_round) > 1 else ""
                return f"{median(per_round):.2f}{spread}"

            lines.append(
                f"| {CONFIGS[config][0]} | {median([s.rps for s in mine]):.0f} | "
                f"{median([s.p50_ms for s in mine]):.2f} | {median([s.p99_ms for s in mine]):.2f} | "
                f"{ratio('b')} | {ratio('a')} | {median([s.cpu_us_per_request for s in mine]):.0f} | "
                f"{median([s.cpu_util for s in mine]):.0%} | {median([s.switches_per_request for s in mine]):.2f} |"
            )
        errors = sum(s.errors for s in results.samples if s.endpoint == endpoint)
        if errors:
            lines.append(f"\n**{errors} request errors** during `{endpoint}` runs: figures are suspect.")
    lines.append("\nRatios: median of the per-round ratios (min-max over rounds in brackets).")
    if results.checks:
        lines.append("\n### Cassettes written by the record configurations\n")
        lines.append(
            "| config | round | requests answered | cassettes written | recorded | capacity warnings "
            "| loaded back (bad) |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for config, checks in results.checks.items():
            for check in checks:
                share = check.cassettes / check.answered if check.answered else 0.0
                lines.append(
                    f"| {config} | {check.round} | {check.answered} | {check.cassettes} | {share:.1%} | "
                    f"{check.capacity_warnings} | {check.checked} ({check.bad}) |"
                )
    return "\n".join(lines)


def verdict(results: Results) -> str:
    lines = []
    for endpoint in ENDPOINTS:
        by = {(s.config, s.round): s for s in results.samples if s.endpoint == endpoint}
        per_round = [by[("c", r)].rps / by[("b", r)].rps for (cfg, r) in by if cfg == "c" and ("b", r) in by]
        if per_round:
            cost = 1 - median(per_round)
            status = "MET" if cost <= 0.10 else "NOT MET"
            lines.append(f"- `{endpoint}`: record costs {cost:.1%} throughput vs plain OTel (target <= 10%): {status}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Throughput cost of timetracer record mode (see module doc).")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per config and endpoint")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds before each measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 2 s per measurement")
    parser.add_argument("--configs", default="a,b,c", help=f"comma list from {', '.join(CONFIGS)}")
    parser.add_argument("--endpoints", default="outbound,empty", help=f"comma list from {', '.join(ENDPOINTS)}")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="pace the load to this many req/s (uses the Python generator; wrk cannot pace): measures latency and "
        "recording coverage below saturation. Default 0: as fast as the server goes",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin the measured server to CPU 0; the upstream, the load generator and the writer process to CPU 1",
    )
    parser.add_argument("--cassette-root", default=None, help="where record configs write (default: TMPDIR)")
    parser.add_argument("--keep-cassettes", action="store_true")
    parser.add_argument("--json-out", default=None, help="also write every sample as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.rounds = 2.0, 1.0, 1
    args.endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown config(s) {unknown}; choose from {', '.join(CONFIGS)}")
    kind = args.loadgen
    if args.rate > 0:
        if kind == "wrk":
            parser.error("--rate needs the Python load generator (--loadgen python or auto)")
        kind = "python"
    if kind == "auto":
        kind = "wrk" if shutil.which("wrk") else "python"
    elif kind == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not on PATH (apt-get install -y wrk), or use --loadgen python")
    args.server_cpus = None
    other_cpus = None
    if args.pin:
        if not shutil.which("taskset") or (os.cpu_count() or 1) < 2:
            parser.error("--pin needs taskset and at least 2 CPUs")
        args.server_cpus, other_cpus = "0", "1"
    args.other_cpus = other_cpus

    print(
        f"# timetracer record overhead: configs {','.join(configs)}, {args.rounds} round(s), "
        f"{args.seconds:g} s (+{args.warmup:g} s warm-up) per config and endpoint, concurrency "
        f"{args.concurrency}, load generator {kind}"
        + (f" paced to {args.rate:g} req/s" if args.rate > 0 else "")
        + f", {os.cpu_count()} CPUs"
        + (", pinned (server CPU 0; upstream, load and writer process CPU 1)" if args.pin else ", not pinned"),
        flush=True,
    )
    results = Results()
    loadgen = LoadGenerator(kind, args.concurrency, other_cpus, args.rate)
    if "fullstack" in args.endpoints:
        seed_fullstack()
    upstream, upstream_port = start_upstream(other_cpus)
    try:
        for round_number in range(1, args.rounds + 1):
            shift = (round_number - 1) % len(configs)
            for config in configs[shift:] + configs[:shift]:
                run_config(config, round_number, upstream_port, loadgen, args, results)
    finally:
        stop(upstream)
        loadgen.close()
    text = report(results, configs, args)
    print(text)
    summary = (
        verdict(results)
        if args.rate <= 0
        else (
            f"- paced to {args.rate:g} req/s: throughput ratios are ~1 by construction; compare latency, server CPU "
            "use and the share of requests recorded instead (the 10% target is about saturated throughput)"
        )
    )
    shares = [c.cassettes / c.answered for c in results.checks.get("c", []) if c.answered]
    if shares and statistics.median(shares) < 0.99:
        summary += (
            f"\n- **record mode shed load**: only {statistics.median(shares):.0%} (median) of the requests were "
            "written; requests refused at admission (TIMETRACER_MAX_PENDING_REQUESTS) cost almost nothing, so the "
            "ratios above flatter record mode"
        )
    summary = summary.strip("\n")
    if summary:
        print("\n### Target\n")
        print(summary)
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {
                    "args": {k: v for k, v in vars(args).items()},
                    "loadgen": kind,
                    "cpus": os.cpu_count(),
                    "samples": [vars(s) for s in results.samples],
                    "record_checks": {
                        c: [{k: v for k, v in vars(x).items() if k != "stderr_tail"} for x in checks]
                        for c, checks in results.checks.items()
                    },
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
