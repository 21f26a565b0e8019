#!/usr/bin/env bash
# Build the wheel and sdist, check their metadata, then install the wheel into a fresh virtualenv
# with Airflow and check what a user would: the provider is listed with its version, the
# connection type is registered with its hook, and the example DAGs import.
# Usage: scripts/check_package.sh PYTHON UV CONSTRAINTS   (the Makefile's `make package` passes all three)
set -euo pipefail
python=$1
uv=$2
constraints=$(cd "$(dirname "$3")" && pwd)/$(basename "$3")
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
rm -rf dist
"$python" -m build --quiet --outdir dist . >/dev/null
"$python" -m twine check --strict dist/*
version=$("$python" -c 'import airflow_provider_hindsight as p; print(p.__version__)')
wheel=$(ls dist/*.whl)
sdist=$(ls dist/*.tar.gz)

# The example DAGs ship in the sdist (MANIFEST.in), not in the wheel.
"$python" - "$wheel" "$sdist" dags/*.py <<'PY'
import sys, tarfile, zipfile
wheel, sdist, dags = sys.argv[1], sys.argv[2], sys.argv[3:]
in_sdist = {name.split("/", 1)[1] for name in tarfile.open(sdist).getnames() if "/" in name}
missing = [dag for dag in dags if dag not in in_sdist]
assert not missing, f"example DAGs missing from {sdist}: {missing}"
in_wheel = [name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("dags/")]
assert not in_wheel, f"{wheel} has a top-level dags/: {in_wheel}"
print(f"example DAGs in the sdist: {', '.join(dags)}")
PY

smoke=$(mktemp -d)
trap 'rm -rf "$smoke"' EXIT
"$uv" venv --quiet --python "$(command -v python3)" "$smoke/venv"
"$uv" pip install --quiet --python "$smoke/venv/bin/python" -c "$constraints" "${wheel}[sql]" "apache-airflow==${AIRFLOW_VERSION:-3.3.*}" \
    apache-airflow-providers-sqlite
export AIRFLOW_HOME="$smoke/home" AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__DAGS_FOLDER="$root/dags"
cd "$smoke"  # import the installed wheel, not the source tree

"$smoke/venv/bin/airflow" providers list -o json >"$smoke/providers.json" 2>/dev/null
"$smoke/venv/bin/python" - "$smoke/providers.json" "$version" <<'PY'
import json, sys
providers = {p["package_name"]: p for p in json.load(open(sys.argv[1]))}
listed = providers.get("airflow-provider-hindsight")
assert listed, f"provider not listed; got {sorted(providers)}"
assert listed["version"] == sys.argv[2], listed
print(f"airflow providers list: airflow-provider-hindsight {listed['version']}")
PY

"$smoke/venv/bin/python" - <<'PY'
import importlib.resources
from airflow.providers_manager import ProvidersManager

manager = ProvidersManager()
try:  # Airflow 3 serves hooks from the task SDK's manager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hook = ProvidersManagerTaskRuntime().hooks["hindsight"]
except ImportError:
    hook = manager.hooks["hindsight"]
assert hook is not None and hook.hook_class_name.endswith("HindsightHook"), hook
assert hook.connection_type == "hindsight"
info = manager.providers["airflow-provider-hindsight"].data
fields = set(info["connection-types"][0]["conn-fields"])
assert fields == {
    "plan", "requests_per_minute", "timeout", "max_retries", "allow_insecure_http", "budget_conn_id", "budget_table",
    "history_conn_id", "history_table", "history_retention_days",
}, fields
assert importlib.resources.files("airflow_provider_hindsight").joinpath("py.typed").is_file()
print(f"connection type hindsight -> {hook.hook_class_name}; fields: {', '.join(sorted(fields))}")
PY

"$smoke/venv/bin/python" - <<'PY'
import os
import sys

try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:
    from airflow.models.dagbag import DagBag
# Airflow's DAG processor puts the DAGs folder on the import path, so the create examples import the
# warehouse set-up they share (example_warehouse.py) beside them; a bare DagBag does not, so do it here.
sys.path.insert(0, os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
bag = DagBag()  # the DAGs folder and load_examples=False come from the environment
assert not bag.import_errors, bag.import_errors
print(f"example DAGs import from the wheel: {', '.join(sorted(bag.dag_ids))}")
PY
echo "package OK: wheel $root/$wheel"
echo "            sdist $root/$sdist"
