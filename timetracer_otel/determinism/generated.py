"""Values the app generates while serving a request, recorded in order and handed back in the same order on
replay, so a replayed request makes the same ids, slugs and tokens, and the calls that carry them match.

Sources, as ``TIMETRACER_GENERATED`` and the cassette's ``generated`` name them:

- ``uuid4``: ``uuid.uuid4()``;
- ``random``: the ``random`` module's functions, through their shared generator's primitives (``random()``,
  ``getrandbits()``), which ``randint``, ``choice``, ``shuffle``, ``sample``, ``uniform``... draw on;
- ``secrets``: the ``secrets`` module's functions (``token_bytes``, ``token_hex``, ``token_urlsafe``, ``choice``,
  ``randbelow``, ``randbits``), through its generator's primitives (``randbytes()`` too);
- ``urandom``: ``os.urandom()``;
- ``objectid``: ``bson.ObjectId()`` (a new id; an id built from a value is left alone).

A hook records into the recording of the request it serves, and replays from its replay session
(:func:`~timetracer_otel.determinism._state.current_state`), only for the app's calls
(:func:`~timetracer_otel.determinism._state.app_called`: OpenTelemetry's span ids are not the app's). A replayed
request that asks for more values than were recorded, or for another kind (the code changed), gets real ones
(:meth:`~timetracer_otel.replay.session.ReplaySession.take_generated`).

The hooks are plain functions and methods put in the library's place, not wrapt wrappers: they run for every
``random.random()`` and every span id, so they are as cheap as a context look-up and a frame look-up allow (the
costs are in docs/determinism.md). The shared generators of ``random`` and ``secrets`` get their class switched to
a subclass with hooked primitives, which also covers functions the app bound before the install
(``from random import randint``).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import random
import secrets
import types
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from timetracer_otel.determinism._state import app_called, current_state
from timetracer_otel.integrations._base import Integration, Patch
from timetracer_otel.replay.session import NOT_RECORDED, ReplaySession

__all__ = ["INTEGRATION", "GeneratedIntegration", "Swap"]

logger = logging.getLogger("timetracer")

UUID4 = "uuid4"
RANDOM = "random"
SECRETS = "secrets"
URANDOM = "urandom"
OBJECTID = "objectid"

_UUID = uuid.UUID
_real_urandom = os.urandom


def _is_float(value: Any) -> bool:
    return type(value) is float


def _is_uuid(value: Any) -> bool:
    return type(value) is str and len(value) == 36


def _is_object_id(value: Any) -> bool:
    return type(value) is str and len(value) == 24


def _fits_bits(bits: int) -> Callable[[Any], bool]:
    return lambda value: type(value) is int and value.bit_length() <= bits


def _fits_bytes(size: int) -> Callable[[Any], bool]:
    return lambda value: type(value) is str and len(value) == 2 * size


# -- hooks --------------------------------------------------------------------------------------------------
# Each: no state or not the app's call -> the real thing; replaying -> the next recorded value if it fits, else
# the real thing; recording -> the real thing, kept.


def uuid4() -> uuid.UUID:
    """``uuid.uuid4()``, recorded and replayed. Draws its bytes as CPython's does, from the real ``os.urandom``
    (so they are not recorded a second time as ``urandom`` values)."""
    state = current_state()
    if state is None or not app_called():
        return _UUID(bytes=_real_urandom(16), version=4)
    if isinstance(state, ReplaySession):
        value = state.take_generated(UUID4, _is_uuid)
        return _UUID(bytes=_real_urandom(16), version=4) if value is NOT_RECORDED else _UUID(value)
    generated = _UUID(bytes=_real_urandom(16), version=4)
    state.add_generated(UUID4, generated.bytes)
    return generated


def urandom(size: int, /) -> bytes:
    """``os.urandom()``, recorded and replayed."""
    state = current_state()
    if state is None or not app_called():
        return _real_urandom(size)
    if isinstance(state, ReplaySession):
        value = state.take_generated(URANDOM, _fits_bytes(size))
        return _real_urandom(size) if value is NOT_RECORDED else bytes.fromhex(value)
    generated = _real_urandom(size)
    state.add_generated(URANDOM, generated)
    return generated


def _hooked_generator(base: type[random.Random], source: str, *, with_randbytes: bool) -> type[random.Random]:
    """A subclass of ``base`` whose primitives are recorded and replayed as ``source``; everything else the
    generator offers draws on them. ``randbytes`` is hooked only where it does not draw on ``getrandbits``."""
    real_random = base.random
    real_getrandbits = base.getrandbits
    real_randbytes = base.randbytes

    def random_(self: random.Random) -> float:
        state = current_state()
        if state is None or not app_called():
            return real_random(self)
        if isinstance(state, ReplaySession):
            value = state.take_generated(source, _is_float)
            return real_random(self) if value is NOT_RECORDED else cast(float, value)
        generated = real_random(self)
        state.add_generated(source, generated)
        return generated

    def getrandbits(self: random.Random, k: int, /) -> int:
        state = current_state()
        if state is None or not app_called():
            return real_getrandbits(self, k)
        if isinstance(state, ReplaySession):
            value = state.take_generated(source, _fits_bits(k))
            return real_getrandbits(self, k) if value is NOT_RECORDED else cast(int, value)
        generated = real_getrandbits(self, k)
        state.add_generated(source, generated)
        return generated

    def randbytes(self: random.Random, n: int, /) -> bytes:
        state = current_state()
        if state is None or not app_called():
            return real_randbytes(self, n)
        if isinstance(state, ReplaySession):
            value = state.take_generated(source, _fits_bytes(n))
            return real_randbytes(self, n) if value is NOT_RECORDED else bytes.fromhex(value)
        generated = real_randbytes(self, n)
        state.add_generated(source, generated)
        return generated

    namespace: dict[str, Any] = {
        "__slots__": (),
        "__module__": __name__,
        "__doc__": f"{base.__name__} whose primitives are recorded and replayed as {source!r} values.",
        "random": random_,
        "getrandbits": getrandbits,
    }
    if with_randbytes:
        namespace["randbytes"] = randbytes
    for name, function in namespace.items():
        if isinstance(function, types.FunctionType):
            function.__name__ = name
            function.__qualname__ = f"Recorded{base.__name__}.{name}"
    return cast(type[random.Random], type(f"Recorded{base.__name__}", (base,), namespace))


#: ``random.Random.randbytes`` draws on ``getrandbits`` where it is written in Python (CPython 3.11).
RecordedRandom = _hooked_generator(
    random.Random, RANDOM, with_randbytes=not isinstance(random.Random.__dict__.get("randbytes"), types.FunctionType)
)
RecordedSystemRandom = _hooked_generator(random.SystemRandom, SECRETS, with_randbytes=True)


def _object_id_init(real_init: Callable[..., None]) -> Callable[..., None]:
    def __init__(self: Any, oid: Any = None) -> None:
        if oid is not None:
            real_init(self, oid)
            return
        state = current_state()
        if state is None or not app_called():
            real_init(self)
        elif isinstance(state, ReplaySession):
            value = state.take_generated(OBJECTID, _is_object_id)
            real_init(self, None if value is NOT_RECORDED else bytes.fromhex(value))
        else:
            real_init(self)
            state.add_generated(OBJECTID, self.binary)

    __init__.__qualname__ = "ObjectId.__init__"
    __init__.__doc__ = real_init.__doc__
    return __init__


# -- the table ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Swap:
    """One row of the table: while installed, ``owner.attribute`` is ``replacement``."""

    owner: Any
    attribute: str
    replacement: Any


def _generator_swaps(module: types.ModuleType, instance_name: str, hooked: type[random.Random],
                     bound: Sequence[tuple[str, str]]) -> list[Swap]:
    """Switch a module's shared generator to ``hooked``, and rebind the module functions that were bound to
    its primitives (``random.random`` is the C method itself: switching the class does not reach it)."""
    instance = getattr(module, instance_name, None)
    if not isinstance(instance, hooked.__bases__[0]):
        logger.warning("timetracer: %s.%s is not a %s here; %s values are not recorded or replayed",
                       module.__name__, instance_name, hooked.__bases__[0].__name__, module.__name__)
        return []
    rows = [Swap(instance, "__class__", hooked)]
    for function, primitive in bound:
        if primitive in vars(hooked):
            rows.append(Swap(module, function, types.MethodType(vars(hooked)[primitive], instance)))
    return rows


def _id_generator_swaps() -> list[Swap]:
    """OpenTelemetry's id generator gets a copy of the ``random`` module as it is before the hooks, so span and
    trace ids cost no hook (they are never the app's; other callers from OpenTelemetry still reach the hooks,
    which tell them apart by their module, at some cost)."""
    if importlib.util.find_spec("opentelemetry.sdk.trace.id_generator") is None:
        return []
    module = importlib.import_module("opentelemetry.sdk.trace.id_generator")
    if getattr(module, "random", None) is not random:
        return []
    unhooked = types.ModuleType("random", random.__doc__)
    vars(unhooked).update({name: value for name, value in vars(random).items() if not name.startswith("__")})
    return [Swap(module, "random", unhooked)]


class GeneratedIntegration(Integration):
    """Installs the hooks of the sources ``TIMETRACER_GENERATED`` names (all by default)."""

    name = "generated"

    def __init__(self, runtime: Any) -> None:
        super().__init__(runtime)
        #: What is in place: each row with the value it replaced.
        self._swapped: list[tuple[Swap, Any]] = []

    def patches(self) -> Sequence[Patch]:
        return ()  # plain replacements, not wrapt wrappers: see swaps()

    def swaps(self) -> list[Swap]:
        sources = self.settings.generated
        rows: list[Swap] = []
        if UUID4 in sources:
            rows.append(Swap(uuid, "uuid4", uuid4))
        if URANDOM in sources:
            rows.append(Swap(os, "urandom", urandom))
        if RANDOM in sources:
            rows += _id_generator_swaps()  # first, while random.getrandbits is still the generator's own
            rows += _generator_swaps(random, "_inst", RecordedRandom,
                                     [("random", "random"), ("getrandbits", "getrandbits"), ("randbytes", "randbytes")])
        if SECRETS in sources:
            rows += _generator_swaps(secrets, "_sysrand", RecordedSystemRandom, [("randbits", "getrandbits")])
        if OBJECTID in sources and importlib.util.find_spec("bson") is not None:
            object_id = importlib.import_module("bson.objectid").ObjectId
            rows.append(Swap(object_id, "__init__", _object_id_init(object_id.__init__)))
        return rows

    def install(self) -> None:
        self.uninstall()  # an earlier runtime's rows, if it never uninstalled
        for row in self.swaps():
            self._swapped.append((row, getattr(row.owner, row.attribute)))
            setattr(row.owner, row.attribute, row.replacement)
        self.active = True
        logger.debug("timetracer: generated values recorded and replayed: %s",
                     ", ".join(sorted(self.settings.generated)) or "none")

    def uninstall(self) -> None:
        self.active = False
        while self._swapped:
            row, original = self._swapped.pop()
            if getattr(row.owner, row.attribute) is row.replacement:
                setattr(row.owner, row.attribute, original)
            else:
                # Replaced again on top of ours: ours stays reachable through it, and passes through once no
                # recording or replay session is left.
                logger.debug("timetracer: %s.%s was replaced on top of timetracer's hook; leaving it",
                             getattr(row.owner, "__name__", row.owner), row.attribute)


INTEGRATION = GeneratedIntegration
