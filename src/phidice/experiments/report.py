"""report.md (Table-1-style tables, the paper's numbers beside ours, automatic pattern checks), results.json,
roc.png (Fig. 2) and examples.png (Fig. 3) from the results of a grid.

The pattern checks use fixed thresholds, written down before any run (below); they report
what the numbers are, and say "no" when the data do not show a claim. Means carry 95 % bootstrap intervals
over the validation images, and each check says whether the difference it rests on is significant: a paired
test over the same validation images (sign-flip permutation test, p < 0.05), as the paper tests partial
against full labelling.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from phidice.experiments.grid import atomic_write_json
from phidice.experiments.paper import PAPER_AUC, PAPER_GROUPS, paper_value
from phidice.experiments.train import LABEL
from phidice.io import atomic_write
from phidice.metrics.evaluate import Resampling

RESAMPLING = Resampling()  # 10,000 resamples, seed 0, percentile intervals, sign-flip permutation test
ALPHA = 1 - RESAMPLING.confidence

# thresholds of the claims of Sect. 4 of the paper, fixed before any run
KEEP_WITHIN = 0.10  # I and BI(B=1): missing-group DSC within this of full labelling
DROP_BELOW = 0.30  # BI(B≥2) and I_ε: missing-group DSC below this
DV_FRACTION = 0.70  # ... and ΔV ≤ −0.7 × mean reference volume of the missing group ("near −V̄")
AUC_MIN = 0.90  # ... and volume-based detection of the labelled group with AUC ≥ this
AGREE_WITHIN = 0.05  # full labelling: the configs' DSC agree within this (per group and B)
# the GradientMonitor over training (partial labelling, the missing class, last epoch)
EMPTY_SHRINK = 0.25  # BI(B≥2) and I_ε: predicted volume on empty maps ≤ this × that of I at the same B
EMPTY_KEEP = 0.5  # I: predicted volume on empty maps ≥ this × its predicted volume on labelled maps


def _fmt(v, spec=".2f"):
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)


def _cell(ours, paper, spec, ci: str = ""):
    return f"{_fmt(ours, spec)}{' ' + ci if ci else ''} ({_fmt(paper, spec if spec != '+.1f' else '+.0f')})"


def _stat(result, group_index: int, what: str):
    """Mean ``what`` ('dsc' | 'dv_ml' | 'pred_ml' | 'ref_ml') of the missing class in one of the two groups."""
    groups = _ordered_groups(result)
    g = result["groups"][groups[group_index]]
    return g[what][result["missing_class"] - 1]


def _ordered_groups(result) -> tuple[str, str]:
    """(always-labelled group, missing group)."""
    miss = result["missing_group"]
    other = next(g for g in result["groups"] if g != miss)
    return other, miss


def _per_image(result, group_index: int, what: str, cls: int | None = None) -> np.ndarray | None:
    """Per-image values behind :func:`_stat` (class ``cls``, default the missing one): NaN where undefined;
    None for results saved without per-image numbers."""
    per = result.get("per_image")
    if not per:
        return None
    c = result["missing_class"] - 1 if cls is None else cls
    group = _ordered_groups(result)[group_index]
    rows = np.array([g == group for g in per["group"]], dtype=bool)
    if what == "dsc":
        v = np.array([np.nan if r[c] is None else r[c] for r in per["dsc"]], dtype=np.float64)
    elif what == "dv_ml":
        v = np.asarray(per["pred_ml"], dtype=np.float64)[:, c] - np.asarray(per["ref_ml"], dtype=np.float64)[:, c]
    else:
        v = np.asarray(per[what], dtype=np.float64)[:, c]
    return v[rows]


@functools.lru_cache(maxsize=4096)
def _mean_ci(values: bytes):
    """RESAMPLING.ci of float64 values given as bytes: each interval is bootstrapped once per report (seeded,
    the same values give the same interval; the tables and results.json share them)."""
    return RESAMPLING.ci(np.frombuffer(values, dtype=np.float64))


def _ci(values: np.ndarray | None, spec: str) -> str:
    """ "[low, high]" of the mean over the images, "[n < 2]" with fewer than two defined, "" without per-image data."""
    if values is None:
        return ""
    ci = _mean_ci(values.tobytes())
    if ci is None:
        return "[n < 2]"
    return f"[{ci.low:{spec}}, {ci.high:{spec}}]"


def _ci_bounds(values: np.ndarray | None) -> tuple[float | None, float | None]:
    ci = None if values is None else _mean_ci(values.tobytes())
    return (None, None) if ci is None else (ci.low, ci.high)


def _paired(a_run, b_run, group_index: int, what: str, label: str) -> dict:
    """Paired test of run a against run b on the same validation images of one group (a − b)."""
    out: dict[str, Any] = {
        "comparison": label,
        "difference": None,
        "ci": None,
        "p_value": None,
        "n": 0,
        "significant": None,
    }
    a, b = _per_image(a_run, group_index, what), _per_image(b_run, group_index, what)
    if a is None or b is None:
        out["note"] = "no per-image numbers"
        return out
    if a_run["per_image"]["group"] != b_run["per_image"]["group"]:
        out["note"] = "different validation images"
        return out
    t = RESAMPLING.test_pair(a, b)
    if t is None:
        out["note"] = "n < 2"
        return out
    out.update(
        difference=t.difference,
        ci=[t.low, t.high],
        p_value=t.p_value,
        n=t.n,
        significant=bool(t.p_value < ALPHA),
        note="",
    )
    return out


def _no_test(note: str) -> dict:
    return {
        "comparison": "",
        "difference": None,
        "ci": None,
        "p_value": None,
        "n": 0,
        "significant": None,
        "note": note,
    }


def _index(results: dict):
    """{(task, labelling, B, config): result}."""
    return {(r["task"], r["labelling"], r["batch_size"], r["config"]): r for r in results.values()}


def rows_for_json(results: dict) -> list[dict]:
    """One flat row per (task, config, B, labelling, group, class): every number of the tables."""
    rows = []
    for r in sorted(results.values(), key=lambda r: r["key"]):
        groups = _ordered_groups(r)
        for g, s in r["groups"].items():
            for c, name in enumerate(r["class_names"]):
                gi = groups.index(g)
                dsc_lo, dsc_hi = _ci_bounds(_per_image(r, gi, "dsc", c))
                dv_lo, dv_hi = _ci_bounds(_per_image(r, gi, "dv_ml", c))
                rows.append(
                    {
                        "task": r["task"],
                        "config": r["config"],
                        "batch_size": r["batch_size"],
                        "labelling": r["labelling"],
                        "group": g,
                        "class": name,
                        "n": s["n"],
                        "dsc": s["dsc"][c],
                        "dv_ml": s["dv_ml"][c],
                        "pred_ml": s["pred_ml"][c],
                        "ref_ml": s["ref_ml"][c],
                        "auc": r["roc"]["auc"] if c == r["missing_class"] - 1 else None,
                        "eps": r["eps"],
                        "train_seconds": r["train_seconds"],
                        "dsc_ci": None if dsc_lo is None else [dsc_lo, dsc_hi],
                        "dv_ml_ci": None if dv_lo is None else [dv_lo, dv_hi],
                    }
                )
    return rows


def check_pattern(results: dict) -> list[dict]:
    """The paper's claims as yes/no checks with the numbers behind them, and whether the difference each rests
    on is significant: a paired test over the same validation images (``test``: partial − full labelling of the
    same set-up, or the two full-labelling set-ups furthest apart; none for the AUC, not a per-image mean)."""
    idx = _index(results)
    checks: list[dict] = []

    def add(claim, ok, detail, test):
        checks.append({"claim": claim, "ok": bool(ok), "detail": detail, "test": test})

    for task in ("binary", "multiclass"):
        runs = [k for k in idx if k[0] == task]
        if not runs:
            continue
        miss = _ordered_groups(idx[runs[0]])[1]
        _keeper_checks(task, runs, idx, miss, add)
        _dropper_checks(task, runs, idx, miss, add)
        _agreement_checks(task, runs, idx, add)
    return checks


def _keeper_checks(task, runs, idx, miss, add) -> None:
    """Set-ups that should ignore missing labels (I, leaf, marginal, BI with B = 1) keep the partial group's DSC."""
    keepers = [
        k for k in runs if k[1] == "partial" and (k[3] in ("I", "leaf", "marginal") or (k[3] == "BI" and k[2] == 1))
    ]
    for k in sorted(keepers):
        full = idx.get((task, "full", k[2], k[3] if k[3] in ("I", "BI") else "I"))
        part = _stat(idx[k], 1, "dsc")
        if full is None:
            continue
        ref = _stat(full, 1, "dsc")
        add(
            f"{task}: {LABEL[k[3]]} (B={k[2]}) partial keeps the {miss} DSC within {KEEP_WITHIN} of full labelling",
            part is not None and ref is not None and part >= ref - KEEP_WITHIN,
            f"partial {_fmt(part)} vs full {_fmt(ref)}",
            _paired(idx[k], full, 1, "dsc", f"DSC partial − full {LABEL[full['config']]}"),
        )


def _dropper_checks(task, runs, idx, miss, add) -> None:
    """Set-ups that learn empty maps from missing labels (I_ε, BI with B ≥ 2): DSC, ΔV and the volume AUC."""
    droppers = [k for k in runs if k[1] == "partial" and (k[3] == "I_eps" or (k[3] == "BI" and k[2] >= 2))]
    for k in sorted(droppers):
        r = idx[k]
        full = idx.get((task, "full", k[2], k[3]))
        dsc, dv, vref, auc = _stat(r, 1, "dsc"), _stat(r, 1, "dv_ml"), _stat(r, 1, "ref_ml"), r["roc"]["auc"]
        add(
            f"{task}: {LABEL[k[3]]} (B={k[2]}) partial drops the {miss} DSC below {DROP_BELOW}",
            dsc is not None and dsc < DROP_BELOW,
            f"DSC {_fmt(dsc)}",
            _paired(r, full, 1, "dsc", "DSC partial − full") if full else _no_test("no full-labelling run"),
        )
        add(
            f"{task}: {LABEL[k[3]]} (B={k[2]}) partial: {miss} ΔV ≤ −{DV_FRACTION}·V̄ (near minus the mean volume)",
            dv <= -DV_FRACTION * vref,
            f"ΔV {dv:+.2f} ml, V̄ {vref:.2f} ml",
            _paired(r, full, 1, "dv_ml", "ΔV ml partial − full") if full else _no_test("no full-labelling run"),
        )
        add(
            f"{task}: {LABEL[k[3]]} (B={k[2]}) partial: volume-based detection AUC ≥ {AUC_MIN}",
            auc >= AUC_MIN,
            f"AUC {auc:.3f}",
            _no_test("AUC is not a per-image mean"),
        )


def _agreement_checks(task, runs, idx, add) -> None:
    """With full labelling every set-up of one batch size reaches about the same DSC."""
    for B in sorted({k[2] for k in runs if k[1] == "full"}):
        full = [idx[k] for k in runs if k[1] == "full" and k[2] == B and k[3] in ("I", "BI", "I_eps")]
        if len(full) < 2:
            continue
        for gi in (0, 1):
            vals = [_stat(r, gi, "dsc") for r in full]
            defined = [(v, r) for v, r in zip(vals, full) if v is not None]
            spread = max(v for v, _ in defined) - min(v for v, _ in defined) if defined else float("nan")
            name = _ordered_groups(full[0])[gi]
            test = _no_test("no DSC")
            if len(defined) >= 2:  # the two set-ups furthest apart
                hi, lo = max(defined, key=lambda t: t[0])[1], min(defined, key=lambda t: t[0])[1]
                test = _paired(hi, lo, gi, "dsc", f"DSC {LABEL[hi['config']]} − {LABEL[lo['config']]}")
            add(
                f"{task}: full labelling (B={B}), the configs agree on the {name} DSC within {AGREE_WITHIN}",
                bool(defined) and spread <= AGREE_WITHIN,
                ", ".join(f"{LABEL[r['config']]} {_fmt(_stat(r, gi, 'dsc'))}" for r in full),
                test,
            )


def _monitor_channel(result) -> int:
    """The output channel of the missing class (the binary task's single channel is 0)."""
    return result["missing_class"] if len(result["class_names"]) > 1 else 0


def monitor_curve(result, value: str) -> list[float]:
    """``value`` of the missing class per epoch from a run's GradientMonitor record ([] without one)."""
    c = _monitor_channel(result)
    out = []
    for record in result.get("monitor") or []:
        per = record["per_class"]
        v = (per.get(c) or per.get(str(c)) or {}).get(value)
        out.append(float("nan") if v is None else float(v))
    return out


def check_monitor(results: dict) -> list[dict]:
    """The paper's mechanism as a training curve (last epoch of the GradientMonitor, missing class, partial
    labelling): BI (B ≥ 2) and I_ε drive the predicted volume on empty maps towards 0, I does not."""
    idx = _index(results)
    checks = []
    none = _no_test("a training curve, not a per-image mean")
    for (task, lab, B, config), r in sorted(idx.items()):
        if lab != "partial" or not r.get("monitor"):
            continue
        last = monitor_curve(r, "empty_map_predicted_volume_ml")[-1]
        if config == "I":
            other = monitor_curve(r, "nonempty_predicted_volume_ml")[-1]
            checks.append(
                {
                    "claim": f"{task}: I (B={B}) partial keeps predicting on the empty maps: their predicted "
                    f"volume ≥ {EMPTY_KEEP}× that on labelled maps (last epoch)",
                    "ok": bool(last >= EMPTY_KEEP * other),
                    "detail": f"{_fmt(last, '.3g')} ml vs {_fmt(other, '.3g')} ml",
                    "test": none,
                }
            )
        elif config == "I_eps" or (config == "BI" and B >= 2):
            ref = idx.get((task, "partial", B, "I"))
            base = monitor_curve(ref, "empty_map_predicted_volume_ml")[-1] if ref and ref.get("monitor") else None
            checks.append(
                {
                    "claim": f"{task}: {LABEL[config]} (B={B}) partial drives the predicted volume on empty "
                    f"maps towards 0: ≤ {EMPTY_SHRINK}× that of I (B={B}, last epoch)",
                    "ok": base is not None and bool(last <= EMPTY_SHRINK * base),
                    "detail": f"{_fmt(last, '.3g')} ml vs I {_fmt(base, '.3g')} ml",
                    "test": none,
                }
            )
    return checks


def plot_monitor(results: dict, path: str) -> bool:
    """Per task: the missing class's predicted volume on empty maps and their share of the gradient (Eq. 4)
    per epoch, for the partial-labelling runs of I, BI and I_ε. False when no run has a monitor record."""
    rows = sorted(
        (r for r in results.values() if r["labelling"] == "partial" and r.get("monitor")),
        key=lambda r: (r["task"], list(LABEL).index(r["config"]), r["batch_size"]),
    )
    tasks = sorted({r["task"] for r in rows})
    if not rows:
        return False
    fig = Figure(figsize=(10.4, 3.8 * len(tasks)))
    axes = fig.subplots(len(tasks), 2, squeeze=False)
    for (ax_v, ax_g), task in zip(axes, tasks):
        for r in (r for r in rows if r["task"] == task):
            label = f"{LABEL[r['config']]}, B={r['batch_size']}"
            style = "--" if r["config"] == "I" or (r["config"] == "BI" and r["batch_size"] == 1) else "-"
            volume = monitor_curve(r, "empty_map_predicted_volume_ml")
            ax_v.plot(range(len(volume)), volume, style, marker=".", label=label)
            ax_g.plot(range(len(volume)), monitor_curve(r, "empty_map_gradient_share"), style, marker=".", label=label)
        name = rows[0]["class_names"][0] if task == "binary" else "missing class"
        ax_v.set(xlabel="epoch", ylabel="ml", title=f"{task}: predicted volume on empty maps ({name})")
        ax_g.set(xlabel="epoch", ylabel="share", title=f"{task}: share of Σ|∂L/∂ỹ| on empty maps (Eq. 4)")
        ax_g.set_yscale("symlog", linthresh=1e-6)
        ax_g.set_ylim(0, 1)
        ax_v.legend(fontsize=7)
    fig.tight_layout()
    _save_fig(fig, path)
    return True


def _test_cells(t: dict) -> list[str]:
    """difference [CI] (what), p, significant — or why there is no test."""
    if t["p_value"] is None:
        return [t.get("note") or "–", "–", "n/a"]
    lo, hi = t["ci"]
    return [
        f"{t['difference']:+.2f} [{lo:+.2f}, {hi:+.2f}] ({t['comparison']}, n={t['n']})",
        f"{t['p_value']:.3g}",
        "yes" if t["significant"] else "no",
    ]


def _table(results: dict, task: str, configs: list[str]) -> list[str]:
    idx = _index(results)
    keys = [k for k in idx if k[0] == task]
    if not keys:
        return []
    first = idx[keys[0]]
    g_lab, g_miss = _ordered_groups(first)
    if task == "multiclass":  # name the class that goes missing
        cname = first["class_names"][first["missing_class"] - 1]
        g_lab, g_miss = f"{cname} {g_lab}", f"{cname} {g_miss}"
    pg = PAPER_GROUPS[task]
    head = (
        ["labelling", "B"]
        + [f"DSC {g_lab} {LABEL[c]}" for c in configs]
        + [f"DSC {g_miss} {LABEL[c]}" for c in configs]
        + [f"ΔV {g_lab} {LABEL[c]}" for c in configs]
        + [f"ΔV {g_miss} {LABEL[c]}" for c in configs]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for lab in ("full", "partial"):
        for B in sorted({k[2] for k in keys if k[1] == lab}):
            cells = [lab, str(B)]
            for what, spec in (("dsc", ".2f"), ("dv_ml", "+.1f")):
                for gi in (0, 1):
                    for c in configs:
                        r = idx.get((task, lab, B, c))
                        ours = None if r is None else _stat(r, gi, what)
                        paper = paper_value(task, lab, B, c, "dsc" if what == "dsc" else "dv", gi)
                        ci = "" if r is None else _ci(_per_image(r, gi, what), spec)
                        cells.append(_cell(ours, paper, spec, ci) if r is not None else "–")
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"Cells: ours [{RESAMPLING.percent} CI over the validation images of the group] (paper); [n < 2]: too "
        f"few images for an interval. Paper groups: {pg[0]} ↔ {g_lab}, {pg[1]} ↔ {g_miss}; the paper's ΔV is in "
        "ml of 3D volumes, ours in ml of one-voxel-thick slices, so compare signs and ratios, not magnitudes."
    )
    return lines


def _auc_table(results: dict) -> list[str]:
    rows = sorted(
        (r for r in results.values() if r["labelling"] == "partial"),
        key=lambda r: (r["task"], r["config"], r["batch_size"]),
    )
    if not rows:
        return []
    lines = [
        "| task | config | B | AUC (detect the always-labelled group from predicted volume) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['task']} | {LABEL[r['config']]} | {r['batch_size']} | {r['roc']['auc']:.3f} |")
    return lines


def _class_table(results: dict) -> list[str]:
    """Multiclass, partial labelling: every class per group (the paper's I vs leaf vs marginal comparison)."""
    rows = sorted(
        (r for r in results.values() if r["task"] == "multiclass" and r["labelling"] == "partial"),
        key=lambda r: list(LABEL).index(r["config"]),
    )
    if not rows:
        return []
    names = rows[0]["class_names"]
    groups = list(_ordered_groups(rows[0]))
    head = ["config"] + [f"{n} {g}" for n in names for g in groups]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [LABEL[r["config"]]] + [
            f"{_fmt(r['groups'][g]['dsc'][c])} {_ci(_per_image(r, groups.index(g), 'dsc', c), '.2f')}".strip()
            for c in range(len(names))
            for g in groups
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"Cells: mean DSC [{RESAMPLING.percent} CI]. Paper (ACDC, I vs leaf vs marginal, no significant "
        "difference): MYO_ED 0.88, MYO_ES 0.88, LV_ED 0.96, LV_ES 0.92, RV_ED 0.93, RV_ES 0.86–0.87."
    )
    return lines


def plot_roc(results: dict, path: str) -> None:
    tasks = [
        t
        for t in ("binary", "multiclass")
        if any(r["task"] == t and r["labelling"] == "partial" for r in results.values())
    ]
    fig = Figure(figsize=(5.2 * max(len(tasks), 1), 4.8))
    axes = fig.subplots(1, max(len(tasks), 1), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = sorted(
            (r for r in results.values() if r["task"] == task and r["labelling"] == "partial"),
            key=lambda r: (r["config"], r["batch_size"]),
        )
        for r in rows:
            style = (
                "--"
                if r["config"] in ("I", "leaf", "marginal") or (r["config"] == "BI" and r["batch_size"] == 1)
                else "-"
            )
            ax.plot(
                r["roc"]["fpr"],
                r["roc"]["tpr"],
                style,
                lw=1.5,
                label=f"{LABEL[r['config']]}, B={r['batch_size']} (AUC {r['roc']['auc']:.2f})",
            )
        ax.plot([0, 1], [0, 1], ":", color="grey", lw=1)
        pos, miss = _ordered_groups(rows[0])
        ax.set(
            xlabel=f"false positive rate ({miss} called {pos})",
            ylabel=f"true positive rate ({pos})",
            title=f"{task}: detect {pos} from predicted volume\n(partial labelling)",
            xlim=(0, 1),
            ylim=(0, 1.01),
        )
        ax.legend(fontsize=7, loc="lower right")
    if not tasks:
        axes[0, 0].text(0.5, 0.5, "no partial-labelling runs", ha="center")
    fig.tight_layout()
    _save_fig(fig, path)


def _save_fig(fig, path):
    """A matplotlib Figure (no pyplot: the caller's backend and figure registry are left alone) as a PNG."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))


def plot_examples(results: dict, datasets: dict, out: str, path: str, per_group: int = 2) -> None:
    """Overlays as Fig. 3: image, ground truth, training label (partial), and the partial-labelling predictions."""
    cmap = ListedColormap([(0, 0, 0, 0), (1, 0.2, 0.2, 0.55), (0.2, 1, 0.2, 0.55), (0.3, 0.5, 1, 0.55)])
    panels = []  # (task, image index, label row, list of (title, map))
    for task, val in datasets.items():
        rows = sorted(
            (r for r in results.values() if r["task"] == task and r["labelling"] == "partial"),
            key=lambda r: (list(LABEL).index(r["config"]), r["batch_size"]),
        )
        if not rows:
            continue
        preds = {}
        for r in rows:
            f = os.path.join(out, "preds", f"{r['key']}.npz")
            if os.path.exists(f):
                preds[f"{LABEL[r['config']]} B={r['batch_size']}"] = np.load(f)["pred"]
        partial = val.partial()
        for g in _ordered_groups(rows[0]):
            for i in np.flatnonzero(val.groups == g)[:per_group]:
                maps = [("GT", val.labels[i]), ("GT train", partial.labels[i])]
                maps += [(name, p[i]) for name, p in preds.items()]
                panels.append((task, g, val.images[i, 0], maps))
    if not panels:
        return
    ncol = 1 + max(len(m) for *_, m in panels)
    fig = Figure(figsize=(1.6 * ncol, 1.7 * len(panels)))
    axes = fig.subplots(len(panels), ncol, squeeze=False)
    for row, (task, g, img, maps) in zip(axes, panels):
        row[0].imshow(img.T, cmap="gray", origin="lower")
        row[0].set_title(f"{task}: {g}", fontsize=7)
        for ax, (title, m) in zip(row[1:], maps):
            ax.imshow(img.T, cmap="gray", origin="lower")
            ax.imshow(m.T, cmap=cmap, vmin=0, vmax=3, origin="lower", interpolation="nearest")
            ax.set_title(title, fontsize=7)
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    _save_fig(fig, path)


def write_report(results: dict, out: str, *, datasets: dict | None = None, meta: dict | None = None) -> str:
    """Write report.md, results.json, roc.png and examples.png into ``out``; return the report's path."""
    meta = meta or {}
    checks = check_pattern(results) + check_monitor(results)
    atomic_write_json(
        os.path.join(out, "results.json"),
        {
            "meta": meta,
            "rows": rows_for_json(results),
            "checks": checks,
            "roc": {k: r["roc"] for k, r in results.items()},
        },
    )
    plot_roc(results, os.path.join(out, "roc.png"))
    if datasets:
        plot_examples(results, datasets, out, os.path.join(out, "examples.png"))
    md = ["# phidice reproduce: Φ and ε with missing or empty labels", ""]
    if meta:
        md += ["Run: " + ", ".join(f"{k}={v}" for k, v in meta.items() if not isinstance(v, dict)), ""]
    md += [
        "Under *partial* labelling the minority group's labels are replaced by empty maps in training; "
        "validation always uses full labels. The paper expects I (any B) and BI (B = 1) to ignore the missing "
        "labels and still segment that group, while BI (B > 1) and I_ε learn to predict empty maps for it.",
        "",
    ]
    md += _result_sections(results, datasets)
    if plot_monitor(results, os.path.join(out, "monitor.png")):
        md += [
            "## Empty maps over training (phidice.GradientMonitor)",
            "",
            "Per epoch, for the class whose labels go missing: the mean predicted volume on training images with "
            "an empty map of it, and their share of Σ|∂L/∂ỹ| (Eq. 4, from the loss's own sums; under BI an empty "
            "map shares φ with the batch). I ignores them (share ≈ 0), so what it predicts there stays; BI "
            "(B > 1) and I_ε push it towards 0 (Fig. 2 as a training curve).",
            "",
            "![monitor](monitor.png)",
            "",
        ]
    md += _pattern_section(checks)
    md += ["", "Every number of the tables is in results.json; checkpoints/ holds one model per configuration."]
    path = os.path.join(out, "report.md")
    atomic_write(path, "\n".join(md) + "\n")
    return path


def _result_sections(results: dict, datasets: dict | None) -> list[str]:
    """The tables of the report: Table 1 per task, the per-class DSC, the AUCs (Fig. 2), the examples (Fig. 3)."""
    md: list[str] = []
    for task, configs, title in (
        ("binary", ["I", "BI", "I_eps"], "Binary task (the paper's BRATS rows)"),
        (
            "multiclass",
            ["I", "BI", "I_eps", "leaf", "marginal"],
            "Multiclass task (the paper's ACDC rows), the class missing in the ES-like group",
        ),
    ):
        lines = _table(results, task, configs)
        if lines:
            md += [f"## {title}", "", *lines, ""]
    lines = _class_table(results)
    if lines:
        md += ["## Multiclass, partial labelling: DSC of every class", "", *lines, ""]
    lines = _auc_table(results)
    if lines:
        md += [
            "## Volume-based detection (Fig. 2)",
            "",
            *lines,
            "",
            f"Paper: AUC {PAPER_AUC}.",
            "",
            "![ROC](roc.png)",
            "",
        ]
    if datasets:
        md += ["## Examples (Fig. 3)", "", "![examples](examples.png)", ""]
    return md


def _pattern_section(checks: list[dict]) -> list[str]:
    """The paper's claims as a table: reproduced or not, the numbers, the paired test of each."""
    md: list[str] = []
    md += ["## Pattern reproduced?", ""]
    if checks:
        md += [
            "| claim | reproduced | numbers | difference [95 % CI] (compared, n) | p | significant |",
            "|---|---|---|---|---:|---|",
        ]
        md += [
            f"| {c['claim']} | {'yes' if c['ok'] else 'no'} | {c['detail']} | "
            + " | ".join(_test_cells(c["test"]))
            + " |"
            for c in checks
        ]
        n_ok = sum(c["ok"] for c in checks)
        n_sig = sum(bool(c["test"]["significant"]) for c in checks)
        n_tested = sum(c["test"]["p_value"] is not None for c in checks)
        md += [
            "",
            f"**{n_ok} of {len(checks)} claims reproduced.** {n_sig} of the {n_tested} tested differences are "
            f"significant (p < {ALPHA:g}).",
        ]
        md += [
            "",
            "Significance: paired two-sided sign-flip permutation test of the mean per-image difference over the "
            f"same validation images ({RESAMPLING.n_resamples} random sign patterns, or all of them when fewer; "
            f"seed {RESAMPLING.seed}), the interval a {RESAMPLING.ci_method} bootstrap of that mean. The paper "
            'expects the "within" claims not to be significant and the drops to be. p-values are not adjusted '
            "for the number of checks.",
        ]
        if n_ok < len(checks):
            md += [
                "",
                "Claims marked 'no' are not shown by this run's data and settings; the numbers are reported "
                "as measured (the evaluation is fixed, only training length and data can be changed).",
            ]
    else:
        md += ["This grid has no pairs of runs that the claims compare."]
    return md
