"""``phidice evaluate``: hard Dice, volumes and ΔV (and HD95/NSD with ``--surface-tolerance``) per case and class
from two folders of label files, summaries per class and group with bootstrap intervals, and the ROC of detecting
a group from the predicted volume (Fig. 2). Several ``--pred`` folders compare methods: one table of mean [CI]
per method, group and class with paired p-values against a baseline, and one ROC figure."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="Dice, ΔV, HD95/NSD, volume ROC and method comparisons of prediction files against reference files",
        description="Match prediction and reference label files by name (suffixes .nii.gz/.nii/.nrrd/.nhdr/.mha/"
        ".mhd removed), score every case and class, and write per_case.csv, summary.md (with bootstrap "
        "confidence intervals) and, with --groups, roc.csv and roc.png (AUC of detecting the positive "
        "group from predicted volume). With several --pred folders (one per method): compare.md "
        "(mean [CI] per method, group and class and paired p-values against --baseline), compare.csv, "
        "per_case.csv with a method column, and one ROC figure with every method.",
    )
    _add_inputs(p.add_argument_group("inputs"))
    _add_scoring(p.add_argument_group("scoring"))
    _add_statistics(p.add_argument_group("intervals and tests"))
    p.add_argument("--out", metavar="DIR", default="phidice-evaluation", help="output folder (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)
    return p


def _add_inputs(g) -> None:
    """The folders and files to score: predictions, references, method names, groups, annotations."""
    g.add_argument(
        "--pred",
        required=True,
        nargs="+",
        metavar="DIR",
        help="folder of predicted label maps; several folders (one per method) compare the methods",
    )
    g.add_argument("--gt", required=True, metavar="DIR", help="folder of reference label maps")
    g.add_argument(
        "--method-names",
        nargs="+",
        metavar="NAME",
        default=None,
        help="one name per --pred folder (default: the folder names)",
    )
    g.add_argument(
        "--baseline",
        metavar="NAME",
        default=None,
        help="method the others are tested against (default: the first --pred folder)",
    )
    g.add_argument(
        "--groups",
        metavar="CSV",
        default=None,
        help="CSV with header 'case,group' (e.g. HGG/LGG): per-group summaries and the volume ROC",
    )
    g.add_argument(
        "--positive-group",
        metavar="NAME",
        default=None,
        help="group to detect in the ROC (default with two groups: the one with the larger mean "
        "reference volume, i.e. the always-labelled group; with more groups: one-vs-rest, "
        "required)",
    )
    g.add_argument(
        "--annotated",
        metavar="JSON",
        default=None,
        help="annotated_labels.json of a pooled dataset: score each case only on the labels it annotates "
        "(others left out, not counted as misses or empties); rows per source (from the "
        "merge_provenance.json beside it) unless --groups; 'cases scored' per label and row",
    )
    g.add_argument(
        "--allow-missing",
        action="store_true",
        help="skip cases missing from a folder (listed in the summary) instead of failing",
    )


def _add_scoring(g) -> None:
    """How a case is scored: voxel size, classes, the empty-reference convention, surface metrics."""
    sp = g.add_mutually_exclusive_group()
    sp.add_argument(
        "--spacing-from-header",
        action="store_true",
        help="voxel size from each file's header (the default); pairs must agree",
    )
    sp.add_argument(
        "--spacing",
        type=float,
        nargs="+",
        metavar="MM",
        default=None,
        help="voxel size in mm for every file, one value per axis (overrides the headers)",
    )
    g.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="number of classes C incl. background (default: largest label seen + 1)",
    )
    g.add_argument(
        "--empty",
        choices=("nan", "ratio", "one", "zero"),
        default="nan",
        help="DSC when the reference is empty: nan (undefined, default), ratio (NaN only if the "
        "prediction is empty too, else 0), one (1 if the prediction is empty too, else 0), zero; "
        "HD95/NSD follow the same convention (docs/metrics.md)",
    )
    g.add_argument(
        "--surface-tolerance",
        type=float,
        metavar="MM",
        default=None,
        help="add HD95 (mm) and the normalised surface Dice at this tolerance in mm per case and class",
    )
    g.add_argument(
        "--threshold", type=float, default=None, help="binarise float probability predictions with p >= T into label 1"
    )
    g.add_argument("--include-background", action="store_true", help="also report class 0")


def _add_statistics(g) -> None:
    """Bootstrap intervals and the paired test against the baseline."""
    g.add_argument(
        "--confidence",
        type=float,
        default=0.95,
        help="level of the intervals (default: %(default)s); a p-value below 1 − confidence is marked significant",
    )
    g.add_argument("--n-resamples", type=int, default=10_000, help="bootstrap resamples (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="seed of the resampling (default: %(default)s)")
    g.add_argument(
        "--ci-method",
        choices=("percentile", "bca"),
        default="percentile",
        help="bootstrap interval: percentile (default) or bca",
    )
    g.add_argument(
        "--test",
        choices=("permutation", "bootstrap"),
        default="permutation",
        help="paired test against the baseline: sign-flip permutation (default) or paired bootstrap",
    )


def run(args) -> int:
    from phidice.metrics.compare import compare_folders, write_comparison
    from phidice.metrics.evaluate import Resampling, evaluate_folders, write_outputs

    resampling = Resampling(
        n_resamples=args.n_resamples,
        confidence=args.confidence,
        seed=args.seed,
        ci_method=args.ci_method,
        test=args.test,
    )
    source = (
        "from the file headers"
        if args.spacing is None
        else f"{' × '.join(f'{s:g}' for s in args.spacing)} mm (--spacing, headers not used)"
    )
    common = dict(
        groups_csv=args.groups,
        positive_group=args.positive_group,
        spacing=args.spacing,
        num_classes=args.num_classes,
        empty=args.empty,
        threshold=args.threshold,
        include_background=args.include_background,
        allow_missing=args.allow_missing,
        surface_tolerance=args.surface_tolerance,
        progress=not args.no_progress,
    )
    if len(args.pred) > 1:
        if args.annotated is not None:
            raise ValueError("--annotated scores one --pred folder; compare methods on a pool one folder at a time")
        cmp = compare_folders(args.pred, args.gt, names=args.method_names, baseline=args.baseline, **common)
        files = write_comparison(cmp, args.out, resampling=resampling, spacing_source=source)
        notes = cmp.notes
    else:
        if args.method_names is not None or args.baseline is not None:
            raise ValueError("--method-names and --baseline compare methods: give several --pred folders")
        ev = evaluate_folders(args.pred[0], args.gt, annotated=args.annotated, **common)
        files = write_outputs(
            ev, args.out, pred_dir=args.pred[0], gt_dir=args.gt, spacing_source=source, resampling=resampling
        )
        notes = ev.notes
    print(files[0 if len(args.pred) > 1 else 1].read_text())
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print("wrote " + ", ".join(str(f) for f in files))
    return 0
