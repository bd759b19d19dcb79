"""The writer process: assembles, encodes and stores the captured requests its parent sends, off the app's GIL.

Run as ``python -m timetracer_otel.record._writer_main DIRECTORY COMPRESSION SERVICE``; reads the frames of
:mod:`timetracer_otel.record.writer_process` on stdin and, for each ``A``, answers on stdout with
``<written> <failed>\\n`` for the requests since the previous ``A``. Errors are logged to stderr, which is the
app's.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import BinaryIO

from timetracer_otel.exporters.file import FileExporter
from timetracer_otel.record.assembly import AssemblingWriter
from timetracer_otel.record.captured import CapturedRequest, CaptureWriter, decode_captured
from timetracer_otel.record.writer_process import LENGTH
from timetracer_otel.settings import Compression

logger = logging.getLogger("timetracer.record")


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return data


def serve(writer: CaptureWriter, incoming: BinaryIO, outgoing: BinaryIO) -> None:
    batch: list[CapturedRequest] = []
    undecodable = 0
    while kind := incoming.read(1):
        if kind == b"A":
            written, failed = writer.store_batch(batch)
            outgoing.write(f"{written} {failed + undecodable}\n".encode())
            outgoing.flush()
            batch, undecodable = [], 0
            continue
        (size,) = LENGTH.unpack(_read_exactly(incoming, LENGTH.size))
        frame = _read_exactly(incoming, size)
        try:
            batch.append(decode_captured(frame))
        except Exception:
            undecodable += 1
            logger.exception("timetracer: the writer process could not decode a captured request")


if __name__ == "__main__":
    logging.basicConfig(format="%(message)s")
    directory, compression, service = sys.argv[1:4]
    writer = AssemblingWriter(FileExporter(directory, Compression(compression)), service)
    with contextlib.suppress(EOFError, BrokenPipeError, KeyboardInterrupt):
        serve(writer, sys.stdin.buffer, sys.stdout.buffer)
