"""``python -m airflow_provider_hindsight.testing``: the emulator from the command line."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_hindsight.testing.__main__ import build_parser, parse_ids, summary
from airflow_provider_hindsight.testing.emulator import UNLIMITED_PACE
from tests.helpers import free_port

# --- command line --------------------------------------------------------------------------------


def test_parse_ids() -> None:
    assert parse_ids("3") == [3]
    assert parse_ids("1-3, 7,10-11") == [1, 2, 3, 7, 10, 11]


@pytest.mark.parametrize("text", ["", "a", "0-2", "5-3", "1-2-3"])
def test_parse_ids_refuses_nonsense(text: str) -> None:
    from argparse import ArgumentTypeError

    with pytest.raises(ArgumentTypeError):
        parse_ids(text)


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


def test_cli_without_a_limit_prints_a_fast_pace() -> None:
    """Not the hook's 60-a-minute default: a 50-row example would take 50 seconds."""
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
            "extra": {"requests_per_minute": UNLIMITED_PACE},
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


# --- access log, completion, summary -------------------------------------------------------------


def test_cli_parses_complete_after_and_log_requests() -> None:
    args = build_parser().parse_args(["--complete-after", "2.5", "--log-requests"])
    assert (args.complete_after, args.log_requests) == (2.5, True)

    defaults = build_parser().parse_args([])
    assert (defaults.complete_after, defaults.log_requests) == (None, False)


@pytest.mark.parametrize("value", ["-1", "soon", "nan"])
def test_cli_refuses_a_bad_complete_after(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--complete-after", value])

    assert exited.value.code == 2
    assert "--complete-after" in capsys.readouterr().err


def test_summary_line() -> None:
    assert summary({}) == "Received 0 requests: {}"
    assert summary({201: 1}) == "Received 1 request: {201: 1}"
    assert summary({429: 1, 0: 2, 200: 55}) == "Received 58 requests: {0: 2, 200: 55, 429: 1}"


def test_cli_logs_requests_completes_interviews_and_sums_up_on_sigterm() -> None:
    key, email = "cli-log-key", "jane.smith@example.com"
    process = start_cli("--port", "0", "--api-key", key, "--complete-after", "0", "--log-requests")
    try:
        assert process.stdout is not None
        serving = re.match(r"Hindsight emulator serving (http://127\.0\.0\.1:\d+/api/v1) ", process.stdout.readline())
        assert serving is not None
        base_url = serving[1]
        assert exported_connection(process.stdout.readline().strip())["extra"] == {
            "requests_per_minute": UNLIMITED_PACE
        }
        headers = {"Authorization": f"Bearer {key}"}
        body = {
            "contact_email": email,
            "sequence_id": "seq_1",
            "contact_name": "Jane Smith",
            "contact_context": {"competitor": "Competitor X"},
        }

        created = requests.post(f"{base_url}/interviews", json=body, headers=headers, timeout=5)
        assert created.status_code == 201
        interview_id = created.json()["interview_request_id"]
        assert process.stdout.readline() == "POST /api/v1/interviews 201\n"

        fetched = requests.get(f"{base_url}/interviews/{interview_id}?note=private", headers=headers, timeout=5)
        assert fetched.json()["status"] == "completed"  # --complete-after 0
        assert "Competitor X" in fetched.json()["transcript"]["content"]
        assert process.stdout.readline() == f"GET /api/v1/interviews/{interview_id} 200\n"  # no query string

        refused = requests.patch(f"{base_url}/interviews/{interview_id}", json={"objective": "x"}, timeout=5)
        assert refused.status_code == 401
        assert process.stdout.readline() == f"PATCH /api/v1/interviews/{interview_id} 401\n"

        stats = requests.get(base_url.replace("/api/v1", "/_emulator/stats"), timeout=5).json()
        assert stats["by_status"] == {"200": 1, "201": 1, "401": 1}  # introspection is neither counted nor logged

        process.send_signal(signal.SIGTERM)
        rest, errors = process.communicate(timeout=30)
        assert process.returncode == 0
        assert rest == "Received 3 requests: {200: 1, 201: 1, 401: 1}\n"
        assert errors == ""
    finally:
        process.kill()
        process.communicate()
