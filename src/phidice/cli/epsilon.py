"""``phidice epsilon``: the heuristic ε = E[Σ_φ y] per class from label files (Sect. 2.3, Eq. 5)."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "epsilon",
        help="heuristic ε = E[Σ_φ y] per class from label files",
        description="Estimate the paper's ε = E[Σ_φ y] (mean foreground volume per subset φ) for every class of a "
        "set of label maps, in voxels of the training grid (use --target-spacing when the network "
        "trains on resampled images).",
    )
    p.add_argument(
        "labels",
        nargs="+",
        metavar="LABELS",
        help="label files (.nii, .nii.gz, .nrrd, .mha, .mhd), directories or glob patterns",
    )
    p.add_argument("--num-classes", type=int, default=None, help="number of classes C (default: largest label + 1)")
    p.add_argument(
        "--target-spacing",
        type=float,
        nargs="+",
        default=None,
        metavar="MM",
        help="voxel size of the training grid, one value per axis (e.g. 2 2 2)",
    )
    p.add_argument("--positives-only", action="store_true", help="average over images containing the class only")
    p.add_argument("--ignore-index", type=int, default=None, help="label that counts for no class")
    p.add_argument("--phi", default="I", help="Φ: I, CI, BI or BCI (BI/BCI: expected volume per batch)")
    p.add_argument("--batch-size", type=int, default=1, help="batch size B, used by Φ = BI/BCI")
    p.add_argument("--workers", type=int, default=None, help="reader threads (default min(2, CPUs))")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from phidice.epsilon import epsilon_stats

    stats = epsilon_stats(
        args.labels,
        num_classes=args.num_classes,
        phi=args.phi,
        positives_only=args.positives_only,
        ignore_index=args.ignore_index,
        target_spacing=args.target_spacing,
        batch_size=args.batch_size,
        workers=args.workers,
        progress=not args.no_progress,
    )
    if args.json:
        out = stats.to_dict()
        out["target_spacing"] = args.target_spacing
        out["epsilon"] = [float(e) for e in stats.epsilon]
        print(json.dumps(out, indent=2))
    else:
        print(stats.to_markdown())
        where = (
            f" at {' × '.join(f'{s:g}' for s in args.target_spacing)} mm"
            if args.target_spacing
            else " (voxels of the files' own grids)"
        )
        print(f"\nε in voxels{where}; pass it per class as DiceLoss(eps=[...]).")
    return 0
