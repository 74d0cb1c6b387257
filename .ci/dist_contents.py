"""What the built distributions carry: ``python .ci/dist_contents.py ROOT WHEEL SDIST``.

The sdist holds every tracked file of tests/, docs/ and examples/ (so its tests and guides run from it) and the
licence; the wheel holds the licence, the type marker, every module and data file of src/phidice, and no tests.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path


def tracked(root: Path, *folders: str) -> set[str]:
    if (root / ".git").exists():
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", *folders], check=True, capture_output=True, text=True
        ).stdout
        return {line for line in out.splitlines() if line}
    return {
        p.relative_to(root).as_posix()
        for f in folders
        for p in (root / f).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def main(root: Path, wheel: Path, sdist: Path) -> None:
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    top = names[0].split("/")[0]
    in_sdist = {n.split("/", 1)[1] for n in names if "/" in n}
    want = tracked(root, "tests", "docs", "examples", "src") | {
        "LICENSE",
        "CHANGELOG.md",
        "README.md",
        "pyproject.toml",
        "constraints.txt",
    }
    missing = sorted(want - in_sdist)
    assert not missing, f"{sdist.name} lacks {len(missing)} tracked files, e.g. {missing[:10]}"
    with zipfile.ZipFile(wheel) as whl:
        in_wheel = set(whl.namelist())
    package = {p.removeprefix("src/") for p in tracked(root, "src/phidice")}
    lacking = sorted(package - in_wheel)
    assert not lacking, f"{wheel.name} lacks {lacking[:10]}"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in in_wheel), f"{wheel.name} has no LICENSE"
    assert "phidice/py.typed" in in_wheel, f"{wheel.name} has no py.typed"
    assert not [n for n in in_wheel if n.startswith("tests/")], f"{wheel.name} carries tests/"
    print(
        f"{sdist.name} ({top}/): {len(in_sdist)} files, all {len(want)} tracked ones of tests/, docs/, "
        f"examples/, src/ and the top-level files; {wheel.name}: {len(in_wheel)} files, LICENSE and py.typed"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
