"""Folder evaluation behind ``phidice evaluate``: hard Dice, volumes and ΔV (and, with a surface tolerance, HD95
and NSD) per case and class, summaries per class and group with bootstrap intervals, and the volume ROC of the
paper's Fig. 2.

Each (prediction, reference) pair is reduced to its per-class counts I, P, Y (the loss's sums), so the
per-case DSC, the volumes and the pooled Φ = BI Dice of a group all come from the same (N, C) table.
Comparing several methods on one reference folder is :mod:`phidice.metrics.compare`.
"""

from __future__ import annotations

import csv
import io as _stdio
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from phidice.core.config import check_choice, check_empty
from phidice.core.deps import require
from phidice.core.types import DiceStats
from phidice.io import as_label_array, atomic_write, image_stem, list_label_files, read_image, read_label_image
from phidice.metrics import surface
from phidice.metrics._hard import hard_stats, reported_classes
from phidice.metrics.annotated import annotated_mask, read_pool_annotations
from phidice.metrics.bootstrap import CI_METHODS, TEST_METHODS, MeanCI, PairedTest, bootstrap_ci, paired_test
from phidice.metrics.dice import score_from_stats
from phidice.metrics.roc import ROC, volume_roc
from phidice.progress import progress as progress_bar

SPACING_RTOL = 1e-4  # header spacings of a pair must agree to this relative tolerance


def case_name(path: str | os.PathLike) -> str:
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
    for names, have, lacks, files in (
        (only_gt, "reference", "prediction", gts),
        (only_pred, "prediction", "reference", preds),
    ):
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
            raise ValueError(
                f"--threshold is for probability maps but prediction file {str(path)!r} holds "
                f"integer labels ({array.dtype}); drop --threshold"
            )
        if not np.isfinite(array).all():
            raise ValueError(f"prediction file {str(path)!r} contains NaN or Inf")
        return (array >= threshold).astype(np.uint8), spacing
    return as_label_array(
        array, f"prediction file {str(path)!r}", "pass --threshold T to binarise a probability map, or save hard labels"
    ), spacing


def load_pair(
    pred_path: Path,
    gt_path: Path,
    *,
    threshold=None,
    spacing=None,
    reference: tuple[np.ndarray, tuple[float, ...]] | None = None,
):
    """(prediction labels, reference labels, spacing in mm) of one pair, with checks that name the files.

    ``reference`` is the already read (array, header spacing) of ``gt_path`` (read once for several methods).
    """
    pred, pred_spacing = read_prediction(pred_path, threshold)
    ref, ref_spacing = reference if reference is not None else read_label_image(gt_path)
    if pred.shape != ref.shape:
        raise ValueError(
            f"prediction {str(pred_path)!r} has shape {pred.shape} but reference {str(gt_path)!r} has shape {ref.shape}"
        )
    if spacing is None:
        if len(pred_spacing) != len(ref_spacing) or not np.allclose(
            pred_spacing, ref_spacing, rtol=SPACING_RTOL, atol=0
        ):
            raise ValueError(
                f"prediction {str(pred_path)!r} has spacing {_mm(pred_spacing)} but reference "
                f"{str(gt_path)!r} has spacing {_mm(ref_spacing)} (resample, or pass --spacing to "
                "override the headers)"
            )
        spacing = ref_spacing
    elif len(spacing) != ref.ndim:
        raise ValueError(f"--spacing has {len(spacing)} values but {str(gt_path)!r} has {ref.ndim} axes")
    for arr, path in ((pred, pred_path), (ref, gt_path)):
        if arr.size and arr.min() < 0:
            raise ValueError(f"label file {str(path)!r} holds negative labels (min {arr.min()})")
    return pred, ref, tuple(float(v) for v in spacing)


@dataclass
class CaseScore:
    """One pair: counts (1, C_case), voxel volume in ml, and with a tolerance (HD95, NSD) of classes 0..C_case − 1
    (``surface`` (C_case, 2); class 0 only when reported) and of a class absent from both maps (``absent``)."""

    stats: DiceStats
    voxel_ml: float
    surface: np.ndarray | None = None
    absent: tuple[float, float] | None = (float("nan"), float("nan"))


def score_case(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing,
    pred_path,
    gt_path,
    *,
    num_classes: int | None = None,
    tolerance: float | None = None,
    empty: str = "nan",
    include_background: bool = False,
) -> CaseScore:
    """Counts, voxel volume and (with ``tolerance`` in mm) HD95/NSD of one pair of label maps."""
    try:
        stats = hard_stats(
            torch.from_numpy(pred.astype(np.int64, copy=False)[None]),
            torch.from_numpy(ref.astype(np.int64, copy=False)[None]),
            num_classes=num_classes,
        )
    except ValueError as err:
        raise ValueError(f"case {case_name(gt_path)!r} ({str(pred_path)!r}, {str(gt_path)!r}): {err}") from None
    score = CaseScore(stats, float(np.prod(np.asarray(spacing, dtype=np.float64))) / 1000.0)
    if tolerance is not None:
        C = stats.intersection.shape[1]
        classes = reported_classes(C, include_background)
        if C == 1:  # a single class is the foreground label 1
            pred, ref = (pred == 1).astype(np.int64), (ref == 1).astype(np.int64)
            classes = [1]
        hd, nsd = surface.label_map_scores(pred, ref, spacing, classes, tolerance=tolerance, empty=empty)
        score.surface = np.full((C, 2), np.nan)
        score.surface[-len(classes) :] = np.stack([hd, nsd], 1)
        score.absent = surface.empty_scores(True, True, empty, surface.image_diagonal(ref.shape, spacing))
    return score


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
            raise ValueError(
                f"groups file {str(path)!r} needs a header with columns 'case' and 'group'; got {reader.fieldnames}"
            )
        groups: dict[str, str] = {}
        for line, row in enumerate(reader, start=2):
            case, group = (row[fields["case"]] or "").strip(), (row[fields["group"]] or "").strip()
            if not case or not group:
                raise ValueError(f"groups file {str(path)!r} line {line}: empty case or group")
            case = case_name(case)
            if groups.get(case, group) != group:
                raise ValueError(
                    f"groups file {str(path)!r}: case {case!r} is in groups {groups[case]!r} and {group!r}"
                )
            groups[case] = group
    if not groups:
        raise ValueError(f"groups file {str(path)!r} has no rows")
    return groups


@dataclass
class Evaluation:
    """Everything ``phidice evaluate`` reports: counts (N, C), per-case DSC, volumes and (with a surface tolerance)
    HD95 and NSD, ROC per class."""

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
    tolerance: float | None = None  # NSD tolerance τ in mm; None: no surface metrics
    hd95: np.ndarray | None = None  # (N, C) mm, the empty convention applied (worst case: the image diagonal)
    nsd: np.ndarray | None = None  # (N, C) in [0, 1]
    annotated: np.ndarray | None = None  # (N, C) bool: case i annotates class j (None: every case every class)

    def _masked(self, x: np.ndarray) -> np.ndarray:
        return x if self.annotated is None else np.where(self.annotated, x, np.nan)

    @property
    def v_ref_ml(self) -> np.ndarray:
        return self._masked(self.stats.target_sum.double().numpy() * self.voxel_ml[:, None])

    @property
    def v_pred_ml(self) -> np.ndarray:
        return self._masked(self.stats.pred_sum.double().numpy() * self.voxel_ml[:, None])

    @property
    def dv_ml(self) -> np.ndarray:
        """ΔV = V_pred − V_ref in ml (> 0: over-segmentation)."""
        return self._masked((self.stats.pred_sum - self.stats.target_sum).double().numpy() * self.voxel_ml[:, None])

    def apply_annotations(self, mask: np.ndarray) -> None:
        """Score each case only on the classes it annotates: the others' metrics become NaN (left out)."""
        self.annotated = np.asarray(mask, dtype=bool)
        self.dsc = self._masked(self.dsc)
        if self.hd95 is not None and self.nsd is not None:
            self.hd95, self.nsd = self._masked(self.hd95), self._masked(self.nsd)

    def scored(self, rows: np.ndarray, j: int) -> np.ndarray:
        """The cases of ``rows`` scored on class column j (those annotating it)."""
        return rows if self.annotated is None else rows & self.annotated[:, j]

    def metrics(self) -> dict[str, np.ndarray]:
        """The per-case (N, C) metrics that get means, intervals and tests: DSC, ΔV and, if computed, HD95, NSD."""
        out = {"DSC": self.dsc, "dV_ml": self.dv_ml}
        if self.hd95 is not None and self.nsd is not None:
            out["HD95_mm"], out["NSD"] = self.hd95, self.nsd
        return out


def check_options(*, empty, spacing, threshold, num_classes, surface_tolerance=None):
    """The shared options of :func:`evaluate_folders` and :func:`~phidice.metrics.compare.compare_folders`,
    checked and normalised (errors name the command-line option)."""
    check_empty(empty, "score")
    if spacing is not None:
        spacing = tuple(float(s) for s in spacing)
        if not all(np.isfinite(s) and s > 0 for s in spacing):
            raise ValueError(f"--spacing values must be finite and > 0 (mm); got {spacing}")
    if threshold is not None and not np.isfinite(threshold):
        raise ValueError(f"--threshold must be a finite number; got {threshold}")
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"--num-classes must be ≥ 1; got {num_classes}")
    if surface_tolerance is not None and not (np.isfinite(surface_tolerance) and surface_tolerance >= 0):
        raise ValueError(f"--surface-tolerance must be a finite distance ≥ 0 in mm; got {surface_tolerance}")
    return spacing


def check_groups(group_of: dict | None, cases, groups_csv) -> None:
    if group_of is None:
        return
    lacking = [c for c in cases if c not in group_of]
    if lacking:
        raise ValueError(
            f"{len(lacking)} case(s) have no group in {str(groups_csv)!r}: "
            + ", ".join(lacking[:10])
            + (" …" if len(lacking) > 10 else "")
        )


def assemble(
    cases: list[str],
    scores: list[CaseScore],
    *,
    num_classes_seen: int,
    empty: str,
    include_background: bool,
    tolerance: float | None,
    notes: list[str],
) -> Evaluation:
    """One Evaluation from per-case scores; classes a case lacks count zero (and take the both-empty surface
    convention). ``num_classes_seen``: C over every case (and every method, when comparing)."""
    C = num_classes_seen
    stats = DiceStats(
        *(
            torch.cat([torch.nn.functional.pad(t, (0, C - t.shape[1])) for t in ts], 0)
            for ts in zip(*(s.stats for s in scores))
        )
    )
    classes = reported_classes(C, include_background)
    stats = stats.select_classes(classes)
    ev = Evaluation(
        cases=list(cases),
        classes=classes,
        stats=stats,
        voxel_ml=np.asarray([s.voxel_ml for s in scores], dtype=np.float64),
        dsc=score_from_stats(stats, phi="I", empty=empty).numpy(),
        empty=empty,
        notes=list(notes),
    )
    if tolerance is not None:
        surf = np.empty((len(scores), C, 2))
        for i, s in enumerate(scores):
            surf[i] = s.absent
            if s.surface is not None:
                surf[i, : s.surface.shape[0]] = s.surface
        surf = surf[:, classes]
        ev.tolerance, ev.hd95, ev.nsd = float(tolerance), surf[..., 0], surf[..., 1]
    return ev


def evaluate_folders(
    pred_dir,
    gt_dir,
    *,
    groups_csv=None,
    positive_group: str | None = None,
    spacing=None,
    num_classes: int | None = None,
    empty: str = "nan",
    threshold: float | None = None,
    include_background: bool = False,
    allow_missing: bool = False,
    surface_tolerance: float | None = None,
    progress: bool = True,
    annotated=None,
) -> Evaluation:
    """Evaluate every matched (prediction, reference) pair; see :mod:`phidice.cli.evaluate` for the options.

    ``surface_tolerance`` (mm) adds HD95 and the NSD at that tolerance per case and class. ``annotated``: an
    ``annotated_labels.json``; each case is then scored only on the labels it annotates (rows per source when
    there is no ``groups_csv``), see :mod:`phidice.metrics.annotated`.
    """
    pool = read_pool_annotations(annotated) if annotated is not None else None
    spacing = check_options(
        empty=empty, spacing=spacing, threshold=threshold, num_classes=num_classes, surface_tolerance=surface_tolerance
    )
    group_of = read_groups(groups_csv) if groups_csv is not None else None
    pairs, notes = match_cases(pred_dir, gt_dir, allow_missing=allow_missing)
    check_groups(group_of, [c for c, _, _ in pairs], groups_csv)

    scores = []
    for _case, pred_path, gt_path in progress_bar(pairs, desc="phidice evaluate", unit="case", disable=not progress):
        pred, ref, sp = load_pair(pred_path, gt_path, threshold=threshold, spacing=spacing)
        scores.append(
            score_case(
                pred,
                ref,
                sp,
                pred_path,
                gt_path,
                num_classes=num_classes,
                tolerance=surface_tolerance,
                empty=empty,
                include_background=include_background,
            )
        )
    ev = assemble(
        [c for c, _, _ in pairs],
        scores,
        num_classes_seen=max(s.stats.intersection.shape[1] for s in scores),
        empty=empty,
        include_background=include_background,
        tolerance=surface_tolerance,
        notes=notes,
    )
    if pool is not None:
        apply_pool(ev, pool, per_source=group_of is None)
    if group_of is not None:
        ev.groups = [group_of[c] for c in ev.cases]
        _add_roc(ev, positive_group)
    return ev


def apply_pool(ev: Evaluation, pool, *, per_source: bool) -> None:
    """Mask ``ev`` with the pool's annotations; with ``per_source`` its groups become the cases' sources."""
    mask, notes = annotated_mask(pool, ev.cases, ev.classes)
    ev.apply_annotations(mask)
    ev.notes += notes
    ev.notes.append(
        f"scored on annotated labels only ({pool.path}): a case that does not annotate a label is left "
        f"out of that label's row (the 'cases' column counts the cases scored)"
    )
    if per_source:
        ev.groups = [pool.source_of(c) for c in ev.cases]


def _add_roc(ev: Evaluation, positive_group: str | None) -> None:
    assert ev.groups is not None  # called only with a groups file
    kinds = sorted(set(ev.groups))
    if positive_group is not None and positive_group not in kinds:
        raise ValueError(f"--positive-group {positive_group!r} is not a group of the groups file: {kinds}")
    if len(kinds) < 2:
        ev.notes.append(f"only one group ({kinds[0]!r}): no ROC")
        return
    if positive_group is None:
        if len(kinds) > 2:
            ev.notes.append(
                f"{len(kinds)} groups: name the positive one with --positive-group for a ROC "
                "(the others are then the negative group)"
            )
            return
        fg = ev.v_ref_ml.sum(1)
        means = {k: fg[[g == k for g in ev.groups]].mean() for k in kinds}
        if means[kinds[0]] == means[kinds[1]]:
            raise ValueError(
                f"groups {kinds[0]!r} and {kinds[1]!r} have the same mean reference volume; name the "
                "positive group with --positive-group"
            )
        positive_group = max(kinds, key=lambda k: means[k])
        ev.positive_rule = "the group with the larger mean reference volume (default)"
    else:
        ev.positive_rule = "--positive-group"
    ev.positive_group = positive_group
    is_pos = np.array([g == positive_group for g in ev.groups])
    for j, c in enumerate(ev.classes):
        keep = ev.scored(np.ones(len(ev.cases), dtype=bool), j)
        ev.roc[c] = volume_roc(ev.v_pred_ml[keep, j], is_pos[keep])


# ---------------------------------------------------------------------------------------------- writing


def _g(x: float) -> str:
    return "nan" if np.isnan(x) else f"{x:.10g}"


SURFACE_COLUMNS = ("HD95_mm", "NSD")


def per_case_csv(ev: Evaluation) -> str:
    buf = _stdio.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["case", "class", "group", "DSC", "V_ref_ml", "V_pred_ml", "dV_ml", "V_ref_vox", "V_pred_vox"]
        + (list(SURFACE_COLUMNS) if ev.hd95 is not None else [])
        + (["annotated"] if ev.annotated is not None else [])
    )
    for row in case_rows(ev):
        w.writerow(row)
    return buf.getvalue()


def case_rows(ev: Evaluation):
    """The per-case CSV rows: case, class, group, DSC, volumes, ΔV, voxel counts [, HD95, NSD]."""
    vr, vp, dv = ev.v_ref_ml, ev.v_pred_ml, ev.dv_ml
    for i, case in enumerate(ev.cases):
        for j, c in enumerate(ev.classes):
            row = [
                case,
                c,
                ev.groups[i] if ev.groups else "",
                _g(ev.dsc[i, j]),
                _g(vr[i, j]),
                _g(vp[i, j]),
                _g(dv[i, j]),
                int(ev.stats.target_sum[i, j]),
                int(ev.stats.pred_sum[i, j]),
            ]
            if ev.hd95 is not None and ev.nsd is not None:
                row += [_g(ev.hd95[i, j]), _g(ev.nsd[i, j])]
            if ev.annotated is not None:
                row.append(int(ev.annotated[i, j]))
            yield row


def _mean_std(x: np.ndarray) -> tuple[str, int]:
    x = x[~np.isnan(x)]
    if x.size == 0:
        return "–", 0
    if x.size == 1:
        return f"{x[0]:.3f}", 1
    return f"{x.mean():.3f} ± {x.std(ddof=1):.3f}", int(x.size)


@dataclass(frozen=True)
class Resampling:
    """How the tables' intervals and tests are computed (:mod:`phidice.metrics.bootstrap`): ``n_resamples``
    bootstrap resamples (and random sign patterns), the ``confidence`` level of the intervals (a test is
    significant at p < 1 − confidence), ``seed``, ``ci_method`` and the paired ``test``."""

    n_resamples: int = 10_000
    confidence: float = 0.95
    seed: int = 0
    ci_method: str = "percentile"
    test: str = "permutation"

    def __post_init__(self):
        check_choice("ci_method", self.ci_method, CI_METHODS)
        check_choice("test", self.test, TEST_METHODS)
        if isinstance(self.n_resamples, bool) or not isinstance(self.n_resamples, int) or self.n_resamples < 1:
            raise ValueError(f"--n-resamples must be a positive integer; got {self.n_resamples!r}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"--confidence must be in (0, 1), e.g. 0.95; got {self.confidence!r}")

    @property
    def percent(self) -> str:
        return f"{100 * self.confidence:g} %"

    def ci(self, values: np.ndarray, name: str = "values") -> MeanCI | None:
        """The interval of the mean of the defined values; None with fewer than 2 of them."""
        if np.count_nonzero(~np.isnan(values)) < 2:
            return None
        return bootstrap_ci(
            values,
            confidence=self.confidence,
            n_resamples=self.n_resamples,
            method=self.ci_method,
            seed=self.seed,
            name=name,
        )

    def test_pair(self, a: np.ndarray, b: np.ndarray, names=("a", "b")) -> PairedTest | None:
        """The paired test of a against b on the cases defined for both; None with fewer than 2 such cases."""
        if np.count_nonzero(~(np.isnan(a) | np.isnan(b))) < 2:
            return None
        return paired_test(
            a,
            b,
            method=self.test,
            confidence=self.confidence,
            n_resamples=self.n_resamples,
            ci_method=self.ci_method,
            seed=self.seed,
            names=names,
        )


FORMATS = {"DSC": ".3f", "dV_ml": ".3f", "HD95_mm": ".2f", "NSD": ".3f"}


def interval_cell(ci: MeanCI | None, values: np.ndarray, spec: str) -> str:
    """ "[low, high]", or why there is none: "–" (nothing defined), "n < 2" (one defined value)."""
    if ci is None:
        return "–" if np.isnan(values).all() else "n < 2"
    return f"[{ci.low:{spec}}, {ci.high:{spec}}]"


def mean_ci_cell(ci: MeanCI | None, values: np.ndarray, spec: str) -> str:
    """ "mean [low, high]" (plus "n=k" when only k of the cases are defined), "x (n=1)" or "–"."""
    defined = values[~np.isnan(values)]
    if defined.size == 0:
        return "–"
    if ci is None:
        return f"{defined[0]:{spec}} (n=1)"
    n = f" n={ci.n}" if ci.n_undefined else ""
    return f"{ci.mean:{spec}} [{ci.low:{spec}}, {ci.high:{spec}}]{n}"


def p_cell(test: PairedTest | None, alpha: float) -> str:
    """The p-value with 3 significant digits, "*" when p < alpha; "n < 2" when no test is possible."""
    if test is None:
        return "n < 2"
    return f"{test.p_value:.3g}" + ("*" if test.p_value < alpha else "")


_EMPTY_TEXT = {
    "nan": "DSC is undefined (NaN, left out of the means) when the reference is empty",
    "ratio": "DSC is undefined (NaN) when reference and prediction are both empty, 0 when only the reference is",
    "one": "DSC is 1 when reference and prediction are both empty, 0 when only the reference is",
    "zero": "DSC is 0 whenever the reference is empty",
}

SURFACE_TEXT = (
    "HD95 in mm (the larger directed 95th percentile of surface distances) and NSD at τ = {tol:g} mm; "
    "with an empty reference or prediction they follow the same convention as DSC (NaN where DSC is "
    "undefined, the worst value — HD95 = image diagonal, NSD = 0 — where DSC is 0; HD95 0 and NSD 1 where "
    "DSC is 1)"
)


def row_sets(ev: Evaluation) -> list[tuple[str, np.ndarray]]:
    """("all", every case) and one (group, cases) per group, sorted."""
    sets = [("all", np.ones(len(ev.cases), dtype=bool))]
    if ev.groups:
        sets += [(k, np.array([g == k for g in ev.groups])) for k in sorted(set(ev.groups))]
    return sets


def summary_markdown(
    ev: Evaluation, *, pred_dir="", gt_dir="", spacing_source="", resampling: Resampling | None = None
) -> str:
    res = resampling or Resampling()
    lines = ["# phidice evaluate", ""]
    lines.append(f"- predictions: `{pred_dir}`; references: `{gt_dir}`; {len(ev.cases)} cases")
    lines.append(f"- empty convention `{ev.empty}`: {_EMPTY_TEXT[ev.empty]}")
    if spacing_source:
        lines.append(f"- voxel spacing: {spacing_source}")
    lines.append(
        "- ΔV = V_pred − V_ref in ml (> 0: over-segmentation); mean ± sample std over cases; "
        "n = cases with a defined DSC; DSC_BI = Dice of the pooled counts of all cases in the row"
    )
    lines.append(
        f"- {res.percent} CI: {res.ci_method} bootstrap interval of the mean over the row's cases with a "
        f"defined value ({res.n_resamples} resamples, seed {res.seed}); n < 2: too few cases for an interval"
    )
    if ev.hd95 is not None:
        lines.append("- " + SURFACE_TEXT.format(tol=ev.tolerance) + "; n=k in a cell: only k cases are defined")
    lines += [f"- note: {n}" for n in ev.notes]
    ci = f"{res.percent} CI"
    head = [
        "class",
        "group",
        "cases" if ev.annotated is None else "cases scored",
        "DSC mean ± std",
        "n",
        "DSC_BI",
        f"DSC {ci}",
        "ΔV ml mean ± std",
        f"ΔV {ci}",
        "V_ref ml mean",
        "V_pred ml mean",
    ]
    align = ["---", "---", "---:", "---", "---:", "---:", "---", "---", "---", "---:", "---:"]
    if ev.hd95 is not None:
        head += [f"HD95 mm mean [{ci}]", f"NSD@{ev.tolerance:g} mm mean [{ci}]"]
        align += ["---", "---"]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    lines += _summary_rows(ev, res)
    if ev.roc:
        lines += _summary_roc(ev)
    return "\n".join(lines) + "\n"


def _summary_rows(ev: Evaluation, res: Resampling) -> list[str]:
    """One table row per (class, group): DSC, DSC_BI, ΔV and volumes with their intervals (HD95/NSD too)."""
    lines: list[str] = []
    vr, vp, dv = ev.v_ref_ml, ev.v_pred_ml, ev.dv_ml
    for j, c in enumerate(ev.classes):
        for name, all_rows in row_sets(ev):
            rows = ev.scored(all_rows, j)
            if not rows.any() and ev.annotated is not None:
                continue  # a source that does not annotate the class has no row for it
            dsc, n = _mean_std(ev.dsc[rows, j])
            pooled = DiceStats(*(t[torch.from_numpy(rows)][:, j : j + 1] for t in ev.stats))
            bi = float(score_from_stats(pooled, phi="BI", empty=ev.empty)[0, 0])
            dvs, _ = _mean_std(dv[rows, j])
            what = f"class {c}, group {name!r}"
            dsc_ci = interval_cell(res.ci(ev.dsc[rows, j], f"DSC of {what}"), ev.dsc[rows, j], ".3f")
            dv_ci = interval_cell(res.ci(dv[rows, j], f"ΔV of {what}"), dv[rows, j], ".3f")
            cells = [
                str(c),
                name,
                str(int(rows.sum())),
                dsc,
                str(n),
                "–" if np.isnan(bi) else f"{bi:.3f}",
                dsc_ci,
                dvs,
                dv_ci,
                f"{vr[rows, j].mean():.3f}",
                f"{vp[rows, j].mean():.3f}",
            ]
            if ev.hd95 is not None and ev.nsd is not None:
                for key, arr in (("HD95_mm", ev.hd95), ("NSD", ev.nsd)):
                    v = arr[rows, j]
                    cells.append(mean_ci_cell(res.ci(v, f"{key} of {what}"), v, FORMATS[key]))
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _summary_roc(ev: Evaluation) -> list[str]:
    """The AUC of detecting the positive group from the predicted volume, per class."""
    lines = [
        "",
        f"## ROC: detecting group `{ev.positive_group}` from the predicted volume",
        "",
        f"Positive group: {ev.positive_rule}. A case is called positive when its predicted volume of the "
        "class is at least the threshold; tied volumes count 1/2 (AUC = Mann–Whitney U / (n₊·n₋)).",
        "",
        "| class | n₊ | n₋ | AUC |",
        "|---|---:|---:|---:|",
    ]
    for c, roc in ev.roc.items():
        lines.append(f"| {c} | {roc.n_positive} | {roc.n_negative} | {roc.auc:.3f} |")
    return lines


def roc_csv(ev: Evaluation) -> str:
    buf = _stdio.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["class", "threshold_ml", "fpr", "tpr", "auc"])
    for c, roc in ev.roc.items():
        for t, f, p in zip(roc.thresholds, roc.fpr, roc.tpr):
            w.writerow([c, _g(t), _g(f), _g(p), _g(roc.auc)])
    return buf.getvalue()


def draw_rocs(ax, curves, title: str, fontsize: int = 10) -> None:
    """ROC curves on one axes: ``curves`` are (label, ROC, plot keywords); the chance diagonal, unit square."""
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--")
    for label, roc, style in curves:
        ax.plot(roc.fpr, roc.tpr, label=f"{label}: AUC = {roc.auc:.3f}", **style)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title(title, fontsize=fontsize)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=8)


def png_bytes(fig) -> bytes:
    fig.tight_layout()
    buf = _stdio.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def roc_png(ev: Evaluation) -> bytes:
    Figure = require("matplotlib.figure", "eval", "the ROC figure").Figure  # no pyplot: the global backend untouched
    fig = Figure(figsize=(4.5, 4.5), dpi=120)
    draw_rocs(
        fig.add_subplot(),
        [(f"class {c}", roc, dict(lw=1.8)) for c, roc in ev.roc.items()],
        f"detecting '{ev.positive_group}' from predicted volume",
    )
    return png_bytes(fig)


def write_outputs(ev: Evaluation, out_dir, **summary_kw) -> list[Path]:
    """per_case.csv, summary.md, and roc.csv + roc.png when there is a ROC; each written atomically.
    ``summary_kw``: :func:`summary_markdown`'s options (``resampling`` for the intervals)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str | bytes] = {"per_case.csv": per_case_csv(ev), "summary.md": summary_markdown(ev, **summary_kw)}
    if ev.roc:
        files["roc.csv"] = roc_csv(ev)
        files["roc.png"] = roc_png(ev)
    for name, data in files.items():
        atomic_write(out / name, data)
    return [out / name for name in files]
