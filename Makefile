# Two commands do all the set-up on a fresh machine:
#   make demo   runs the example DAGs on a real Airflow against the local Hindsight emulator
#   make test   runs the test suite
# Each creates its own virtualenv (.venv, Airflow 3.x by default) on first use.

PYTHON ?= python3
AIRFLOW_VERSION ?= 3.3.*
VENV ?= .venv
TOOLS := .venv-tools
UV := $(TOOLS)/bin/uv
PY := $(VENV)/bin/python

.PHONY: demo test lint docs benchmark package clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv

$(VENV)/.installed: pyproject.toml | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV)
	$(UV) pip install --quiet --python $(PY) -e ".[sql,test,lint,docs,release]" "apache-airflow==$(AIRFLOW_VERSION)"
	touch $@

demo: $(VENV)/.installed
	$(PY) scripts/demo.py

test: $(VENV)/.installed
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

docs: $(VENV)/.installed
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	@echo "HTML written to docs/_build/html: open docs/_build/html/index.html"

# Each benchmark prints its numbers and writes them (and its plots) into docs/_generated and docs/_static.
benchmark: $(VENV)/.installed
	$(PY) benchmarks/bench_bulk.py
	$(PY) benchmarks/bench_pace.py
	$(PY) benchmarks/bench_sync.py
	$(PY) benchmarks/bench_warehouse.py
	$(PY) benchmarks/bench_postgres_stream.py
	$(PY) benchmarks/bench_land.py
	$(PY) benchmarks/bench_create.py

package: $(VENV)/.installed
	bash scripts/check_package.sh $(PY) $(UV)

clean:
	rm -rf .venv .venv-* .demo build dist docs/_build *.egg-info
