"""Sphinx configuration for the airflow-provider-hindsight documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (``make docs``).
"""

from __future__ import annotations

import ast
import atexit
import inspect
import os
import re
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# autodoc imports the provider, which imports Airflow: keep Airflow's files out of the user's home.
if "AIRFLOW_HOME" not in os.environ:
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="hindsight-docs-airflow-home-")
    atexit.register(shutil.rmtree, os.environ["AIRFLOW_HOME"], ignore_errors=True)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

import airflow_provider_hindsight  # noqa: E402

if TYPE_CHECKING:
    from sphinx.application import Sphinx

project = "airflow-provider-hindsight"
author = "airflow-provider-hindsight maintainers"
copyright = "airflow-provider-hindsight maintainers"
version = release = airflow_provider_hindsight.__version__

# The docstrings use reST fields (``:param x:``), which autodoc reads without napoleon.
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# _generated holds fragments that pages include ({include}), not pages of their own.
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist", "substitution"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
# Defaults as written in the source (``clock=time.monotonic``), except that names of constants are
# replaced by their values (``max_workers=16``) for our classes: see ``class_signature`` below.
autodoc_preserve_defaults = True
# Our methods without a docstring (operators' execute) must not show Airflow's BaseOperator text.
autodoc_inherit_docstrings = False

nitpicky = False

html_theme = "furo"
html_title = f"airflow-provider-hindsight {release}"
# Read the Docs (.readthedocs.yaml) says where the site lives: canonical links point there.
html_baseurl = os.environ.get("READTHEDOCS_CANONICAL_URL", "")
# _static holds the pictures (the tall ones link to themselves with ``:target: _static/...``, so the
# files must be in the site, not only the copies Sphinx makes in _images) and the theme tweaks.
html_static_path = ["_static"]
html_css_files = ["hindsight.css"]


# -- Paces and run times, from the provider's own constants -------------------------------------------
#
# Pages write ``{{ pace_enterprise }}`` or ``{{ plan_durations }}`` rather than a number, so that the
# pacer's margin and the plans' limits are stated once, in the code, and every page agrees with them.

from airflow_provider_hindsight.history import MAX_FAILED_ROWS, WAIT_SECONDS  # noqa: E402
from airflow_provider_hindsight.hooks.connection_form import PLAN_REQUESTS_PER_MINUTE  # noqa: E402
from airflow_provider_hindsight.ledgers.history import PURGE_BATCH  # noqa: E402
from airflow_provider_hindsight.pace import SAFETY_MARGIN  # noqa: E402

EXAMPLE_ROWS = 50_000


def per_minute(value: float) -> str:
    return f"{value:,.1f}".removesuffix(".0")


def duration(minutes: float) -> str:
    if minutes < 90:
        return f"about {round(minutes)} minutes"
    hours, rest = divmod(round(minutes), 60)
    return f"{hours} h {rest:02d} min"


def plan_durations() -> str:
    lines = [
        f"| Plan | Limit a minute | Pace a minute ({SAFETY_MARGIN:g} of it) | {EXAMPLE_ROWS:,} rows take |",
        "| --- | ---: | ---: | ---: |",
    ]
    for plan, limit in PLAN_REQUESTS_PER_MINUTE.items():
        pace = limit * SAFETY_MARGIN
        lines.append(f"| {plan.capitalize()} | {limit:,} | {per_minute(pace)} | {duration(EXAMPLE_ROWS / pace)} |")
    return "\n".join(lines)


myst_substitutions = {
    "history_max_rows": f"{MAX_FAILED_ROWS:,}",
    "history_purge_batch": f"{PURGE_BATCH:,}",
    "history_wait_seconds": f"{WAIT_SECONDS:g}",
    "safety_margin": f"{SAFETY_MARGIN:g}",
    "margin_cost_percent": f"{(1 - SAFETY_MARGIN) * 100:.3g} %",
    "plan_durations": plan_durations(),
    **{f"pace_{plan}": per_minute(limit * SAFETY_MARGIN) for plan, limit in PLAN_REQUESTS_PER_MINUTE.items()},
    **{f"gap_{plan}": f"{60 / (limit * SAFETY_MARGIN):.3g} s" for plan, limit in PLAN_REQUESTS_PER_MINUTE.items()},
}


# -- Operators: every parameter on the operator's own entry ----------------------------------------
#
# The bulk operators take their shared parameters (pace, max_failures, ledger, ...) from a base class
# through ``**kwargs``. autodoc would show ``(*, updates, **kwargs)`` and hide them on the base class, so
# these hooks merge the base classes' parameters into each class's signature, ``:param:`` fields and
# type hints. Defaults that are names of constants show their values.

PACKAGE = "airflow_provider_hindsight"
PARAM_FIELD = re.compile(r"^:param (?:[^:]+ )?(\w+):")


def init_chain(cls: type) -> list[type]:
    """The package's classes in ``cls``'s MRO that define ``__init__``, up to the first without ``**kwargs``."""
    chain = []
    for klass in cls.__mro__:
        if klass.__module__.startswith(PACKAGE) and "__init__" in vars(klass):
            chain.append(klass)
            kinds = {p.kind for p in inspect.signature(vars(klass)["__init__"]).parameters.values()}
            if inspect.Parameter.VAR_KEYWORD not in kinds:
                break
    return chain


def default_sources(function: Any) -> dict[str, ast.expr]:
    """The default value expressions of ``function``'s parameters, from its source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    node = tree.body[0]
    assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    arguments = node.args
    positional = arguments.posonlyargs + arguments.args
    pairs = list(zip(positional[len(positional) - len(arguments.defaults) :], arguments.defaults, strict=True))
    pairs += [
        (arg, default) for arg, default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True) if default
    ]
    return {arg.arg: default for arg, default in pairs}


def default_values(function: Any) -> dict[str, Any]:
    """The default values of ``function``'s parameters.

    Read from the function itself: ``autodoc_preserve_defaults`` replaces the values in the signature that
    ``inspect.signature`` returns with their source text once autodoc has seen the function.
    """
    function = inspect.unwrap(function)
    code = function.__code__
    positional = code.co_varnames[: code.co_argcount]
    defaults = function.__defaults__ or ()
    values = dict(zip(positional[len(positional) - len(defaults) :], defaults, strict=True))
    values.update(function.__kwdefaults__ or {})
    return values


def shown_default(value: Any, source: ast.expr | None) -> str:
    """A constant's value (``16``, ``'hindsight_default'``); otherwise the expression as written."""
    is_constant_name = source is None or isinstance(source, ast.Name | ast.Attribute)
    if is_constant_name and (value is None or isinstance(value, bool | int | float | str)):
        return repr(value)
    return ast.unparse(source) if source is not None else repr(value)


def merged_parameters(cls: type) -> list[tuple[type, inspect.Parameter]] | None:
    """``cls``'s constructor parameters followed by those its base classes take through ``**kwargs``."""
    chain = init_chain(cls)
    if not chain:
        return None
    merged: list[tuple[type, inspect.Parameter]] = []
    var_keyword: tuple[type, inspect.Parameter] | None = None
    for klass in chain:
        parameters = list(inspect.signature(vars(klass)["__init__"]).parameters.values())[1:]
        var_keyword = None
        for parameter in parameters:
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                var_keyword = (klass, parameter)
            elif all(parameter.name != known.name for _, known in merged):
                if merged and parameter.kind is not inspect.Parameter.VAR_POSITIONAL:
                    parameter = parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                merged.append((klass, parameter))
    if var_keyword is not None:
        merged.append(var_keyword)
    return merged


def class_signature(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, signature: str | None, return_annotation: str | None
) -> tuple[str, str | None] | None:
    """The signature of one of our classes with its base classes' parameters and real default values."""
    if what != "class" or not obj.__module__.startswith(PACKAGE) or signature is None:
        return None
    merged = merged_parameters(obj)
    if merged is None:
        return None
    classes = {klass for klass, _ in merged}
    try:
        sources = {klass: default_sources(vars(klass)["__init__"]) for klass in classes}
    except (OSError, TypeError):  # no source: a generated __init__ (dataclasses)
        return None
    values = {klass: default_values(vars(klass)["__init__"]) for klass in classes}
    parts: list[str] = []
    keyword_only_marked = False
    for klass, parameter in merged:
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and not keyword_only_marked:
            parts.append("*")
            keyword_only_marked = True
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            keyword_only_marked = True
            parts.append(f"*{parameter.name}")
        elif parameter.kind is inspect.Parameter.VAR_KEYWORD:
            parts.append(f"**{parameter.name}")
        elif parameter.default is inspect.Parameter.empty:
            parts.append(parameter.name)
        else:
            default = shown_default(values[klass][parameter.name], sources[klass].get(parameter.name))
            parts.append(f"{parameter.name}={default}")
    record_base_typehints(app, name, merged)
    return f"({', '.join(parts)})", return_annotation


def record_base_typehints(app: Sphinx, name: str, merged: list[tuple[type, inspect.Parameter]]) -> None:
    """Give the base classes' parameters their types in the description, as autodoc does for the class's own."""
    from sphinx.util.inspect import signature as sphinx_signature
    from sphinx.util.typing import stringify_annotation

    annotations = app.env.current_document.autodoc_annotations.setdefault(name, {})
    for klass in {klass for klass, _ in merged}:
        for parameter in sphinx_signature(vars(klass)["__init__"]).parameters.values():
            if parameter.annotation is not parameter.empty and parameter.name not in annotations:
                annotations[parameter.name] = stringify_annotation(parameter.annotation, "smart")


def base_class_params(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Append the ``:param:`` fields of the base classes whose parameters the class takes through ``**kwargs``."""
    from airflow.providers.common.compat.sdk import BaseOperator

    if what != "class" or not obj.__module__.startswith(PACKAGE):
        return
    chain = init_chain(obj)
    documented = {match.group(1) for line in lines if (match := PARAM_FIELD.match(line))}
    added: list[str] = []
    for base in chain[1:] if chain and chain[0] is obj else []:
        taken = False
        for line in inspect.cleandoc(base.__doc__ or "").splitlines():
            match = PARAM_FIELD.match(line)
            if match:
                taken = match.group(1) not in documented
                documented.add(match.group(1))
            elif not line.startswith(" "):
                taken = False
            if taken:
                added.append(line)
    if issubclass(obj, BaseOperator):
        added += ["", "Plus every ``BaseOperator`` argument (``retries``, ``pool``, ``execution_timeout``, ...)."]
    if added:
        if lines and lines[-1].strip():
            lines.append("")
        lines.extend(added)


# -- What the docs say about the example DAGs still holds ------------------------------------------------

QUICKSTART_DAG = ROOT / "dags" / "example_hindsight_single.py"
WAREHOUSE_DAG = ROOT / "dags" / "example_hindsight_warehouse.py"
WAREHOUSE_CONN_ID = "hindsight_example_warehouse"
"""The warehouse connection id that ``transfers/sql_to_hindsight.md`` tells users to create."""


def check_example_dags(app: Sphinx) -> None:
    """Warn (an error under ``-W``) when the pages and the example DAG files disagree.

    The README's first Python block must be the quick start's DAG file, and the warehouse example
    must still read the connection id that the SQL transfer page tells users to create.
    """
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```python\n(.*?)```", readme, re.DOTALL)
    if match is None or match.group(1) != QUICKSTART_DAG.read_text(encoding="utf-8"):
        logger.warning(
            "README.md's first Python block differs from %s: the README and the quick start must show the same "
            "DAG; copy the file into the README.",
            QUICKSTART_DAG.relative_to(ROOT),
        )
    assigned = {
        target.id: node.value
        for node in ast.parse(WAREHOUSE_DAG.read_text(encoding="utf-8")).body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    conn_id = assigned.get("WAREHOUSE_CONN_ID")
    if not (isinstance(conn_id, ast.Constant) and conn_id.value == WAREHOUSE_CONN_ID):
        logger.warning(
            "%s no longer sets WAREHOUSE_CONN_ID = %r: update the connection id in transfers/sql_to_hindsight.md "
            "and WAREHOUSE_CONN_ID in docs/conf.py.",
            WAREHOUSE_DAG.relative_to(ROOT),
            WAREHOUSE_CONN_ID,
        )


# -- Long names in the sidebars break between words ------------------------------------------------
#
# Furo's sidebars break an entry that does not fit anywhere (``overflow-wrap: anywhere``), so
# ``HindsightBulkUpdateInterviewsOperator`` became ``HindsightBulkUpdateInterviewsOpe`` / ``rator``. CSS
# cannot see the words inside a CamelCase name, so the navigation's link texts get a ``<wbr>`` (a line
# break opportunity that copies as nothing) before each inner capital and after ``.`` and ``_``;
# _static/hindsight.css then keeps the browser from breaking anywhere else.

LINK_TEXT = re.compile(r">([^<>]+)<")
WORD_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[._])(?=\w)")


def break_opportunities(html: str) -> str:
    """``html`` with ``<wbr>`` at the word boundaries inside the text of its elements (markup untouched)."""
    return LINK_TEXT.sub(lambda match: ">" + WORD_BOUNDARY.sub("<wbr>", match.group(1)) + "<", html)


def sidebar_word_breaks(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """Mark word boundaries in furo's navigation tree and the page's table of contents."""
    for key in ("furo_navigation_tree", "toc"):
        if isinstance(context.get(key), str):
            context[key] = break_opportunities(context[key])


# -- Every local link in the built site leads to a file ----------------------------------------------
#
# ``:target:`` and raw links are not checked by Sphinx: an image whose target was missing from the
# site clicked through to a 404, and -W did not notice. This check reads the built pages.

LOCAL_REFERENCE = re.compile(r'<(?:a|img|link|script)\b[^>]*?\s(?:href|src)="([^"]*)"')
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")


def check_local_links(app: Sphinx, exception: Exception | None) -> None:
    """Warn (an error under -W) for each link of a built HTML page to a file that is not in the site."""
    import html

    from sphinx.util import logging

    if exception is not None or app.builder.format != "html":
        return
    logger = logging.getLogger(__name__)
    outdir = Path(app.outdir)
    for page in sorted(outdir.rglob("*.html")):
        targets = {html.unescape(value) for value in LOCAL_REFERENCE.findall(page.read_text(encoding="utf-8"))}
        for target in sorted(targets):
            path = re.split(r"[#?]", target, maxsplit=1)[0]
            if not path or SCHEME.match(target):
                continue
            resolved = (page.parent / path).resolve()
            if resolved.is_dir():
                resolved = resolved / "index.html"
            if not resolved.is_file():
                logger.warning("%s links to %s, which is not in the built site", page.relative_to(outdir), target)


# -- The page sources read on GitHub ----------------------------------------------------------------
#
# GitHub shows a page's MyST source as plain Markdown: substitutions, roles and included files stay raw.
# So a page may open with a MyST comment (``% ...``, dropped from the site, shown on GitHub) that gives its
# address on the docs site, and a page that includes an example DAG links to the file on GitHub as well.

DOCS_SITE = "https://airflow-provider-hindsight.readthedocs.io/en/latest/"
SOURCE_FILES = "https://github.com/airflow-provider-hindsight/airflow-provider-hindsight/blob/main/"
SITE_NOTE = re.compile(r"\A% Read this page on the docs site, (\S+?), where")
INCLUDED_DAG = re.compile(r"^```\{literalinclude\} (?:\.\./)+(dags/[\w.-]+\.py)$", re.MULTILINE)


def check_page_sources(app: Sphinx) -> None:
    """Warn (an error under -W) when a page's note names another page, or an included DAG has no GitHub link."""
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    source_dir = Path(app.srcdir)
    for path in sorted(source_dir.rglob("*.md")):
        name = path.relative_to(source_dir).with_suffix("").as_posix()
        if name.startswith("_"):
            continue
        text = path.read_text(encoding="utf-8")
        note = SITE_NOTE.match(text)
        if note and note.group(1) != f"{DOCS_SITE}{name}.html":
            logger.warning(
                "%s: its first line names %s, but the page is %s%s.html", name, note.group(1), DOCS_SITE, name
            )
        for dag in INCLUDED_DAG.findall(text):
            if f"]({SOURCE_FILES}{dag})" not in text:
                logger.warning("%s includes %s: link it on GitHub too, [%s](%s%s)", name, dag, dag, SOURCE_FILES, dag)


def setup(app: Sphinx) -> None:
    app.connect("autodoc-process-signature", class_signature)
    app.connect("autodoc-process-docstring", base_class_params)
    app.connect("builder-inited", check_example_dags)
    app.connect("builder-inited", check_page_sources)
    # After furo's own handler (priority 500), which builds the navigation tree.
    app.connect("html-page-context", sidebar_word_breaks, priority=900)
    app.connect("build-finished", check_local_links)
