VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install test test-fast lint typecheck pytest demo docs bench bench-full clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy src demo benchmarks support examples

pytest: install
	$(VENV)/bin/pytest -q

test: lint typecheck pytest

# Everything but the tests that need PostgreSQL, Redis, a browser, node, a package
# build or the docs site build (the markers in pyproject.toml), with a tenth of the
# property tests' examples, on two workers; `make test` runs all of it in full, and
# under CI=true a missing server or tool fails.
FAST := not postgres and not redis and not browser and not node and not packaging and not docs
test-fast: install
	HYPOTHESIS_PROFILE=fast $(VENV)/bin/pytest -q -n 2 -m "$(FAST)"

docs: install
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) $(DEMO_VENV) site .pytest_cache .mypy_cache .ruff_cache

BENCH_FLAGS ?=

bench: install
	$(PY) -m benchmarks.run --quick $(BENCH_FLAGS)
	$(PY) -m benchmarks.bench_core $(BENCH_FLAGS)
	$(PY) -m benchmarks.bench_freshness $(BENCH_FLAGS)
	$(PY) -m benchmarks.bench_import $(BENCH_FLAGS)

bench-full: install
	$(PY) -m benchmarks.run --full $(BENCH_FLAGS)
	$(PY) -m benchmarks.bench_core --requests 100000 $(BENCH_FLAGS)
	$(PY) -m benchmarks.bench_freshness $(BENCH_FLAGS)
	$(PY) -m benchmarks.bench_import $(BENCH_FLAGS)

# The demo has a light environment of its own: no test or benchmark tools.
DEMO_VENV ?= .venv-demo

$(DEMO_VENV)/.installed: pyproject.toml
	test -x $(DEMO_VENV)/bin/python || $(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install -q -e '.[demo]'
	touch $@

demo: $(DEMO_VENV)/.installed
	HOST=$(HOST) PORT=$(PORT) $(DEMO_VENV)/bin/python -m demo
