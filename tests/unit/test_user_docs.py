"""What a new user reads must work as written: checks over every user page (README, docs but the maintainers')."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from airflow_provider_hindsight.hooks.connection_form import CONNECTION_FIELDS
from tests.helpers import ROOT

MAINTAINER_PAGES = {"architecture.md"}
USER_PAGES = sorted(
    [ROOT / "README.md"]
    + [
        page
        for page in (ROOT / "docs").rglob("*.md")
        if "_build" not in page.parts and page.name not in MAINTAINER_PAGES
    ]
)
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
PARAM_IN_TEMPLATE = re.compile(r"\{\{\s*params\.(\w+)")
HISTORY = re.compile(r"\bno longer\b|\bused to\b|\| before \||\bthe issue's\b", re.IGNORECASE)


def page_name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def example_dags_with_a_sensor() -> list[str]:
    return sorted(path.stem for path in (ROOT / "dags").glob("*.py") if "HindsightInterviewSensor(" in path.read_text())


def test_there_are_user_pages_and_a_dag_with_a_sensor() -> None:
    assert len(USER_PAGES) > 10
    assert "example_hindsight_lifecycle" in example_dags_with_a_sensor()


@pytest.mark.parametrize("page", USER_PAGES, ids=page_name)
def test_every_airflow_dags_test_where_a_sensor_waits_has_a_timeout(page: Path) -> None:
    """``airflow dags test`` ignores SIGTERM while a deferred sensor waits: only ``timeout -s INT`` stops it."""
    dag_ids = "|".join(example_dags_with_a_sensor())
    for line in page.read_text().splitlines():
        if re.search(rf"airflow dags test ({dag_ids})\b", line):
            assert re.search(r"timeout -s INT \d+ airflow dags test", line), f"{page_name(page)}: {line.strip()}"


@pytest.mark.parametrize("page", USER_PAGES, ids=page_name)
def test_user_pages_speak_in_the_present_tense(page: Path) -> None:
    """History belongs in the changelog."""
    found = [line.strip() for line in page.read_text().splitlines() if HISTORY.search(line)]
    assert found == [], f"{page_name(page)} speaks of history: {found}"


@pytest.mark.parametrize("page", USER_PAGES, ids=page_name)
def test_mysql_is_said_to_be_untested_wherever_it_is_named(page: Path) -> None:
    """The tests run the SQL parts on PostgreSQL and SQLite only."""
    for paragraph in re.split(r"\n\s*\n", page.read_text()):
        if "mysql" in paragraph.lower():
            assert "not tested" in paragraph, f"{page_name(page)} names MySQL without saying it is not tested"


def test_the_connection_form_names_only_tested_budget_stores() -> None:
    descriptions = " ".join(field.description for field in CONNECTION_FIELDS)
    assert "MySQL" not in descriptions
    assert "PostgreSQL" in descriptions


@pytest.mark.parametrize("page", USER_PAGES, ids=page_name)
def test_snippets_that_template_a_param_declare_it_on_the_dag(page: Path) -> None:
    """``{{ params.x }}`` fails unless the DAG declares ``x``: a snippet using one shows the DAG's ``params=``."""
    for block in PYTHON_BLOCK.findall(page.read_text()):
        for name in PARAM_IN_TEMPLATE.findall(block):
            assert re.search(rf"params=\{{[^}}]*[\"']{name}[\"']", block), (
                f"{page_name(page)}: a snippet templates params.{name} but shows no DAG declaring it"
            )


def test_examples_that_import_the_stand_in_warehouse_say_so() -> None:
    for path in sorted((ROOT / "dags").glob("*.py")):
        module = ast.parse(path.read_text())
        imports_warehouse = any(
            isinstance(node, ast.ImportFrom) and node.module == "example_warehouse" for node in module.body
        )
        if imports_warehouse:
            assert "example_warehouse.py" in (ast.get_docstring(module) or ""), path.name


def test_the_waiting_page_gives_a_campaigns_first_hour_the_cost_of_the_polling_plan() -> None:
    """500 new interviews under one sensor with the defaults: the polls of their first hour, a minute."""
    from airflow_provider_hindsight.polling import DEFAULT_MAX_POLL_INTERVAL, DEFAULT_POLL_AGE_FACTOR
    from airflow_provider_hindsight.triggers.watch import sensor_plan

    plan = sensor_plan(300, DEFAULT_POLL_AGE_FACTOR, DEFAULT_MAX_POLL_INTERVAL)
    polls_in_the_first_hour, age = 0, 0.0
    while age < 3600:  # the first poll is at once, then each after the plan's interval for its age
        polls_in_the_first_hour += 1
        age += plan.interval(age)
    per_minute = round(500 * polls_in_the_first_hour / 60)

    text = " ".join((ROOT / "docs" / "waiting.md").read_text().split())
    stated = re.findall(r"500 new interviews take (\d+) requests a minute in their first hour", text)
    assert stated == [str(per_minute)]
    assert f"for their first 50 minutes ({per_minute} requests a minute" in text
