"""CPU per request of two configurations (plain OpenTelemetry and record mode) measured at the same time.

Needs: the project installed with ``pip install -e '.[all,test]'``, ``taskset`` and at least 2 CPUs. Only
loopback (127.0.0.1) is contacted.

``record_overhead.py`` runs its configurations one after another, and on a shared virtual machine the speed
of the CPU itself drifts by 10-30% between rounds, more than the difference being measured. Here two
configurations (by default b, plain OpenTelemetry, and c, record) run side by side on the same CPU (CPU 0),
each loaded at the same fixed rate by its own paced load generator; the upstream, the load generators and
timetracer's writer process run on CPU 1. Both servers see the same machine at the same moment, so the ratio
of their CPU time per request is far steadier than sequential runs. The two servers are started afresh each
round, in alternating order, because the two places are not quite equal: run ``--configs b,b`` to see how
close to 1.000 the same configuration measures against itself.

This runs below saturation by design, where an event loop spends more CPU per request than when saturated,
so the *ratio* understates what the same extra microseconds cost a saturated server; read the extra CPU per
request (µs) alongside it.

Usage::

    python benchmarks/record_paired.py                            # b vs c, /outbound, 100 req/s each, 8 rounds
    python benchmarks/record_paired.py --configs c-pathonly,c     # any two configurations of record_overhead.py
    python benchmarks/record_paired.py --configs b,b              # the method's own bias and spread
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from record_overhead import (  # noqa: E402
    CONFIGS,
    ENDPOINTS,
    LoadGenerator,
    free_port,
    move_children,
    pinned,
    process_counters,
    server_launch,
    start_upstream,
    stop,
    wait_for_port,
)

SERVER_CPU, OTHER_CPUS = "0", "1"


def start_server(config: str, upstream_port: int, cassettes: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command, env = server_launch(config, port, upstream_port, cassettes)
    process = subprocess.Popen(
        pinned(command, SERVER_CPU), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for_port(port, process)
    return process, port


def run_round(
    configs: tuple[str, str],
    first: int,
    upstream_port: int,
    loadgen: LoadGenerator,
    pool: ThreadPoolExecutor,
    args: argparse.Namespace,
    tmp: Path,
) -> dict[str, float]:
    """Start both servers (``first`` starts first), warm them up, and measure them side by side."""
    path = ENDPOINTS[args.endpoint]
    servers: dict[int, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        for slot in (first, 1 - first):
            servers[slot] = start_server(configs[slot], upstream_port, tmp / f"cassettes-{slot}")

        def load_both(seconds: float) -> dict[int, dict[str, float]]:
            jobs = {
                slot: pool.submit(loadgen.run, f"http://127.0.0.1:{servers[slot][1]}{path}", seconds)
                for slot in (first, 1 - first)
            }
            return {slot: job.result() for slot, job in jobs.items()}

        load_both(args.warmup)
        for process, _ in servers.values():
            move_children(process.pid, OTHER_CPUS)
        before = {slot: process_counters(process.pid) for slot, (process, _) in servers.items()}
        results = load_both(args.seconds)
        after = {slot: process_counters(process.pid) for slot, (process, _) in servers.items()}
    finally:
        for process, _ in servers.values():
            stop(process, timeout=60)
    row: dict[str, float] = {}
    for slot in (0, 1):
        start, end = before[slot], after[slot]
        assert start is not None and end is not None
        row[f"rps{slot}"] = results[slot]["requests"] / args.seconds
        row[f"cpu{slot}"] = (end[0] - start[0]) * 1e6 / results[slot]["requests"]
    row["ratio"] = row["cpu1"] / row["cpu0"]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Two configurations' CPU per request, measured side by side.")
    parser.add_argument("--configs", default="b,c", help=f"two of {', '.join(CONFIGS)}: base,compared")
    parser.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="outbound")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second, each server")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per round")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=8, help="connections per load generator")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)
    if not shutil.which("taskset") or (os.cpu_count() or 1) < 2:
        parser.error("needs taskset and at least 2 CPUs")
    names = [c.strip() for c in args.configs.split(",")]
    if len(names) != 2 or any(c not in CONFIGS or CONFIGS[c][0].startswith("a:") for c in names):
        parser.error(f"--configs takes two instrumented configurations from {', '.join(CONFIGS)}")
    configs = (names[0], names[1])
    print(
        f"# {configs[1]} vs {configs[0]} side by side on CPU {SERVER_CPU}: GET {ENDPOINTS[args.endpoint]}, "
        f"{args.rate:g} req/s each, {args.rounds} x {args.seconds:g} s",
        flush=True,
    )
    loadgen = LoadGenerator("python", args.concurrency, OTHER_CPUS, args.rate)
    upstream, upstream_port = start_upstream(OTHER_CPUS)
    rounds: list[dict[str, float]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="tt-paired-") as tmp, ThreadPoolExecutor(2) as pool:
            for number in range(1, args.rounds + 1):
                row = run_round(configs, number % 2, upstream_port, loadgen, pool, args, Path(tmp))
                rounds.append(row)
                print(
                    f"  round {number}: {configs[0]} {row['rps0']:.0f} req/s {row['cpu0']:.0f} us/req, "
                    f"{configs[1]} {row['rps1']:.0f} req/s {row['cpu1']:.0f} us/req, ratio {row['ratio']:.3f}",
                    flush=True,
                )
    finally:
        stop(upstream)
        loadgen.close()
    ratios = sorted(r["ratio"] for r in rounds)
    median = statistics.median(ratios)
    extra = statistics.median(r["cpu1"] - r["cpu0"] for r in rounds)
    print(
        f"\nCPU per request, {configs[1]} / {configs[0]}: median {median:.3f} (range {ratios[0]:.3f}-"
        f"{ratios[-1]:.3f}) over {len(rounds)} rounds; {extra:+.0f} us per request (median); "
        f"{configs[0]} {statistics.median(r['cpu0'] for r in rounds):.0f} us/req, "
        f"{configs[1]} {statistics.median(r['cpu1'] for r in rounds):.0f} us/req."
    )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rounds, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
