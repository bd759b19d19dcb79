"""What the examples' demo scripts share: free ports, and uvicorn servers started and stopped on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(app: str, port: int, env: dict[str, str], log: Path, *, cwd: Path, instrument: bool,
          timeout: float = 30.0) -> subprocess.Popen[bytes]:
    """``uvicorn app`` (under ``opentelemetry-instrument`` when ``instrument``), once it accepts connections."""
    command = [str(BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    if instrument:
        command.insert(0, str(BIN / "opentelemetry-instrument"))
    process = subprocess.Popen(command, cwd=cwd, env={**os.environ, **env}, stdout=log.open("wb"),
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process
        if process.poll() is not None:
            break
        time.sleep(0.1)
    sys.exit(f"{app} did not start; see {log}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as a container stop sends: the recorder writes what it holds before the server exits."""
    process.send_signal(signal.SIGTERM)
    process.wait(20)


def report(requests: list[tuple[str, str, object]], recorded: list[tuple[int, bytes]],
           replayed: list[tuple[int, bytes]], workdir: Path, without: str) -> int:
    """Print each replayed answer next to the recorded one; exit status 0 when every one is byte-identical."""
    for (method, path, _), before, after in zip(requests, recorded, replayed, strict=True):
        verdict = "identical" if before == after else f"DIFFERENT: {before!r} != {after!r}"
        print(f"   {method} {path}: {after[0]} {after[1].decode()[:70]} - {verdict}")
    if recorded != replayed:
        print("4. replay differed from the recording (logs in", workdir, ")")
        return 1
    print(f"4. every replayed response is byte-identical to the recording, with {without}")
    return 0
