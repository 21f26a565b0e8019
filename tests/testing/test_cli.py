"""``python -m airflow_provider_hindsight.testing``: the emulator from the command line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_hindsight.testing.__main__ import build_parser, parse_ids

if TYPE_CHECKING:
    pass


# --- command line --------------------------------------------------------------------------------


def test_parse_ids() -> None:
    assert parse_ids("3") == [3]
    assert parse_ids("1-3, 7,10-11") == [1, 2, 3, 7, 10, 11]


@pytest.mark.parametrize("text", ["", "a", "0-2", "5-3", "1-2-3"])
def test_parse_ids_refuses_nonsense(text: str) -> None:
    from argparse import ArgumentTypeError

    with pytest.raises(ArgumentTypeError):
        parse_ids(text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_cli(*args: str) -> subprocess.Popen[str]:
    """``python -m airflow_provider_hindsight.testing`` with ``args``, its output piped."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), *sys.path])}
    command = [sys.executable, "-m", "airflow_provider_hindsight.testing", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def exported_connection(line: str) -> dict[str, Any]:
    """What a shell holds in AIRFLOW_CONN_HINDSIGHT_DEFAULT after running the printed ``export`` line."""
    assert line.startswith("export AIRFLOW_CONN_HINDSIGHT_DEFAULT=")
    shell = subprocess.run(
        ["bash", "-c", f"{line}\nprintenv AIRFLOW_CONN_HINDSIGHT_DEFAULT"], capture_output=True, text=True, check=True
    )
    return dict(json.loads(shell.stdout))


def test_cli_defaults_stay_clear_of_airflow() -> None:
    """Airflow serves on 8080, 8793 and 8794, and its secret masker ignores values under 5 characters."""
    args = build_parser().parse_args([])

    assert args.port == 9321
    assert args.api_key == "hindsight-demo-key"
    assert "default: 9321" in build_parser().format_help()


def test_cli_serves_until_sigterm_and_prints_a_paced_connection() -> None:
    port = free_port()
    process = start_cli(
        "--port",
        str(port),
        "--api-key",
        "cli-test-key",
        "--requests-per-minute",
        "300",
        "--latency",
        "0.01",
        "--interview-ids",
        "1-5",
    )
    try:
        assert process.stdout is not None
        base_url = f"http://127.0.0.1:{port}/api/v1"
        assert process.stdout.readline() == (
            f"Hindsight emulator serving {base_url} (300 requests a minute). Point Airflow at it with:\n"
        )
        assert exported_connection(process.stdout.readline().strip()) == {
            "conn_type": "hindsight",
            "host": base_url,
            "password": "cli-test-key",
            "extra": {"requests_per_minute": 300},
        }

        headers = {"Authorization": "Bearer cli-test-key"}
        assert requests.patch(f"{base_url}/interviews/5", json={"objective": "x"}, headers=headers).status_code == 200
        assert requests.patch(f"{base_url}/interviews/6", json={"objective": "x"}, headers=headers).status_code == 404
        state = requests.get(f"http://127.0.0.1:{port}/_emulator/interviews").json()
        assert state["5"]["objective"] == "x"

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
        assert process.stderr is not None
        assert process.stderr.read() == ""
    finally:
        process.kill()
        process.communicate()


def test_cli_without_a_limit_prints_a_connection_without_a_pace() -> None:
    port = free_port()
    process = start_cli("--port", str(port))
    try:
        assert process.stdout is not None
        base_url = f"http://127.0.0.1:{port}/api/v1"
        assert process.stdout.readline().startswith(f"Hindsight emulator serving {base_url} (no rate limit).")
        assert exported_connection(process.stdout.readline().strip()) == {
            "conn_type": "hindsight",
            "host": base_url,
            "password": "hindsight-demo-key",
        }
        headers = {"Authorization": "Bearer hindsight-demo-key"}
        assert requests.patch(f"{base_url}/interviews/7", json={"objective": "x"}, headers=headers).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=5)
        process.communicate()


def test_cli_port_in_use_names_the_option() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start_cli("--port", str(port))
        _, stderr = process.communicate(timeout=30)

    assert process.returncode == 2
    assert f"cannot serve on 127.0.0.1:{port}" in stderr
    assert "pick another --port" in stderr
