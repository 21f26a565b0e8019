"""Shared by the benchmarks: a measurement in a fresh child process, and a process's memory from ``/proc``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


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
