# Quickstart: `make demo` and `make test` work on a fresh machine: they create .venv and install
# torch==2.13.0 first (a CPU wheel), so that nothing pulls a multi-GB CUDA build.
# The demo installs only what phidice needs to run; the tests add MONAI, nnU-Net (--no-deps: its Dice
# module needs only torch and numpy), torchmetrics, triton (kernels run under TRITON_INTERPRET=1) and pytest.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BASE := $(VENV)/.phidice-base
TESTDEPS := $(VENV)/.phidice-test

.PHONY: demo test test-all bench install clean

$(BASE): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e .
	touch $(BASE)

$(TESTDEPS): $(BASE)
	$(PY) -m pip install -q -e ".[test,triton]"
	$(PY) -m pip install -q --no-deps nnunetv2
	touch $(TESTDEPS)

install: $(TESTDEPS)

demo: $(BASE)
	$(VENV)/bin/phidice reproduce

test: $(TESTDEPS)
	$(PY) -m pytest -n 2 -q

test-all: $(TESTDEPS)
	$(PY) -m pytest -n 2 -q --runslow

bench: $(TESTDEPS)
	$(PY) benchmarks/bench_fused.py --repeats 21

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
