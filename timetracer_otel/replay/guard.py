"""Fails any socket connection to a non-loopback address while replaying: no silent fallback to the network.

Live plugins (TIMETRACER_LIVE_PLUGINS) mark their calls with :func:`live_call`, and connections made inside
such a call are let through, and so is telemetry (exporters run with instrumentation suppressed). Python's
sockets are guarded at ``socket.connect``; uvloop connects in C, so its loop's ``create_connection`` and
``sock_connect`` are guarded too. DNS lookups are not blocked.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any, ClassVar

from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from timetracer_otel.errors import NetworkBlockedError

__all__ = ["NetworkGuard", "allow_internal", "live_call"]

_AF_UNIX = getattr(socket, "AF_UNIX", None)

_LIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("timetracer_live_call", default=False)


@contextlib.contextmanager
def live_call() -> Iterator[None]:
    token = _LIVE.set(True)
    try:
        yield
    finally:
        _LIVE.reset(token)


def _is_loopback(address: Any, family: int) -> bool:
    if family == _AF_UNIX:
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


class _Allowed:
    """What the installed guard lets through."""

    hosts: frozenset[str] = frozenset()
    loopback = True
    #: Addresses of timetracer's own in-process servers (the MongoDB replay responder): always allowed.
    internal: ClassVar[set[tuple[str, int]]] = set()
    #: How to let a blocked connection through, for the error message (None: the server-mode advice).
    hint: str | None = None


def allow_internal(host: str, port: int) -> None:
    """Let connections to one of timetracer's own in-process servers through, even where loopback is blocked."""
    _Allowed.internal.add((host, port))


def _check(address: Any, family: int) -> None:
    # Exporters run with instrumentation suppressed: their telemetry is not the app's traffic.
    if _LIVE.get() or not is_instrumentation_enabled():
        return
    if _Allowed.loopback and _is_loopback(address, family):
        return
    if isinstance(address, tuple) and address and (
        str(address[0]) in _Allowed.hosts or tuple(address[:2]) in _Allowed.internal or family == _AF_UNIX
    ):
        return
    raise NetworkBlockedError(_describe(address), _Allowed.hint)


def _guard_connect(original: Any) -> Any:
    def connect(sock: socket.socket, address: Any) -> Any:
        _check(address, sock.family)
        return original(sock, address)

    return connect


def _guard_create_connection(original: Any) -> Any:
    async def create_connection(loop: Any, protocol_factory: Any, host: Any = None, port: Any = None,
                                *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("sock") is None:  # a given socket is connected already, by guarded code
            _check((host, port), socket.AF_INET)
        return await original(loop, protocol_factory, host, port, *args, **kwargs)

    return create_connection


def _guard_sock_connect(original: Any) -> Any:
    async def sock_connect(loop: Any, sock: socket.socket, address: Any) -> Any:
        _check(address, sock.family)
        return await original(loop, sock, address)

    return sock_connect


def _targets() -> list[tuple[Any, str, Any]]:
    targets: list[tuple[Any, str, Any]] = [
        (socket.socket, "connect", _guard_connect),
        (socket.socket, "connect_ex", _guard_connect),
    ]
    try:
        import uvloop
    except ImportError:
        return targets
    return [
        *targets,
        (uvloop.Loop, "create_connection", _guard_create_connection),
        (uvloop.Loop, "sock_connect", _guard_sock_connect),
    ]


class NetworkGuard:
    """Guards every way a replaying process could open a connection; install() and uninstall() are symmetric."""

    def __init__(
        self, allowed_hosts: frozenset[str] = frozenset(), *, allow_loopback: bool = True, hint: str | None = None
    ) -> None:
        """``allowed_hosts``: names and addresses that may still be connected to; ``allow_loopback=False``
        blocks local servers too (tests: a replayed test must not reach the developer's database); ``hint``
        says in the error how to let a connection through."""
        self._originals: list[tuple[Any, str, Any]] = []
        self._allowed = (allowed_hosts, allow_loopback, hint)

    def install(self) -> None:
        if self._originals:
            return
        _Allowed.hosts, _Allowed.loopback, _Allowed.hint = self._allowed
        for owner, name, guard in _targets():
            original = owner.__dict__.get(name)
            guarded = guard(getattr(owner, name))
            guarded.__wrapped__ = getattr(owner, name)
            setattr(owner, name, guarded)
            self._originals.append((owner, name, original))

    def uninstall(self) -> None:
        if not self._originals:
            return
        for owner, name, original in reversed(self._originals):
            if original is None:
                delattr(owner, name)  # it was inherited from a base class
            else:
                setattr(owner, name, original)
        self._originals.clear()
        _Allowed.hosts, _Allowed.loopback, _Allowed.hint = frozenset(), True, None
