"""Shared by the benchmarks: the emulator in its own process, a measurement in a fresh child process, memory."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "benchmarks"
API_KEY = "bench-api-key"
"""The key the emulator process expects."""


def status_kib(field: str) -> int:
    """A memory figure of this process from ``/proc/self/status`` (Linux), in KiB: ``VmRSS``, ``VmHWM``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak_memory() -> None:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS, so a later peak measures one step."""
    Path("/proc/self/clear_refs").write_text("5")


def run_child(script: str, task: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``script --child <task as JSON>`` in a fresh Python process; its last output line is a JSON result."""
    output = subprocess.run(
        [sys.executable, script, "--child", json.dumps(task)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=env,
    ).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class EmulatorSettings:
    requests_per_minute: float | None = None
    rate_window: float = 60.0
    latency: float = 0.0
    seed: int = 0
    """Interviews 1..seed exist (status sent), for benchmarks that read them."""
    seed_completed: int = 0
    """Of which the first ones are completed."""
    complete_after: float | None = None


class EmulatorProcess:
    """``emulator_process.py`` in a child process: its base URL and its answer counters."""

    def __init__(self, settings: EmulatorSettings) -> None:
        command = [sys.executable, str(HERE / "emulator_process.py"), "--api-key", API_KEY]
        command += ["--rate-window", str(settings.rate_window), "--latency", str(settings.latency)]
        if settings.requests_per_minute is not None:
            command += ["--requests-per-minute", str(settings.requests_per_minute)]
        if settings.seed:
            command += ["--seed", str(settings.seed), "--seed-completed", str(settings.seed_completed)]
        if settings.complete_after is not None:
            command += ["--complete-after", str(settings.complete_after)]
        self.settings = settings
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.base_url: str = self._read()["base_url"]

    def _read(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the emulator process exited")
        return json.loads(line)

    def _ask(self, command: str) -> dict[str, Any]:
        assert self._process.stdin is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        return self._read()

    def requests(self) -> int:
        """Requests received since the last reset."""
        return int(self._ask("counts")["request_count"])

    def counts(self) -> dict[int, int]:
        """Answers sent since the last reset, by status: ``{200: 2000, 429: 0}``."""
        return {int(status): count for status, count in self._ask("counts")["status_counts"].items()}

    def reset(self) -> None:
        self._ask("reset")

    def stop(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


@contextmanager
def emulator(settings: EmulatorSettings) -> Iterator[EmulatorProcess]:
    process = EmulatorProcess(settings)
    try:
        yield process
    finally:
        process.stop()
