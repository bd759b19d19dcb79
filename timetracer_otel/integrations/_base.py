"""What every integration module shares: a table of patches, installed inner to the OTel instrumentors.

Each integration module defines an :class:`Integration` subclass whose ``patches()`` lists
``Patch(module, "Class.method", wrapper)`` rows. ``install()`` applies them with wrapt and ``uninstall()``
removes exactly those; when another wrapper (an OTel instrumentor) was put on top of ours later, ours is left
in place but switched off, so the other one keeps working.
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
    """Base of every integration: subclasses set ``name`` and ``library`` and implement ``patches()``."""

    #: Plugin name users write in TIMETRACER_MOCK_PLUGINS / TIMETRACER_LIVE_PLUGINS.
    name: ClassVar[str]
    #: Importable module whose presence means the library is installed.
    library: ClassVar[str]

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        #: Wrappers pass straight through when False (after uninstall, if they could not be removed).
        self.active = False
        self._applied: list[tuple[Any, str, Any]] = []

    @property
    def mocked(self) -> bool:
        """True when replaying and this plugin's calls are answered from cassettes."""
        return self.runtime.replaying and self.name in self.settings.mocked_plugins

    @abstractmethod
    def patches(self) -> Sequence[Patch]:
        """The table of functions this integration wraps."""

    def install(self) -> None:
        if self.active:
            return
        for patch in self.patches():
            module = importlib.import_module(patch.module)
            parent_path, _, name = patch.attribute.rpartition(".")
            parent = module
            for part in filter(None, parent_path.split(".")):
                parent = getattr(parent, part)
            wrapper = wrapt.FunctionWrapper(getattr(parent, name), patch.wrapper)
            setattr(parent, name, wrapper)
            self._applied.append((parent, name, wrapper))
        self.active = True

    def uninstall(self) -> None:
        self.active = False
        for parent, name, wrapper in reversed(self._applied):
            if parent.__dict__.get(name) is wrapper:
                setattr(parent, name, wrapper.__wrapped__)
            else:
                logger.debug("timetracer: %s.%s is wrapped again on top of ours; leaving ours switched off",
                             getattr(parent, "__name__", parent), name)
        self._applied.clear()
