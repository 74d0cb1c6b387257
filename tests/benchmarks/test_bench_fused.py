"""Smoke test of benchmarks/bench_fused.py: one tiny case through every heap protocol, table complete."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("monai")
pytest.importorskip("nnunetv2")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_fused.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_fused", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_table_has_every_implementation_and_heap(tmp_path):
    bench = _load()
    out = tmp_path / "fused.md"
    md = tmp_path / "BENCHMARKS.md"
    md.write_text(
        "# B\n\nbefore\n<!-- bench_fused:cpu-2threads:start -->\nold table\n"
        "<!-- bench_fused:cpu-2threads:end -->\nafter\n"
    )
    # "warm" is left out: it changes this (shared) test process's allocator for good
    assert (
        bench.main(
            [
                "--cases",
                "1,2,8,8",
                "--repeats",
                "10",
                "--no-memory",
                "--heaps",
                "glibc",
                "trimmed",
                "--out",
                str(out),
                "--benchmarks-md",
                str(md),
            ]
        )
        == 0
    )
    text = out.read_text()
    doc = md.read_text()  # the region between the markers is the new table, the rest untouched
    assert doc.startswith("# B\n\nbefore\n<!-- bench_fused:cpu-2threads:start -->\n#### Latest run")
    assert "old table" not in doc and doc.endswith("<!-- bench_fused:cpu-2threads:end -->\nafter\n")
    assert text.split("\n", 1)[1] in doc
    rows = [line for line in text.splitlines() if line.startswith("| 1, 2, 8, 8 |")]
    assert [row.split("|")[2].strip() for row in rows] == bench.IMPLS
    for row in rows:
        cells = [c.strip() for c in row.split("|")[3:-1]]
        assert len(cells) == 2 * 3 + 1  # per heap: ms (min), × MONAI, × nnU-Net; then extra peak
        for heap in range(2):
            median, minimum = map(float, re.fullmatch(r"([0-9.]+) \(([0-9.]+)\)", cells[3 * heap]).groups())
            assert 0 < minimum <= median
            monai = float(cells[3 * heap + 1])
            assert monai > 0
            if "MONAI" in row:
                assert monai == 1.0  # each row against MONAI's loss of its family (Dice or Tversky)
            nnunet = cells[3 * heap + 2]
            if "Tversky" in row:
                assert nnunet == "–"  # nnU-Net has no Tversky loss
            else:
                assert float(nnunet) > 0
        assert cells[-1] == "–"  # --no-memory
    assert "`glibc`" in text and "`trimmed`" in text and "`warm`" not in text


def test_warm_must_come_last():
    bench = _load()
    with pytest.raises(SystemExit):
        bench.main(["--heaps", "warm", "glibc", "--no-memory"])


def test_benchmarks_md_without_markers_is_left_alone(tmp_path):
    bench = _load()
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("no markers here\n")
    assert not bench.update_benchmarks_md(md, "cpu-2threads", "### table\n")
    assert md.read_text() == "no markers here\n"
    assert not bench.update_benchmarks_md(tmp_path / "missing.md", "cuda", "### table\n")
