"""docs/mapping.md shows the oracle rows of tests/_oracle_rows.py, line for line, under their headings; every
test a note names exists. Adding a peer mapping is one row there; this test prints the line the docs miss."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from _oracle_rows import TABLES, Note

ROOT = Path(__file__).resolve().parents[2]
MAPPING = ROOT / "docs" / "mapping.md"
ORACLE_TESTS = [ROOT / "tests" / "losses" / "test_oracles.py", ROOT / "tests" / "losses" / "test_overlaps.py"]


def doc_tables() -> dict[str, list[str]]:
    """{section heading: the row lines of its table} of docs/mapping.md (header and rule left out)."""
    out, heading = {}, None
    for line in MAPPING.read_text().splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
            out[heading] = []
        elif heading and line.startswith("| ") and not line.startswith("| row id") and not line.startswith("|---"):
            out[heading].append(line.rstrip())
    return out


@pytest.mark.parametrize("table", [t for t in TABLES if t.heading], ids=lambda t: t.heading)
def test_mapping_doc_shows_the_oracle_rows(table):
    docs = doc_tables()
    assert table.heading in docs, f"docs/mapping.md has no section '## {table.heading}'"
    expected, got = table.lines(), docs[table.heading]
    missing = [line for line in expected if line not in got]
    extra = [line for line in got if line not in expected]
    assert not missing and not extra, (
        "docs/mapping.md differs from tests/_oracle_rows.py under "
        f"'## {table.heading}':\nmissing:\n" + "\n".join(missing) + "\nnot in the table:\n" + "\n".join(extra)
    )
    assert got == expected  # and in the same order


def test_every_row_id_is_unique_and_every_named_test_exists():
    source = "\n".join(p.read_text() for p in ORACLE_TESTS)
    for table in TABLES:
        ids = [r.id for r in table.rows]
        assert len(ids) == len(set(ids)), table.heading
        for row in table.rows:
            if isinstance(row, Note):
                for name in re.findall(r"`(test_[a-z0-9_]+)`", " ".join(row.doc)):
                    assert f"def {name}(" in source, f"{row.id}: no test {name}"
