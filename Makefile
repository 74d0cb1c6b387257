# Quickstart: `make demo` and `make test` work on a fresh machine: they create .venv and install
# torch==2.13.0 first (a CPU wheel), then everything else under constraints.txt, so that nothing pulls a
# multi-GB CUDA build. The base install (torch + numpy) is checked before any extra is added; the demo adds
# the `experiments` extra; the tests add every extra, MONAI, nnU-Net (--no-deps: its loss modules need only
# torch and numpy), torchmetrics, triton (kernels run under TRITON_INTERPRET=1) and pytest.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q -c constraints.txt
BASE := $(VENV)/.phidice-base
DEMODEPS := $(VENV)/.phidice-demo
TESTDEPS := $(VENV)/.phidice-test

.PHONY: demo test test-all bench install clean

$(BASE): pyproject.toml Makefile constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PIP) -e .
	$(PY) tests/base_install_check.py
	touch $(BASE)

$(DEMODEPS): $(BASE)
	$(PIP) -e ".[experiments]"
	touch $(DEMODEPS)

$(TESTDEPS): $(BASE)
	$(PIP) -e ".[test,triton]"
	$(PIP) --no-deps nnunetv2
	touch $(TESTDEPS)

install: $(TESTDEPS)

demo: $(DEMODEPS)
	$(VENV)/bin/phidice reproduce

test: $(TESTDEPS)
	$(PY) -m pytest -n 2 -q

test-all: $(TESTDEPS)
	$(PY) -m pytest -n 2 -q --runslow

bench: $(TESTDEPS)
	$(PY) benchmarks/bench_fused.py --repeats 21

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
