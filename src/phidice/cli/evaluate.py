"""``phidice evaluate``: hard Dice, volumes and ΔV per case and class from two folders of label files,
summaries per class and group, and the ROC of detecting a group from the predicted volume (Fig. 2)."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="Dice, ΔV and volume ROC of prediction files against reference files",
        description="Match prediction and reference label files by name (suffixes .nii.gz/.nii/.nrrd/.nhdr/.mha/"
                    ".mhd removed), score every case and class, and write per_case.csv, summary.md and, with "
                    "--groups, roc.csv and roc.png (AUC of detecting the positive group from predicted volume).",
    )
    p.add_argument("--pred", required=True, metavar="DIR", help="folder of predicted label maps")
    p.add_argument("--gt", required=True, metavar="DIR", help="folder of reference label maps")
    p.add_argument("--groups", metavar="CSV", default=None,
                   help="CSV with header 'case,group' (e.g. HGG/LGG): per-group summaries and the volume ROC")
    p.add_argument("--positive-group", metavar="NAME", default=None,
                   help="group to detect in the ROC (default with two groups: the one with the larger mean "
                        "reference volume, i.e. the always-labelled group; with more groups: one-vs-rest, "
                        "required)")
    sp = p.add_mutually_exclusive_group()
    sp.add_argument("--spacing-from-header", action="store_true",
                    help="voxel size from each file's header (the default); pairs must agree")
    sp.add_argument("--spacing", type=float, nargs="+", metavar="MM", default=None,
                    help="voxel size in mm for every file, one value per axis (overrides the headers)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="number of classes C incl. background (default: largest label seen + 1)")
    p.add_argument("--empty", choices=("nan", "ratio", "one", "zero"), default="nan",
                   help="DSC when the reference is empty: nan (undefined, default), ratio (NaN only if the "
                        "prediction is empty too, else 0), one (1 if the prediction is empty too, else 0), zero")
    p.add_argument("--threshold", type=float, default=None,
                   help="binarise float probability predictions with p >= T into label 1")
    p.add_argument("--include-background", action="store_true", help="also report class 0")
    p.add_argument("--allow-missing", action="store_true",
                   help="skip cases present in only one folder (listed in the summary) instead of failing")
    p.add_argument("--out", metavar="DIR", default="phidice-evaluation", help="output folder (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from phidice.metrics.evaluate import evaluate_folders, write_outputs

    ev = evaluate_folders(
        args.pred, args.gt, groups_csv=args.groups, positive_group=args.positive_group, spacing=args.spacing,
        num_classes=args.num_classes, empty=args.empty, threshold=args.threshold,
        include_background=args.include_background, allow_missing=args.allow_missing,
        progress=not args.no_progress,
    )
    source = "from the file headers" if args.spacing is None else f"{' × '.join(f'{s:g}' for s in args.spacing)} mm " \
        "(--spacing, headers not used)"
    files = write_outputs(ev, args.out, pred_dir=args.pred, gt_dir=args.gt, spacing_source=source)
    print((files[1]).read_text())
    for note in ev.notes:
        print(f"note: {note}", file=sys.stderr)
    print("wrote " + ", ".join(str(f) for f in files))
    return 0
