"""HTTP content-codings (gzip, deflate, br, zstd): decode for storage, re-encode for replay."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable

__all__ = ["decode_content", "encode_content"]


def _inflate(data: bytes) -> bytes:
    try:
        return zlib.decompress(data)
    except zlib.error:  # raw deflate without the zlib header, as some servers send it
        return zlib.decompress(data, -zlib.MAX_WBITS)


def _codecs() -> dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]]:
    codecs: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
        "gzip": (gzip.decompress, lambda d: gzip.compress(d, mtime=0)),
        "x-gzip": (gzip.decompress, lambda d: gzip.compress(d, mtime=0)),
        "deflate": (_inflate, zlib.compress),
    }
    try:
        import brotli  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        codecs["br"] = (brotli.decompress, brotli.compress)
    try:
        import zstandard
    except ImportError:
        pass
    else:
        codecs["zstd"] = (
            lambda d: zstandard.ZstdDecompressor().decompressobj().decompress(d),
            zstandard.ZstdCompressor().compress,
        )
    return codecs


_CODECS = _codecs()


def _codings(header: str) -> list[str]:
    return [c.strip().lower() for c in header.split(",") if c.strip() and c.strip().lower() != "identity"]


def decode_content(data: bytes, content_coding: str) -> bytes | None:
    """Undo ``content_coding`` (a Content-Encoding header value); ``None`` if any coding is unknown or fails."""
    for coding in reversed(_codings(content_coding)):
        codec = _CODECS.get(coding)
        if codec is None:
            return None
        try:
            data = codec[0](data)
        except Exception:  # a corrupt payload is stored as it came
            return None
    return data


def encode_content(data: bytes, content_coding: str) -> bytes:
    """Apply ``content_coding`` so a client decodes it back to ``data``; ``ValueError`` if a coding is unknown."""
    for coding in _codings(content_coding):
        codec = _CODECS.get(coding)
        if codec is None:
            raise ValueError(f"content-coding {coding!r} cannot be re-encoded here; install its codec")
        data = codec[1](data)
    return data
