# Quickstart: `make demo` and `make test` work on a fresh machine: they create .venv and install
# torch==2.13.0 first (a CPU wheel), so that nothing pulls a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.phidice-installed

.PHONY: demo test test-all bench install clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,triton]"
	$(PY) -m pip install -q --no-deps nnunetv2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/phidice reproduce

test: $(STAMP)
	$(PY) -m pytest -n 2 -q

test-all: $(STAMP)
	$(PY) -m pytest -n 2 -q --runslow

bench: $(STAMP)
	$(PY) benchmarks/bench_fused.py --repeats 15

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
