"""The writer process: encodes and stores the cassettes its parent sends, off the app's GIL.

Run as ``python -m timetracer_otel.exporters._writer_process DIRECTORY COMPRESSION``; reads the frames of
``_framing`` on stdin and, for each ``A``, answers on stdout with ``<written> <failed>\\n`` for the cassettes
since the previous ``A``. Errors are logged to stderr, which is the app's.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import BinaryIO

from timetracer_otel.cassette.model import Cassette
from timetracer_otel.exporters._framing import LENGTH, decode_cassette
from timetracer_otel.exporters.file import FileExporter
from timetracer_otel.settings import Compression

logger = logging.getLogger("timetracer.record")


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return data


def serve(exporter: FileExporter, incoming: BinaryIO, outgoing: BinaryIO) -> None:
    batch: list[Cassette] = []
    undecodable = 0
    while kind := incoming.read(1):
        if kind == b"A":
            written, failed = exporter.store_batch(batch)
            outgoing.write(f"{written} {failed + undecodable}\n".encode())
            outgoing.flush()
            batch, undecodable = [], 0
            continue
        (size,) = LENGTH.unpack(_read_exactly(incoming, LENGTH.size))
        frame = _read_exactly(incoming, size)
        try:
            batch.append(decode_cassette(frame))
        except Exception:
            undecodable += 1
            logger.exception("timetracer: the writer process could not decode a cassette")


if __name__ == "__main__":
    logging.basicConfig(format="%(message)s")
    with contextlib.suppress(EOFError, BrokenPipeError, KeyboardInterrupt):
        serve(FileExporter(sys.argv[1], Compression(sys.argv[2])), sys.stdin.buffer, sys.stdout.buffer)
