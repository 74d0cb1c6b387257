"""Optional dependencies: the base install is torch, numpy and numba (numba only where it ships wheels: the
marker in pyproject.toml); the rest comes with extras.

=============  =====================================  ===============================================
extra          packages                               for
=============  =====================================  ===============================================
``numba``      numba                                  the fused CPU kernel, off the wheel platforms
``triton``     triton                                 the fused CUDA kernel
``io``         nibabel, SimpleITK, tqdm               label files: ε, explain, evaluate
``plots``      matplotlib                             PNG figures
``eval``       scipy + ``io`` + ``plots``             ``phidice evaluate``, surface metrics, statistics
``experiments`` nilearn + ``eval``                    ``phidice reproduce``
``keras``      keras>=3, plus a back end you choose   ``phidice.keras``
=============  =====================================  ===============================================
"""

from __future__ import annotations

import importlib


def missing_dependency(err: ImportError, *names: str) -> bool:
    """Whether ``err`` says that one of the packages ``names`` is not installed (and nothing else failed)."""
    missing = getattr(err, "name", None) or ""
    return isinstance(err, ModuleNotFoundError) and missing.split(".")[0] in names


def require(module: str, extra: str, purpose: str):
    """``importlib.import_module(module)``, or an ImportError that names the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if not missing_dependency(err, module.split(".")[0]):
            raise
        raise ImportError(
            f"{purpose} needs {module.split('.')[0]}, which is not installed: pip install 'phidice[{extra}]'"
        ) from err
