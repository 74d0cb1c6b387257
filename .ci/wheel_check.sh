#!/usr/bin/env bash
# The package as users get it: build the wheel and the sdist, check what the sdist carries, install the wheel
# into fresh venvs OUTSIDE the source tree, and there run the CLI, the README's blocks verbatim on the install
# each claims, the extras checks and a smoke subset of the suite (from the sdist's tests/) against the installed
# package. Usage: .ci/wheel_check.sh PYTHON   (a Python that has `build`; `make wheel-test` passes .venv's).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${1:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/phidice-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
CONSTRAINTS="$ROOT/constraints.txt"
step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }

step "build the wheel and the sdist"
"$PY" -m build --outdir "$WORK/dist" "$ROOT" > "$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; exit 1; }
WHEEL=$(ls "$WORK"/dist/phidice-*.whl)
SDIST=$(ls "$WORK"/dist/phidice-*.tar.gz)
VERSION=$("$PY" -c "import tomllib,sys; print(tomllib.load(open(sys.argv[1],'rb'))['project']['version'])" \
          "$ROOT/pyproject.toml")
"$PY" "$ROOT/.ci/dist_contents.py" "$ROOT" "$WHEEL" "$SDIST"

step "unpack the sdist (its tests/ and README run below, not the checkout's)"
mkdir "$WORK/sdist" && tar -xzf "$SDIST" -C "$WORK/sdist"
SRC="$WORK/sdist/phidice-$VERSION"

step "base install: torch==2.13.0, then the wheel (which brings numba and llvmlite)"
"$PY" -m venv "$WORK/venv"
V="$WORK/venv/bin/python"
"$V" -m pip install -q --upgrade pip
"$V" -m pip install -q torch==2.13.0
"$V" -m pip install -q -c "$CONSTRAINTS" "$WHEEL"
cd "$WORK"  # nothing of the source tree on sys.path from here on
"$V" - "$WORK/venv" "$VERSION" <<'PYCHECK'
import sys, phidice
venv, version = sys.argv[1], sys.argv[2]
assert phidice.__file__.startswith(venv), f"phidice imported from {phidice.__file__}, not from the venv {venv}"
assert phidice.__version__ == version, (phidice.__version__, version)
print(f"phidice {phidice.__version__} from {phidice.__file__}")
PYCHECK
"$WORK/venv/bin/phidice" --help > /dev/null
test "$("$WORK/venv/bin/phidice" --version)" = "phidice $VERSION"
"$V" -m pip show phidice | grep -E '^(Version|Author|License-Expression|Home-page|Project-URL|Summary)' || true
"$V" "$SRC/.ci/readme_blocks.py" "$SRC/README.md" base > "$WORK/readme_base.py"
"$V" "$WORK/readme_base.py"
"$V" "$SRC/tests/base_install_check.py"
"$V" "$SRC/tests/base_install_check.py" --without-numba
"$V" "$SRC/.ci/extras_check.py" missing

step "[eval]: the README's metrics block"
"$V" -m pip install -q -c "$CONSTRAINTS" "$WHEEL[eval]"
"$V" "$SRC/.ci/readme_blocks.py" "$SRC/README.md" eval > "$WORK/readme_eval.py"
"$V" "$WORK/readme_eval.py"

step "[all] + the test tools: every extra, then a smoke subset of the suite"
"$V" -m pip install -q -c "$CONSTRAINTS" "$WHEEL[all]" pytest pytest-xdist hypothesis "torchmetrics>=1.8" "jax[cpu]"
"$V" "$SRC/.ci/extras_check.py" present
PHIDICE_INSTALLED_VENV="$WORK/venv" "$V" -m pytest -q -p no:cacheprovider -n 2 --rootdir "$SRC" \
    "$SRC/tests/packaging" "$SRC/tests/test_base_install.py" "$SRC/tests/test_release.py" \
    "$SRC/tests/cli/test_help_text.py" "$SRC/tests/losses" "$SRC/tests/core/test_config.py" \
    "$SRC/tests/metrics/test_dice_score.py" "$SRC/tests/kernels/test_dispatch.py" \
    "$SRC/tests/test_doc_examples.py::test_doc_python_blocks_run[README.md]"
step "wheel check passed"
