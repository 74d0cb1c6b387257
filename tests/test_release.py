"""What a release carries: one version everywhere, the licence, the changelog entry, the type-hint marker."""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import pytest

import phidice
from phidice.cli.main import main

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]


def _installed_from_this_tree() -> bool:
    """Whether the installed distribution's metadata is this checkout's (an editable install of it)."""
    try:
        dist = importlib.metadata.distribution("phidice")
    except importlib.metadata.PackageNotFoundError:
        return False
    url = json.loads(dist.read_text("direct_url.json") or "{}").get("url", "")
    return url.removeprefix("file://") == str(ROOT)


def test_version_comes_from_the_metadata():
    if not _installed_from_this_tree():
        pytest.skip("the installed phidice metadata belongs to another checkout (or none is installed)")
    assert phidice.__version__ == VERSION


def test_cli_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"phidice {phidice.__version__}"


def test_changelog_has_a_section_for_this_version():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(VERSION)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, flags=re.M), VERSION
    assert re.search(rf"^\[{re.escape(VERSION)}\]: https://", changelog, flags=re.M), "no link for the version"


def test_licence_is_the_declared_mit_and_is_packaged():
    assert PYPROJECT["project"]["license"] == "MIT"
    assert "LICENSE" in PYPROJECT["project"]["license-files"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_package_marks_itself_typed():
    assert (Path(phidice.__file__).parent / "py.typed").is_file()


def test_all_extra_means_every_extra_that_installs_beside_torch():
    extras = PYPROJECT["project"]["optional-dependencies"]
    (spec,) = extras["all"]
    named = set(re.fullmatch(r"phidice\[(.*)\]", spec).group(1).split(","))
    left_out = {"all", "test", "docs", "dev", "nnunet"}  # nnunet: its dependencies pull another torch build
    assert named == set(extras) - left_out


def test_readme_links_work_on_a_package_index():
    """A package index shows the README without the repository around it: links are absolute."""
    readme = (ROOT / "README.md").read_text()
    relative = [m for m in re.findall(r"\]\(([^)]+)\)", readme) if not m.startswith(("https://", "#"))]
    assert not relative, f"relative links in README.md: {relative}"


def test_numba_is_a_base_requirement_where_it_has_wheels():
    """numba is in the base install on the platforms numba ships wheels for, and left out elsewhere (there pip
    would build llvmlite from source, which needs LLVM); the ``numba`` extra still asks for it everywhere."""
    Requirement = pytest.importorskip("packaging.requirements").Requirement

    base = {Requirement(r).name: Requirement(r) for r in PYPROJECT["project"]["dependencies"]}
    assert set(base) == {"torch", "numpy", "numba"}
    numba = base["numba"]
    assert numba.specifier.contains("0.59.0") and not numba.specifier.contains("0.58.1")
    linux = {
        "platform_python_implementation": "CPython",
        "python_version": "3.11",
        "sys_platform": "linux",
        "platform_machine": "x86_64",
    }
    with_wheels = [
        {},
        {"platform_machine": "aarch64"},
        {"sys_platform": "darwin", "platform_machine": "arm64"},
        {"sys_platform": "win32", "platform_machine": "AMD64"},
        {"sys_platform": "win32", "platform_machine": "ARM64"},
    ]
    with_wheels += [{"python_version": v} for v in ("3.10", "3.12", "3.13", "3.14", "3.15")]
    without = [
        {"sys_platform": "darwin", "platform_machine": "x86_64"},
        {"platform_machine": "ppc64le"},
        {"platform_python_implementation": "PyPy"},
        {"python_version": "3.16"},
    ]
    for env in with_wheels:
        assert numba.marker.evaluate({**linux, **env}), env
    for env in without:
        assert not numba.marker.evaluate({**linux, **env}), env
    (extra,) = PYPROJECT["project"]["optional-dependencies"]["numba"]
    assert Requirement(extra).marker is None and Requirement(extra).specifier == numba.specifier
