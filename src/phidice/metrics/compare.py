"""Several methods against one reference folder (``phidice evaluate --pred A B C``): the paper's Table 1 and
Fig. 2 for any set of predictions.

Every method is scored on the same cases as :func:`~phidice.metrics.evaluate_folders` scores one. The table
holds, per class, group and method, the mean [CI] of each per-case metric (DSC, ΔV and with a surface
tolerance HD95 and NSD) and the paired p-value against the baseline method on the cases defined for both
(:func:`~phidice.metrics.paired_test`); the ROC figure holds every method's curve of detecting the positive
group from the predicted volume.
"""

from __future__ import annotations

import csv
import io as _stdio
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from phidice.core.deps import require
from phidice.io import atomic_write, read_label_image
from phidice.metrics.evaluate import (
    _EMPTY_TEXT,
    FORMATS,
    SURFACE_COLUMNS,
    SURFACE_TEXT,
    Evaluation,
    Resampling,
    _add_roc,
    _g,
    _index,
    assemble,
    case_rows,
    check_groups,
    check_options,
    draw_rocs,
    load_pair,
    mean_ci_cell,
    p_cell,
    png_bytes,
    read_groups,
    row_sets,
    score_case,
)
from phidice.progress import progress as progress_bar

METRIC_TITLES = {"DSC": "DSC", "dV_ml": "ΔV ml", "HD95_mm": "HD95 mm", "NSD": "NSD"}


@dataclass
class Comparison:
    """The evaluations of several methods on the same cases, and which one is the baseline."""

    methods: list[str]
    folders: list[str]
    baseline: str
    evaluations: dict[str, Evaluation]
    gt_dir: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def first(self) -> Evaluation:
        return self.evaluations[self.methods[0]]


def method_names(pred_dirs, names=None) -> list[str]:
    """One name per prediction folder: ``names`` as given, else the folder names (which must then differ)."""
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != len(pred_dirs):
            raise ValueError(f"--method-names has {len(names)} names for {len(pred_dirs)} prediction folders")
    else:
        names = [Path(d).name or str(d) for d in pred_dirs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(
            f"method names must differ; {', '.join(map(repr, dup))} repeats (name the methods with --method-names)"
        )
    if any(not n.strip() for n in names):
        raise ValueError("method names must not be empty")
    return names


def _shown(names: list[str]) -> str:
    return ", ".join(names[:10]) + (" …" if len(names) > 10 else "")


def match_methods(pred_dirs, names, gt_dir, *, allow_missing: bool = False):
    """Cases (sorted), {method: {case: file}}, {case: reference file} and notes. Every prediction folder must
    hold exactly the reference folder's cases (a paired comparison needs the same cases for every method);
    with ``allow_missing`` the cases every folder holds are compared and the others listed in the notes."""
    ref = _index(Path(gt_dir), "reference")
    files = {n: _index(Path(d), f"prediction (method {n!r})") for n, d in zip(names, pred_dirs)}
    problems = []
    for n, d in zip(names, pred_dirs):
        lacks, extra = sorted(set(ref) - set(files[n])), sorted(set(files[n]) - set(ref))
        parts = ([f"lacks {len(lacks)} case(s) of the reference: {_shown(lacks)}"] if lacks else []) + (
            [f"has {len(extra)} case(s) the reference lacks: {_shown(extra)}"] if extra else []
        )
        if parts:
            problems.append(f"prediction folder {str(d)!r} (method {n!r}) " + " and ".join(parts))
    if problems and not allow_missing:
        raise ValueError(
            f"the prediction folders do not hold the cases of the reference folder {str(gt_dir)!r} (a "
            "paired comparison needs the same cases for every method; pass --allow-missing to compare "
            "the cases every folder holds): " + "; ".join(problems)
        )
    common = set(ref).intersection(*(set(f) for f in files.values()))
    if not common:
        raise ValueError(
            f"no case is in the reference folder {str(gt_dir)!r} and every prediction folder (files are "
            "matched by name)"
        )
    cases = sorted(common)
    notes = [f"left out (--allow-missing): {p}" for p in problems]
    return cases, files, ref, notes


def compare_folders(
    pred_dirs,
    gt_dir,
    *,
    names=None,
    baseline: str | None = None,
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
) -> Comparison:
    """Score every method's predictions against the reference folder, case by case (each reference read once).

    ``names``: one per folder (default: the folder names). ``baseline`` names the method the others are
    tested against (default: the first). Other options as
    :func:`~phidice.metrics.evaluate_folders`. A group with fewer than two cases is an error: it can have
    neither an interval nor a test.
    """
    pred_dirs = [str(d) for d in pred_dirs]
    if len(pred_dirs) < 2:
        raise ValueError(f"a comparison needs at least two prediction folders; got {len(pred_dirs)}")
    names = method_names(pred_dirs, names)
    if baseline is None:
        baseline = names[0]
    elif baseline not in names:
        raise ValueError(f"--baseline {baseline!r} is not one of the methods: {', '.join(names)}")
    spacing = check_options(
        empty=empty, spacing=spacing, threshold=threshold, num_classes=num_classes, surface_tolerance=surface_tolerance
    )
    group_of = read_groups(groups_csv) if groups_csv is not None else None
    cases, files, ref_files, notes = match_methods(pred_dirs, names, gt_dir, allow_missing=allow_missing)
    check_groups(group_of, cases, groups_csv)
    if len(cases) < 2:
        raise ValueError(f"a comparison needs at least 2 cases for intervals and tests; got {len(cases)}")
    if group_of is not None:
        _check_group_sizes(group_of, cases, groups_csv)
    scores = _score_methods(
        cases,
        names,
        files,
        ref_files,
        threshold,
        spacing,
        num_classes,
        surface_tolerance,
        empty,
        include_background,
        progress,
    )
    C = max(s.stats.intersection.shape[1] for ss in scores.values() for s in ss)
    evaluations = {}
    for n in names:
        ev = assemble(
            cases,
            scores[n],
            num_classes_seen=C,
            empty=empty,
            include_background=include_background,
            tolerance=surface_tolerance,
            notes=[],
        )
        if group_of is not None:
            ev.groups = [group_of[c] for c in cases]
            _add_roc(ev, positive_group)
        evaluations[n] = ev
    notes += evaluations[names[0]].notes  # ROC notes: the same for every method (one reference)
    return Comparison(names, pred_dirs, baseline, evaluations, str(gt_dir), notes)


def _check_group_sizes(group_of: dict, cases, groups_csv) -> None:
    """Every group needs two cases: one has neither an interval nor a test."""
    sizes = {g: [c for c in cases if group_of[c] == g] for g in sorted({group_of[c] for c in cases})}
    small = {g: cs for g, cs in sizes.items() if len(cs) < 2}
    if small:
        raise ValueError(
            f"groups of {str(groups_csv)!r} with fewer than 2 cases have no confidence interval or "
            "test: " + "; ".join(f"{g!r}: {len(cs)} case(s) ({_shown(cs)})" for g, cs in small.items())
        )


def _score_methods(
    cases,
    names,
    files,
    ref_files,
    threshold,
    spacing,
    num_classes,
    surface_tolerance,
    empty,
    include_background,
    progress,
) -> dict[str, list]:
    """Every method's score of every case, each reference file read once."""
    scores: dict[str, list] = {n: [] for n in names}
    for case in progress_bar(cases, desc="phidice evaluate (compare)", unit="case", disable=not progress):
        gt_path = ref_files[case]
        reference = read_label_image(gt_path)
        for n in names:
            pred, ref, sp = load_pair(
                files[n][case], gt_path, threshold=threshold, spacing=spacing, reference=reference
            )
            scores[n].append(
                score_case(
                    pred,
                    ref,
                    sp,
                    files[n][case],
                    gt_path,
                    num_classes=num_classes,
                    tolerance=surface_tolerance,
                    empty=empty,
                    include_background=include_background,
                )
            )
    return scores


def compare_rows(cmp: Comparison, resampling: Resampling | None = None) -> list[dict]:
    """One row per (class, group, method, metric): n, mean, interval and the p-value against the baseline."""
    res = resampling or Resampling()
    metrics = {m: cmp.evaluations[m].metrics() for m in cmp.methods}
    rows = []
    for j, c in enumerate(cmp.first.classes):
        for group, sel in row_sets(cmp.first):
            for m in cmp.methods:
                for key, values in metrics[m].items():
                    v = values[sel, j]
                    what = f"{key} of method {m!r}, class {c}, group {group!r}"
                    ci = res.ci(v, what)
                    test = (
                        None
                        if m == cmp.baseline
                        else res.test_pair(v, metrics[cmp.baseline][key][sel, j], names=(m, cmp.baseline))
                    )
                    defined = v[~np.isnan(v)]
                    rows.append(
                        {
                            "class": c,
                            "group": group,
                            "method": m,
                            "metric": key,
                            "cases": int(sel.sum()),
                            "n": int(defined.size),
                            "mean": float(defined.mean()) if defined.size else float("nan"),
                            "ci": ci,
                            "test": test,
                            "values": v,
                        }
                    )
    return rows


def compare_markdown(
    cmp: Comparison, rows: list[dict], resampling: Resampling | None = None, *, spacing_source: str = ""
) -> str:
    res = resampling or Resampling()
    alpha = 1 - res.confidence
    ev = cmp.first
    metrics = list(ev.metrics())
    test = (
        "paired sign-flip permutation test of the mean difference (exact over all sign patterns when "
        f"2ⁿ ≤ {res.n_resamples})"
        if res.test == "permutation"
        else "paired bootstrap of the mean difference (p = 2·min(share of bootstrap differences ≤ 0, ≥ 0))"
    )
    lines = ["# phidice evaluate: comparison", ""]
    lines.append(
        f"- reference: `{cmp.gt_dir}`; {len(ev.cases)} cases; methods: "
        + ", ".join(f"{m} (`{d}`)" for m, d in zip(cmp.methods, cmp.folders))
        + f"; baseline: {cmp.baseline}"
    )
    lines.append(f"- empty convention `{ev.empty}`: {_EMPTY_TEXT[ev.empty]}")
    if spacing_source:
        lines.append(f"- voxel spacing: {spacing_source}")
    if ev.hd95 is not None:
        lines.append("- " + SURFACE_TEXT.format(tol=ev.tolerance))
    lines.append(
        f"- cells: mean [{res.percent} CI] over the cases of the row with a defined value ({res.ci_method} "
        f"bootstrap, {res.n_resamples} resamples, seed {res.seed}); n=k: only k cases defined"
    )
    lines.append(
        f"- p: two-sided {test} against {cmp.baseline}, on the cases defined for both; * p < {alpha:g}; "
        "not adjusted for the number of comparisons"
    )
    lines.append("- ΔV = V_pred − V_ref in ml (> 0: over-segmentation)")
    lines += [f"- note: {n}" for n in cmp.notes]
    head = ["class", "group", "method", "cases"]
    for key in metrics:
        title = METRIC_TITLES[key] + (f"@{ev.tolerance:g} mm" if key == "NSD" else "")
        head += [f"{title} mean [{res.percent} CI]", f"p {METRIC_TITLES[key]}"]
    lines += [
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] * 3 + ["---:"] + ["---", "---:"] * len(metrics)) + "|",
    ]
    by_key = {(r["class"], r["group"], r["method"], r["metric"]): r for r in rows}
    for c in ev.classes:
        for group, sel in row_sets(ev):
            for m in cmp.methods:
                cells = [str(c), group, m, str(int(sel.sum()))]
                for key in metrics:
                    r = by_key[c, group, m, key]
                    cells.append(mean_ci_cell(r["ci"], r["values"], FORMATS[key]))
                    cells.append("baseline" if m == cmp.baseline else p_cell(r["test"], alpha))
                lines.append("| " + " | ".join(cells) + " |")
    if ev.roc:
        lines += _roc_section(cmp)
    return "\n".join(lines) + "\n"


def _roc_section(cmp: Comparison) -> list[str]:
    """The AUC of detecting the positive group from the predicted volume, per class and method."""
    ev = cmp.first
    lines = [
        "",
        f"## ROC: detecting group `{ev.positive_group}` from the predicted volume",
        "",
        f"Positive group: {ev.positive_rule}. Tied volumes count 1/2 (AUC = Mann–Whitney U / (n₊·n₋)).",
        "",
        "| class | method | n₊ | n₋ | AUC |",
        "|---|---|---:|---:|---:|",
    ]
    for c in ev.classes:
        for m in cmp.methods:
            roc = cmp.evaluations[m].roc[c]
            lines.append(f"| {c} | {m} | {roc.n_positive} | {roc.n_negative} | {roc.auc:.3f} |")
    lines += ["", "![ROC](roc.png)"]
    return lines


def compare_csv(rows: list[dict]) -> str:
    """The table in long form: class, group, method, metric, cases, n, mean, ci_low, ci_high, p_value, test."""
    buf = _stdio.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["class", "group", "method", "metric", "cases", "n", "mean", "ci_low", "ci_high", "p_value", "n_paired", "test"]
    )
    for r in rows:
        ci, t = r["ci"], r["test"]
        w.writerow(
            [
                r["class"],
                r["group"],
                r["method"],
                r["metric"],
                r["cases"],
                r["n"],
                _g(r["mean"]),
                _g(ci.low) if ci else "",
                _g(ci.high) if ci else "",
                _g(t.p_value) if t else "",
                t.n if t else "",
                t.method if t else "",
            ]
        )
    return buf.getvalue()


def per_case_csv(cmp: Comparison) -> str:
    """Every method's per-case rows, with a method column first."""
    buf = _stdio.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    ev = cmp.first
    w.writerow(
        ["method", "case", "class", "group", "DSC", "V_ref_ml", "V_pred_ml", "dV_ml", "V_ref_vox", "V_pred_vox"]
        + (list(SURFACE_COLUMNS) if ev.hd95 is not None else [])
    )
    for m in cmp.methods:
        for row in case_rows(cmp.evaluations[m]):
            w.writerow([m, *row])
    return buf.getvalue()


def roc_csv(cmp: Comparison) -> str:
    buf = _stdio.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "class", "threshold_ml", "fpr", "tpr", "auc"])
    for m in cmp.methods:
        for c, roc in cmp.evaluations[m].roc.items():
            for t, f, p in zip(roc.thresholds, roc.fpr, roc.tpr):
                w.writerow([m, c, _g(t), _g(f), _g(p), _g(roc.auc)])
    return buf.getvalue()


def roc_png(cmp: Comparison) -> bytes:
    """One panel per class, one curve per method (Fig. 2 for several methods)."""
    Figure = require("matplotlib.figure", "eval", "the ROC figure").Figure  # no pyplot: the global backend untouched

    classes = list(cmp.first.roc)
    fig = Figure(figsize=(4.2 * len(classes), 4.4), dpi=120)
    axes = fig.subplots(1, len(classes), squeeze=False)[0]
    for ax, c in zip(axes, classes):  # styles and widths differ so that curves on top of each other show
        curves = [
            (m, cmp.evaluations[m].roc[c], dict(lw=max(3.2 - 0.5 * k, 1.0), ls=("-", "--", ":", "-.")[k % 4]))
            for k, m in enumerate(cmp.methods)
        ]
        draw_rocs(ax, curves, f"class {c}: detecting '{cmp.first.positive_group}' from predicted volume", fontsize=9)
    return png_bytes(fig)


def write_comparison(
    cmp: Comparison, out_dir, *, resampling: Resampling | None = None, spacing_source: str = ""
) -> list[Path]:
    """compare.md, compare.csv, per_case.csv and, with a ROC, roc.csv + roc.png; each written atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = compare_rows(cmp, resampling)
    files: dict[str, str | bytes] = {
        "compare.md": compare_markdown(cmp, rows, resampling, spacing_source=spacing_source),
        "compare.csv": compare_csv(rows),
        "per_case.csv": per_case_csv(cmp),
    }
    if cmp.first.roc:
        files["roc.csv"] = roc_csv(cmp)
        files["roc.png"] = roc_png(cmp)
    for name, data in files.items():
        atomic_write(out / name, data)
    return [out / name for name in files]
