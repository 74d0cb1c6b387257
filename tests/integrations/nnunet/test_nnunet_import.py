"""Import errors say what to do: nnunetv2 missing, older than 2.8, or installed without its dependencies."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "..", "src")


def _run(prelude: str, stmt: str) -> subprocess.CompletedProcess:
    code = textwrap.dedent(prelude) + "\n" + stmt
    env = dict(os.environ, PYTHONPATH=os.path.abspath(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


HIDE_NNUNET = """
import importlib.abc, importlib.metadata as md, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
_dist = md.distribution
def distribution(name):
    if name in HIDDEN_DISTS:
        raise md.PackageNotFoundError(name)
    if name in FAKE_VERSIONS:
        class D:
            version = FAKE_VERSIONS[name]
            def locate_file(self, p): return '/site-packages/' + p
        return D()
    return _dist(name)
md.distribution = distribution
"""


def test_missing_nnunet_says_how_to_install():
    r = _run(
        "BLOCKED = {'nnunetv2'}; HIDDEN_DISTS = {'nnunetv2'}; FAKE_VERSIONS = {}" + HIDE_NNUNET,
        "import phidice.integrations.nnunet",
    )
    assert r.returncode != 0
    assert "ImportError" in r.stderr and "pip install phidice[nnunet]" in r.stderr


def test_old_nnunet_names_the_version():
    r = _run(
        "BLOCKED = set(); HIDDEN_DISTS = set(); FAKE_VERSIONS = {'nnunetv2': '2.7.1'}" + HIDE_NNUNET,
        "import phidice.integrations.nnunet",
    )
    assert r.returncode != 0
    assert "found nnunetv2 2.7.1 at /site-packages/nnunetv2" in r.stderr and ">= 2.8" in r.stderr


def test_cli_reports_the_import_error_without_a_traceback():
    r = _run(
        "BLOCKED = set(); HIDDEN_DISTS = set(); FAKE_VERSIONS = {'nnunetv2': '2.6'}" + HIDE_NNUNET,
        "from phidice.cli.main import main; raise SystemExit(main(['nnunet', 'trainers-path']))",
    )
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("phidice nnunet: error:") and "2.6" in r.stderr and "Traceback" not in r.stderr


def test_trainers_without_nnunets_dependencies_say_how_to_install():
    pytest.importorskip("phidice.integrations.nnunet", reason="needs nnunetv2 >= 2.8")
    r = _run(
        "BLOCKED = {'batchgenerators'}; HIDDEN_DISTS = set(); FAKE_VERSIONS = {}" + HIDE_NNUNET,
        "import phidice.integrations.nnunet.training",
    )
    assert r.returncode != 0
    assert "module 'batchgenerators' is missing" in r.stderr and "pip install phidice[nnunet]" in r.stderr


@pytest.mark.parametrize(
    "version,ok",
    [
        ("2.8", True),
        ("2.8.1", True),
        ("2.10.0", True),
        ("3.0", True),
        ("2.7.9", False),
        ("2.2", False),
        ("1.7.1", False),
        ("garbage", False),
    ],
)
def test_version_rule(version, ok):
    nnunet = pytest.importorskip("phidice.integrations.nnunet", reason="needs nnunetv2 >= 2.8")
    if ok:
        nnunet.check_nnunet_version(version)
    else:
        with pytest.raises(ImportError, match=version):
            nnunet.check_nnunet_version(version)
