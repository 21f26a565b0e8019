"""The state file: the emulator's contacts and interviews as JSON, so that they outlive a restart."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

FORMAT = 1
"""The state file's format version; a file of another version is refused rather than misread."""


def load(path: Path) -> dict[str, Any] | None:
    """The saved state, or None when the file does not exist yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        state = json.loads(text)
    except ValueError:
        raise ValueError(f"state file {str(path)!r} is not JSON: delete it or pick another --state-file") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"state file {str(path)!r} is not an emulator state of format {FORMAT}")
    return state


def save(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically: to a temporary file beside ``path``, flushed, then renamed over it.

    A reader (or a restarted emulator) sees the old file or the new one, never half of one.
    """
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump({"format": FORMAT, **state}, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
