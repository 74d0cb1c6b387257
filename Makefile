# Quickstart: `make demo` and `make test` work on a fresh machine: they create .venv and install
# torch==2.13.0 first (a CPU wheel), so that nothing pulls a multi-GB CUDA build.
# The demo installs only what phidice needs to run; the tests add MONAI, nnU-Net (--no-deps: its Dice
# module needs only torch and numpy), torchmetrics, triton (kernels run under TRITON_INTERPRET=1), Keras with
# JAX (the Keras losses run on the JAX and PyTorch back ends) and pytest; torch stays pinned while they install.
# `make test-keras-tf` adds TensorFlow (~1.4 GB) and runs the Keras tests on it: opt-in, kept out of `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BASE := $(VENV)/.phidice-base
TESTDEPS := $(VENV)/.phidice-test
TF ?= tensorflow-cpu

.PHONY: demo test test-all test-keras-tf bench install clean

$(BASE): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e .
	touch $(BASE)

$(TESTDEPS): $(BASE)
	$(PY) -m pip install -q -e ".[test,triton]" torch==2.13.0
	$(PY) -m pip install -q --no-deps nnunetv2
	touch $(TESTDEPS)

install: $(TESTDEPS)

demo: $(BASE)
	$(VENV)/bin/phidice reproduce

test: $(TESTDEPS)
	$(PY) -m pytest -n 2 -q

test-all: $(TESTDEPS)
	$(PY) -m pytest -n 2 -q --runslow

test-keras-tf: $(TESTDEPS)
	$(PY) -m pip install -q "$(TF)" torch==2.13.0
	$(PY) -m pytest -n 2 -q --tensorflow -m tensorflow tests/keras tests/test_doc_examples.py

bench: $(TESTDEPS)
	$(PY) benchmarks/bench_fused.py --repeats 21

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
