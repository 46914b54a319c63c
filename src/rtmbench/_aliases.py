"""Old module paths kept importable after a rename, with a DeprecationWarning naming the new
one (users may import rtmbench's modules from their own scripts; a rename must not break them
silently). Each package registers its own in its ``__init__``; nothing is imported until an
old name is used."""

from __future__ import annotations

import importlib
import sys
import types
import warnings


class _Renamed(types.ModuleType):
    """Stands in ``sys.modules`` for ``old``: every attribute comes from ``new``."""

    def __init__(self, old: str, new: str) -> None:
        super().__init__(old, f"Renamed to {new}.")
        self.__renamed_to = new

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        warnings.warn(f"{self.__name__} was renamed {self.__renamed_to}; import it from there "
                      f"(the old name goes in a future version).", DeprecationWarning,
                      stacklevel=2)
        return getattr(importlib.import_module(self.__renamed_to), name)


def renamed(old: str, new: str) -> None:
    """Let ``import old`` and ``from old import x`` keep working, from ``new``."""
    sys.modules.setdefault(old, _Renamed(old, new))
