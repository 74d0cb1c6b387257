"""``torchrun --nproc_per_node=2 phidice reproduce`` (gloo, CPU) equals one process on the global batch.

Under torchrun the grid's batch size is per rank (DistributedSampler-style), so 2 ranks × B = 1 must give
the results of one process with B = 2: the same losses and the same predicted volumes (and the same
number of steps: the grid counts images per global batch). About 16 s on 2 idle cores; in the default suite
because it guards the torchrun path of the main command.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from _children import child_env, free_port


def _flat(values):
    return [v for x in values for v in (x if isinstance(x, list) else [x])]


def test_torchrun_reproduce_matches_one_process(tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    phidice = shutil.which("phidice", path=os.path.dirname(sys.executable))
    if torchrun is None or phidice is None:
        pytest.skip("torchrun / phidice entry points not found next to the interpreter")
    env = child_env(gloo=True)
    common = ["reproduce", "--smoke", "--task", "binary", "--no-progress", "--threads", "1"]
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    subprocess.run(
        [
            torchrun,
            "--nproc_per_node=2",
            "--master_addr=127.0.0.1",
            f"--master_port={free_port()}",
            phidice,
            *common,
            "--batch-sizes",
            "1",
            "--out",
            str(ddp),
        ],
        env=env,
        check=True,
        timeout=300,
        capture_output=True,
    )
    subprocess.run(
        [phidice, *common, "--batch-sizes", "2", "--out", str(single)],
        env=env,
        check=True,
        timeout=300,
        capture_output=True,
    )
    assert (ddp / "report.md").exists()
    keys = sorted(p.name for p in (single / "runs").glob("*.json"))
    assert len(keys) == 6
    for key in keys:
        a = json.loads((single / "runs" / key).read_text())
        b = json.loads((ddp / "runs" / key.replace("_B2_", "_B1_")).read_text())
        assert b["final_loss"] == pytest.approx(a["final_loss"], abs=1e-5), key
        assert _flat(b["per_image"]["pred_ml"]) == pytest.approx(_flat(a["per_image"]["pred_ml"]), abs=1e-3), key
