"""The import arrows point one way (docs/architecture.md): the rule is scripts/docs/layers.py's table of layers,
read from the source, so a lazy import inside a function or under TYPE_CHECKING counts too."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "docs" / "layers.py"


def load_layers() -> ModuleType:
    spec = importlib.util.spec_from_file_location("layers", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_import_points_down_and_no_module_imports_itself_back() -> None:
    assert load_layers().violations() == []


def test_the_check_sees_an_upward_import_and_a_cycle() -> None:
    layers = load_layers()
    edges = [
        ("airflow_provider_hindsight.hooks.hindsight", "airflow_provider_hindsight.bulk.engine"),
        ("airflow_provider_hindsight.bulk.circuit", "airflow_provider_hindsight.bulk.rows"),
        ("airflow_provider_hindsight.bulk.rows", "airflow_provider_hindsight.bulk.circuit"),
    ]
    layers.import_edges = lambda: edges
    assert layers.violations() == [
        "import cycle: airflow_provider_hindsight.bulk.circuit <-> airflow_provider_hindsight.bulk.rows",
        "airflow_provider_hindsight.hooks.hindsight -> airflow_provider_hindsight.bulk.engine: "
        "hooks imports bulk, a higher layer",
    ]


def test_every_unit_of_the_package_has_a_layer() -> None:
    layers = load_layers()
    units = {layers.unit_of(module) for module, _ in layers.modules()}
    placed = {unit for _, members in layers.LAYERS for unit in members} | set(layers.ISLANDS)
    assert units <= placed
