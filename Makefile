# Quickstart: `make demo` and `make test` work on a fresh machine: they create .venv and install
# torch==2.13.0 first (a CPU wheel), then everything else under constraints.txt, so that nothing pulls a
# multi-GB CUDA build. The base install (torch, numpy, numba) is checked before any extra is added, and again
# with numba hidden (platforms without numba wheels, where pyproject's marker leaves it out); the demo adds
# the `experiments` extra; the tests add every extra, MONAI, nnU-Net (--no-deps: its loss modules need only
# torch and numpy), torchmetrics, triton (kernels run under TRITON_INTERPRET=1), Lightning, Keras with JAX (the
# Keras losses run on the JAX and PyTorch back ends) and pytest.
# `make test-nnunet` builds a second venv with nnU-Net's full stack (torch + a matching torchvision, several GB;
# NNUNET_VENV, NNUNET_TORCH) and runs tests/integrations/nnunet there, real nnU-Net runs on the CPU included.
# `make test-keras-tf` adds TensorFlow (~1.4 GB) and runs the Keras tests on it: opt-in, kept out of `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q -c constraints.txt
BASE := $(VENV)/.phidice-base
DEMODEPS := $(VENV)/.phidice-demo
TESTDEPS := $(VENV)/.phidice-test
NNUNET_VENV ?= .venv-nnunet
NNUNET_TORCH ?= torch==2.14.1 torchvision==0.29.1
NPY := $(NNUNET_VENV)/bin/python
NNUNET := $(NNUNET_VENV)/.phidice-nnunet
TF ?= tensorflow-cpu
DEVDEPS := $(VENV)/.phidice-dev
MIN_VENV ?= .venv-min

.PHONY: demo test test-all test-nnunet test-keras-tf bench bench-deep-supervision bench-compound install clean fuzz lint docs wheel-test test-min

$(BASE): pyproject.toml Makefile constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PIP) -e .
	$(PY) tests/base_install_check.py
	$(PY) tests/base_install_check.py --without-numba
	touch $(BASE)

$(DEMODEPS): $(BASE)
	$(PIP) -e ".[experiments]"
	touch $(DEMODEPS)

$(TESTDEPS): $(BASE)
	$(PIP) -e ".[test,triton]"
	$(PIP) --no-deps nnunetv2
	touch $(TESTDEPS)

# nnU-Net's trainer search imports modules that import torchvision, so torch and torchvision must be builds of
# one another; the install of phidice[nnunet] is then pinned to them (nnunetv2 would otherwise let pip pick the
# newest torchvision and the torch it requires).
$(NNUNET): pyproject.toml Makefile
	test -x $(NPY) || $(PYTHON) -m venv $(NNUNET_VENV)
	$(NPY) -m pip install -q --upgrade pip
	$(NPY) -m pip install -q $(NNUNET_TORCH)
	$(NPY) -c "import torch as t, torchvision as v; print(f'torch=={t.__version__.split(\"+\")[0]}\ntorchvision=={v.__version__.split(\"+\")[0]}')" \
		> $(NNUNET_VENV)/torch-pin.txt
	$(NPY) -m pip install -q -c $(NNUNET_VENV)/torch-pin.txt -e ".[nnunet]" pytest
	$(NPY) -c "import torch, torchvision, nnunetv2, phidice.integrations.nnunet.training; print('nnU-Net venv:', torch.__version__, torchvision.__version__)"
	touch $(NNUNET)

install: $(TESTDEPS)

demo: $(DEMODEPS)
	$(VENV)/bin/phidice reproduce

test: $(TESTDEPS)
	$(PY) -m pytest -n 2 -q

test-all: $(TESTDEPS)
	$(PY) -m pytest -n 2 -q --runslow

# the install check (pip dry run next to a CPU torch) uses $(PY), the venv of `make test`, when it exists
test-nnunet: $(NNUNET)
	$(NPY) -m pytest -q tests/integrations/nnunet -m "not nnunet_real"
	PHIDICE_CPU_PYTHON=$(abspath $(PY)) $(NPY) -m pytest -q -s --runslow tests/integrations/nnunet -m nnunet_real

test-keras-tf: $(TESTDEPS)
	$(PIP) "$(TF)"
	$(PY) -m pytest -n 2 -q --tensorflow -m tensorflow tests/keras tests/test_doc_examples.py

# the long run of the differential property tests (docs/testing.md): FUZZ_EXAMPLES drawn cases on the reference
# path and every fused CPU backend, then on Triton under its interpreter, then a tenth of them on the Keras losses
# (JAX, PyTorch; one batch per back end, seed PHIDICE_FUZZ_SEED); examples and findings in docs/testing.md
FUZZ_EXAMPLES ?= 4000
fuzz: $(TESTDEPS)
	HYPOTHESIS_PROFILE=fuzz PHIDICE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q \
		--hypothesis-show-statistics tests/losses/test_differential.py
	TRITON_INTERPRET=1 HYPOTHESIS_PROFILE=fuzz PHIDICE_TRITON_EXAMPLES=$$(( $(FUZZ_EXAMPLES) / 10 )) \
		$(PY) tests/kernels/triton_interpret_check.py
	HYPOTHESIS_PROFILE=fuzz PHIDICE_KERAS_EXAMPLES=$$(( $(FUZZ_EXAMPLES) / 10 )) \
		PHIDICE_FUZZ_SEED=$${PHIDICE_FUZZ_SEED:-0} $(PY) -m pytest -q tests/keras/test_keras_differential.py

bench: $(TESTDEPS)
	$(PY) benchmarks/bench_fused.py --repeats 21

# on request (a few minutes of CPU each): the coarse_empty measurement and the fused Dice in DiceCE / DiceFocal
bench-deep-supervision: $(TESTDEPS)
	$(PY) benchmarks/bench_deep_supervision.py
	$(PY) benchmarks/bench_deep_supervision.py --weight-mode exp --seeds 4 --steps 600 \
		--out benchmarks/results/deep_supervision_exp.md

bench-compound: $(TESTDEPS)
	$(PY) benchmarks/bench_fused_compound.py

clean:
	rm -rf $(VENV) $(NNUNET_VENV) $(MIN_VENV) build src/*.egg-info .pytest_cache

# `make lint`: ruff (lint + format check) and mypy, in the venv of the tests (mypy reads the installed packages'
# types); `make docs`: the API reference site (build/site), warnings as errors; `make wheel-test`: the wheel and
# the sdist built and installed in fresh venvs outside the tree (.ci/wheel_check.sh). Their times: BENCHMARKS.md.
$(DEVDEPS): $(TESTDEPS)
	$(PIP) -e ".[dev,docs]"
	touch $(DEVDEPS)

lint: $(DEVDEPS)
	$(VENV)/bin/ruff check src tests examples benchmarks
	$(VENV)/bin/ruff format --check src tests examples benchmarks
	$(VENV)/bin/mypy

docs: $(DEVDEPS)
	$(VENV)/bin/mkdocs build --strict

wheel-test: $(DEVDEPS)
	bash .ci/wheel_check.sh $(abspath $(PY))

# `make test-min` (on request): the suite with every dependency at its floor (pyproject's lower bounds) beside
# torch 2.13; floors that cannot install there are named by .ci/min_requirements.py.
test-min:
	test -x $(MIN_VENV)/bin/python || $(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install -q --upgrade pip
	$(MIN_VENV)/bin/python -m pip install -q torch==2.13.0
	$(MIN_VENV)/bin/python .ci/min_requirements.py > $(MIN_VENV)/floors.txt
	$(MIN_VENV)/bin/python -m pip install -q -c constraints.txt -r $(MIN_VENV)/floors.txt
	$(MIN_VENV)/bin/python -m pip install -q -c constraints.txt --no-deps -e .
	$(MIN_VENV)/bin/python -m pip install -q -c constraints.txt --no-deps nnunetv2
	$(MIN_VENV)/bin/python -m pytest -n 2 -q
