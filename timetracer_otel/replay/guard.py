"""Fails any socket connection to a non-loopback address while replaying: no silent fallback to the network.

Live plugins (TIMETRACER_LIVE_PLUGINS) mark their calls with :func:`live_call`, and connections made inside
such a call are let through.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

from timetracer_otel.errors import NetworkBlockedError

__all__ = ["NetworkGuard", "live_call"]

_LIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("timetracer_live_call", default=False)


@contextlib.contextmanager
def live_call() -> Iterator[None]:
    token = _LIVE.set(True)
    try:
        yield
    finally:
        _LIVE.reset(token)


def _is_loopback(address: Any, family: int) -> bool:
    if family == getattr(socket, "AF_UNIX", None):
        return True
    if not isinstance(address, tuple) or not address:
        return False
    host = str(address[0]).split("%", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: resolve and connect to its address, then we can judge


def _describe(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return repr(address)


class NetworkGuard:
    """Wraps ``socket.socket.connect``/``connect_ex``; install() and uninstall() are symmetric."""

    def __init__(self) -> None:
        self._originals: dict[str, Any] = {}

    def install(self) -> None:
        if self._originals:
            return
        for name in ("connect", "connect_ex"):
            original = getattr(socket.socket, name)
            self._originals[name] = original
            setattr(socket.socket, name, self._guarded(original))

    def uninstall(self) -> None:
        for name, original in self._originals.items():
            setattr(socket.socket, name, original)
        self._originals.clear()

    @staticmethod
    def _guarded(original: Any) -> Any:
        def guarded(sock: socket.socket, address: Any) -> Any:
            if not _LIVE.get() and not _is_loopback(address, sock.family):
                raise NetworkBlockedError(_describe(address))
            return original(sock, address)

        guarded.__wrapped__ = original  # type: ignore[attr-defined]
        return guarded
