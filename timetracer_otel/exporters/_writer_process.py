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


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return data


def serve(directory: str, incoming: BinaryIO, outgoing: BinaryIO) -> None:
    exporter = FileExporter(directory)
    batch: list[tuple[str, bytes]] = []
    while kind := incoming.read(1):
        if kind == b"A":
            written, failed = exporter.store_batch(batch)
            batch = []
            outgoing.write(f"{written} {failed}\n".encode())
            outgoing.flush()
            continue
        path_size, data_size = HEADER.unpack(_read_exactly(incoming, HEADER.size))
        path = _read_exactly(incoming, path_size).decode("utf-8")
        batch.append((path, _read_exactly(incoming, data_size)))


if __name__ == "__main__":
    logging.basicConfig(format="%(message)s")
    with contextlib.suppress(EOFError, BrokenPipeError, KeyboardInterrupt):
        serve(sys.argv[1], sys.stdin.buffer, sys.stdout.buffer)
