"""``phidice nnunet``: the nnU-Net v2 trainers' folder, the paper's partial-label datasets, and loss
configurations for the trainers (see docs/nnunet.md)."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "nnunet",
        help="nnU-Net v2 trainers: trainers-path, make-partial, add-config, merge",
        description="nnU-Net v2 integration (needs nnunetv2 >= 2.8: pip install phidice[nnunet]). See docs/nnunet.md.",
    )
    sub = p.add_subparsers(dest="nnunet_command", metavar="COMMAND")

    tp = sub.add_parser(
        "trainers-path",
        help="print the folder to put in nnUNet_extTrainer",
        description="Print the folder of phidice's trainer modules, for "
        "`export nnUNet_extTrainer=$(phidice nnunet trainers-path)`.",
    )
    tp.set_defaults(func=run_trainers_path)
    _add_make_partial(sub)
    _add_add_config(sub)
    _add_merge(sub)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    return p


def _add_make_partial(sub) -> None:
    mp = sub.add_parser(
        "make-partial",
        help="write the empty-label and missing-label datasets derived from a raw dataset",
        description="From an nnU-Net raw dataset and a 'case,group' CSV, write two new raw datasets next to it: "
        "(1) the labels of the chosen group's cases with the chosen labels replaced by background "
        "(empty-label set-up), (2) the same plus annotated_labels.json (missing-label set-up, for "
        "nnUNetTrainerPhiDice_Leaf/_Marginal). The source dataset is only read.",
    )
    mp.add_argument(
        "dataset", metavar="DATASET", help="raw dataset folder, or its id / DatasetXXX_Name under $nnUNet_raw"
    )
    mp.add_argument("--groups", required=True, metavar="CSV", help="CSV with header 'case,group' (e.g. HGG/LGG)")
    mp.add_argument("--group", required=True, help="group whose labels are removed (e.g. LGG)")
    mp.add_argument(
        "--labels",
        nargs="+",
        default=None,
        metavar="LABEL",
        help="labels to remove in that group: values or dataset.json names (default: every foreground label)",
    )
    mp.add_argument("--empty-id", type=int, required=True, help="dataset id of the empty-label set-up")
    mp.add_argument("--missing-id", type=int, required=True, help="dataset id of the missing-label set-up")
    mp.add_argument("--empty-name", default=None, help="its name (default <source>_empty<group>)")
    mp.add_argument("--missing-name", default=None, help="its name (default <source>_missing<group>)")
    mp.add_argument("--out", default=None, metavar="DIR", help="where to write them (default: next to the source)")
    mp.add_argument(
        "--images",
        choices=("copy", "hardlink", "symlink"),
        default="copy",
        help="how the new datasets get the (unchanged) images (default: %(default)s)",
    )
    mp.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    mp.set_defaults(func=run_make_partial)


def _add_add_config(sub) -> None:
    ac = sub.add_parser(
        "add-config",
        help="add a configuration with phidice loss options to a plans file",
        description="Add configuration NAME to <preprocessed dataset>/<plans>.json: it inherits from BASE (same "
        "preprocessed data), may change the batch size, and holds a 'phidice' entry with the loss "
        "options read by the phidice trainers. Train it with `nnUNetv2_train DATASET NAME FOLD -tr "
        "nnUNetTrainerPhiDice`; its results get their own folder.",
    )
    ac.add_argument(
        "dataset",
        metavar="DATASET",
        help="preprocessed dataset folder, or its id / DatasetXXX_Name under $nnUNet_preprocessed",
    )
    ac.add_argument(
        "-c", "--base", required=True, metavar="BASE", help="configuration to inherit from (e.g. 3d_fullres)"
    )
    ac.add_argument("--name", required=True, help="name of the new configuration (e.g. 3d_fullres_BI_b2)")
    ac.add_argument("-p", "--plans", default="nnUNetPlans", help="plans identifier (default: %(default)s)")
    ac.add_argument("--batch-size", type=int, default=None, help="batch size of the new configuration")
    ac.add_argument("--phi", default=None, help="Φ: auto, I, CI, BI, BCI")
    ac.add_argument(
        "--eps",
        nargs="+",
        default=None,
        metavar="E",
        help="ε: one number, one per output channel, or 'auto' (measured on training patches)",
    )
    ac.add_argument("--eps-nr", nargs="+", default=None, metavar="E", help="ε of the numerator only")
    ac.add_argument("--eps-dr", nargs="+", default=None, metavar="E", help="ε of the denominator only")
    ac.add_argument("--eps-empty", nargs="+", default=None, metavar="E", help="ε for subsets with an empty target")
    ac.add_argument("--lambda-dice", type=float, default=None, help="weight of the Dice term (default 1)")
    ac.add_argument("--lambda-ce", type=float, default=None, help="weight of the cross-entropy (0: Dice only)")
    ac.add_argument(
        "--include-background", choices=("true", "false"), default=None, help="Dice over the background channel too"
    )
    ac.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="any other option, e.g. --set empty='\"skip\"' --set eps_batches=200 (repeatable)",
    )
    ac.add_argument("--force", action="store_true", help="replace an existing configuration of that name")
    ac.set_defaults(func=run_add_config)


def _add_merge(sub) -> None:
    mg = sub.add_parser(
        "merge",
        help="pool partially labelled raw datasets into one, labels united by name",
        description="Pool nnU-Net v2 raw datasets into $nnUNet_raw/DatasetNNN_NAME: labels united by name "
        "(case-insensitive; background 0, then the labels in order of first appearance), label maps "
        "rewritten with the merged values, images hard-linked (or copied), colliding case ids "
        "prefixed with the source tag and '__' (D701__case_001), plus annotated_labels.json (which "
        "labels each case annotates, for nnUNetTrainerPhiDice_Leaf/_Marginal) and "
        "merge_provenance.json. Sources are only read; an interrupted merge leaves nothing. "
        "See docs/pooling.md.",
    )
    mg.add_argument(
        "sources",
        nargs="+",
        metavar="SRC",
        help="raw dataset: a folder, an id (701) or a name (Dataset701_Liver) under $nnUNet_raw",
    )
    mg.add_argument("--id", type=int, required=True, dest="dataset_id", help="id of the merged dataset")
    mg.add_argument("--name", required=True, help="name of the merged dataset (DatasetNNN_NAME)")
    mg.add_argument(
        "--labels",
        default=None,
        metavar="MAP.json",
        help="aliases, coarse labels (a source label = union of merged labels), dataset-specific "
        "labels, per-source label names, merged order (docs/pooling.md)",
    )
    mg.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything (label values included), print the label table and case count, write nothing",
    )
    mg.add_argument("-j", "--jobs", type=int, default=1, help="parallel workers (default: %(default)s)")
    mg.add_argument("--copy", action="store_true", help="copy the images instead of hard-linking them")
    mg.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    mg.set_defaults(func=run_merge)


def run_merge(args) -> int:
    from phidice.integrations.nnunet import merge_datasets

    summary = merge_datasets(
        args.sources,
        dataset_id=args.dataset_id,
        name=args.name,
        labels=args.labels,
        dry_run=args.dry_run,
        jobs=args.jobs,
        images="copy" if args.copy else "link",
        progress=not args.no_progress,
    )
    print(summary.text())
    return 0


def run_trainers_path(args) -> int:
    from phidice.integrations.nnunet import trainers_path  # without nnU-Net: an ImportError that says what to install

    print(trainers_path())
    return 0


def run_make_partial(args) -> int:
    from phidice.integrations.nnunet.partial import make_partial, resolve_dataset

    src = resolve_dataset(args.dataset, "nnUNet_raw")
    result = make_partial(
        src,
        args.groups,
        args.group,
        args.labels,
        empty_id=args.empty_id,
        missing_id=args.missing_id,
        empty_name=args.empty_name,
        missing_name=args.missing_name,
        out_root=args.out,
        images=args.images,
        progress=not args.no_progress,
    )
    print(result.summary())
    return 0


def _eps_arg(values, name: str):
    if values is None:
        return None
    if len(values) == 1 and values[0] == "auto":
        return "auto"
    try:
        nums = [float(v) for v in values]
    except ValueError:
        raise ValueError(f"--{name} takes numbers (or 'auto' for --eps); got {' '.join(values)}") from None
    return nums[0] if len(nums) == 1 else nums


def run_add_config(args) -> int:
    from phidice.integrations.nnunet.partial import resolve_dataset
    from phidice.integrations.nnunet.plans import add_configuration

    options: dict = {}
    for key, value in (
        ("phi", args.phi),
        ("eps", _eps_arg(args.eps, "eps")),
        ("eps_nr", _eps_arg(args.eps_nr, "eps-nr")),
        ("eps_dr", _eps_arg(args.eps_dr, "eps-dr")),
        ("eps_empty", _eps_arg(args.eps_empty, "eps-empty")),
        ("lambda_dice", args.lambda_dice),
        ("lambda_ce", args.lambda_ce),
    ):
        if value is not None:
            if key != "eps" and value == "auto":
                raise ValueError(f"--{key.replace('_', '-')} takes numbers, not 'auto'")
            options[key] = value
    if args.include_background is not None:
        options["include_background"] = args.include_background == "true"
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=JSON; got {item!r}")
        try:
            options[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"--set {key.strip()}: {text!r} is not JSON (strings need quotes: '\"skip\"')") from None
    folder = resolve_dataset(args.dataset, "nnUNet_preprocessed")
    path = add_configuration(
        folder,
        base=args.base,
        name=args.name,
        plans=args.plans,
        options=options,
        batch_size=args.batch_size,
        force=args.force,
    )
    dataset = folder.name
    print(f"wrote configuration {args.name!r} (inherits from {args.base!r}) to {path}")
    print(
        f"  nnUNetv2_train {dataset} {args.name} FOLD -tr nnUNetTrainerPhiDice"
        f"{'' if args.plans == 'nnUNetPlans' else ' -p ' + args.plans}"
    )
    print(
        f"  nnUNetv2_predict -i IN -o OUT -d {dataset} -c {args.name} -f FOLD -tr nnUNetTrainerPhiDice"
        f"{'' if args.plans == 'nnUNetPlans' else ' -p ' + args.plans}"
    )
    return 0
