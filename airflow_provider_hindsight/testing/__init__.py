"""Test helpers: a local emulator of the Hindsight API (standard library only).

``HindsightEmulator`` serves ``POST /api/v1/interviews``, ``GET`` and ``PATCH /api/v1/interviews/{id}``
on 127.0.0.1 for tests and DAG development; ``python -m airflow_provider_hindsight.testing`` runs it
standalone, and the pytest plugin ``airflow_provider_hindsight.testing.pytest_plugin`` provides it
as a fixture.
"""

from __future__ import annotations

from airflow_provider_hindsight.testing.emulator import CompletionModel, HindsightEmulator, RecordedRequest

__all__ = ["CompletionModel", "HindsightEmulator", "RecordedRequest"]
