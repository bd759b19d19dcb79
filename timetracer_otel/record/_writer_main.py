"""The writer process: assembles, encodes and stores the captured requests its parent sends, off the app's GIL.

Run as ``python -m timetracer_otel.record._writer_main EXPORTER_SPEC_JSON LOG_LEVEL``; reads the frames of
:mod:`timetracer_otel.record.writer_process` on stdin and, for each ``A``, answers on stdout with
``<written> <failed>[ <counter>=<change> ...]\\n`` for the requests since the previous ``A`` (the counters are
the exporter's, see ``Exporter.take_counts``). At the end of its input it closes the exporter, which stores what
it still queues. Errors are logged to stderr, which is the app's.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import BinaryIO

from timetracer_otel.exporters.spec import ExporterSpec
from timetracer_otel.record.assembly import AssemblingWriter
from timetracer_otel.record.captured import CapturedRequest, CaptureWriter, decode_captured
from timetracer_otel.record.writer_process import LENGTH

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
            counters = "".join(f" {name}={change}" for name, change in writer.take_counts().items())
            outgoing.write(f"{written} {failed + undecodable}{counters}\n".encode())
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
    spec_json, level = sys.argv[1:3]
    logging.basicConfig(format="%(message)s")
    logging.getLogger("timetracer").setLevel(int(level))
    spec = ExporterSpec.from_json(spec_json)
    writer = AssemblingWriter(spec.open(), spec.service)
    try:
        with contextlib.suppress(EOFError, BrokenPipeError, KeyboardInterrupt):
            serve(writer, sys.stdin.buffer, sys.stdout.buffer)
    finally:
        writer.close()
