"""Files in and out: one image reader shared by ``phidice epsilon``, ``explain``, ``evaluate`` and the
experiments, and one atomic writer for every file phidice writes.

NIfTI (``.nii``, ``.nii.gz``) is read with nibabel; NRRD (``.nrrd``, ``.nhdr``) and MetaImage
(``.mha``, ``.mhd``) with SimpleITK. Whatever the format, the returned array's axes follow the
order of the returned spacing (x, y, z, ... — nibabel's voxel order; SimpleITK arrays are
transposed to match), so a NIfTI and an MHA of the same volume give the same array.

API (stable):
- ``read_image(path) -> (array, spacing)``: any dtype, spacing in mm per axis (floats).
- ``read_label_image(path) -> (array, spacing)``: an integer array; float files are accepted
  only when every value is a whole number, anything else is a ``ValueError`` naming the file.
- ``iter_label_files(source)``: the label files named by a path, a directory, a glob pattern or a
  list of these, sorted within each directory/pattern; ``list_label_files`` is the list form.
- ``atomic_write(path, data)``: ``data`` (str, bytes, or a function that writes to a binary file object)
  goes to a temporary file beside ``path``, which is then renamed into place: a reader never sees half a
  file, and an interrupted run leaves the previous version.

nibabel and SimpleITK come with the ``io`` extra and are imported when a file of theirs is read.
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from phidice.core.deps import require

__all__ = [
    "NIFTI_SUFFIXES",
    "ITK_SUFFIXES",
    "LABEL_SUFFIXES",
    "is_label_file",
    "iter_label_files",
    "list_label_files",
    "read_image",
    "read_label_image",
    "image_stem",
    "atomic_write",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
LABEL_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES

_GLOB_CHARS = set("*?[")


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in sorted(LABEL_SUFFIXES, key=len, reverse=True):  # ".nii.gz" before ".nii"
        if name.endswith(suffix):
            return suffix
    return None


def image_stem(path: str | os.PathLike) -> str:
    """The file name without its image suffix (.nii.gz, .nii, .nrrd, .nhdr, .mha, .mhd): the case name."""
    name = Path(path).name
    suffix = _suffix(Path(path))
    return name[: -len(suffix)] if suffix else name


def is_label_file(path: str | os.PathLike) -> bool:
    """True when the file name ends in one of the supported image suffixes."""
    return _suffix(Path(path)) is not None


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, ...]]:
    """Read one image file and return ``(array, spacing)``; the spacing comes from the header,
    one entry per array axis, in the array's axis order."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {str(path)!r}")
    if path.is_dir():
        raise ValueError(f"expected an image file, got a directory: {str(path)!r}")
    suffix = _suffix(path)
    if suffix is None:
        raise ValueError(
            f"cannot read {str(path)!r}: unsupported file type (expected one of {', '.join(LABEL_SUFFIXES)})"
        )
    try:
        if suffix in NIFTI_SUFFIXES:
            return _read_nifti(path)
        return _read_itk(path)
    except (FileNotFoundError, ValueError, ImportError):
        raise
    except Exception as err:  # nibabel ImageFileError, SimpleITK RuntimeError, zlib/EOF errors, ...
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot read image file {str(path)!r}: {reason}") from err


def _read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    nib = require("nibabel", "io", "reading NIfTI files")
    img = nib.load(str(path))
    array = np.asanyarray(img.dataobj)  # applies scl_slope/inter when set, keeps ints otherwise
    zooms = tuple(float(z) for z in img.header.get_zooms())
    spacing = zooms[: array.ndim] + (1.0,) * max(0, array.ndim - len(zooms))
    return np.asarray(array), spacing


def _read_itk(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    sitk = require("SimpleITK", "io", "reading NRRD/MHA files")
    img = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(img)  # (z, y, x[, components])
    if img.GetNumberOfComponentsPerPixel() > 1:
        raise ValueError(
            f"cannot read {str(path)!r}: expected a scalar image, got a vector image "
            f"with {img.GetNumberOfComponentsPerPixel()} components per voxel"
        )
    array = np.ascontiguousarray(array.transpose(tuple(range(array.ndim))[::-1]))  # -> (x, y, z)
    spacing = tuple(float(s) for s in img.GetSpacing())
    return array, spacing


def read_label_image(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, ...]]:
    """Read a label map: ``(integer array, spacing)``.

    Integer files keep their dtype; booleans become uint8; float files are cast to int64 only when
    every value is a finite whole number (label maps saved as float are common), otherwise a
    ``ValueError`` names the file and an offending value.
    """
    array, spacing = read_image(path)
    return as_label_array(
        array, f"label file {str(path)!r}", "expected a label map with whole-number class indices"
    ), spacing


def as_label_array(array: np.ndarray, what: str, hint: str = "expected whole-number class indices") -> np.ndarray:
    """``array`` as integer labels: integers as they are, booleans as uint8, floats as int64 when every value
    is a finite whole number (label maps saved as float are common); otherwise a ``ValueError`` that names
    ``what`` and an offending value, followed by ``hint``."""
    array = np.asarray(array)
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{what} has dtype {array.dtype}, expected integer labels")
    bad = ~np.isfinite(array) | (array != np.round(array))
    if bad.any():
        raise ValueError(f"{what} holds non-integer labels (e.g. {array[bad].flat[0].item()!r}); {hint}")
    return array.astype(np.int64)


def iter_label_files(source, *, recursive: bool = False) -> Iterator[Path]:
    """Expand ``source`` into label files: a file path, a directory (its files with a supported
    suffix, sorted; sub-directories too when ``recursive``), a glob pattern (sorted matches, ``**``
    allowed), or an iterable of these. A named file that does not exist raises ``FileNotFoundError``;
    a directory or pattern that yields no label file raises ``ValueError``."""
    if isinstance(source, (str, os.PathLike)):
        yield from _expand_one(source, recursive)
        return
    if not isinstance(source, Iterable):
        raise TypeError(
            f"source must be a path, a directory, a glob pattern or a list of these, got {type(source).__name__}"
        )
    for item in source:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"source entries must be paths, got {type(item).__name__}")
        yield from _expand_one(item, recursive)


def list_label_files(source, *, recursive: bool = False) -> list[Path]:
    """``list(iter_label_files(source))``."""
    return list(iter_label_files(source, recursive=recursive))


def _expand_one(item, recursive: bool) -> Iterator[Path]:
    text = os.fspath(item)
    path = Path(text)
    if path.is_dir():
        pattern = "**/*" if recursive else "*"
        files = sorted(p for p in path.glob(pattern) if p.is_file() and is_label_file(p))
        if not files:
            raise ValueError(f"no label files ({', '.join(LABEL_SUFFIXES)}) in directory {text!r}")
        yield from files
    elif path.exists():
        yield path
    elif _GLOB_CHARS & set(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file() and is_label_file(p))
        if not files:
            raise ValueError(f"glob pattern {text!r} matches no label files ({', '.join(LABEL_SUFFIXES)})")
        yield from files
    else:
        raise FileNotFoundError(f"label file not found: {text!r}")


def atomic_write(path: str | os.PathLike, data: str | bytes | Callable) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, renamed into place.

    ``data`` is text, bytes, or a function called with the open binary file (``torch.save``,
    ``np.savez_compressed``, ``figure.savefig`` write through it). The folder is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
