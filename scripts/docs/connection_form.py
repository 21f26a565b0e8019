"""Draw ``docs/_static/connection-form.png``: the Hindsight connection form as the Airflow UI shows it.

    cd scripts/docs && npm install && cd ../..
    python scripts/docs/connection_form.py

Starts ``airflow api-server`` (Airflow 3) on a free port of 127.0.0.1 with a throw-away Airflow home, every
user an admin and connection testing enabled (so the form has its Test button), then runs
``connection_form.mjs`` (playwright-core and the system's Chromium) to fill in the form and save the picture.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from airflow_provider_hindsight.testing.ports import free_port

HERE = Path(__file__).resolve().parent
OUTPUT = HERE.parent.parent / "docs" / "_static" / "connection-form.png"
STARTUP_TIMEOUT = 300.0
"""Seconds to wait for the API server; it takes a minute or more on a busy 2-core machine."""


def wait_until_healthy(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"airflow api-server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(2)
    raise RuntimeError(f"airflow api-server did not answer on {url} within {STARTUP_TIMEOUT:.0f} s")


def stop(server: subprocess.Popen[bytes]) -> None:
    """Stop the API server and the workers it started (its own process group)."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def main() -> int:
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        print("playwright-core is missing: run `npm install` in scripts/docs/ first", file=sys.stderr)
        return 1
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hindsight-docs-ui-") as home:
        env = {
            **{name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW_")},
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        }
        airflow = [sys.executable, "-m", "airflow"]
        subprocess.run([*airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with open(Path(home) / "api-server.log", "wb") as log:
            server = subprocess.Popen(
                [*airflow, "api-server", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                wait_until_healthy(url, server)
                subprocess.run(["node", str(HERE / "connection_form.mjs"), url, str(OUTPUT)], cwd=HERE, check=True)
            finally:
                stop(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
