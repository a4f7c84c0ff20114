"""Package faces that load their names on first use (PEP 562).

``import budgetopt`` and the CLI must start without importing JAX — bad flags fail fast, and a
Ctrl-C during start-up meets the CLI's handler rather than an import in progress — so no face
imports its modules eagerly: each lists name -> module and the module loads when a name is
first read. Standard library only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import import_module


def lazy_face(package: str, where: dict[str, str]) -> tuple[Callable, Callable, list[str]]:
    """``(__getattr__, __dir__, __all__)`` for the face of ``package``: ``where`` maps each public
    name to the module that defines it, relative to ``package`` (``"model.laws"``). A name that
    is its module's own last component (``"units": "core.units"``) is the module itself — never
    ambiguous, since no module is named after a name its package exports."""

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = import_module(f"{package}.{where[name]}")
        value = module if where[name].rsplit(".", 1)[-1] == name else getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__, sorted(where)
