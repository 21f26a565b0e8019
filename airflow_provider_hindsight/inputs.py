"""One home for each rule about operator arguments: flags, failure budgets, rendered templates, row lists.

Templates render after ``__init__``, so operators call these in ``execute()`` for templated
arguments, and in ``__init__`` for the others (so that a DAG with a bad value fails when parsed).
Every error names the argument and the fix.
"""

from __future__ import annotations

import ast
import datetime
import json
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_hindsight.exceptions import HindsightValidationError

_FLAG_WORDS = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
    "": False,
}


def parse_flag(name: str, value: object) -> bool:
    """A bool, or what a template renders for one: true/false, 1/0, yes/no, on/off (any case), or "" for false."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _FLAG_WORDS:
        return _FLAG_WORDS[value.strip().lower()]
    raise HindsightValidationError(
        f"{name} must be true or false (or a template rendering to true/false, 1/0, yes/no), got {value!r}.",
        field=name,
    )


def check_duration(name: str, value: object) -> datetime.timedelta:
    """A duration given as a ``timedelta`` or a positive number of seconds, or an error naming ``name``."""
    seconds = value.total_seconds() if isinstance(value, datetime.timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds < float("inf"):
        raise HindsightValidationError(
            f"{name} must be a positive number of seconds or a datetime.timedelta, got {value!r}.", field=name
        )
    return datetime.timedelta(seconds=seconds)


def check_max_failures(value: object) -> int | float:
    """``max_failures`` as an int count (0 or more) or a float ratio from 0.0 to 1.0, or an error naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HindsightValidationError(
            f"max_failures must be an int count or a float ratio, got {value!r}.", field="max_failures"
        )
    if isinstance(value, float) and not 0.0 <= value <= 1.0:
        raise HindsightValidationError(
            f"max_failures as a float is a ratio between 0.0 and 1.0, got {value!r}; pass an int for a count of rows.",
            field="max_failures",
        )
    if isinstance(value, int) and value < 0:
        raise HindsightValidationError(f"max_failures must be 0 or more, got {value!r}.", field="max_failures")
    return value


def rendered_list(name: str, value: Any, *, of: str, example: str) -> Any:
    """A list argument as a template left it: a string must be a JSON list (or it is the non-native Jinja trap).

    Anything that is not a string is returned as it is, for the caller's own check.
    """
    if not isinstance(value, str):
        return value
    reject_rendered_python_literal(name, value)
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if not isinstance(parsed, list):
        raise HindsightValidationError(
            f"{name} rendered to text that is not a JSON list of {of}. Pass a list, the upstream task's output "
            f"(an XComArg), or a template rendering a JSON list such as {example}.",
            field=name,
        )
    return parsed


def rows_from(name: str, value: Any, *, single: str) -> Iterable[Any]:
    """The rows of a list argument (see :func:`rendered_list`).

    ``single`` names the operator to use for one row, for the message when a mapping is passed.
    """
    value = rendered_list(name, value, of="rows", example='[{"interview_request_id": 4821, ...}]')
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise HindsightValidationError(
            f"{name} must be an iterable of rows (dicts), got {type(value).__name__}. Wrap a single "
            f"row in a list, or use {single} for one.",
            field=name,
        )
    return value


def reject_rendered_python_literal(field: str, value: object) -> None:
    """Refuse a string that is a Python dict or list rendered to text by non-native Jinja.

    ``"{{ ti.xcom_pull(...) }}"`` renders a dict as ``"{'title': 'CTO'}"``; sending that as prose
    would give Paige Python syntax instead of notes.
    """
    if not isinstance(value, str):
        return
    text = value.strip()
    if (text[:1], text[-1:]) not in (("{", "}"), ("[", "]")):
        return
    try:
        json.loads(text)
        return
    except ValueError:
        pass
    try:
        root = ast.parse(text, mode="eval").body
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return
    if isinstance(root, (ast.Dict, ast.List)):
        kind = "dict" if isinstance(root, ast.Dict) else "list"
        raise HindsightValidationError(
            f"{field} arrived as the string {text[:60]!r}..., a Python {kind} that Jinja "
            "rendered to text. Pass the upstream value as an XComArg (for example "
            "`build_context.output['contact_context']`) or set `render_template_as_native_obj=True` on the "
            "DAG so the template renders a real object.",
            field=field,
        )
