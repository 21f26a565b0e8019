"""The state file: the emulator's contacts and interviews as JSON, so that they outlive a restart.

Two files: ``PATH`` holds a whole state, and ``PATH.journal`` one JSON line per change since (the
records it changed). Each change appends one line, so saving costs the same with ten interviews
or a hundred thousand; a start replays the journal onto the state and writes the result back to
``PATH`` atomically (a temporary file renamed over it), then empties the journal. A state and a
journal line have the same form, ``{"last_id", "contacts": [...], "interviews": [...],
"dropped_contacts": [...]}`` (every key optional in a line), and are applied the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

FORMAT = 1
"""The state file's format version; a file of another version is refused rather than misread."""


class StateFile:
    """``path`` and its journal ``path.journal``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.journal = path.with_name(path.name + ".journal")

    def load(self) -> list[dict[str, Any]]:
        """The saved state then each journal line, to apply in order; empty when nothing was saved yet.

        A last journal line cut short (the emulator killed while writing it) is left out: the
        change it held was never answered.
        """
        changes: list[dict[str, Any]] = []
        with contextlib.suppress(FileNotFoundError):
            changes.append(self._state(self.path.read_text(encoding="utf-8")))
        with contextlib.suppress(FileNotFoundError):
            lines = self.journal.read_text(encoding="utf-8").split("\n")
            for number, line in enumerate(lines, start=1):
                if not line:
                    continue
                try:
                    changes.append(json.loads(line))
                except ValueError:
                    if number != len(lines):  # not the last line, which has no newline when it was cut short
                        raise ValueError(f"state journal {str(self.journal)!r} is damaged at line {number}") from None
        return changes

    def compact(self, state: dict[str, Any]) -> None:
        """Write the whole ``state`` atomically, then empty the journal (replaying it again is harmless)."""
        handle, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(json.dumps({"format": FORMAT, **state}))
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        self.journal.write_bytes(b"")

    def append(self, change: dict[str, Any]) -> None:
        """Add one change as one line, in one write.

        No ``fsync``: the file must outlive the emulator's process, not the machine, and syncing
        every change would make each request wait for the disk.
        """
        line = (json.dumps(change) + "\n").encode()
        handle = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(handle, line)
        finally:
            os.close(handle)

    def _state(self, text: str) -> dict[str, Any]:
        try:
            state = json.loads(text)
        except ValueError:
            raise ValueError(
                f"state file {str(self.path)!r} is not JSON: delete it or pick another --state-file"
            ) from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"state file {str(self.path)!r} is not an emulator state of format {FORMAT}")
        return state
