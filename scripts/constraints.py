"""The project's constraints files: refresh them on purpose, and check an environment against one.

Every environment the project builds for itself (``make test``, ``make demo``, ``make lint``/``docs``/
``package``, each Airflow line CI tests) installs with ``-c constraints/airflow-<line>.txt``, as Airflow's
own installs use its constraints, so a release elsewhere cannot turn a fresh machine red.

    python scripts/constraints.py refresh --uv UV       recompile every line from the index; print what changed
    python scripts/constraints.py check FILE            (with the environment's python) every installed
                                                        distribution is pinned in FILE at its version

Standard library only: ``refresh`` runs with the machine's Python before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints"
PROJECT = "airflow-provider-hindsight"
# The oldest Python the package supports: a universal resolution holds for it and every newer one.
OLDEST_PYTHON = "3.10"
EXTRAS = ("sql", "openlineage", "test", "lint", "docs", "release")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)\s*(?:;\s*(.*))?$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, set[str]]:
    """Package name -> pinned versions (a universal file may pin two versions under different markers)."""
    pins: dict[str, set[str]] = {}
    if not path.exists():
        return pins
    for line in path.read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            pins.setdefault(canonical(match.group(1)), set()).add(match.group(2))
    return pins


def compile_line(uv: str, source: Path) -> Path:
    target = source.with_suffix(".txt")
    command = [
        uv, "pip", "compile", "--quiet", "--upgrade", "--universal",
        "--python-version", OLDEST_PYTHON,
        "--custom-compile-command", "make constraints",
        "pyproject.toml", str(source.relative_to(ROOT)),
        *(arg for extra in EXTRAS for arg in ("--extra", extra)),
        "-o", str(target.relative_to(ROOT)),
    ]  # fmt: skip
    subprocess.run(command, cwd=ROOT, check=True)
    return target


def describe_changes(before: dict[str, set[str]], after: dict[str, set[str]]) -> list[str]:
    lines = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name, set()), after.get(name, set())
        if old == new:
            continue
        if not old:
            lines.append(f"  added    {name} {', '.join(sorted(new))}")
        elif not new:
            lines.append(f"  removed  {name} {', '.join(sorted(old))}")
        else:
            lines.append(f"  changed  {name} {', '.join(sorted(old))} -> {', '.join(sorted(new))}")
    return lines


def refresh(uv: str) -> None:
    for source in sorted(CONSTRAINTS.glob("airflow-*.in")):
        target = source.with_suffix(".txt")
        before = read_pins(target)
        compile_line(uv, source)
        changes = describe_changes(before, read_pins(target))
        print(f"{target.relative_to(ROOT)}: {len(changes) or 'no'} change{'s' if len(changes) != 1 else ''}")
        for change in changes:
            print(change)
    print("Review the changes, run `make test` on each line, and commit them with the reason for the refresh.")


def check(path: Path) -> int:
    """Every distribution in this environment is pinned in ``path`` at the version installed."""
    pins = read_pins(path)
    problems = []
    for dist in metadata.distributions():
        name = canonical(dist.metadata["Name"])
        if name in (PROJECT, "pip", "setuptools", "wheel"):
            continue
        if dist.version not in pins.get(name, set()):
            pinned = ", ".join(sorted(pins.get(name, set()))) or "not named"
            problems.append(f"{name} {dist.version} (constraints: {pinned})")
    if problems:
        print(f"This environment differs from {path}:", *problems, sep="\n  ", file=sys.stderr)
        print(
            "Rebuild it (make clean, then the target), or refresh the constraints: make constraints.", file=sys.stderr
        )
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    refresh_parser = commands.add_parser("refresh", help="recompile every constraints file and print what changed")
    refresh_parser.add_argument("--uv", default="uv", help="the uv executable")
    check_parser = commands.add_parser("check", help="check this Python's environment against a constraints file")
    check_parser.add_argument("file", type=Path)
    args = parser.parse_args()
    if args.command == "refresh":
        refresh(args.uv)
        return 0
    return check(args.file)


if __name__ == "__main__":
    sys.exit(main())
