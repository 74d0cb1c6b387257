"""Add a configuration with a ``"phidice"`` entry (and optionally another batch size) to an nnU-Net plans file.

The new configuration inherits from an existing one (nnU-Net's ``inherits_from``), so it trains on the same
preprocessed data, and its runs get their own results folder
(``<trainer>__<plans>__<new configuration>``). The options are checked as the trainers check them before the
file is written (atomically).
"""

from __future__ import annotations

import json
from pathlib import Path

from phidice.integrations.nnunet.loss import checked_options
from phidice.integrations.nnunet.task import NNUNetTask
from phidice.io import atomic_write


def add_configuration(
    dataset_dir,
    *,
    base: str,
    name: str,
    plans: str = "nnUNetPlans",
    options: dict | None = None,
    batch_size: int | None = None,
    missing: str | None = None,
    force: bool = False,
) -> Path:
    """Write configuration ``name`` (inheriting from ``base``) into ``<dataset_dir>/<plans>.json``; returns the file."""
    dataset_dir = Path(dataset_dir)
    path = dataset_dir / f"{plans}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"plans file not found: {str(path)!r} (run nnUNetv2_plan_and_preprocess first, or pass -p)"
        )
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
    configs = data.get("configurations")
    if not isinstance(configs, dict) or base not in configs:
        raise ValueError(f"{path}: no configuration {base!r} (have {', '.join(configs or {})})")
    if not name or not all(ch.isalnum() or ch in "_-" for ch in name):
        raise ValueError(f"configuration name {name!r}: use letters, digits, '_' and '-'")
    if name in configs and not force:
        raise ValueError(f"{path}: configuration {name!r} exists (use --force to replace it)")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch size must be an integer ≥ 1; got {batch_size!r}")
    options = dict(options or {})

    # the configuration as nnU-Net will resolve it, to check the options against its batch_dice and labels
    resolved = _resolve(configs, base)
    dataset_json = dataset_dir / "dataset.json"
    if not dataset_json.is_file():
        raise FileNotFoundError(f"{dataset_dir} has no dataset.json (not an nnU-Net preprocessed dataset folder)")
    labels = json.loads(dataset_json.read_text(encoding="utf-8")).get("labels")
    task = NNUNetTask.from_label_dict(labels, batch_dice=bool(resolved.get("batch_dice")), where=str(dataset_json))
    merged = {**(resolved.get("phidice") or {}), **options}
    checked_options(merged, task, missing=missing, source=f"plans file {str(path)!r}, configuration {name!r}")

    entry: dict = {"inherits_from": base}
    if batch_size is not None:
        entry["batch_size"] = batch_size
    entry["phidice"] = merged
    configs[name] = entry
    atomic_write(path, json.dumps(data, indent=4, sort_keys=False) + "\n")
    return path


def _resolve(configs: dict, name: str, seen=()) -> dict:
    if name in seen:
        raise ValueError(f"circular inherits_from: {' → '.join((*seen, name))}")
    conf = dict(configs[name])
    parent = conf.get("inherits_from")
    if parent is None:
        return conf
    if parent not in configs:
        raise ValueError(f"configuration {name!r} inherits from {parent!r}, which does not exist")
    out = _resolve(configs, parent, (*seen, name))
    out.update(conf)
    return out
