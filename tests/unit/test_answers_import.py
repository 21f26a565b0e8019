"""The answers trigger needs Airflow 3: on 2.11 importing it says so and points at the scheduled landing."""

from __future__ import annotations

import importlib
import sys

import pytest

from tests.helpers import is_airflow_2


@pytest.mark.skipif(not is_airflow_2(), reason="Airflow 2.11 only: Airflow 3 has asset watchers")
def test_on_airflow_2_importing_the_answers_trigger_says_it_needs_airflow_3() -> None:
    sys.modules.pop("airflow_provider_hindsight.triggers.answers", None)
    with pytest.raises(ImportError) as raised:
        importlib.import_module("airflow_provider_hindsight.triggers.answers")
    message = str(raised.value)
    assert "needs Airflow 3.0 or later" in message and "HindsightInterviewsToSqlOperator" in message
    for module in ("triggers.interview", "sensors.interview", "transfers.hindsight_to_sql"):
        importlib.import_module(f"airflow_provider_hindsight.{module}")  # the rest of the package is unchanged


@pytest.mark.skipif(is_airflow_2(), reason="Airflow 3 only")
def test_on_airflow_3_the_answers_trigger_is_an_event_trigger() -> None:
    from airflow.triggers.base import BaseEventTrigger

    from airflow_provider_hindsight.triggers.answers import HindsightAnswersTrigger

    assert issubclass(HindsightAnswersTrigger, BaseEventTrigger)
