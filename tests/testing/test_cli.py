"""``python -m airflow_provider_hindsight.testing``: the emulator from the command line."""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_hindsight.testing.__main__ import build_parser, completion_model, parse_ids, summary
from airflow_provider_hindsight.testing.emulator import UNLIMITED_PACE, CompletionModel
from tests.helpers import free_port

if TYPE_CHECKING:
    from collections.abc import Callable

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


def logged(line: str) -> str:
    """An access line without its timestamp, after checking that it starts with one (UTC, to the millisecond)."""
    stamp, _, rest = line.rstrip("\n").partition(" ")
    moment = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - moment).total_seconds()) < 60
    return rest


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
        assert logged(process.stdout.readline()) == "POST /api/v1/interviews 201"

        fetched = requests.get(f"{base_url}/interviews/{interview_id}?note=private", headers=headers, timeout=5)
        assert fetched.json()["status"] == "completed"  # --complete-after 0
        assert "Competitor X" in fetched.json()["transcript"]["content"]
        assert logged(process.stdout.readline()) == f"GET /api/v1/interviews/{interview_id} 200"  # no query string

        refused = requests.patch(f"{base_url}/interviews/{interview_id}", json={"objective": "x"}, timeout=5)
        assert refused.status_code == 401
        assert logged(process.stdout.readline()) == f"PATCH /api/v1/interviews/{interview_id} 401"

        stats = requests.get(base_url.replace("/api/v1", "/_emulator/stats"), timeout=5).json()
        assert stats["by_status"] == {"200": 1, "201": 1, "401": 1}  # introspection is neither counted nor logged
        assert stats["creates_by_contact"] == {email: 1}

        process.send_signal(signal.SIGTERM)
        rest, errors = process.communicate(timeout=30)
        assert process.returncode == 0
        assert rest == "Received 3 requests: {200: 1, 201: 1, 401: 1}\n"
        assert errors == ""
    finally:
        process.kill()
        process.communicate()


def test_cli_builds_the_completion_model() -> None:
    args = build_parser().parse_args(
        ["--answer-median", "3600", "--answer-spread", "1.2", "--never-complete", "0.3", "--seed", "5"]
    )
    assert completion_model(args) == CompletionModel(median=3600.0, sigma=1.2, never_share=0.3, seed=5)
    assert completion_model(build_parser().parse_args(["--complete-after", "2"])) == CompletionModel(median=2.0)
    assert completion_model(build_parser().parse_args([])) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--complete-after", "1", "--answer-median", "2"], "not allowed with argument"),
        (["--never-complete", "1.5"], "--never-complete"),
        (["--answer-spread", "1"], "--answer-spread and --never-complete need --answer-median"),
    ],
)
def test_cli_refuses_a_completion_model_that_does_not_hold(args: list[str], message: str) -> None:
    process = start_cli("--port", "0", *args)
    _, errors = process.communicate(timeout=30)

    assert process.returncode == 2
    assert message in errors


def test_cli_state_file_keeps_interviews_across_a_restart(tmp_path: Path) -> None:
    state_file = str(tmp_path / "state.json")
    body = {"contact_email": "jane.smith@example.com", "sequence_id": "seq_1"}

    def serve_once(action: Callable[[str], Any]) -> Any:
        process = start_cli("--port", "0", "--api-key", "cli-state-key", "--state-file", state_file)
        try:
            assert process.stdout is not None
            serving = re.match(
                r"Hindsight emulator serving (http://127\.0\.0\.1:\d+/api/v1) ", process.stdout.readline()
            )
            assert serving is not None
            result = action(serving[1])
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=30)
            assert process.returncode == 0
            return result
        finally:
            process.kill()
            process.communicate()

    headers = {"Authorization": "Bearer cli-state-key"}
    created = serve_once(lambda url: requests.post(f"{url}/interviews", json=body, headers=headers, timeout=5).json())
    fetched = serve_once(
        lambda url: requests.get(f"{url}/interviews/{created['interview_request_id']}", headers=headers, timeout=5)
    )

    assert fetched.status_code == 200
    assert fetched.json()["contact_id"] == created["contact_id"]
    assert fetched.json()["survey_url"] == created["survey_url"]
