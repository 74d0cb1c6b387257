"""The ε heuristic of Sect. 2.3 measured on the user's labels: ε = E[Σ_{φ∈φ^ω} y_φ].

Eq. 5 equates the y = 0 gradient of an empty map under Φ = I with a non-negligible ε, ε/(v̂ + ε)², to
that of a non-empty map under an infinite-batch Φ = BI, 2a·v̂/(b·v̂)². With 50 % overlap (a ≈ ½,
b ≈ 2) this gives ε ≈ v̂, and v̂ ≈ E[Σ_φ y]: the mean foreground volume of one subset φ, in voxels of
the grid the network trains on (BRATS whole tumour: ≈ 8.8k voxels at 2 mm, 8× that at 1 mm).

:func:`estimate_epsilon` streams label maps (arrays or files, one at a time; files read by ``workers``
threads) and returns that mean per class. :func:`epsilon_stats` returns the same together with the
counts it is built from (images, images containing each class, summed volumes).
"""

from __future__ import annotations

import itertools
import math
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence, Sized
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from phidice.core.phi import Phi, parse_phi
from phidice.io import as_label_array, iter_label_files, read_label_image
from phidice.progress import progress as progress_bar

if TYPE_CHECKING:  # torch is imported when ε is computed (the module stays importable for its helpers)
    import torch

# what estimate_epsilon and explain read: a batch of label maps, an iterable of maps or (map, spacing) pairs,
# or label files (a path, a directory, a glob pattern, or a list of these)
LabelSource = Union[str, "os.PathLike[str]", np.ndarray, "torch.Tensor", Iterable[Any]]

__all__ = ["EpsilonStats", "epsilon_stats", "estimate_epsilon", "expected_volume"]


@dataclass(frozen=True)
class EpsilonStats:
    """What ε is computed from, per class c (arrays of shape (C,), volumes in target voxels).

    volume_sum:   Σ_images volume of class c
    n_positive:   number of images in which class c is present
    n_images:     number of images
    epsilon:      the returned ε (see :func:`estimate_epsilon` for the rule per Φ)
    """

    volume_sum: np.ndarray
    n_positive: np.ndarray
    n_images: int
    epsilon: np.ndarray
    phi: str
    batch_size: int
    positives_only: bool

    @property
    def mean_volume(self) -> np.ndarray:
        """E[Σ y] per image over all images."""
        return self.volume_sum / self.n_images

    @property
    def mean_positive_volume(self) -> np.ndarray:
        """E[Σ y | Σ y > 0] per image (0 for a class present nowhere)."""
        return np.divide(
            self.volume_sum, self.n_positive, out=np.zeros_like(self.volume_sum), where=self.n_positive > 0
        )

    def to_dict(self) -> dict:
        return {
            "phi": self.phi,
            "batch_size": self.batch_size,
            "positives_only": self.positives_only,
            "n_images": self.n_images,
            "classes": [
                {
                    "class": c,
                    "n_positive": int(self.n_positive[c]),
                    "mean_volume": float(self.mean_volume[c]),
                    "mean_positive_volume": float(self.mean_positive_volume[c]),
                    "epsilon": float(self.epsilon[c]),
                }
                for c in range(len(self.epsilon))
            ],
        }

    def to_markdown(self) -> str:
        lines = [
            f"ε = E[Σ_φ y] for Φ={self.phi}, batch size {self.batch_size}, "
            f"{'positive images only' if self.positives_only else 'all images'} ({self.n_images} images)",
            "",
            "| class | images with class | mean volume (all) | mean volume (positive) | ε |",
            "|---:|---:|---:|---:|---:|",
        ]
        for c in range(len(self.epsilon)):
            lines.append(
                f"| {c} | {int(self.n_positive[c])} | {self.mean_volume[c]:.6g} | "
                f"{self.mean_positive_volume[c]:.6g} | {self.epsilon[c]:.6g} |"
            )
        return "\n".join(lines)


def estimate_epsilon(
    source: LabelSource,
    num_classes: int | None = None,
    phi: str | Phi = "I",
    positives_only: bool = False,
    ignore_index: int | None = None,
    spacing: Sequence[float] | None = None,
    target_spacing: Sequence[float] | None = None,
    batch_size: int = 1,
    workers: int | None = None,
    progress: bool = True,
    soft: bool = False,
) -> torch.Tensor:
    """ε = E[Σ_φ y] per class, as a float64 tensor of shape (C,) — Eq. 5's heuristic.

    Args:
        source: a batch of integer label maps (tensor/ndarray of shape (B, *S)); an iterable of label
            maps (each (*S), or ``(array, spacing)`` pairs); or label files — a path, a directory, a
            glob pattern, or a list of these (NIfTI, NRRD, MHA/MHD). Files are read by ``workers``
            threads (default min(2, CPUs); 1 reads them one by one in the calling thread); no process is
            started, so no ``if __name__ == "__main__":`` guard is needed.
        num_classes: C; inferred as (largest label + 1) when None. A label ≥ C is an error naming the
            image.
        phi: "I" or "CI" give the per-image mean; "BI" or "BCI" the expected sum over a batch of
            ``batch_size`` images, B·E[Σy] (iid sampling). For CI/BCI the vector stays per class:
            the core sums a per-class ε over the classes of each φ (a per-class ε is a virtual volume).
        positives_only: average only over images that contain the class (E[Σy | Σy > 0]); under
            Φ ∋ B, over batches containing the class: B·E[Σy] / (1 − (1 − π)^B) with π the fraction of
            images containing it (B = 1 gives back the positive mean). A class present nowhere gets 0.
        ignore_index: label of voxels that count for no class.
        spacing: voxel size of array sources (files use their header).
        target_spacing: voxel size of the training grid; each image's counts are scaled by
            prod(spacing) / prod(target_spacing), so ε is in voxels of the grid the network sees.
        progress: a progress bar on stderr (tqdm, when installed).
        soft: the maps are soft targets (``soft_label=True``): each map is (C, *S) with values in [0, 1]
            (an array batch (B, C, *S)), its volume per class the soft volume Σ y, and a class is present
            in an image when Σ y > 0. Arrays only (label files hold integer labels).
    """
    import torch

    stats = epsilon_stats(
        source,
        num_classes=num_classes,
        phi=phi,
        positives_only=positives_only,
        ignore_index=ignore_index,
        spacing=spacing,
        target_spacing=target_spacing,
        batch_size=batch_size,
        workers=workers,
        progress=progress,
        soft=soft,
    )
    return torch.as_tensor(stats.epsilon, dtype=torch.float64)


def epsilon_stats(
    source,
    num_classes=None,
    phi="I",
    positives_only=False,
    ignore_index=None,
    spacing=None,
    target_spacing=None,
    batch_size=1,
    workers=None,
    progress=True,
    soft=False,
) -> EpsilonStats:
    """Like :func:`estimate_epsilon`, returning :class:`EpsilonStats` (ε with the counts behind it)."""
    phi = parse_phi(phi)
    if soft not in (True, False):
        raise TypeError(f"soft must be True or False; got {soft!r}")
    if soft and ignore_index is not None:
        raise ValueError("ignore_index applies to integer label maps; soft maps have no label to ignore")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer ≥ 1; got {batch_size!r}")
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1
    ):
        raise ValueError(f"num_classes must be an integer ≥ 1 or None; got {num_classes!r}")
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer))):
        raise TypeError(f"ignore_index must be an integer or None; got {ignore_index!r}")
    target_spacing = _check_spacing(target_spacing, "target_spacing")
    spacing = _check_spacing(spacing, "spacing")

    acc = _Accumulator(num_classes)
    for name, counts, img_spacing, ndim in _iter_counts(source, ignore_index, spacing, workers, progress, soft):
        acc.add(name, counts, _scale(name, img_spacing, ndim, target_spacing))
    if acc.n_images == 0:
        raise ValueError("source holds no label maps")

    B = int(batch_size) if phi.sums_batch else 1
    if positives_only:
        missing = np.flatnonzero(acc.n_positive == 0)
        if missing.size:
            warnings.warn(
                f"positives_only: class(es) {missing.tolist()} present in no image; their ε is 0", stacklevel=2
            )
    eps = expected_volume(acc.volume_sum, acc.n_positive, acc.n_images, B, positives_only)
    return EpsilonStats(acc.volume_sum, acc.n_positive, acc.n_images, eps, phi.value, B, bool(positives_only))


def expected_volume(volume_sum, n_positive, n_images, batch_size=1, positives_only=False) -> np.ndarray:
    """E[Σ_φ y] for a φ spanning ``batch_size`` images: B·E[Σy]; with ``positives_only`` conditioned on
    φ holding the class, B·E[Σy] / (1 − (1 − π)^B), π = n_positive / n_images (0 where π = 0)."""
    volume_sum = np.asarray(volume_sum, dtype=np.float64)
    mean = batch_size * volume_sum / n_images
    if not positives_only:
        return mean
    n_positive = np.asarray(n_positive)
    p_batch = 1.0 - (1.0 - n_positive / n_images) ** batch_size  # P(a batch of B images holds the class)
    return np.divide(mean, p_batch, out=np.zeros_like(mean), where=n_positive > 0)


class _Accumulator:
    """Running per-class volume sums and positive-image counts, growing C when it is inferred."""

    def __init__(self, num_classes):
        self.num_classes = num_classes
        C = num_classes or 0
        self.volume_sum = np.zeros(C, np.float64)
        self.n_positive = np.zeros(C, np.int64)
        self.n_images = 0

    def add(self, name: str, counts: np.ndarray, scale: float):
        K = counts.shape[0]
        if self.num_classes is not None and K > self.num_classes:
            raise ValueError(
                f"{name} holds label {K - 1} but num_classes={self.num_classes} (labels 0..{self.num_classes - 1}); "
                "label maps with different class counts — pass the right num_classes or an ignore_index"
            )
        if K > self.volume_sum.shape[0]:
            grow = K - self.volume_sum.shape[0]
            self.volume_sum = np.concatenate([self.volume_sum, np.zeros(grow)])
            self.n_positive = np.concatenate([self.n_positive, np.zeros(grow, np.int64)])
        self.volume_sum[:K] += counts * scale
        self.n_positive[:K] += counts > 0
        self.n_images += 1


def _check_spacing(value, name):
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value,)
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of positive numbers (mm per axis); got {value!r}") from None
    if not out or not all(math.isfinite(v) and v > 0 for v in out):
        raise ValueError(f"{name} must hold finite positive numbers (mm per axis); got {value!r}")
    return out


def _scale(name, img_spacing, ndim, target_spacing) -> float:
    if target_spacing is None:
        return 1.0
    if img_spacing is None:
        raise ValueError(
            f"target_spacing={target_spacing} needs the voxel spacing of {name}: pass spacing= for arrays "
            "(files take it from their header)"
        )
    if len(img_spacing) != ndim or len(target_spacing) != ndim:
        raise ValueError(
            f"{name} has {ndim} spatial axes with spacing {tuple(img_spacing)} but target_spacing has "
            f"{len(target_spacing)} entries; give one per spatial axis"
        )
    return float(np.prod(img_spacing) / np.prod(target_spacing))


def label_counts(labels: np.ndarray, ignore_index, name: str) -> np.ndarray:
    """Voxels per label value 0..max of one integer label map (``ignore_index`` voxels dropped)."""
    flat = as_label_array(np.asarray(labels).reshape(-1), name)
    if ignore_index is not None:
        flat = flat[flat != ignore_index]
    if flat.size and flat.min() < 0:
        extra = "" if ignore_index is None else f" other than ignore_index={ignore_index}"
        raise ValueError(f"{name} holds negative label {int(flat.min())}{extra}")
    return np.bincount(flat.astype(np.int64, copy=False)) if flat.size else np.zeros(0, np.int64)


def _file_counts(path, ignore_index):
    """Worker: (counts, spacing, ndim) of one label file."""
    labels, spacing = read_label_image(path)
    return label_counts(labels, ignore_index, f"label file {str(path)!r}"), spacing, labels.ndim


def _is_pathlike(x) -> bool:
    return isinstance(x, (str, os.PathLike))


def soft_counts(maps: np.ndarray, name: str) -> np.ndarray:
    """Soft volumes Σ y per class of one soft map (C, *S) with values in [0, 1]."""
    maps = np.asarray(maps)
    if maps.ndim < 2 or not np.issubdtype(maps.dtype, np.number) and maps.dtype != np.bool_:
        raise ValueError(
            f"{name}: a soft map is a numeric (C, *spatial) array; got shape {maps.shape}, dtype {maps.dtype}"
        )
    values = maps.astype(np.float64, copy=False)
    if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
        raise ValueError(
            f"{name}: soft map values must lie in [0, 1]; got values in [{np.nanmin(values):g}, {np.nanmax(values):g}]"
        )
    return values.reshape(values.shape[0], -1).sum(1)


def _iter_counts(source, ignore_index, spacing, workers, progress, soft=False) -> Iterator[tuple]:
    """Yield (name, counts, spacing or None, ndim) per label map of ``source`` (soft maps: (C, *S) each)."""
    if _is_pathlike(source) or (isinstance(source, (list, tuple)) and source and all(map(_is_pathlike, source))):
        if soft:
            raise ValueError(
                "soft=True reads soft maps from arrays; label files hold integer labels (load the "
                "probability maps as arrays)"
            )
        if spacing is not None:
            raise ValueError("spacing= is for array sources; label files take their spacing from the header")
        files = list(iter_label_files(source))
        bar = progress_bar(total=len(files), desc="ε: label files", unit="file", disable=not progress)
        try:
            for path, (counts, sp, ndim) in zip(files, _map_files(files, ignore_index, workers)):
                bar.update()
                yield f"label file {str(path)!r}", counts, sp, ndim
        finally:
            bar.close()
        return

    if hasattr(source, "shape") and hasattr(source, "ndim"):  # one batch (B, *S)
        batch = _to_numpy(source, "source")
        if batch.ndim < (3 if soft else 2):
            raise ValueError(f"an array source is a batch of label maps (B, *spatial); got shape {batch.shape}")
        items: Iterable = (batch[b] for b in range(batch.shape[0]))
        total = batch.shape[0]
    elif isinstance(source, Iterable) and not isinstance(source, (str, bytes, dict)):
        items, total = source, (len(source) if isinstance(source, Sized) else None)
    else:
        raise TypeError(
            "source must be a label batch (tensor/ndarray), an iterable of label maps, or label "
            f"file path(s)/directory/glob; got {type(source).__name__}"
        )
    it = iter(items)
    first = next(it, None)
    if first is None:
        raise ValueError("source holds no label maps")
    if _is_pathlike(first):
        raise TypeError("mixing file paths with other objects in source; pass a list of paths only")
    for i, item in enumerate(
        progress_bar(itertools.chain([first], it), total=total, desc="ε: label maps", unit="map", disable=not progress)
    ):
        name = f"label map #{i}"
        sp = spacing
        if isinstance(item, tuple) and len(item) == 2 and not hasattr(item[1], "ndim"):
            item, sp = item[0], _check_spacing(item[1], f"spacing of {name}")
        arr = _to_numpy(item, name)
        if soft:
            yield name, soft_counts(arr, name), sp, arr.ndim - 1
        else:
            yield name, label_counts(arr, ignore_index, name), sp, arr.ndim


def _to_numpy(x, name) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception as err:
            raise TypeError(f"{name}: expected an integer label array; got {type(x).__name__}") from err
    if x.dtype == object:
        raise TypeError(f"{name}: expected an integer label array; got an object array")
    return x


def _map_files(files, ignore_index, workers):
    """Per-file counts in order; ``workers`` threads when workers > 1 and there is more than one file.

    Threads, not processes: gzip/zlib decompression, SimpleITK reads and numpy's counting release the GIL, so
    two readers overlap, and a thread pool needs no ``if __name__ == "__main__":`` guard in the caller's script
    and works inside daemonic processes (DataLoader workers), where a process pool cannot start.
    """
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer ≥ 1 or None; got {workers!r}")
    workers = min(workers, len(files))
    if workers <= 1:
        for path in files:
            yield _file_counts(path, ignore_index)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="phidice-read") as pool:
        futures = [pool.submit(_file_counts, path, ignore_index) for path in files]
        try:
            for fut in futures:
                yield fut.result()
        finally:  # an error or an abandoned generator: drop the files not yet started
            for fut in futures:
                fut.cancel()
