# The two set-up commands of the README: `make run` and `make test`.
# Each creates (or reuses) the local virtualenv .venv, installed under constraints.txt.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: venv run test test-all lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt "setuptools>=77,<81" wheel
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	$(PY) -m vqbench.compat install
	touch $(STAMP)

run: venv
	$(VENV)/bin/vqbench run

test: venv
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2

test-all: venv
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 -m "not gpu"

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info
