"""The user's own data: BraTS-2018-style, ACDC-style or a plain folder layout, sliced into 2D images.

* ``brats``: ``ROOT/HGG/<case>/<case>_seg.nii.gz`` and ``ROOT/LGG/...`` with an image ``<case>_<modality>.nii.gz``
  (default flair). Binary whole tumour (seg > 0); the LGG labels go missing under partial labelling.
* ``acdc``: ``ROOT/patientXXX/patientXXX_frameNN.nii.gz`` with ``..._frameNN_gt.nii.gz`` (1 RV, 2 MYO, 3 LV);
  ED/ES from ``Info.cfg`` (else the first frame is ED). The ES myocardium goes missing under partial labelling.
* ``plain``: ``ROOT/images/<name>.<ext>``, ``ROOT/labels/<name>.<ext>`` and ``ROOT/groups.csv`` (``name,group``);
  ``missing_group`` (default: the smaller group) loses ``missing_classes`` (default: every foreground class).

Volumes are sliced along the last axis; per case the ``slices_per_case`` slices with the largest foreground are
kept, each cropped/padded to a square, resized to ``size``×``size`` and z-scored. Images are grouped by case so
that a train/validation split never puts slices of one case on both sides.
"""

from __future__ import annotations

import csv
import glob
import os
import re

import numpy as np
from scipy import ndimage

from phidice.experiments.data import SegDataset
from phidice.io import LABEL_SUFFIXES, read_image


def _find(folder: str, stem: str) -> str | None:
    for e in LABEL_SUFFIXES:
        p = os.path.join(folder, stem + e)
        if os.path.exists(p):
            return p
    return None


def detect_layout(root: str) -> str:
    if not os.path.isdir(root):
        raise FileNotFoundError(f"data folder not found: {root}")
    if os.path.isdir(os.path.join(root, "HGG")) or os.path.isdir(os.path.join(root, "LGG")):
        return "brats"
    if glob.glob(os.path.join(root, "patient*")):
        return "acdc"
    if os.path.isdir(os.path.join(root, "images")) and os.path.isdir(os.path.join(root, "labels")):
        return "plain"
    raise ValueError(
        f"cannot tell the layout of {root}: expected HGG/ and LGG/ (brats), patientXXX/ (acdc), "
        "or images/, labels/ and groups.csv (plain)"
    )


def _slices(img, lab, spacing, size, k):
    """Up to ``k`` 2D slices (largest foreground first) resized to size×size, with their in-plane spacing."""
    img, lab = np.asarray(img, np.float32), np.asarray(lab)
    if img.shape != lab.shape:
        raise ValueError(f"image and label shapes differ: {img.shape} vs {lab.shape}")
    if img.ndim == 2:
        img, lab, spacing = img[..., None], lab[..., None], tuple(spacing) + (1.0,)
    if img.ndim != 3:
        raise ValueError(f"expected 2D or 3D images; got shape {img.shape}")
    area = (lab > 0).sum((0, 1))
    order = [z for z in np.argsort(-area, kind="stable") if area[z] > 0][:k]
    out = []
    for z in sorted(order):
        a, b = img[..., z], lab[..., z].astype(np.int64)
        n = max(a.shape)
        pad = [((n - s) // 2, n - s - (n - s) // 2) for s in a.shape]
        a, b = np.pad(a, pad), np.pad(b, pad)
        f = size / n
        a = ndimage.zoom(a, f, order=1)[:size, :size]
        b = ndimage.zoom(b, f, order=0)[:size, :size]
        fg = a[a != 0] if (a != 0).any() else a.ravel()
        a = (a - fg.mean()) / (fg.std() + 1e-6)
        out.append((a.astype(np.float32), b, (spacing[0] / f, spacing[1] / f, spacing[2])))
    return out


def _assemble(items, size, num_classes, missing, class_names) -> SegDataset:
    """items: (case, group, image, label, spacing)."""
    if not items:
        raise ValueError("no labelled slices found in the data folder")
    sx, sy, sz = (float(v) for v in np.mean([it[4] for it in items], axis=0))
    spacing = (sx, sy, sz)
    return SegDataset(
        np.stack([it[2] for it in items])[:, None],
        np.stack([it[3] for it in items]),
        np.array([it[1] for it in items]),
        spacing,
        num_classes,
        missing,
        [it[0] for it in items],
        class_names,
    )


def load_brats(root: str, size: int = 48, slices_per_case: int = 3, modality: str = "flair") -> SegDataset:
    items = []
    for grade in ("HGG", "LGG"):
        for case_dir in sorted(glob.glob(os.path.join(root, grade, "*"))):
            case = os.path.basename(case_dir)
            seg, im = _find(case_dir, f"{case}_seg"), _find(case_dir, f"{case}_{modality}")
            if seg is None or im is None:
                raise FileNotFoundError(f"{case_dir}: needs {case}_seg and {case}_{modality} (.nii.gz/.nii/.nrrd/.mha)")
            (a, sp), (b, _) = read_image(im), read_image(seg)
            for x, y, s in _slices(a, (b > 0).astype(np.int64), sp, size, slices_per_case):
                items.append((case, grade.lower(), x, y, s))
    return _assemble(items, size, 1, {"lgg": (1,)}, ("tumour",))


def _acdc_phases(case_dir: str) -> dict:
    info = os.path.join(case_dir, "Info.cfg")
    phases = {}
    if os.path.exists(info):
        for line in open(info):
            m = re.match(r"\s*(ED|ES)\s*:\s*(\d+)", line)
            if m:
                phases[int(m.group(2))] = m.group(1).lower()
    return phases


def _acdc_frame(path: str) -> int:
    """NN of an ACDC ``patientXXX_frameNN_gt`` file."""
    match = re.search(r"_frame(\d+)_gt", path)
    if match is None:
        raise ValueError(f"{path}: not an ACDC label file name (patientXXX_frameNN_gt.*)")
    return int(match.group(1))


def load_acdc(root: str, size: int = 48, slices_per_case: int = 3) -> SegDataset:
    items = []
    for case_dir in sorted(glob.glob(os.path.join(root, "patient*"))):
        case = os.path.basename(case_dir)
        gts = sorted(p for p in glob.glob(os.path.join(case_dir, f"{case}_frame*_gt.*")))
        if not gts:
            raise FileNotFoundError(f"{case_dir}: no {case}_frameNN_gt files")
        phases = _acdc_phases(case_dir)
        frames = sorted(_acdc_frame(p) for p in gts)
        for gt in gts:
            frame = _acdc_frame(gt)
            im = _find(case_dir, f"{case}_frame{frame:02d}")
            if im is None:
                raise FileNotFoundError(f"{case_dir}: no image for {os.path.basename(gt)}")
            phase = phases.get(frame, "ed" if frame == frames[0] else "es")
            (a, sp), (b, _) = read_image(im), read_image(gt)
            for x, y, s in _slices(a, b, sp, size, slices_per_case):
                items.append((case, phase, x, y, s))
    return _assemble(items, size, 4, {"es": (2,)}, ("RV", "MYO", "LV"))


def load_plain(
    root: str, size: int = 48, slices_per_case: int = 3, missing_group: str | None = None, missing_classes=None
) -> SegDataset:
    csv_path = os.path.join(root, "groups.csv")
    if not os.path.exists(csv_path):
        raise FileNotFoundError(f"plain layout needs {csv_path} with columns name,group")
    with open(csv_path, newline="") as f:
        rows = [r for r in csv.reader(f) if r and not r[0].startswith("#")]
    if rows and rows[0][:2] == ["name", "group"]:
        rows = rows[1:]
    groups = {r[0].strip(): r[1].strip() for r in rows}
    kinds = sorted(set(groups.values()))
    if len(kinds) != 2:
        raise ValueError(f"groups.csv must name exactly two groups; got {kinds}")
    if missing_group is None:
        missing_group = min(kinds, key=lambda g: (sum(v == g for v in groups.values()), g))
    if missing_group not in kinds:
        raise ValueError(f"missing_group {missing_group!r} is not one of the groups {kinds}")
    items, top = [], 0
    for name, group in sorted(groups.items()):
        im, lab = _find(os.path.join(root, "images"), name), _find(os.path.join(root, "labels"), name)
        if im is None or lab is None:
            raise FileNotFoundError(f"{root}: no images/{name} or labels/{name} (.nii.gz/.nii/.nrrd/.mha)")
        (a, sp), (b, _) = read_image(im), read_image(lab)
        top = max(top, int(np.max(b)))
        for x, y, s in _slices(a, b, sp, size, slices_per_case):
            items.append((name, group, x, y, s))
    if top < 1:
        raise ValueError("the label maps hold no foreground")
    classes = tuple(missing_classes) if missing_classes else tuple(range(1, top + 1))
    num_classes = 1 if top == 1 else top + 1
    names = ("foreground",) if top == 1 else tuple(f"class{c}" for c in range(1, top + 1))
    # the reported class is the first missing one
    return _assemble(items, size, num_classes, {missing_group: classes}, names)


def load_folder(root: str, layout: str = "auto", **kwargs) -> SegDataset:
    """Load ``root`` as a SegDataset; ``layout`` is "auto", "brats", "acdc" or "plain"."""
    layout = detect_layout(root) if layout == "auto" else layout
    loaders = {"brats": load_brats, "acdc": load_acdc, "plain": load_plain}
    if layout not in loaders:
        raise ValueError(f"layout must be 'auto', 'brats', 'acdc' or 'plain'; got {layout!r}")
    if layout != "plain":
        kwargs = {k: v for k, v in kwargs.items() if k not in ("missing_group", "missing_classes")}
    return loaders[layout](root, **kwargs)


def split_by_case(ds: SegDataset, val_fraction: float = 0.3, seed: int = 0) -> tuple[SegDataset, SegDataset]:
    """Train/validation split by case, stratified by group (each group on both sides when it has ≥ 2 cases)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1); got {val_fraction}")
    rng = np.random.default_rng(seed)
    names = np.asarray(ds.names)
    val_cases = set()
    for g in dict.fromkeys(ds.groups.tolist()):
        cases = sorted(set(names[ds.groups == g]))
        rng.shuffle(cases)
        k = max(1, int(round(val_fraction * len(cases)))) if len(cases) >= 2 else 0
        val_cases.update(cases[:k])
    is_val = np.array([n in val_cases for n in names])
    if is_val.all() or not is_val.any():
        raise ValueError("too few cases to split into training and validation sets")
    return ds.subset(np.flatnonzero(~is_val)), ds.subset(np.flatnonzero(is_val))
