"""The writer process: stores the cassettes its parent sends, so file I/O never competes for the app's GIL.

Run as ``python -m timetracer_otel.exporters._writer_process DIRECTORY``. Reads frames on stdin:
``W`` + path length (4 bytes) + data length (8 bytes) + path + data, or ``A`` (acknowledge). For each ``A`` it
answers on stdout with ``<written> <failed>\\n`` for the frames since the previous ``A``. Errors are logged to
stderr, which is the app's.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import BinaryIO

from timetracer_otel.exporters._framing import HEADER
from timetracer_otel.exporters.file import FileExporter

logger = logging.getLogger("timetracer.writer")


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return data


def serve(directory: str, incoming: BinaryIO, outgoing: BinaryIO) -> None:
    exporter = FileExporter(directory)
    written = failed = 0
    while kind := incoming.read(1):
        if kind == b"A":
            outgoing.write(f"{written} {failed}\n".encode())
            outgoing.flush()
            written = failed = 0
            continue
        path_size, data_size = HEADER.unpack(_read_exactly(incoming, HEADER.size))
        path = _read_exactly(incoming, path_size).decode("utf-8")
        data = _read_exactly(incoming, data_size)
        try:
            exporter.store(path, data)
        except Exception:
            failed += 1
            logger.exception("timetracer: could not write cassette %s", path)
        else:
            written += 1


if __name__ == "__main__":
    logging.basicConfig(format="%(message)s")
    with contextlib.suppress(EOFError, BrokenPipeError, KeyboardInterrupt):
        serve(sys.argv[1], sys.stdin.buffer, sys.stdout.buffer)
