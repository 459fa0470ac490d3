"""Public names that load on first use: ``import probe``, ``probe.analysis`` and ``probe.world`` stay light (no
torch), and a name's module is imported only when the name is used."""

from __future__ import annotations

import importlib
import sys


def lazy_attributes(module_name: str, table: dict[str, str]):
    """A module-level ``__getattr__`` for ``module_name``: ``table[name]`` is the module that defines ``name``; it is
    imported on first use and the value cached on the module."""

    def __getattr__(name: str):
        if name in table:
            value = getattr(importlib.import_module(table[name]), name)
            setattr(sys.modules[module_name], name, value)
            return value
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    return __getattr__
