"""The scripts in examples/ run as their docs say, train (finite, decreasing loss), and are what the docs show.

Each runs in a subprocess for a few epochs on its generated data. The Lightning one runs 2 gloo processes under
the DDP strategy; its per-step loss on both ranks and its final weights must equal one process replaying the same
global batches.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import textwrap
from pathlib import Path

import pytest
import torch

import phidice
from _children import child_env, run_python

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DOCS = {"monai.md": ROOT / "docs" / "monai.md", "lightning.md": ROOT / "docs" / "lightning.md"}


def _run(args, timeout=600) -> list[str]:
    return run_python(args, cwd=ROOT, env=child_env(gloo=True, PYTHONWARNINGS="ignore"), timeout=timeout)


def _trains(losses, per_epoch, epochs):
    """Finite, and every batch's loss lower in the last epoch than in the first."""
    assert len(losses) == per_epoch * epochs
    assert all(math.isfinite(v) for v in losses), losses
    first, last = losses[:per_epoch], losses[-per_epoch:]
    assert all(b < a for a, b in zip(first, last)), f"first epoch {first}, last epoch {last}"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_monai_bundle_example(tmp_path):
    pytest.importorskip("monai")
    pytest.importorskip("ignite")
    pytest.importorskip("fire")  # monai.bundle's command line
    config = EXAMPLES / "monai_bundle" / "train.json"
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(config))
    loss = parser.get_parsed_content("loss")  # "_target_": "phidice.DiceCELoss", found by its dotted path
    assert type(loss) is phidice.DiceCELoss and loss.config.phi.value == "BI"
    _run(["-m", "monai.bundle", "run", "--config_file", str(config), "--output_dir", str(tmp_path), "--epochs", "4"])
    losses = json.loads((tmp_path / "losses.json").read_text())["losses"]
    _trains(losses, per_epoch=2, epochs=4)


def test_monai_supervised_trainer_leaf_example(tmp_path):
    pytest.importorskip("monai")
    pytest.importorskip("ignite")
    out = tmp_path / "losses.json"
    _run([str(EXAMPLES / "monai_leaf_trainer.py"), "--epochs", "4", "--out", str(out)])
    _trains(json.loads(out.read_text())["losses"], per_epoch=2, epochs=4)


def test_lightning_ddp_example_is_one_process_on_the_global_batch(tmp_path):
    L = pytest.importorskip("lightning")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available")
    from torch.utils.data.distributed import DistributedSampler

    epochs, per_rank, world = 2, 2, 2
    _run(
        [
            str(EXAMPLES / "lightning_ddp.py"),
            "--devices",
            str(world),
            "--batch-size",
            str(per_rank),
            "--epochs",
            str(epochs),
            "--out",
            str(tmp_path),
        ]
    )
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]
    assert [r["world_size"] for r in ranks] == [world, world]

    # one process, the same initial weights, replaying the global batches of Lightning's DDP sampler
    example = _load("lightning_ddp")
    L.seed_everything(0, verbose=False)
    model = example.Segmenter().double()
    data = example.make_data()
    images, labels = data.tensors
    loss_fn = phidice.DiceLoss.from_config(model.loss.config.replace(sync_batch=False))
    optimizer = model.configure_optimizers()
    expected, batch = [], world * per_rank
    for epoch in range(epochs):
        sampler = DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=0)
        sampler.set_epoch(epoch)
        order = list(sampler)
        for start in range(0, len(order), batch):
            index = order[start : start + batch]
            optimizer.zero_grad()
            loss = loss_fn(model.net(images[index]), labels[index])
            if epoch == 0 and start == 0:  # rank 0 alone (its half of the batch) would see another loss
                half = loss_fn(model.net(images[index[::world]]), labels[index[::world]])
                assert abs(half.item() - loss.item()) > 1e-3
            loss.backward()
            optimizer.step()
            expected.append(loss.item())
    assert len(expected) == epochs * len(data) // batch
    for r, res in enumerate(ranks):
        torch.testing.assert_close(
            torch.tensor(res["losses"]),
            torch.tensor(expected),
            rtol=0,
            atol=1e-10,
            msg=lambda m: f"rank {r} losses: {m}",
        )
        for name, value in model.net.state_dict().items():
            torch.testing.assert_close(
                torch.tensor(res["weights"][name], dtype=torch.float64),
                value,
                rtol=0,
                atol=1e-10,
                msg=lambda m: f"rank {r} weight {name}: {m}",
            )
    assert expected[-1] < expected[0]


# ---------------------------------------------------------------- the docs show these files, not copies

LINK = re.compile(r"\[[^\]]*\]\(\.\./(examples/[^)#]+)\)")
BLOCK = re.compile(r"^```[a-z]*\n(.*?)^```", re.S | re.M)


def _blocks(text):
    """Every fenced block with the example file linked on the line just above it (None when there is no link)."""
    out = []
    for m in BLOCK.finditer(text):
        above = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        link = LINK.search(above)
        out.append((link.group(1) if link else None, m.group(1)))
    return out


def _excerpt_of(block: str, source: str) -> bool:
    """Whether ``block`` equals consecutive whole lines of ``source`` (their common indentation removed)."""
    want = block.rstrip("\n").split("\n")
    lines = source.split("\n")
    for i in range(len(lines) - len(want) + 1):
        if textwrap.dedent("\n".join(lines[i : i + len(want)])).split("\n") == want:
            return True
    return False


@pytest.mark.parametrize("doc", list(DOCS))
def test_docs_show_the_example_files(doc):
    text = DOCS[doc].read_text()
    blocks = _blocks(text)
    assert blocks, f"docs/{doc} shows no example"
    for path, block in blocks:
        assert path is not None, f"docs/{doc}: a code block without a link to its example file above it:\n{block}"
        source = (ROOT / path).read_text()
        assert _excerpt_of(block, source), f"docs/{doc}: this block is not an excerpt of {path}:\n{block}"
    for path in set(LINK.findall(text)):
        assert (ROOT / path).exists(), f"docs/{doc} links to {path}, which does not exist"


def test_every_example_is_shown_in_the_docs():
    shown = {path for doc in DOCS.values() for path, _ in _blocks(doc.read_text())}
    files = {str(p.relative_to(ROOT)) for p in EXAMPLES.rglob("*") if p.suffix in (".py", ".json")}
    files.discard("examples/monai_bundle/metadata.json")  # the bundle's description, not code
    assert files <= shown, f"examples not shown in the docs: {sorted(files - shown)}"


def test_the_excerpt_check_can_fail():
    source = "a = 1\nif a:\n    b = 2\n    c = 3\n"
    assert _excerpt_of("b = 2\nc = 3\n", source) and _excerpt_of("if a:\n    b = 2\n", source)
    assert not _excerpt_of("b = 2\nc = 4\n", source) and not _excerpt_of("c = 3\nb = 2\n", source)
    assert _blocks("See [x](../examples/x.py):\n```python\nb = 2\n```\n") == [("examples/x.py", "b = 2\n")]
    assert _blocks("no link\n```python\nb = 2\n```\n") == [(None, "b = 2\n")]
