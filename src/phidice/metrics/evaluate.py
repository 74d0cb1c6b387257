"""Folder evaluation behind ``phidice evaluate``: hard Dice, volumes and ΔV per case and class, summaries
per class and group, and the volume ROC of the paper's Fig. 2.

Each (prediction, reference) pair is reduced to its per-class counts I, P, Y (the loss's sums), so the
per-case DSC, the volumes and the pooled Φ = BI Dice of a group all come from the same (N, C) table.
"""

from __future__ import annotations

import csv
import io as _stdio
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from phidice.core.types import DiceStats
from phidice.io import as_label_array, atomic_write, image_stem, list_label_files, read_image, read_label_image
from phidice.metrics._hard import hard_stats
from phidice.progress import progress as progress_bar
from phidice.metrics.dice import EMPTY_CONVENTIONS, score_from_stats
from phidice.metrics.roc import ROC, volume_roc

SPACING_RTOL = 1e-4  # header spacings of a pair must agree to this relative tolerance


def case_name(path: "str | os.PathLike") -> str:
    """File name without its image suffix (.nii.gz, .nii, .nrrd, .nhdr, .mha, .mhd)."""
    return image_stem(path)


def _index(folder: Path, what: str) -> dict[str, Path]:
    if not folder.exists():
        raise FileNotFoundError(f"{what} folder not found: {str(folder)!r}")
    if not folder.is_dir():
        raise ValueError(f"{what} must be a folder of label files; got the file {str(folder)!r}")
    files: dict[str, Path] = {}
    for path in list_label_files(folder):
        name = case_name(path)
        if name in files:
            raise ValueError(f"two {what} files for case {name!r}: {files[name].name!r} and {path.name!r}")
        files[name] = path
    return files


def match_cases(pred_dir, gt_dir, *, allow_missing: bool = False) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """Pairs (case, prediction file, reference file) matched by file name without suffix, sorted by case.

    A case found in only one folder is an error naming the files, unless ``allow_missing``: then it is
    left out and described in the returned notes.
    """
    preds, gts = _index(Path(pred_dir), "prediction"), _index(Path(gt_dir), "reference")
    only_pred = sorted(set(preds) - set(gts))
    only_gt = sorted(set(gts) - set(preds))
    notes = []
    for names, have, lacks, files in ((only_gt, "reference", "prediction", gts), (only_pred, "prediction",
                                                                                   "reference", preds)):
        if names:
            shown = ", ".join(files[n].name for n in names[:10]) + (" …" if len(names) > 10 else "")
            notes.append(f"{len(names)} {have} file(s) without a {lacks}: {shown}")
    if notes and not allow_missing:
        raise ValueError("unmatched files (pass --allow-missing to skip them): " + "; ".join(notes))
    pairs = [(n, preds[n], gts[n]) for n in sorted(set(preds) & set(gts))]
    if not pairs:
        raise ValueError(f"no case is in both {str(pred_dir)!r} and {str(gt_dir)!r} (files are matched by name)")
    return pairs, notes


def read_prediction(path: Path, threshold: float | None) -> tuple[np.ndarray, tuple[float, ...]]:
    """A prediction file as labels: integer (or whole-number float) files as they are; a probability map
    of the foreground with ``threshold`` (``p >= threshold`` → label 1); anything else is an error."""
    array, spacing = read_image(path)
    if array.dtype == np.bool_:
        return array.astype(np.uint8), spacing
    if threshold is not None:
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"--threshold is for probability maps but prediction file {str(path)!r} holds "
                             f"integer labels ({array.dtype}); drop --threshold")
        if not np.isfinite(array).all():
            raise ValueError(f"prediction file {str(path)!r} contains NaN or Inf")
        return (array >= threshold).astype(np.uint8), spacing
    return as_label_array(array, f"prediction file {str(path)!r}",
                          "pass --threshold T to binarise a probability map, or save hard labels"), spacing


def case_counts(pred_path: Path, gt_path: Path, *, threshold=None, spacing=None,
                num_classes: int | None = None) -> tuple[DiceStats, float]:
    """Counts (1, C) of one pair and the volume of one voxel in ml, with checks that name the files."""
    pred, pred_spacing = read_prediction(pred_path, threshold)
    ref, ref_spacing = read_label_image(gt_path)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {str(pred_path)!r} has shape {pred.shape} but reference {str(gt_path)!r} has "
                         f"shape {ref.shape}")
    if spacing is None:
        if len(pred_spacing) != len(ref_spacing) or not np.allclose(pred_spacing, ref_spacing, rtol=SPACING_RTOL,
                                                                     atol=0):
            raise ValueError(f"prediction {str(pred_path)!r} has spacing {_mm(pred_spacing)} but reference "
                             f"{str(gt_path)!r} has spacing {_mm(ref_spacing)} (resample, or pass --spacing to "
                             "override the headers)")
        spacing = ref_spacing
    elif len(spacing) != ref.ndim:
        raise ValueError(f"--spacing has {len(spacing)} values but {str(gt_path)!r} has {ref.ndim} axes")
    for arr, path in ((pred, pred_path), (ref, gt_path)):
        if arr.size and arr.min() < 0:
            raise ValueError(f"label file {str(path)!r} holds negative labels (min {arr.min()})")
    try:
        stats = hard_stats(torch.from_numpy(pred.astype(np.int64, copy=False)[None]),
                           torch.from_numpy(ref.astype(np.int64, copy=False)[None]), num_classes=num_classes)
    except ValueError as err:
        raise ValueError(f"case {case_name(gt_path)!r} ({str(pred_path)!r}, {str(gt_path)!r}): {err}") from None
    return stats, float(np.prod(np.asarray(spacing, dtype=np.float64))) / 1000.0


def _mm(spacing) -> str:
    return "×".join(f"{s:g}" for s in spacing) + " mm"


def read_groups(path) -> dict[str, str]:
    """``case,group`` CSV (header row required) → {case: group}; case names may keep their file suffix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"groups file not found: {str(path)!r}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = {(k or "").strip().lower(): k for k in (reader.fieldnames or [])}
        if "case" not in fields or "group" not in fields:
            raise ValueError(f"groups file {str(path)!r} needs a header with columns 'case' and 'group'; got "
                             f"{reader.fieldnames}")
        groups: dict[str, str] = {}
        for line, row in enumerate(reader, start=2):
            case, group = (row[fields["case"]] or "").strip(), (row[fields["group"]] or "").strip()
            if not case or not group:
                raise ValueError(f"groups file {str(path)!r} line {line}: empty case or group")
            case = case_name(case)
            if groups.get(case, group) != group:
                raise ValueError(f"groups file {str(path)!r}: case {case!r} is in groups {groups[case]!r} and "
                                 f"{group!r}")
            groups[case] = group
    if not groups:
        raise ValueError(f"groups file {str(path)!r} has no rows")
    return groups


@dataclass
class Evaluation:
    """Everything ``phidice evaluate`` reports: counts (N, C), per-case DSC and volumes, ROC per class."""

    cases: list[str]
    classes: list[int]  # the reported classes (column c of every (N, C) array is class classes[c])
    stats: DiceStats  # (N, C) int64 counts of the reported classes
    voxel_ml: np.ndarray  # (N,)
    dsc: np.ndarray  # (N, C) float64 with the empty convention applied
    empty: str
    groups: list[str] | None = None
    positive_group: str | None = None
    positive_rule: str = ""
    roc: dict[int, ROC] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def v_ref_ml(self) -> np.ndarray:
        return self.stats.target_sum.double().numpy() * self.voxel_ml[:, None]

    @property
    def v_pred_ml(self) -> np.ndarray:
        return self.stats.pred_sum.double().numpy() * self.voxel_ml[:, None]

    @property
    def dv_ml(self) -> np.ndarray:
        """ΔV = V_pred − V_ref in ml (> 0: over-segmentation)."""
        return (self.stats.pred_sum - self.stats.target_sum).double().numpy() * self.voxel_ml[:, None]


def evaluate_folders(pred_dir, gt_dir, *, groups_csv=None, positive_group: str | None = None, spacing=None,
                     num_classes: int | None = None, empty: str = "nan", threshold: float | None = None,
                     include_background: bool = False, allow_missing: bool = False,
                     progress: bool = True) -> Evaluation:
    """Evaluate every matched (prediction, reference) pair; see :mod:`phidice.cli.evaluate` for the options."""
    if empty not in EMPTY_CONVENTIONS:
        raise ValueError(f"empty must be one of {', '.join(EMPTY_CONVENTIONS)}; got {empty!r}")
    if spacing is not None:
        spacing = tuple(float(s) for s in spacing)
        if not all(np.isfinite(s) and s > 0 for s in spacing):
            raise ValueError(f"--spacing values must be finite and > 0 (mm); got {spacing}")
    if threshold is not None and not np.isfinite(threshold):
        raise ValueError(f"--threshold must be a finite number; got {threshold}")
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"--num-classes must be ≥ 1; got {num_classes}")
    group_of = read_groups(groups_csv) if groups_csv is not None else None
    pairs, notes = match_cases(pred_dir, gt_dir, allow_missing=allow_missing)
    if group_of is not None:
        lacking = [c for c, _, _ in pairs if c not in group_of]
        if lacking:
            raise ValueError(f"{len(lacking)} case(s) have no group in {str(groups_csv)!r}: "
                             + ", ".join(lacking[:10]) + (" …" if len(lacking) > 10 else ""))

    rows, voxel_ml = [], []
    for case, pred_path, gt_path in progress_bar(pairs, desc="phidice evaluate", unit="case", disable=not progress):
        stats, ml = case_counts(pred_path, gt_path, threshold=threshold, spacing=spacing, num_classes=num_classes)
        rows.append(stats)
        voxel_ml.append(ml)
    C = max(s.intersection.shape[1] for s in rows)
    stats = DiceStats(*(torch.cat([torch.nn.functional.pad(t, (0, C - t.shape[1])) for t in ts], 0)
                        for ts in zip(*rows)))
    classes = list(range(C)) if include_background or C == 1 else list(range(1, C))
    stats = stats.select_classes(classes)
    ev = Evaluation(cases=[c for c, _, _ in pairs], classes=classes, stats=stats,
                    voxel_ml=np.asarray(voxel_ml, dtype=np.float64),
                    dsc=score_from_stats(stats, phi="I", empty=empty).numpy(), empty=empty, notes=notes)
    if group_of is not None:
        ev.groups = [group_of[c] for c in ev.cases]
        _add_roc(ev, positive_group)
    return ev


def _add_roc(ev: Evaluation, positive_group: str | None) -> None:
    kinds = sorted(set(ev.groups))
    if positive_group is not None and positive_group not in kinds:
        raise ValueError(f"--positive-group {positive_group!r} is not a group of the groups file: {kinds}")
    if len(kinds) < 2:
        ev.notes.append(f"only one group ({kinds[0]!r}): no ROC")
        return
    if positive_group is None:
        if len(kinds) > 2:
            ev.notes.append(f"{len(kinds)} groups: name the positive one with --positive-group for a ROC "
                            "(the others are then the negative group)")
            return
        fg = ev.v_ref_ml.sum(1)
        means = {k: fg[[g == k for g in ev.groups]].mean() for k in kinds}
        if means[kinds[0]] == means[kinds[1]]:
            raise ValueError(f"groups {kinds[0]!r} and {kinds[1]!r} have the same mean reference volume; name the "
                             "positive group with --positive-group")
        positive_group = max(kinds, key=means.get)
        ev.positive_rule = "the group with the larger mean reference volume (default)"
    else:
        ev.positive_rule = "--positive-group"
    ev.positive_group = positive_group
    is_pos = np.array([g == positive_group for g in ev.groups])
    for j, c in enumerate(ev.classes):
        ev.roc[c] = volume_roc(ev.v_pred_ml[:, j], is_pos)


# ---------------------------------------------------------------------------------------------- writing


def _g(x: float) -> str:
    return "nan" if np.isnan(x) else f"{x:.10g}"


def per_case_csv(ev: Evaluation) -> str:
    buf = _stdio.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["case", "class", "group", "DSC", "V_ref_ml", "V_pred_ml", "dV_ml", "V_ref_vox", "V_pred_vox"])
    vr, vp, dv = ev.v_ref_ml, ev.v_pred_ml, ev.dv_ml
    for i, case in enumerate(ev.cases):
        for j, c in enumerate(ev.classes):
            w.writerow([case, c, ev.groups[i] if ev.groups else "", _g(ev.dsc[i, j]), _g(vr[i, j]), _g(vp[i, j]),
                        _g(dv[i, j]), int(ev.stats.target_sum[i, j]), int(ev.stats.pred_sum[i, j])])
    return buf.getvalue()


def _mean_std(x: np.ndarray) -> tuple[str, int]:
    x = x[~np.isnan(x)]
    if x.size == 0:
        return "–", 0
    if x.size == 1:
        return f"{x[0]:.3f}", 1
    return f"{x.mean():.3f} ± {x.std(ddof=1):.3f}", int(x.size)


_EMPTY_TEXT = {
    "nan": "DSC is undefined (NaN, left out of the means) when the reference is empty",
    "ratio": "DSC is undefined (NaN) when reference and prediction are both empty, 0 when only the reference is",
    "one": "DSC is 1 when reference and prediction are both empty, 0 when only the reference is",
    "zero": "DSC is 0 whenever the reference is empty",
}


def summary_markdown(ev: Evaluation, *, pred_dir="", gt_dir="", spacing_source="") -> str:
    lines = ["# phidice evaluate", ""]
    lines.append(f"- predictions: `{pred_dir}`; references: `{gt_dir}`; {len(ev.cases)} cases")
    lines.append(f"- empty convention `{ev.empty}`: {_EMPTY_TEXT[ev.empty]}")
    if spacing_source:
        lines.append(f"- voxel spacing: {spacing_source}")
    lines.append("- ΔV = V_pred − V_ref in ml (> 0: over-segmentation); mean ± sample std over cases; "
                 "n = cases with a defined DSC; DSC_BI = Dice of the pooled counts of all cases in the row")
    lines += [f"- note: {n}" for n in ev.notes]
    lines += ["", "| class | group | cases | DSC mean ± std | n | DSC_BI | ΔV ml mean ± std | V_ref ml mean | "
              "V_pred ml mean |", "|---|---|---:|---|---:|---:|---|---:|---:|"]
    sets = [("all", np.ones(len(ev.cases), dtype=bool))]
    if ev.groups:
        sets += [(k, np.array([g == k for g in ev.groups])) for k in sorted(set(ev.groups))]
    vr, vp, dv = ev.v_ref_ml, ev.v_pred_ml, ev.dv_ml
    for j, c in enumerate(ev.classes):
        for name, rows in sets:
            dsc, n = _mean_std(ev.dsc[rows, j])
            pooled = DiceStats(*(t[torch.from_numpy(rows)][:, j:j + 1] for t in ev.stats))
            bi = float(score_from_stats(pooled, phi="BI", empty=ev.empty)[0, 0])
            dvs, _ = _mean_std(dv[rows, j])
            lines.append(f"| {c} | {name} | {int(rows.sum())} | {dsc} | {n} | {'–' if np.isnan(bi) else f'{bi:.3f}'} "
                         f"| {dvs} | {vr[rows, j].mean():.3f} | {vp[rows, j].mean():.3f} |")
    if ev.roc:
        lines += ["", f"## ROC: detecting group `{ev.positive_group}` from the predicted volume", "",
                  f"Positive group: {ev.positive_rule}. A case is called positive when its predicted volume of the "
                  "class is at least the threshold; tied volumes count 1/2 (AUC = Mann–Whitney U / (n₊·n₋)).",
                  "",
                  "| class | n₊ | n₋ | AUC |", "|---|---:|---:|---:|"]
        for c, roc in ev.roc.items():
            lines.append(f"| {c} | {roc.n_positive} | {roc.n_negative} | {roc.auc:.3f} |")
    return "\n".join(lines) + "\n"


def roc_csv(ev: Evaluation) -> str:
    buf = _stdio.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["class", "threshold_ml", "fpr", "tpr", "auc"])
    for c, roc in ev.roc.items():
        for t, f, p in zip(roc.thresholds, roc.fpr, roc.tpr):
            w.writerow([c, _g(t), _g(f), _g(p), _g(roc.auc)])
    return buf.getvalue()


def roc_png(ev: Evaluation) -> bytes:
    from matplotlib.figure import Figure  # no pyplot: renders with Agg, leaves the global backend alone

    fig = Figure(figsize=(4.5, 4.5), dpi=120)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--")
    for c, roc in ev.roc.items():
        ax.plot(roc.fpr, roc.tpr, lw=1.8, label=f"class {c}: AUC = {roc.auc:.3f}")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title(f"detecting '{ev.positive_group}' from predicted volume", fontsize=10)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buf = _stdio.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_outputs(ev: Evaluation, out_dir, **summary_kw) -> list[Path]:
    """per_case.csv, summary.md, and roc.csv + roc.png when there is a ROC; each written atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"per_case.csv": per_case_csv(ev), "summary.md": summary_markdown(ev, **summary_kw)}
    if ev.roc:
        files["roc.csv"] = roc_csv(ev)
        files["roc.png"] = roc_png(ev)
    for name, data in files.items():
        atomic_write(out / name, data)
    return [out / name for name in files]
