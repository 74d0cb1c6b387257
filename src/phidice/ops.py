"""Deprecated alias of :mod:`phidice.kernels`, the fused kernels' package (named ``phidice.ops`` until 0.2.0).

``phidice.ops.X`` is ``phidice.kernels.X`` — the same objects, so backend state is never duplicated — with a
:class:`DeprecationWarning` when ``phidice.ops`` is first imported. ``import phidice.ops.cpu`` (``fallback``,
``function``) and ``from phidice.ops import <submodule>`` keep working.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings

from phidice import kernels

warnings.warn(
    "phidice.ops was renamed phidice.kernels in 0.2.0; import phidice.kernels (phidice.ops will be removed)",
    DeprecationWarning,
    stacklevel=2,
)

for _name in ("cpu", "fallback", "function"):
    sys.modules[f"{__name__}.{_name}"] = getattr(kernels, _name)


def __getattr__(name: str):
    if hasattr(kernels, name):
        return getattr(kernels, name)
    if not name.startswith("__") and importlib.util.find_spec(f"phidice.kernels.{name}") is not None:
        return importlib.import_module(f"phidice.kernels.{name}")  # an optional backend: loaded on first use
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return dir(kernels)
