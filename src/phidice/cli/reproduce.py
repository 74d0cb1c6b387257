"""``phidice reproduce``: the paper's experiments (Table 1, Fig. 2, Fig. 3) on embedded or your own data."""

from __future__ import annotations

import argparse


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 1,2,4,8; got {text!r}") from err
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"batch sizes must be integers ≥ 1; got {text!r}")
    return values


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "reproduce",
        help="run the paper's experiments (I, BI, I_ε, leaf, marginal) and write a report",
        description="Train a small 2D U-Net with Φ = I, BI and I_ε (× batch sizes × full/partial labels; "
        "leaf and marginal Dice for the multiclass task) and write report.md (Table 1 with the "
        "paper's numbers beside ours, automatic pattern checks), results.json, roc.png and "
        "examples.png. Default: a quick grid on semi-synthetic lesions in MNI152 brain slices "
        "shipped with nilearn (no downloads). Re-running with the same --out resumes.",
    )
    p.add_argument("--out", default=None, help="output folder (default: ./phidice-runs/<timestamp>)")
    _add_grid(p.add_argument_group("the grid"))
    _add_data(p.add_argument_group("data"))
    _add_running(p.add_argument_group("running"))
    p.set_defaults(func=run)


def _run_pooled(args, preset: str) -> int:
    from phidice.experiments.pooled import reproduce_pooled
    from phidice.experiments.run import default_out

    if args.data is not None or args.device != "cpu":
        raise ValueError("--task pooled runs on the embedded data on the CPU (no --data, no --device)")
    path = reproduce_pooled(
        args.out or default_out(),
        preset=preset,
        seed=args.seed,
        lr=args.lr,
        threads=args.threads,
        progress=not args.no_progress,
    )
    print(f"report: {path}")
    return 0


def _add_grid(g) -> None:
    """What is trained: the grid's size, batch sizes and task."""
    g.add_argument("--full", action="store_true", help="the full grid: more data and longer training")
    g.add_argument(
        "--images",
        type=int,
        default=None,
        help="training images seen per configuration (steps = ceil(images / B)); quick 1600, full 4800",
    )
    g.add_argument(
        "--iterations", type=int, default=None, help="fixed number of training steps for every B (overrides --images)"
    )
    g.add_argument("--batch-sizes", type=_ints, default=None, help="batch sizes of the binary grid, e.g. 1,2,4,8")
    g.add_argument(
        "--task",
        choices=("binary", "multiclass", "both", "pooled"),
        default="both",
        help="embedded task(s) to run (default both); 'pooled': two partially labelled sources merged "
        "as `phidice nnunet merge` does, trained full / leaf / marginal / sigmoid / naive "
        "(pooled_report.md; docs/pooling.md)",
    )


def _add_data(g) -> None:
    """The data: the embedded images or your own folder, and how they are read."""
    g.add_argument("--data", default=None, help="your own data folder instead of the embedded data")
    g.add_argument(
        "--layout",
        choices=("auto", "brats", "acdc", "plain"),
        default="auto",
        help="layout of --data (default: detected)",
    )
    g.add_argument("--slices-per-case", type=int, default=3, help="2D slices taken from each 3D volume")
    g.add_argument(
        "--missing-group",
        default=None,
        help="plain layout: the group whose labels go missing (default: the smaller one)",
    )


def _add_running(g) -> None:
    """Where and how it runs: device, threads, parallel jobs, seed, learning rate, the smoke run, progress."""
    g.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default cpu)")
    g.add_argument(
        "--threads",
        type=int,
        default=2,
        help="CPU threads in all (default 2): on the CPU, --jobs runs train at once with threads/jobs "
        "torch threads each",
    )
    g.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="runs trained at once on the CPU, each in its own process (default: --threads, one thread "
        "each; 1 on a GPU and under torchrun)",
    )
    g.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the data, the initial weights and the batch order (default: %(default)s)",
    )
    g.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (cosine-decayed; default 1e-3)")
    g.add_argument(
        "--smoke",
        action="store_true",
        help="a tiny grid that runs in seconds: checks an install, its numbers mean nothing",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    from phidice.experiments.run import reproduce

    if args.slices_per_case < 1:
        raise ValueError(f"--slices-per-case must be ≥ 1; got {args.slices_per_case}")
    preset = "smoke" if args.smoke else ("full" if args.full else "quick")
    if args.task == "pooled":
        return _run_pooled(args, preset)
    tasks = ("binary", "multiclass") if args.task == "both" else (args.task,)
    from phidice import distributed

    joined = distributed.init_from_env(args.device)  # under torchrun: every rank its share of each batch
    rank = distributed.get_rank()
    try:
        path = reproduce(
            args.out,
            preset=preset,
            images=args.images,
            iterations=args.iterations,
            batch_sizes=args.batch_sizes,
            tasks=tasks,
            data=args.data,
            layout=args.layout,
            device=args.device,
            threads=args.threads,
            seed=args.seed,
            lr=args.lr,
            progress=not args.no_progress,
            slices_per_case=args.slices_per_case,
            missing_group=args.missing_group,
            jobs=args.jobs,
        )
    finally:
        if joined:
            distributed.dist.destroy_process_group()
    if rank == 0:
        print(f"report: {path}")
    return 0
