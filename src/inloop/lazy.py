"""Modules imported on first attribute access (the standard library's LazyLoader recipe).

The ``inloop`` command builds every sub-command's parser; modules whose parser
lives beside heavy code (torch, pandas, matplotlib) import those lazily so a
codec job does not pay seconds of imports it never uses.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_import(name: str) -> ModuleType:
    """``name``'s module, executed when an attribute is first read (already imported: returned as is)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
