"""The README is the PyPI project page: every link in it must work there, where relative links are 404s."""

from __future__ import annotations

import re

from tests.helpers import ROOT

README = ROOT / "README.md"
DOCS_SITE = "https://airflow-provider-hindsight.readthedocs.io/"
DOCS_PAGE = re.compile(r"^https://airflow-provider-hindsight\.readthedocs\.io/en/latest/(?P<page>[\w/-]*?)(?:\.html)?$")
SOURCE = re.compile(
    r"^https://github\.com/airflow-provider-hindsight/airflow-provider-hindsight/(?:tree|blob)/main/(?P<path>.+)$"
)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.DOTALL | re.MULTILINE)
LINK_TARGETS = (
    re.compile(r"\]\(\s*<?([^)\s>]+)"),  # [text](target), ![alt](target)
    re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?\s*$", re.MULTILINE),  # [label]: target
    re.compile(r"""(?:href|src)\s*=\s*["']([^"']+)["']""", re.IGNORECASE),  # HTML
)


def readme_links() -> list[str]:
    text = FENCE.sub("", README.read_text(encoding="utf-8"))
    return [match.group(1) for pattern in LINK_TARGETS for match in pattern.finditer(text)]


def test_the_readme_links_somewhere() -> None:
    assert len(readme_links()) >= 3


def test_every_readme_link_is_absolute() -> None:
    relative = [link for link in readme_links() if not link.startswith("https://")]
    assert relative == [], "relative links in README.md are 404s on PyPI: link the docs site or GitHub instead"


def test_readme_links_to_the_docs_site_name_pages_that_exist() -> None:
    for link in readme_links():
        address = link.split("#", 1)[0]
        if address == DOCS_SITE or not address.startswith(DOCS_SITE):
            continue
        match = DOCS_PAGE.match(address)
        assert match, f"{link}: docs site links are {DOCS_SITE}en/latest/<page>.html"
        page = match.group("page") or "index"
        assert any((ROOT / "docs" / f"{page}{suffix}").is_file() for suffix in (".md", ".rst")), (
            f"{link}: docs/{page}.md does not exist"
        )


def test_readme_links_to_the_source_name_files_that_exist() -> None:
    for link in readme_links():
        match = SOURCE.match(link.split("#", 1)[0])
        if match:
            assert (ROOT / match.group("path")).exists(), f"{link}: {match.group('path')} is not in the repository"
