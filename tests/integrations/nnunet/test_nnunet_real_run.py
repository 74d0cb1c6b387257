"""Real nnU-Net runs on the CPU: raw dataset → ``nnUNetv2_plan_and_preprocess`` → ``nnUNetv2_train -tr``
(phidice trainers, a few iterations) → ``nnUNetv2_predict`` → ``phidice evaluate``.

* 2D: nnUNetTrainerPhiDice (Φ = BI from the 2d configuration's batch_dice), then nnUNetTrainerPhiDice_Ieps on a
  configuration added with ``phidice nnunet add-config`` (ε measured on the loader's patches);
* 3D: ``phidice nnunet make-partial`` (class "spot" not annotated in group B) → nnUNetTrainerPhiDice_Leaf;
* 3D: ``phidice nnunet merge`` of two raw datasets (one labels "blob" and "spot", the other only "Blob") →
  plan/preprocess → nnUNetTrainerPhiDice_Leaf → predict → ``phidice evaluate``;
* 3D with ``nnUNet_compile=1``: nnU-Net never compiles on the CPU (``_do_i_compile``), so a short trainer keeps
  its rule without the CPU exclusion; nnU-Net compiles the network and the phidice trainer its loss levels.

Marked ``slow`` and ``nnunet_real``: they need nnU-Net's full stack and its console scripts next to this
Python, and take minutes. ``make test-nnunet`` builds that environment and runs them (see README). The short
trainers live in ``ext_trainers/`` (nnU-Net finds them through ``nnUNet_extTrainer``).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("phidice.integrations.nnunet", reason="needs nnunetv2 >= 2.8 (pip install phidice[nnunet])")

import _nnunet_helpers as H
import _synthetic

import phidice

BIN = Path(sys.executable).parent
EXT_TRAINERS = Path(__file__).parent / "ext_trainers"


def _why_not() -> str:
    missing = H.full_nnunet_missing()
    if missing:
        return missing
    if not (BIN / "nnUNetv2_train").exists():
        return f"nnU-Net's console scripts are not next to {sys.executable} (run `make test-nnunet`)"
    return ""


pytestmark = [pytest.mark.slow, pytest.mark.nnunet_real, pytest.mark.skipif(bool(_why_not()), reason=_why_not() or "-")]
TIMINGS: dict = {}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from phidice.integrations.nnunet import trainers_path

    root = tmp_path_factory.mktemp("nnunet_real")
    env = dict(os.environ)
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / key).mkdir()
        env[key] = str(root / key)
    env.update(
        nnUNet_n_proc_DA="1",
        nnUNet_def_n_proc="1",
        nnUNet_compile="f",
        OMP_NUM_THREADS="1",
        nnUNet_extTrainer=os.pathsep.join([trainers_path(), str(EXT_TRAINERS)]),
    )
    yield root, env
    print("\nnnU-Net real-run timings (s): " + json.dumps({k: round(v, 1) for k, v in TIMINGS.items()}))


def run(name: str, cmd: list, env: dict, root: Path, timeout: int = 1200) -> str:
    """Run one command, keep its output in <root>/logs/<name>.log, fail with its tail."""
    (root / "logs").mkdir(exist_ok=True)
    log = root / "logs" / f"{name}.log"
    print(f"\n$ {' '.join(map(str, cmd))}", flush=True)
    start = time.time()
    with open(log, "w") as f:
        proc = subprocess.run(
            [str(c) for c in cmd], env=env, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, cwd=root
        )
    TIMINGS[name] = time.time() - start
    text = log.read_text(errors="replace")
    print(f"  ({TIMINGS[name]:.0f} s, exit {proc.returncode}, log {log})", flush=True)
    assert proc.returncode == 0, f"{name} failed (exit {proc.returncode}); last lines of {log}:\n{text[-4000:]}"
    return text


def read_per_case(eval_dir: Path) -> list[dict]:
    with open(eval_dir / "per_case.csv", newline="") as f:
        return list(csv.DictReader(f))


def mean_dsc(rows: list[dict], cls: int) -> float:
    vals = [float(r["DSC"]) for r in rows if int(r["class"]) == cls and r["DSC"] not in ("", "nan")]
    return sum(vals) / len(vals)


def checkpoint_record(results: Path, dataset: str, trainer: str, config: str) -> dict:
    path = results / dataset / f"{trainer}__nnUNetPlans__{config}" / "fold_0" / "checkpoint_final.pth"
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    assert ckpt["trainer_name"] == trainer
    return ckpt["init_args"]["phidice"]


def predict_and_evaluate(name, root, env, *, dataset, config, trainer, images, labels, groups) -> list[dict]:
    pred = root / f"pred_{name}"
    run(
        f"{name}_predict",
        [
            BIN / "nnUNetv2_predict",
            "-i",
            images,
            "-o",
            pred,
            "-d",
            dataset,
            "-c",
            config,
            "-f",
            "0",
            "-tr",
            trainer,
            "-device",
            "cpu",
            "-npp",
            "1",
            "-nps",
            "1",
            "--disable_progress_bar",
        ],
        env,
        root,
    )
    assert sorted(p.name for p in pred.glob("*.nii.gz")) == sorted(p.name for p in Path(labels).glob("*.nii.gz"))
    out = root / f"eval_{name}"
    text = run(
        f"{name}_evaluate",
        [
            sys.executable,
            "-m",
            "phidice",
            "evaluate",
            "--pred",
            pred,
            "--gt",
            labels,
            "--groups",
            groups,
            "--out",
            out,
            "--no-progress",
        ],
        env,
        root,
    )
    print(text[:1500])
    rows = read_per_case(out)
    assert {r["case"] for r in rows} == {p.name[:-7] for p in Path(labels).glob("*.nii.gz")}
    return rows


def test_2d_phidice_trainer_and_measured_epsilon(work):
    root, env = work
    data = _synthetic.write_dataset(root / "nnUNet_raw", 601, "Synth2D", two_d=True, n_train=8, n_test=2, size=32)
    run(
        "2d_plan_and_preprocess",
        [BIN / "nnUNetv2_plan_and_preprocess", "-d", "601", "-c", "2d", "-np", "1", "-npfp", "1"],
        env,
        root,
    )
    log = run(
        "2d_train",
        [BIN / "nnUNetv2_train", "601", "2d", "0", "-tr", "nnUNetTrainerPhiDice_Tiny", "-device", "cpu"],
        env,
        root,
    )
    assert f"phidice {phidice.__version__}: nnUNetTrainerPhiDice_Tiny loss DiceCELoss(phi=BI, eps=1e-05" in log
    rec = checkpoint_record(root / "nnUNet_results", "Dataset601_Synth2D", "nnUNetTrainerPhiDice_Tiny", "2d")
    assert rec["options"]["phi"] == "BI" and rec["options"]["eps"] == 1e-5
    # the GradientMonitor, on by default: per epoch in the log, the logger, a PNG beside progress.png, the record
    assert log.count("phidice monitor: class 1: empty φ") == 2 and "phidice advice: class 2" in log
    out = root / "nnUNet_results" / "Dataset601_Synth2D" / "nnUNetTrainerPhiDice_Tiny__nnUNetPlans__2d" / "fold_0"
    assert (out / "phidice_monitor.png").stat().st_size > 5000 and (out / "progress.png").is_file()
    lines = [json.loads(line) for line in (out / "phidice_monitor.jsonl").read_text().splitlines()]
    # the JSON-lines record is the checkpoint's (compared as JSON text: NaN ≠ NaN)
    assert json.dumps(lines, sort_keys=True) == json.dumps(rec["monitor"], sort_keys=True)
    assert [r["epoch"] for r in lines] == [0, 1] and sorted(lines[0]["per_class"]) == ["1", "2"]
    assert [r["epoch"] for r in rec["monitor"]] == [0, 1] and rec["monitor"][0]["updates"] == 4
    ckpt = torch.load(out / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert len(ckpt["logging"]["phidice_empty_gradient_share"]) == 2
    rows = predict_and_evaluate(
        "2d",
        root,
        env,
        dataset="601",
        config="2d",
        trainer="nnUNetTrainerPhiDice_Tiny",
        images=data["images_ts"],
        labels=data["labels_ts"],
        groups=data["groups"],
    )
    assert mean_dsc(rows, 1) > 0.3, "the blob was not learnt at all"

    # a configuration added from the command line, trained with the I_ε trainer
    run(
        "2d_add_config",
        [
            sys.executable,
            "-m",
            "phidice",
            "nnunet",
            "add-config",
            "601",
            "-c",
            "2d",
            "--name",
            "2d_eps",
            "--set",
            "eps_batches=10",
        ],
        env,
        root,
    )
    log = run(
        "2d_eps_train",
        [BIN / "nnUNetv2_train", "601", "2d_eps", "0", "-tr", "nnUNetTrainerPhiDice_Ieps_Tiny", "-device", "cpu"],
        env,
        root,
    )
    assert "phidice: measuring ε = E[Σy] on 10 training batches" in log
    rec = checkpoint_record(root / "nnUNet_results", "Dataset601_Synth2D", "nnUNetTrainerPhiDice_Ieps_Tiny", "2d_eps")
    eps = rec["eps_measured"]
    assert rec["options"]["eps"] == "auto" and rec["eps_measurement"]["images"][1] == 20
    assert len(eps) == 3 and all(len(e) == 3 for e in eps)  # deep-supervision levels × channels
    # the blob covers ~17 % of a 32×32 slice; each coarser level holds a quarter of the voxels
    assert 30 < eps[0][1] < 500 and eps[0][2] < eps[0][1]
    assert eps[1][1] == pytest.approx(eps[0][1] / 4, rel=0.35)
    assert "ε per deep-supervision level and channel (Φ = I, 20 images" in log


def test_3d_leaf_trainer_on_partially_annotated_data(work):
    root, env = work
    data = _synthetic.write_dataset(root / "nnUNet_raw", 611, "Synth3D", two_d=False, n_train=8, n_test=2, size=16)
    run(
        "3d_make_partial",
        [
            sys.executable,
            "-m",
            "phidice",
            "nnunet",
            "make-partial",
            "611",
            "--groups",
            data["groups"],
            "--group",
            "B",
            "--labels",
            "spot",
            "--empty-id",
            "612",
            "--missing-id",
            "613",
            "--no-progress",
        ],
        env,
        root,
    )
    missing = root / "nnUNet_raw" / "Dataset613_Synth3D_missingB"
    annotated = json.loads((missing / "annotated_labels.json").read_text())
    assert annotated == {c: [1] for c in ("case_001", "case_003", "case_005", "case_007")}
    run(
        "3d_plan_and_preprocess",
        [BIN / "nnUNetv2_plan_and_preprocess", "-d", "613", "-c", "3d_fullres", "-np", "1", "-npfp", "1"],
        env,
        root,
    )
    log = run(
        "3d_leaf_train",
        [BIN / "nnUNetv2_train", "613", "3d_fullres", "0", "-tr", "nnUNetTrainerPhiDice_Leaf_Tiny", "-device", "cpu"],
        env,
        root,
    )
    assert "phidice: 4 partially annotated case(s) from" in log
    assert "LeafDiceCELoss(phi=I, eps=1e-05, activation=softmax, include_background=False" in log
    rec = checkpoint_record(
        root / "nnUNet_results", "Dataset613_Synth3D_missingB", "nnUNetTrainerPhiDice_Leaf_Tiny", "3d_fullres"
    )
    assert rec["annotations"]["cases"] == {c: [0, 1] for c in annotated}
    assert rec["monitor"][-1]["unannotated_fraction"] > 0  # the leaf loss's unannotated (case, class) entries
    rows = predict_and_evaluate(
        "3d_leaf",
        root,
        env,
        dataset="613",
        config="3d_fullres",
        trainer="nnUNetTrainerPhiDice_Leaf_Tiny",
        images=root / "nnUNet_raw" / "Dataset611_Synth3D" / "imagesTs",
        labels=data["labels_ts"],
        groups=data["groups"],
    )
    assert mean_dsc(rows, 1) > 0.3, "the blob was not learnt at all"


def _drop_label(ds: Path, value: int, labels: dict) -> None:
    """Make ``ds`` a dataset that does not label ``value``: its voxels become 0, dataset.json says ``labels``."""
    import nibabel as nib
    import numpy as np

    for path in sorted((ds / "labelsTr").glob("*.nii.gz")):
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
        nib.save(type(img)(np.where(data == value, 0, data).astype(data.dtype), img.affine, img.header), str(path))
    dj = json.loads((ds / "dataset.json").read_text())
    (ds / "dataset.json").write_text(json.dumps({**dj, "labels": labels}, indent=2))


def test_3d_merge_then_leaf_trainer(work):
    root, env = work
    a = _synthetic.write_dataset(root / "nnUNet_raw", 621, "PoolA", two_d=False, n_train=6, n_test=2, size=16)
    b = _synthetic.write_dataset(root / "nnUNet_raw", 622, "PoolB", two_d=False, n_train=6, n_test=0, size=16, seed=1)
    _drop_label(b["dataset"], 2, {"background": 0, "Blob": 1})
    text = run(
        "merge",
        [
            sys.executable,
            "-m",
            "phidice",
            "nnunet",
            "merge",
            "621",
            "Dataset622_PoolB",
            "--id",
            "630",
            "--name",
            "Pooled",
            "-j",
            "2",
            "--no-progress",
        ],
        env,
        root,
    )
    assert "| 1 | blob | blob (1) | Blob (1) |" in text and "| 2 | spot | spot (2) | — |" in text
    merged = root / "nnUNet_raw" / "Dataset630_Pooled"
    annotated = json.loads((merged / "annotated_labels.json").read_text())
    assert annotated["D622__case_000"] == ["blob"] and annotated["D621__case_000"] == ["blob", "spot"]
    run(
        "merge_plan_and_preprocess",
        [
            BIN / "nnUNetv2_plan_and_preprocess",
            "-d",
            "630",
            "-c",
            "3d_fullres",
            "-np",
            "1",
            "-npfp",
            "1",
            "--verify_dataset_integrity",
        ],
        env,
        root,
    )
    log = run(
        "merge_leaf_train",
        [BIN / "nnUNetv2_train", "630", "3d_fullres", "0", "-tr", "nnUNetTrainerPhiDice_Leaf_Tiny", "-device", "cpu"],
        env,
        root,
    )
    assert "phidice: 12 partially annotated case(s) from" in log  # every merged case is listed
    rec = checkpoint_record(
        root / "nnUNet_results", "Dataset630_Pooled", "nnUNetTrainerPhiDice_Leaf_Tiny", "3d_fullres"
    )
    assert rec["annotations"]["cases"]["D622__case_001"] == [0, 1]
    rows = predict_and_evaluate(
        "merge_leaf",
        root,
        env,
        dataset="630",
        config="3d_fullres",
        trainer="nnUNetTrainerPhiDice_Leaf_Tiny",
        images=a["images_ts"],
        labels=a["labels_ts"],
        groups=a["groups"],
    )
    assert mean_dsc(rows, 1) > 0.3, "the blob was not learnt at all"


def test_3d_compiled_as_nnunet_compiles(work):
    """nnUNet_compile=1 with nnU-Net's compile rule minus its CPU exclusion (the ext trainer): nnU-Net compiles
    the network, the phidice trainer each level of its loss (where nnU-Net compiles ``loss.dc``), and the
    run trains, validates, monitors, checkpoints and predicts as the eager one does."""
    root, env = work
    env = {**env, "nnUNet_compile": "1"}
    data = _synthetic.write_dataset(root / "nnUNet_raw", 641, "Compiled", two_d=False, n_train=6, n_test=2, size=16)
    run(
        "compile_plan_and_preprocess",
        [BIN / "nnUNetv2_plan_and_preprocess", "-d", "641", "-c", "3d_fullres", "-np", "1", "-npfp", "1"],
        env,
        root,
    )
    trainer = "nnUNetTrainerPhiDice_TinyCompileOnCPU"
    log = run(
        "compile_train", [BIN / "nnUNetv2_train", "641", "3d_fullres", "0", "-tr", trainer, "-device", "cpu"], env, root
    )
    assert "Using torch.compile..." in log  # nnU-Net's own decision: it compiles the network
    assert "INFO: torch.compile disabled" not in log
    assert "deep supervision weights [" in log and "; each level torch.compile'd" in log
    rec = checkpoint_record(root / "nnUNet_results", "Dataset641_Compiled", trainer, "3d_fullres")
    assert rec["loss_compiled"] is True and rec["loss"].endswith("each level torch.compile'd")
    assert [r["epoch"] for r in rec["monitor"]] == [0, 1] and rec["monitor"][0]["updates"] == 4
    rows = predict_and_evaluate(
        "compile",
        root,
        env,
        dataset="641",
        config="3d_fullres",
        trainer=trainer,
        images=data["images_ts"],
        labels=data["labels_ts"],
        groups=data["groups"],
    )
    assert mean_dsc(rows, 1) > 0.3, "the blob was not learnt at all"


def test_install_keeps_the_cpu_torch(tmp_path):
    """The documented install next to a CPU torch — ``pip install -c <torch pin> phidice[nnunet]`` — resolves
    without another torch build (pip dry run). Without the pin, pip may pick the newest torchvision and the
    torch it requires (a CUDA build), replacing the CPU wheel: the README and the Makefile pin it."""
    python = os.environ.get("PHIDICE_CPU_PYTHON") or (sys.executable if "+cpu" in torch.__version__ else "")
    if not python or not Path(python).exists():
        pytest.skip("needs a Python with the CPU torch wheel: set PHIDICE_CPU_PYTHON (make test-nnunet does)")
    version = subprocess.run(
        [python, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert "+cpu" in version, f"{python} has torch {version}, not the CPU wheel"
    pin = tmp_path / "torch-pin.txt"
    pin.write_text(f"torch=={version.split('+')[0]}\n")  # as the README and the Makefile write it
    repo = Path(__file__).resolve().parents[3]
    report = tmp_path / "report.json"
    start = time.time()
    proc = subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--quiet",
            "--report",
            str(report),
            "-c",
            str(pin),
            f"{repo}[nnunet]",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    TIMINGS["pip_dry_run"] = time.time() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    installs = {
        i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]
    }
    assert "phidice" in installs
    if "nnunetv2" not in installs:  # already there (e.g. the --no-deps install of `make test`)
        have = subprocess.run([python, "-m", "pip", "show", "nnunetv2"], capture_output=True, text=True)
        assert have.returncode == 0, "the resolution holds no nnunetv2 and none is installed"
    assert "torch" not in installs, f"the install would replace torch {version} with {installs['torch']}"
    print(
        f"\npip dry run next to torch {version}: would install {len(installs)} packages, torch kept "
        f"(torchvision {installs.get('torchvision', '-')})"
    )
