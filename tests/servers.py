"""Real servers for tests: subprocesses on 127.0.0.1, stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "fastapi_httpx"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {timeout}s:\n{log.read_text()}")


class ServerProcess:
    """A server subprocess on 127.0.0.1, running ``command``; ready once ``port`` accepts connections.

    Started with the test process's environment minus ``TIMETRACER_*``, ``OTEL_*`` and ``dropped`` prefixes,
    plus ``env``."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        port: int,
        cwd: Path,
        log: Path,
        env: Mapping[str, str] | None = None,
        dropped: tuple[str, ...] = (),
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("TIMETRACER_", "OTEL_", *dropped))}
        full_env.update(env or {})
        full_env["PATH"] = f"{BIN}{os.pathsep}{full_env.get('PATH', '')}"
        self._handle = log.open("wb")
        self.process = subprocess.Popen(list(command), cwd=cwd, env=full_env, stdout=self._handle,
                                        stderr=subprocess.STDOUT)
        try:
            _wait_for_port(port, self.process, log)
        except BaseException:
            self.stop()
            raise

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._handle.close()
        return self.process.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Server(ServerProcess):
    """A uvicorn app in a subprocess, optionally under ``opentelemetry-instrument``."""

    def __init__(
        self,
        app: str,
        *,
        cwd: Path,
        log: Path,
        env: Mapping[str, str] | None = None,
        instrument: bool = False,
        extra_args: Sequence[str] = (),
    ) -> None:
        port = free_port()
        command = [str(BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(port),
                   "--log-level", "warning", *extra_args]
        if instrument:
            command = [str(BIN / "opentelemetry-instrument"), *command]
        super().__init__(command, port=port, cwd=cwd, log=log, env=env)


#: A response as a comparison sees it: status, headers in order, body.
Answer = tuple[int, list[tuple[str, str]], bytes]


def answer(response: Any) -> Answer:
    """An ``httpx.Response`` less what differs per run: the date, and the server's own name (not the app's)."""
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in ("date", "server")]
    return response.status_code, headers, response.content
