"""The ``hindsight`` connection's form: its extra fields, described once for both Airflow lines.

:data:`CONNECTION_FIELDS` is the one description; the Airflow 3 form (``conn-fields`` in the
provider info) and the Airflow 2.11 form widgets are generated from it, so they cannot drift
apart. This module imports nothing from Airflow: Airflow reads the provider info while it is
itself being imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

DEFAULT_BASE_URL = "https://app.usehindsight.com/api/v1"
PLAN_REQUESTS_PER_MINUTE: dict[str, int] = {"essentials": 60, "growth": 300, "enterprise": 1000}
DEFAULT_REQUESTS_PER_MINUTE = 60
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_BUDGET_TABLE = "hindsight_rate_budget"
DEFAULT_HISTORY_TABLE = "hindsight_runs"
HISTORY_ROWS_SUFFIX = "_rows"
"""The run history's rows' table is its runs' table's name with this added."""
DEFAULT_HISTORY_RETENTION_DAYS = 90


@dataclass(frozen=True)
class ConnectionField:
    """One extra field of the connection form, described once for both Airflow lines."""

    name: str
    label: str
    kind: Literal["choice", "integer", "number", "boolean", "text"]
    description: str
    minimum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] = ()
    placeholder: str | None = None


CONNECTION_FIELDS: tuple[ConnectionField, ...] = (
    ConnectionField(
        "plan",
        "Plan",
        "choice",
        "Optional. Your Hindsight plan: paces requests at 60, 300 or 1,000 a minute. Without a plan or "
        "requests per minute the pace is 60 a minute.",
        choices=tuple(PLAN_REQUESTS_PER_MINUTE),
    ),
    ConnectionField(
        "requests_per_minute",
        "Requests per minute",
        "integer",
        "Optional. Explicit pace; wins over the plan.",
        minimum=1,
        placeholder=str(DEFAULT_REQUESTS_PER_MINUTE),
    ),
    ConnectionField(
        "timeout",
        "Timeout",
        "number",
        f"Optional. Seconds to wait for each answer. Default {DEFAULT_TIMEOUT:g}.",
        minimum=0,
        exclusive_minimum=True,
        placeholder=f"{DEFAULT_TIMEOUT:g}",
    ),
    ConnectionField(
        "max_retries",
        "Max retries",
        "integer",
        f"Optional. Retries after the first attempt on 429, 5xx and network errors. Default {DEFAULT_MAX_RETRIES}.",
        minimum=0,
        placeholder=str(DEFAULT_MAX_RETRIES),
    ),
    ConnectionField(
        "allow_insecure_http",
        "Allow plain HTTP to a remote host",
        "boolean",
        "Sends the API key unencrypted: trusted networks only. Loopback (127.0.0.1, localhost) needs no flag.",
    ),
    ConnectionField(
        "budget_conn_id",
        "Shared budget connection",
        "text",
        "Optional. An Airflow SQL connection (PostgreSQL; SQLite on one machine) that every worker and "
        "the triggerer reach: every task and trigger using this API key then shares one rate budget there, "
        "instead of each pacing as if it had the API key alone.",
    ),
    ConnectionField(
        "budget_table",
        "Shared budget table",
        "text",
        "Optional. The shared budget's table on that connection, created on first use. "
        f"Default {DEFAULT_BUDGET_TABLE}.",
        placeholder=DEFAULT_BUDGET_TABLE,
    ),
    ConnectionField(
        "history_conn_id",
        "Run history connection",
        "text",
        "Optional. An Airflow SQL connection where every run writes its history: a row per run and a row per "
        "row that did not succeed, for dashboards and alerts in SQL.",
    ),
    ConnectionField(
        "history_table",
        "Run history table",
        "text",
        f"Optional. The runs' table on that connection (the rows' table adds {HISTORY_ROWS_SUFFIX}), created on "
        "first use. "
        f"Default {DEFAULT_HISTORY_TABLE}.",
        placeholder=DEFAULT_HISTORY_TABLE,
    ),
    ConnectionField(
        "history_retention_days",
        "Run history retention (days)",
        "integer",
        f"Optional. Runs delete history older than this many days. Default {DEFAULT_HISTORY_RETENTION_DAYS}.",
        minimum=1,
        placeholder=str(DEFAULT_HISTORY_RETENTION_DAYS),
    ),
)


def conn_fields() -> dict[str, Any]:
    """The ``conn-fields`` of the provider info: the Airflow 3 connection form."""
    types = {"choice": "string", "integer": "integer", "number": "number", "boolean": "boolean", "text": "string"}
    fields: dict[str, Any] = {}
    for spec in CONNECTION_FIELDS:
        schema: dict[str, Any] = {"type": [types[spec.kind], "null"]}
        if spec.choices:
            schema["enum"] = list(spec.choices)  # null stays out of the enum: it would show as "null"
        if spec.minimum is not None:
            schema["exclusiveMinimum" if spec.exclusive_minimum else "minimum"] = spec.minimum
        fields[spec.name] = {"label": spec.label, "schema": schema, "description": spec.description}
    return fields


def form_placeholders() -> dict[str, str]:
    """Placeholders of the extra fields, for ``ui-field-behaviour``."""
    return {spec.name: spec.placeholder for spec in CONNECTION_FIELDS if spec.placeholder is not None}


def form_widgets() -> dict[str, Any]:
    """The same fields as WTForms widgets for the Airflow 2.11 connection form.

    Airflow 2.11 renders only text, integer, password and check-box fields: a choice becomes a
    text field whose description lists the choices, and a decimal number a text field; the hook
    validates both when it reads the connection.
    """
    from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import BooleanField, IntegerField, StringField
    from wtforms.validators import AnyOf, NumberRange, Optional

    widgets: dict[str, Any] = {}
    for spec in CONNECTION_FIELDS:
        label = lazy_gettext(spec.label)
        if spec.kind == "boolean":
            widgets[spec.name] = BooleanField(label, description=spec.description)
            continue
        validators: list[Any] = [Optional(strip_whitespace=True)]
        if spec.kind == "choice":
            validators.append(AnyOf(spec.choices))
            description = f"{spec.description} One of: {', '.join(spec.choices)}."
            widgets[spec.name] = StringField(
                label, widget=BS3TextFieldWidget(), validators=validators, description=description
            )
        elif spec.kind == "integer":
            if spec.minimum is not None:
                validators.append(NumberRange(min=spec.minimum))
            widgets[spec.name] = IntegerField(
                label, widget=BS3TextFieldWidget(), validators=validators, description=spec.description
            )
        else:
            widgets[spec.name] = StringField(
                label, widget=BS3TextFieldWidget(), validators=validators, description=spec.description
            )
    return widgets


def ui_field_behaviour() -> dict[str, Any]:
    """Hidden fields, labels and placeholders of the form: the provider info's ``ui-field-behaviour``."""
    return {
        "hidden-fields": ["schema", "login", "port", "extra"],
        "relabeling": {"password": "API key", "host": "Base URL"},
        "placeholders": {
            "host": DEFAULT_BASE_URL,
            "password": "Your Hindsight API key",
            **form_placeholders(),
        },
    }
