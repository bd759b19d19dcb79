"""Names that become path segments of cassette files and S3 keys: safe characters only, bounded length."""

from __future__ import annotations

import re

__all__ = ["service_folder", "slug"]

_SLUG_LIMIT = 80


def slug(text: str) -> str:
    slugged = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return slugged[:_SLUG_LIMIT].rstrip("-") or "root"


def service_folder(service: str) -> str:
    """The folder of a service's cassettes below an S3 prefix (``prefix/<service>/YYYY-MM-DD/...``): many
    services can record into one bucket and prefix."""
    return slug(service)
