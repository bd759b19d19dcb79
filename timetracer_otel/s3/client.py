"""The S3 client timetracer uses, its options, and errors explained in words a user can act on.

boto3 is imported only here and only when S3 is used (the ``s3`` extra): credentials come from its normal
chain (environment, shared profile, IRSA / workload identity web tokens, instance metadata).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from timetracer_otel.s3.location import S3Location

__all__ = ["S3Options", "describe_s3_error", "is_unreachable", "make_client"]

#: Server-side encryption modes S3 accepts in ``ServerSideEncryption``.
SSE_MODES = ("AES256", "aws:kms", "aws:kms:dsse")

_AUTH_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "Forbidden",
                         "ExpiredToken", "InvalidToken", "AuthorizationHeaderMalformed"})


def _default_spill_dir() -> Path:
    # Per user: cassettes can hold secrets, so not a folder other users share.
    return Path(tempfile.gettempdir()) / f"timetracer-{os.getuid()}" / "spill"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "timetracer" / "s3"


@dataclass(frozen=True)
class S3Options:
    """How to reach S3 and how to store there; ``None`` leaves the choice to boto3's configuration chain."""

    region: str | None = None
    endpoint_url: str | None = None
    #: ``ServerSideEncryption`` for every object written (``AES256``, ``aws:kms``, ``aws:kms:dsse``).
    sse: str | None = None
    sse_kms_key_id: str | None = None
    #: Where cassettes wait while S3 is unreachable; uploaded from there when it is back.
    spill_dir: Path = field(default_factory=_default_spill_dir)
    spill_max_bytes: int = 1024 * 1024 * 1024
    #: Replay's local copy of what it pulled from S3.
    cache_dir: Path = field(default_factory=_default_cache_dir)

    def encryption_arguments(self) -> dict[str, str]:
        """The ``put_object`` arguments for server-side encryption."""
        arguments = {}
        if self.sse:
            arguments["ServerSideEncryption"] = self.sse
        if self.sse_kms_key_id:
            arguments["SSEKMSKeyId"] = self.sse_kms_key_id
        return arguments


def make_client(options: S3Options, *, max_attempts: int = 3, connect_timeout: float = 3.0,
                read_timeout: float = 20.0, max_pool_connections: int = 10) -> Any:
    """A boto3 S3 client. Retries use botocore's ``standard`` mode (exponential backoff with jitter, on
    throttling and transient errors); timeouts are short so an unreachable S3 is noticed in seconds."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise RuntimeError("S3 storage needs boto3: pip install 'timetracer-otel[s3]'") from None
    config = Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max_pool_connections,
        # S3-compatible stores (MinIO, SeaweedFS, Ceph) are addressed by path; AWS picks for itself.
        s3={"addressing_style": "path" if options.endpoint_url else "auto"},
        user_agent_extra="timetracer-otel",
    )
    session = boto3.session.Session()
    return session.client("s3", region_name=options.region, endpoint_url=options.endpoint_url, config=config)


def is_unreachable(error: BaseException) -> bool:
    """S3 could not be reached at all (no answer), as opposed to an answer refusing the request."""
    from botocore.exceptions import ConnectionError as BotocoreConnectionError

    return isinstance(error, BotocoreConnectionError)


def describe_s3_error(error: BaseException, location: S3Location) -> str:
    """One line saying what went wrong with ``location`` and how to fix it."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
        return (f"no AWS credentials for {location}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
                "or run with an IAM role (IRSA / workload identity)")
    if isinstance(error, EndpointConnectionError):
        return f"cannot reach S3 for {location} ({error}): check TIMETRACER_S3_ENDPOINT_URL and the network"
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        message = error.response.get("Error", {}).get("Message", "") or str(error)
        if code in _AUTH_CODES:
            return (f"S3 refused the credentials for {location} ({code}: {message}): check AWS_ACCESS_KEY_ID/"
                    "AWS_SECRET_ACCESS_KEY or the role's policy (recording needs s3:PutObject, reading "
                    "s3:ListBucket and s3:GetObject)")
        if code in ("NoSuchBucket", "404"):
            return f"the bucket {location.bucket!r} does not exist (or is not visible with these credentials)"
        return f"S3 error for {location} ({code}: {message})"
    return f"S3 error for {location}: {error}"
