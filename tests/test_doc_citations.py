"""Every `docs/<page>.md §N` cited in src/, tests/ and bench/ names a heading that exists, and
nothing cites the design notes outside the repository: a renumbered section fails here."""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
CITED = re.compile(r"docs/(architecture|wechat-api)\.md((?:[ ,]+(?:and )?§\d+(?:\.\d+)?)+)")
SECTION = re.compile(r"§(\d+(?:\.\d+)?)")
HEADING = re.compile(r"^#{2,3} (\d+(?:\.\d+)?)[. ]", re.MULTILINE)


def _headings(page: str) -> set[str]:
    return set(HEADING.findall((ROOT / "docs" / f"{page}.md").read_text(encoding="utf-8")))


def test_cited_sections_exist() -> None:
    known = {page: _headings(page) for page in ("architecture", "wechat-api")}
    missing = []
    for folder in ("src", "tests", "bench"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in {".py", ".md"} or not path.is_file():
                continue
            text = path.read_text(encoding="utf-8")
            for match in CITED.finditer(text.replace("\n", " ")):
                page, refs = match.group(1), match.group(2)
                for section in SECTION.findall(refs):
                    if section not in known[page]:
                        missing.append(f"{path.relative_to(ROOT)}: docs/{page}.md §{section}")
    assert not missing, "cited sections that do not exist:\n" + "\n".join(missing)


def test_no_citations_outside_the_repo() -> None:
    stale = []
    for folder in ("src", "tests", "bench"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in {".py", ".md"} or not path.is_file() or path == HERE:
                continue
            text = path.read_text(encoding="utf-8")
            if "DESIGN.md" in text or re.search(r"(?<!docs/)wechat-api\.md", text):
                stale.append(str(path.relative_to(ROOT)))
    assert not stale, "cite docs/architecture.md or docs/wechat-api.md instead:\n" + "\n".join(
        stale
    )
