"""``phidice explain``: what Φ, ε and the batch size do to the Eq. 4 gradient of empty maps."""

from __future__ import annotations

import argparse
import json


def _eps(text: str):
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "explain",
        help="Eq. 4 gradient of empty vs non-empty maps for a Φ, ε and batch size",
        description="Show the Eq. 4 gradient ∂DL/∂ỹ at y=0 and y=1 voxels of non-empty maps and at y=0 voxels of "
        "empty maps, computed by phidice.dice_gradient on synthetic batches with your volumes, and "
        "flag classes whose empty maps get < 1% of a non-empty map's y=0 gradient.",
    )
    _add_volumes(p.add_argument_group("volumes"))
    _add_loss(p.add_argument_group("the loss"))
    _add_label_files(p.add_argument_group("label files"))
    p.add_argument("--plot", default=None, metavar="OUT.png", help="write the Eq. 5 picture to this PNG")
    p.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    p.set_defaults(func=run)
    return p


def _add_volumes(g) -> None:
    """What is explained: label files to measure, or the volumes themselves."""
    g.add_argument(
        "labels",
        nargs="*",
        metavar="LABELS",
        help="label files, directories or globs to measure volumes from (or use --volume)",
    )
    g.add_argument(
        "--volume",
        type=float,
        nargs="+",
        default=None,
        metavar="V",
        help="typical foreground volume of a non-empty map per class, in voxels",
    )
    g.add_argument(
        "--predicted-volume",
        type=float,
        nargs="+",
        default=None,
        metavar="P",
        help="predicted volume per class (default: the target volume, with 50%% overlap)",
    )


def _add_loss(g) -> None:
    """The loss and its options: Φ, ε, batch size, the Tversky/Jaccard indices, the intent."""
    g.add_argument("--phi", default="I", help="Φ: I, CI, BI or BCI (default I)")
    g.add_argument(
        "--eps",
        type=_eps,
        nargs="+",
        default=[1e-5],
        help="ε: one number, one per class, or 'auto' for ε = E[Σ_φ y] (default 1e-5)",
    )
    g.add_argument("--batch-size", type=int, default=2, help="batch size B (default 2)")
    g.add_argument(
        "--loss",
        choices=("dice", "tversky", "jaccard"),
        default="dice",
        help="the loss whose gradient is shown (default dice)",
    )
    g.add_argument("--alpha", type=float, default=0.5, help="Tversky: weight of false positives (default 0.5)")
    g.add_argument("--beta", type=float, default=0.5, help="Tversky: weight of false negatives (default 0.5)")
    g.add_argument("--gamma", type=float, default=1.0, help="focal Tversky exponent (default 1)")
    g.add_argument(
        "--intent",
        choices=("missing", "empty"),
        default=None,
        help="recommend Φ and ε to ignore missing labels or to learn empty maps",
    )


def _add_label_files(g) -> None:
    """How label files are read."""
    g.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="number of classes C of the label files (default: largest label + 1)",
    )
    g.add_argument("--ignore-index", type=int, default=None, help="label of the label files that counts for no class")
    g.add_argument(
        "--target-spacing",
        type=float,
        nargs="+",
        default=None,
        metavar="MM",
        help="voxel size of the training grid (volumes are measured in its voxels)",
    )
    g.add_argument("--include-background", action="store_true", help="also explain label 0")
    g.add_argument("--workers", type=int, default=None, help="reader threads (default min(2, CPUs))")


def run(args) -> int:
    from phidice.diagnostics.explain import explain

    if bool(args.labels) == (args.volume is not None):
        raise ValueError("give label files (LABELS...) or --volume V [V ...], not both and not neither")
    if "auto" in args.eps:
        if len(args.eps) != 1:
            raise ValueError("--eps auto stands alone (it picks ε = E[Σ_φ y] for every class)")
        eps = "auto"
    else:
        eps = args.eps[0] if len(args.eps) == 1 else args.eps
    result = explain(
        phi=args.phi,
        eps=eps,
        batch_size=args.batch_size,
        volumes=args.volume,
        labels=args.labels or None,
        num_classes=args.num_classes,
        predicted_volume=args.predicted_volume,
        intent=args.intent,
        include_background=args.include_background,
        ignore_index=args.ignore_index,
        target_spacing=args.target_spacing,
        workers=args.workers,
        progress=bool(args.labels) and not args.json,
        plot=args.plot,
        loss=args.loss,
        alpha=args.alpha,
        beta=args.beta,
        gamma=args.gamma,
    )
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.to_markdown())
    return 0
