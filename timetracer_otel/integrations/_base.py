"""What every integration module shares: a table of patches, installed inner to the OTel instrumentors.

Each integration module defines an :class:`Integration` subclass whose ``patches()`` lists
``Patch(module, "Class.method", wrapper)`` rows. ``install()`` applies them with wrapt and ``uninstall()``
removes exactly those. When another wrapper (an OTel instrumentor) was put on top of ours, ours cannot be
removed without removing it too: it stays in place, switched off, and the next ``install()`` of the same
integration object switches it back on rather than wrapping again on top (which would hide the OTel span).
"""

from __future__ import annotations

import importlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import wrapt

if TYPE_CHECKING:
    from timetracer_otel.runtime import Runtime
    from timetracer_otel.settings import Settings

__all__ = ["Integration", "Patch", "Wrapper"]

logger = logging.getLogger("timetracer")

#: The wrapt wrapper signature: (wrapped, instance, args, kwargs) -> result.
Wrapper = Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], Any]


@dataclass(frozen=True)
class Patch:
    module: str
    #: Dotted path inside the module, e.g. ``HTTPTransport.handle_request``.
    attribute: str
    wrapper: Wrapper


class Integration(ABC):
    """Base of every integration: subclasses set ``name`` and implement ``patches()``."""

    #: Plugin name users write in TIMETRACER_MOCK_PLUGINS / TIMETRACER_LIVE_PLUGINS.
    name: ClassVar[str]

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        #: Wrappers pass straight through when False (after uninstall, if they could not be removed).
        self.active = False
        self._applied: dict[tuple[str, str], tuple[Any, str, Any]] = {}

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def mocked(self) -> bool:
        """True when replaying and this plugin's calls are answered from cassettes."""
        return self.runtime.replaying and self.name in self.settings.mocked_plugins

    @abstractmethod
    def patches(self) -> Sequence[Patch]:
        """The table of functions this integration wraps."""

    def install(self) -> None:
        for patch in self.patches():
            key = (patch.module, patch.attribute)
            if key in self._applied:
                continue  # still in place from an earlier install, under someone else's wrapper
            parent_path, _, name = patch.attribute.rpartition(".")
            parent = importlib.import_module(patch.module)
            for part in filter(None, parent_path.split(".")):
                parent = getattr(parent, part)
            # From the class dict when there: a classmethod stays one (bound to the subclass it is called on).
            in_dict = isinstance(parent, type) and name in parent.__dict__
            original = parent.__dict__[name] if in_dict else getattr(parent, name)
            wrapper = wrapt.FunctionWrapper(original, patch.wrapper)
            setattr(parent, name, wrapper)
            self._applied[key] = (parent, name, wrapper)
        self.active = True

    def uninstall(self) -> None:
        self.active = False
        for key, (parent, name, wrapper) in list(self._applied.items()):
            if parent.__dict__.get(name) is wrapper:
                setattr(parent, name, wrapper.__wrapped__)
                del self._applied[key]
            else:
                logger.debug("timetracer: %s.%s is wrapped again on top of ours; leaving ours switched off",
                             getattr(parent, "__name__", parent), name)
