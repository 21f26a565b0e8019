"""AirflowDeployment keeps its home, database, DAGs folder and API address its own, whatever ``env`` holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_hindsight.testing.deployment import OWN_SETTINGS, AirflowDeployment


@pytest.mark.parametrize("setting", OWN_SETTINGS)
def test_env_that_moves_the_deployment_is_refused_naming_the_setting(tmp_path: Path, setting: str) -> None:
    # e.g. the environment of another Airflow: its database holds its DAGs paused, so no watcher would run
    with pytest.raises(ValueError, match=rf"env sets {setting}, which AirflowDeployment sets itself") as raised:
        AirflowDeployment(tmp_path / "home", tmp_path / "dags", env={setting: "elsewhere", "HINDSIGHT_X": "1"})
    assert "pass only connections and other settings in env" in str(raised.value)


def test_components_get_the_connections_of_env_and_the_deployment_database(tmp_path: Path) -> None:
    deployment = AirflowDeployment(
        tmp_path / "home", tmp_path / "dags", env={"AIRFLOW_CONN_WAREHOUSE": '{"conn_type": "sqlite"}'}
    )
    assert deployment.env["AIRFLOW_CONN_WAREHOUSE"] == '{"conn_type": "sqlite"}'
    assert deployment.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{tmp_path / 'home' / 'airflow.db'}"
    assert deployment.database == tmp_path / "home" / "airflow.db"
