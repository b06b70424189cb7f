VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install test lint typecheck pytest demo bench bench-full clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,postgres,demo,bench]'
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy src

pytest: install
	$(VENV)/bin/pytest -q

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

bench: install
	$(PY) -m benchmarks.run --quick
	$(PY) -m benchmarks.bench_core --json benchmarks/results/core.json
	$(PY) -m benchmarks.bench_freshness --json benchmarks/results/freshness.json

bench-full: install
	$(PY) -m benchmarks.run --full
	$(PY) -m benchmarks.bench_core --requests 100000 --json benchmarks/results/core.json
	$(PY) -m benchmarks.bench_freshness --json benchmarks/results/freshness.json

demo: install
	HOST=$(HOST) PORT=$(PORT) $(PY) -m demo
