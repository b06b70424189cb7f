VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install test test-fast test-pythons test-python lint typecheck pytest demo docs bench bench-full clean

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

# The fast suite on the other supported Pythons, each in its own .venv-3.X: pyenv's
# interpreter, or python3.X on the PATH. A missing one is skipped with a note, and fails
# under CI=true.
PYTHONS ?= 3.12 3.13
python_for = $(or $(firstword $(wildcard $(HOME)/.pyenv/versions/$(1).*/bin/python$(1))),$(shell command -v python$(1) 2>/dev/null))

test-pythons:
	@for version in $(PYTHONS); do $(MAKE) --no-print-directory test-python V=$$version || exit 1; done

test-python:
	@python="$(call python_for,$(V))"; \
	if [ -z "$$python" ]; then \
		if [ "$$CI" = "true" ]; then echo "Python $(V) not found (CI=true)" >&2; exit 1; fi; \
		echo "Python $(V) not found: its fast suite is skipped"; exit 0; \
	fi; \
	venv=.venv-$(V); \
	if [ ! -f $$venv/.installed ] || [ pyproject.toml -nt $$venv/.installed ]; then \
		test -x $$venv/bin/python || "$$python" -m venv $$venv; \
		$$venv/bin/python -m pip install -q --upgrade pip; \
		$$venv/bin/python -m pip install -q -e '.[test,bench]'; \
		touch $$venv/.installed; \
	fi; \
	echo "fast suite on $$($$venv/bin/python --version)"; \
	HYPOTHESIS_PROFILE=fast $$venv/bin/pytest -q -n 2 -p no:cacheprovider -m "$(FAST)"

docs: install
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) $(DEMO_VENV) .venv-3.1[0-9] site .pytest_cache .mypy_cache .ruff_cache

BENCH_FLAGS ?=

bench: install
	$(PY) -m benchmarks.run --quick $(BENCH_FLAGS)
	$(PY) -m benchmarks.bench_core $(BENCH_FLAGS)
	$(PY) -m benchmarks.bench_first_sight $(BENCH_FLAGS)
	$(PY) -m benchmarks.bench_freshness $(BENCH_FLAGS)
	$(PY) -m benchmarks.bench_import $(BENCH_FLAGS)
	$(PY) -m benchmarks.bench_servers $(BENCH_FLAGS)

bench-full: install
	$(PY) -m benchmarks.run --full $(BENCH_FLAGS)
	$(PY) -m benchmarks.bench_core --requests 100000 $(BENCH_FLAGS)
	$(PY) -m benchmarks.bench_first_sight $(BENCH_FLAGS)
	$(PY) -m benchmarks.bench_instructions $(BENCH_FLAGS)
	$(PY) -m benchmarks.bench_freshness $(BENCH_FLAGS)
	$(PY) -m benchmarks.bench_import $(BENCH_FLAGS)
	$(PY) -m benchmarks.bench_servers $(BENCH_FLAGS)

# The demo has a light environment of its own: no test or benchmark tools.
DEMO_VENV ?= .venv-demo

$(DEMO_VENV)/.installed: pyproject.toml
	test -x $(DEMO_VENV)/bin/python || $(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install -q -e '.[demo]'
	touch $@

demo: $(DEMO_VENV)/.installed
	HOST=$(HOST) PORT=$(PORT) $(DEMO_VENV)/bin/python -m demo
