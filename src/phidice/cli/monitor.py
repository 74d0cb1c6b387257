"""``phidice monitor plot LOG``: a GradientMonitor's JSON-lines record → a PNG of its curves per class."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "monitor",
        help="plot a GradientMonitor record (JSON lines of compute() results)",
        description="Work with the record of a phidice.GradientMonitor: JSON lines, one compute() or epoch_end() "
        "result each (phidice.diagnostics.monitor_plot.write_history writes them).",
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    plot = sub.add_parser(
        "plot",
        help="curves per class over epochs (or steps) as a PNG",
        description="Plot empty_predicted_volume, empty_gradient_share, empty_subset_fraction "
        "and nonempty_dice per class against the records' epoch (or step).",
    )
    plot.add_argument("log", metavar="LOG", help="the JSON-lines file")
    plot.add_argument("-o", "--output", default=None, metavar="PNG", help="the PNG (default: LOG with .png)")
    plot.add_argument(
        "--values",
        nargs="+",
        default=None,
        metavar="NAME",
        help="values to plot (default: the four above; also unannotated_fraction)",
    )
    plot.add_argument("--ml", action="store_true", help="predicted volume in ml (records made with a spacing)")
    plot.set_defaults(func=run)
    return p


def run(args) -> int:
    from pathlib import Path

    from phidice.diagnostics.monitor import VALUES
    from phidice.diagnostics.monitor_plot import PLOTTED, plot_history, read_history

    values = tuple(args.values or PLOTTED)
    unknown = [v for v in values if v not in VALUES]
    if unknown:
        raise ValueError(f"--values: unknown {unknown}; choose from {list(VALUES)}")
    records = read_history(args.log)
    out = Path(args.output) if args.output else Path(args.log).with_suffix(".png")
    plot_history(records, out, values, ml=args.ml)
    print(f"{len(records)} records → {out}")
    return 0
