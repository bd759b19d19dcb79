"""Where cassettes live in S3, and the one rule for turning an S3 key into a local path."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = ["S3Location", "UnsafeKeyError", "is_s3_url", "local_path_for"]

#: S3's bucket naming rules (lower-case letters, digits, dots and hyphens, 3 to 63 characters).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
#: What a path segment of a key may hold to be written locally: timetracer's own names never hold more.
_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.=+-]{0,254}")


class UnsafeKeyError(ValueError):
    """An S3 key that would not stay inside the local folder it is copied to (``..``, an absolute path,
    odd characters)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"refusing S3 key {key!r}: {problem}")
        self.key = key
        self.problem = problem


def is_s3_url(value: str | Path) -> bool:
    return isinstance(value, str) and value.startswith("s3://")


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix (no leading or trailing ``/``; empty for the whole bucket)."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """``s3://bucket`` or ``s3://bucket/some/prefix``; a ``ValueError`` says what is wrong."""
        if not url.startswith("s3://"):
            raise ValueError(f"{url!r} is not an s3:// URL (expected s3://bucket/prefix)")
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        return cls.of(bucket, prefix)

    @classmethod
    def of(cls, bucket: str, prefix: str = "") -> S3Location:
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise ValueError(f"{bucket!r} is not a valid S3 bucket name (3-63 lower-case letters, digits, dots "
                             "and hyphens)")
        prefix = prefix.strip("/")
        if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
            raise ValueError(f"the S3 prefix {prefix!r} has an empty, '.' or '..' segment")
        return cls(bucket, prefix)

    def key(self, relative: str) -> str:
        """The key of ``relative`` (a POSIX path) below this prefix."""
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def relative(self, key: str) -> str:
        """``key`` relative to this prefix (the whole key when the prefix is empty)."""
        if not self.prefix:
            return key
        if key == self.prefix:
            return PurePosixPath(key).name
        return key.removeprefix(self.prefix + "/")

    def child(self, relative: str) -> S3Location:
        return S3Location(self.bucket, self.key(relative.strip("/")))

    @property
    def list_prefix(self) -> str:
        """The prefix to list objects below (``a/b/``: not ``a/bc``)."""
        return f"{self.prefix}/" if self.prefix else ""

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def local_path_for(directory: Path, relative_key: str) -> Path:
    """Where the object at ``relative_key`` (a key relative to the prefix being copied) goes below
    ``directory``; raises :class:`UnsafeKeyError` for a key that could land elsewhere or that no
    timetracer name looks like. Every segment must be a plain name: no ``..``, no ``.`` prefix, no absolute
    path, no backslash, control or other odd characters."""
    if not relative_key or relative_key.startswith("/"):
        raise UnsafeKeyError(relative_key, "an absolute or empty path")
    parts = relative_key.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafeKeyError(relative_key, f"the path segment {part!r} is not a plain name")
        if not _SAFE_SEGMENT.fullmatch(part):
            raise UnsafeKeyError(relative_key, f"the path segment {part!r} has characters other than letters, "
                                 "digits and _ . = + -, or starts with a dot")
    target = directory.joinpath(*parts)
    # Belt and braces: a symlink already inside the folder must not lead out of it either.
    resolved_root = directory.resolve()
    if not target.resolve().is_relative_to(resolved_root):
        raise UnsafeKeyError(relative_key, f"it resolves outside {directory}")
    return target
