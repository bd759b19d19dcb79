"""A minimal MongoDB wire-protocol server on 127.0.0.1 that replayed clients are pointed at.

Answering at the wire, rather than patching the driver's internals, keeps replay independent of how a PyMongo
release moves its code around: the client does its own server selection, sessions, cursors and error
handling, and raises its own exceptions from the replies it gets. The server speaks OP_MSG (and OP_QUERY/OP_REPLY,
which PyMongo still uses for the first handshake of a connection) without compression, TLS or authentication.

What to answer is not decided here: every command is handed to the ``answer`` callback with the message's
``requestID``, which is the ``request_id`` of PyMongo's ``CommandStartedEvent`` for the same command. The
callback returns the reply as BSON bytes, or None to close the connection (as a network failure would).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import struct
import sys
import threading
from collections.abc import Callable
from typing import Any

import bson

__all__ = ["Answer", "WireResponder"]

logger = logging.getLogger("timetracer")

#: (request id, command document) -> reply BSON, or None to drop the connection.
Answer = Callable[[int, dict[str, Any]], bytes | None]

_HEADER = struct.Struct("<iiii")
_OP_REPLY = 1
_OP_QUERY = 2004
_OP_MSG = 2013
_CHECKSUM_PRESENT = 1
_MORE_TO_COME = 1 << 1
_MAX_MESSAGE = 48_000_000 + 16 * 1024 * 1024


def _read_exactly(stream: Any, size: int) -> bytes | None:
    data = stream.read(size)
    return data if len(data) == size else None


def _cstring(data: bytes, offset: int) -> tuple[str, int]:
    end = data.index(b"\x00", offset)
    return data[offset:end].decode("utf-8"), end + 1


def _op_msg_command(body: bytes) -> tuple[dict[str, Any], int]:
    """The command of an OP_MSG: its body section with each document sequence added under its identifier
    (as PyMongo's command monitoring shows it). Returns it and the message's flag bits."""
    (flags,) = struct.unpack_from("<I", body, 0)
    end = len(body) - (4 if flags & _CHECKSUM_PRESENT else 0)
    offset = 4
    command: dict[str, Any] = {}
    sequences: list[tuple[str, list[Any]]] = []
    while offset < end:
        kind = body[offset]
        offset += 1
        (size,) = struct.unpack_from("<i", body, offset)
        if kind == 0:
            command = bson.decode(body[offset:offset + size])
        elif kind == 1:
            identifier, start = _cstring(body, offset + 4)
            sequences.append((identifier, bson.decode_all(body[start:offset + size])))
        else:
            raise ValueError(f"unknown OP_MSG section kind {kind}")
        offset += size
    for identifier, documents in sequences:
        command[identifier] = documents
    return command, flags


def _op_query_command(body: bytes) -> dict[str, Any]:
    _, offset = _cstring(body, 4)  # flags, then the full collection name ("admin.$cmd")
    offset += 8  # numberToSkip, numberToReturn
    (size,) = struct.unpack_from("<i", body, offset)
    return bson.decode(body[offset:offset + size])


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        while True:
            header = _read_exactly(self.rfile, _HEADER.size)
            if header is None:
                return
            length, request_id, _, opcode = _HEADER.unpack(header)
            if not _HEADER.size <= length <= _MAX_MESSAGE:
                return
            body = _read_exactly(self.rfile, length - _HEADER.size)
            if body is None:
                return
            if opcode == _OP_MSG:
                command, flags = _op_msg_command(body)
            elif opcode == _OP_QUERY:
                command, flags = _op_query_command(body), 0
            else:
                logger.warning("timetracer: the MongoDB replay server got opcode %d; closing the connection", opcode)
                return
            reply = self.server.answer(request_id, command)
            if reply is None:
                return  # the recorded call failed on the network: so does the replayed one
            if flags & _MORE_TO_COME:
                continue  # an unacknowledged write: the client expects no reply
            self.wfile.write(_reply_message(request_id, opcode, reply))
            self.wfile.flush()


def _reply_message(request_id: int, opcode: int, document: bytes) -> bytes:
    response_id = threading.get_ident() & 0x7FFFFFFF
    if opcode == _OP_QUERY:
        payload = struct.pack("<iqii", 8, 0, 0, 1) + document  # AwaitCapable, no cursor, one document
        return _HEADER.pack(_HEADER.size + len(payload), response_id, request_id, _OP_REPLY) + payload
    payload = b"\x00\x00\x00\x00\x00" + document  # no flags; one body section
    return _HEADER.pack(_HEADER.size + len(payload), response_id, request_id, _OP_MSG) + payload


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, answer: Answer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer = answer
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("timetracer: MongoDB replay server connection failed: %r", sys.exc_info()[1])


class WireResponder:
    """The server, on its own threads (one per connection); started and stopped by its owner."""

    def __init__(self, answer: Answer) -> None:
        self._server = _Server(answer)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="timetracer-mongo-replay", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def stop(self) -> None:
        """Stop accepting and close every open connection (clients still holding one see it dropped)."""
        self._server.shutdown()
        self._thread.join(5)
        self._server.server_close()
        with self._server.lock:
            connections = list(self._server.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
