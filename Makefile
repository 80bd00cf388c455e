# Two commands: `make demo` (set up, convert + check a built-in model) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/test.txt requirements/no-deps.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/test.txt
	$(PY) -m pip install --quiet --no-deps -r requirements/no-deps.txt
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

demo: setup
	$(PY) -m unigraph.cli.demo

test: setup
	$(PY) -m pytest -n 2 --dist loadgroup -q

bench: setup
	$(PY) bench/bench_spine.py

clean:
	rm -rf $(VENV) build *.egg-info
