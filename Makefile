# Two commands do all the set-up on a fresh machine:
#   make demo   runs the example DAGs on a real Airflow against the local Hindsight emulator
#   make test   runs the test suite
# Each creates its own virtualenv (.venv, Airflow 3.x by default) on first use, installed from the
# committed constraints file of its Airflow line (constraints/airflow-<line>.txt): a release elsewhere
# cannot change what a fresh machine installs. `make constraints` refreshes them on purpose.

PYTHON ?= python3
AIRFLOW_VERSION ?= 3.3.*
AIRFLOW_LINE := $(shell echo '$(AIRFLOW_VERSION)' | cut -d. -f1,2)
CONSTRAINTS := constraints/airflow-$(AIRFLOW_LINE).txt
VENV ?= .venv
TOOLS := .venv-tools
UV_VERSION := 0.13.9
UV := $(TOOLS)/bin/uv
PY := $(VENV)/bin/python

.PHONY: demo test lint docs benchmark package constraints clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

constraints/airflow-%.txt:
	@echo "No constraints for Airflow $*: the tested lines are $(patsubst constraints/airflow-%.in,%,$(wildcard constraints/airflow-*.in))." >&2
	@echo "A new line: add constraints/airflow-$*.in (as the others), then make constraints." >&2
	@exit 1

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV)
	$(UV) pip install --quiet --python $(PY) -c $(CONSTRAINTS) \
		-e ".[sql,openlineage,test,lint,docs,release]" "apache-airflow==$(AIRFLOW_VERSION)"
	$(PY) scripts/constraints.py check $(CONSTRAINTS)
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
	$(PY) benchmarks/bench_plan.py
	$(PY) benchmarks/bench_wait.py
	$(PY) benchmarks/bench_outage.py
	$(PY) benchmarks/bench_create.py
	$(PY) benchmarks/bench_budget.py
	$(PY) benchmarks/bench_history.py
	$(PY) benchmarks/bench_answers.py

package: $(VENV)/.installed
	bash scripts/check_package.sh $(PY) $(UV) $(CONSTRAINTS)

# Recompile every constraints/airflow-<line>.txt from the package index (its .in file, pyproject.toml's
# dependencies and every extra) and print what changed; then test each line and commit with the reason.
constraints: | $(UV)
	$(PYTHON) scripts/constraints.py refresh --uv $(UV)

clean:
	rm -rf .venv .venv-* .demo build dist docs/_build *.egg-info
