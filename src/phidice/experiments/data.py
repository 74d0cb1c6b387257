"""Semi-synthetic 2D data on real brain MRI: axial slices of the MNI152 template that nilearn ships.

Nothing is downloaded: the T1, grey- and white-matter maps are read with nibabel from nilearn's package
folder. Every image is one axial slice from a band of z, randomly deformed (affine + smooth elastic field),
with intensity changes (bias field, gamma, noise), and with one semi-synthetic lesion painted in:

* binary task (the paper's BRATS rows) — two *grades*, both hyperintense with the same size distribution:
  ``hgg``: enhancing rim around a dark necrotic core; ``lgg``: smooth, homogeneous signal. Label = the whole
  lesion (1), background (0).
* multiclass task (the paper's ACDC rows) — a ring-shaped lesion: bright core (1), dark rim (2) around it and
  a moderately bright crescent of edema (3) on one side. A quarter of the images (group ``es``, as end-systole)
  are rendered with a T2-like contrast (grey matter brighter than white matter) and a smaller core with a
  thicker rim; the others are group ``ed``.

The same seed gives the same data, bit for bit. See docs/reproduce.md for the design.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import ndimage

from phidice.core.deps import require

# the MNI152 2009a template, 1 mm isotropic, as shipped in nilearn/datasets/data
_TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
Z_BAND = (62, 112)  # axial slices through the lateral ventricles and basal ganglia
FOV_MM = 176.0  # square field of view around the brain centre
# multiclass task: tissue contrast (GM, WM weights) and core radius / rim radius, per group
TISSUE = {"ed": (0.35, 0.7), "es": (1.0, 0.15)}  # T1/FLAIR-like at ED, T2-like (GM ≫ WM) at ES
CORE_FRACTION = {"ed": (0.58, 0.70), "es": (0.52, 0.64)}  # overlapping: the ES rim is a bit thicker


@dataclass
class SegDataset:
    """Images (N, 1, H, W) float32, labels (N, H, W) int64, group name per image, pixel spacing in mm.

    ``groups`` names the subset each image belongs to (``hgg``/``lgg`` or ``ed``/``es``); ``missing`` maps a
    group to the foreground classes whose labels are removed in that group under partial labelling.
    """

    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    spacing: tuple[float, float, float]
    num_classes: int  # number of output channels: 1 (binary, sigmoid) or K+1 (softmax with background)
    missing: dict = field(default_factory=dict)
    names: list = field(default_factory=list)
    class_names: tuple = ("lesion",)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index) -> SegDataset:
        index = np.asarray(index)
        names = [self.names[i] for i in index] if self.names else []
        return SegDataset(
            self.images[index],
            self.labels[index],
            self.groups[index],
            self.spacing,
            self.num_classes,
            dict(self.missing),
            names,
            self.class_names,
        )

    def partial(self) -> SegDataset:
        """Labels as seen in partial training: the ``missing`` classes of each group become background."""
        labels = self.labels.copy()
        for group, classes in self.missing.items():
            rows = self.groups == group
            for c in classes:
                sub = labels[rows]
                sub[sub == c] = 0
                labels[rows] = sub
        out = self.subset(np.arange(len(self)))
        out.labels = labels
        return out

    def annotated(self, partial: bool) -> np.ndarray:
        """(N, C) bool: which output classes are annotated in each image (all of them under full labelling)."""
        C = max(self.num_classes, 1)
        ann = np.ones((len(self), C), dtype=bool)
        if partial:
            for group, classes in self.missing.items():
                for c in classes:  # label value c is channel c, or channel 0 for a sigmoid output
                    ann[self.groups == group, c if self.num_classes > 1 else c - 1] = False
        return ann


def template_dir() -> str:
    nilearn = require("nilearn", "experiments", "the data of phidice reproduce (MNI152 slices)")
    return os.path.join(os.path.dirname(nilearn.__file__), "datasets", "data")


@lru_cache(maxsize=1)
def load_template() -> dict:
    """The MNI152 T1, GM, WM maps (scaled to [0, 1]) and brain mask as (X, Y, Z) float32 arrays."""
    import nibabel as nib

    root = template_dir()
    maps = {}
    for key, name in _TEMPLATE_FILES.items():
        path = os.path.join(root, name)
        if not os.path.exists(path):
            raise FileNotFoundError(f"MNI152 template file not found in the nilearn package: {path}")
        data = np.asarray(nib.load(path).dataobj, dtype=np.float32)
        maps[key] = data / max(float(data.max()), 1e-6)
    maps["mask"] = ((maps["gm"] + maps["wm"]) > 0.2).astype(np.float32)
    return maps


def _slice_stack() -> dict:
    """Axial slices of the z band cropped to a square FOV around the brain centre (1 mm pixels)."""
    t = load_template()
    xs, ys = np.nonzero(t["mask"].any(axis=2))
    cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    return {"maps": {k: v[..., Z_BAND[0] : Z_BAND[1]] for k, v in t.items()}, "centre": (cx, cy)}


def _smooth_field(rng, shape, sigma, amplitude):
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    return f * (amplitude / max(float(np.abs(f).max()), 1e-8))


def _sample_brain(rng, stack, size: int):
    """One randomly deformed axial slice: T1, GM, WM and mask on a size×size grid (FOV_MM wide)."""
    maps, (cx, cy) = stack["maps"], stack["centre"]
    z = rng.integers(0, maps["t1"].shape[2])
    step = FOV_MM / size
    u = (np.arange(size) - (size - 1) / 2) * step
    gx, gy = np.meshgrid(u, u, indexing="ij")
    angle = rng.uniform(-0.2, 0.2)
    scale = rng.uniform(0.9, 1.1)
    flip = rng.choice([-1.0, 1.0])
    ca, sa = np.cos(angle) * scale, np.sin(angle) * scale
    px = flip * (ca * gx - sa * gy) + cx + rng.uniform(-6, 6)
    py = sa * gx + ca * gy + cy + rng.uniform(-6, 6)
    px = px + _smooth_field(rng, (size, size), size / 8, 4.0)  # elastic, up to 4 mm
    py = py + _smooth_field(rng, (size, size), size / 8, 4.0)
    coords = np.stack([px, py])
    out = {k: ndimage.map_coordinates(maps[k][..., z], coords, order=1, mode="constant") for k in ("t1", "gm", "wm")}
    out["mask"] = ndimage.map_coordinates(maps["mask"][..., z], coords, order=0, mode="constant") > 0.5
    return out


def _blob(rng, size, centre, radius, aspect=None, wobble=0.12):
    """Signed radial coordinate of a wobbly ellipse: ρ < 1 inside (ρ = distance / boundary radius)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dx, dy = xx - centre[1], yy - centre[0]
    theta = rng.uniform(0, np.pi)
    aspect = rng.uniform(0.7, 1.0) if aspect is None else aspect
    rx = np.cos(theta) * dx + np.sin(theta) * dy
    ry = (-np.sin(theta) * dx + np.cos(theta) * dy) / aspect
    ang = np.arctan2(ry, rx)
    boundary = np.ones_like(ang)
    for k in (2, 3, 4):
        boundary += rng.uniform(-wobble, wobble) / k * np.cos(k * ang + rng.uniform(0, 2 * np.pi))
    return np.hypot(rx, ry) / (radius * boundary)


def _place(rng, mask, radius):
    """A lesion centre inside the brain, at least ``radius`` pixels from its edge (best effort)."""
    dist = ndimage.distance_transform_edt(mask)
    for r in (radius + 1, radius * 0.7, 1.0):
        cand = np.argwhere(dist >= r)
        if len(cand):
            return cand[rng.integers(len(cand))].astype(np.float64)
    return np.array(mask.shape, dtype=np.float64) / 2


def _soft(rho, width=0.12):
    """Smooth inside indicator of ρ < 1 (partial-volume edge)."""
    return 1.0 / (1.0 + np.exp((rho - 1.0) / width))


def _finish(rng, img, mask, size):
    """Bias field, gamma, noise, then z-scoring inside the brain: intensities vary from image to image."""
    img = img * (1.0 + _smooth_field(rng, (size, size), size / 4, rng.uniform(0.05, 0.2)))
    img = np.clip(img, 0, None) ** rng.uniform(0.8, 1.25)
    img = img + rng.normal(0, rng.uniform(0.03, 0.08), img.shape)
    inside = img[mask] if mask.any() else img.ravel()
    return ((img - inside.mean()) / (inside.std() + 1e-6)).astype(np.float32)


def _binary_image(rng, stack, size, grade):
    b = _sample_brain(rng, stack, size)
    tissue = 0.35 * b["gm"] + 0.6 * b["wm"]  # FLAIR-like: dark CSF, grey < white, lesions bright
    radius = rng.uniform(0.11, 0.19) * size
    rho = _blob(rng, size, _place(rng, b["mask"], radius), radius)
    inside = _soft(rho)
    if grade == "hgg":  # enhancing rim, dark necrotic core
        core_r = rng.uniform(0.45, 0.65)
        ring = _soft(rho, 0.1) * (1 - _soft(rho / core_r, 0.1))
        lesion = rng.uniform(1.2, 1.45) * ring + rng.uniform(0.25, 0.45) * _soft(rho / core_r, 0.1)
    else:  # smooth homogeneous hyperintensity
        lesion = rng.uniform(0.95, 1.2) * inside * (1 + 0.05 * _smooth_field(rng, (size, size), 2, 1.0))
    img = tissue * (1 - inside) + lesion
    img = ndimage.gaussian_filter(img, 0.5)
    label = (rho < 1.0) & b["mask"]
    return _finish(rng, img, b["mask"], size), label.astype(np.int64)


def _multiclass_image(rng, stack, size, group):
    b = _sample_brain(rng, stack, size)
    w_gm, w_wm = TISSUE[group]
    tissue = w_gm * b["gm"] + w_wm * b["wm"]
    radius = rng.uniform(0.13, 0.18) * size  # outer radius of the rim
    centre = _place(rng, b["mask"], radius * 1.4)
    rho = _blob(rng, size, centre, radius, wobble=0.08)
    core_frac = rng.uniform(*CORE_FRACTION[group])  # "contracted" core at ES
    # edema: a crescent hugging the rim on one side
    side = rng.uniform(0, 2 * np.pi)
    shift = centre + radius * 0.55 * np.array([np.sin(side), np.cos(side)])
    rho_e = _blob(rng, size, shift, radius * 1.05, aspect=rng.uniform(0.8, 1.0), wobble=0.05)
    core, outer, edema = rho < core_frac, rho < 1.0, (rho_e < 1.0) & (rho >= 1.0)
    label = np.zeros((size, size), np.int64)
    label[edema] = 3
    label[outer] = 2
    label[core] = 1
    label[~b["mask"]] = 0
    s_core, s_out, s_ed = _soft(rho / core_frac), _soft(rho), _soft(rho_e) * (1 - _soft(rho))
    img = tissue * (1 - s_out) * (1 - s_ed) + rng.uniform(0.9, 1.1) * s_ed
    img = img + rng.uniform(0.15, 0.25) * (s_out - s_core) + rng.uniform(1.3, 1.6) * s_core
    img = ndimage.gaussian_filter(img, 0.5)
    return _finish(rng, img, b["mask"], size), label


def make_dataset(
    task: str = "binary", n: int = 240, size: int = 48, seed: int = 0, minority: float = 0.26
) -> SegDataset:
    """``n`` images of ``task`` "binary" (groups hgg/lgg) or "multiclass" (groups ed/es), deterministic in ``seed``.

    ``minority`` is the fraction of the group whose labels go missing under partial labelling (lgg / es):
    0.26 as the 75 LGG of BRATS 2018's 285 subjects, close to the ACDC ratio 1/4 used for I_ε.
    """
    if task not in ("binary", "multiclass"):
        raise ValueError(f"task must be 'binary' or 'multiclass'; got {task!r}")
    if size < 16 or size % 8:
        raise ValueError(f"size must be a multiple of 8 and ≥ 16; got {size}")
    if not 0 < minority < 1:
        raise ValueError(f"minority must be in (0, 1); got {minority}")
    rng = np.random.default_rng(seed)
    stack = _slice_stack()
    n_min = int(round(minority * n))
    if task == "binary":
        major, minor, make = "hgg", "lgg", _binary_image
    else:
        major, minor, make = "ed", "es", _multiclass_image
    groups = np.array([minor] * n_min + [major] * (n - n_min))
    rng.shuffle(groups)
    images, labels = zip(*(make(rng, stack, size, g) for g in groups))
    step = FOV_MM / size
    spacing = (step, step, step)  # a slice is treated as one voxel thick, so areas are volumes in ml
    if task == "binary":
        return SegDataset(
            np.stack(images)[:, None],
            np.stack(labels),
            groups,
            spacing,
            1,
            {"lgg": (1,)},
            [f"{task}_{seed}_{i:04d}" for i in range(n)],
            ("lesion",),
        )
    return SegDataset(
        np.stack(images)[:, None],
        np.stack(labels),
        groups,
        spacing,
        4,
        {"es": (2,)},
        [f"{task}_{seed}_{i:04d}" for i in range(n)],
        ("core", "rim", "edema"),
    )
