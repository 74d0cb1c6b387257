"""The floors of pyproject.toml as pins, for `make test-min`: ``python .ci/min_requirements.py > floors.txt``.

Every requirement of the base install and of the ``test`` extra (with the extras it names, recursively) whose
specifier has a lower bound ``>=X`` becomes ``name==X``; the rest are kept as written. torch is left out: it
stays the CPU 2.13.0 of constraints.txt, installed first. Floors that cannot install beside torch 2.13 on this
Python are listed in NOT_INSTALLABLE with the reason, and kept at their bound (``>=``) instead.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
NOT_INSTALLABLE: dict[str, str] = {}  # name -> why its floor is not pinned (none known)


def requirements(project: dict, extras: list[str]) -> list[str]:
    out, seen, todo = list(project["dependencies"]), set(), list(extras)
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in project["optional-dependencies"][extra]:
            inner = re.fullmatch(r"phidice\[([^\]]+)\]", req.strip())
            if inner:
                todo += inner.group(1).split(",")
            else:
                out.append(req)
    return out


def pinned(req: str) -> str | None:
    spec, _, marker = req.partition(";")
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)", spec)
    name, extras, version = m.group(1), m.group(2) or "", m.group(3).strip()
    if name.lower() == "torch":
        return None
    floor = re.search(r">=\s*([0-9][0-9A-Za-z.]*)", version)
    if floor is None or name in NOT_INSTALLABLE:
        return req.strip()
    return f"{name}{extras}=={floor.group(1)}" + (f"; {marker.strip()}" if marker else "")


if __name__ == "__main__":
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = {p for r in requirements(project, sys.argv[1:] or ["test", "triton"]) if (p := pinned(r))}
    print("\n".join(sorted(lines, key=str.lower)))
