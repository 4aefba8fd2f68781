"""The README and the pages under docs/: every relative link lands on a file and, for `#anchor`, on a
heading of it; the README stays a front door (short, with the test command CI runs); no page points at
files a user does not have; docs/spec.md's table of keys is the schema's."""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))
import spec_reference  # noqa: E402  (docs/spec_reference.py: docs/spec.md's table of every key)

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 300

FENCE = re.compile(r"^ {0,3}(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def prose(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text without markup, lower case, punctuation other than '-'
    and '_' dropped, spaces made '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text, not its target
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a Markdown file, a repeated one numbered as GitHub numbers it."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose(path.read_text()):
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    """The targets of a page's Markdown links and images outside code."""
    return [target for line in prose(path.read_text()) for target in LINK.findall(CODE_SPAN.sub("", line))]


def test_the_slugs_are_githubs():
    assert slug("Which differences are real: `ablate report`") == "which-differences-are-real-ablate-report"
    assert slug("Races: seeds go where the answer is still open") == "races-seeds-go-where-the-answer-is-still-open"
    assert slug("What a study costs, before it runs") == "what-a-study-costs-before-it-runs"
    assert slug("1. Price it: `ablate plan`") == "1-price-it-ablate-plan"
    assert slug("keep_models and data-sets") == "keep_models-and-data-sets"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:: not ours to check
            continue
        file, _, anchor = target.partition("#")
        resolved = (page.parent / file).resolve() if file else page
        if not resolved.exists():
            broken.append(f"{target}: no file {resolved.relative_to(ROOT) if ROOT in resolved.parents else resolved}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    assert not broken, "\n".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(ROOT / "README.md")}
    unlinked = [page.name for page in PAGES[1:] if page.resolve() not in linked]
    assert not unlinked, unlinked


def test_the_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    assert "make test" in text  # the command CI runs, as the README tells a newcomer to run it
    assert "make check" in text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_points_at_files_a_user_does_not_have(page):
    text = page.read_text()
    assert "../shared" not in text
    assert "paper.md" not in text


def test_the_spec_reference_lists_every_key_as_the_schema_has_them():
    block = spec_reference.page_block((ROOT / "docs" / "spec.md").read_text())
    assert block == spec_reference.block(), \
        "docs/spec.md's table of keys is stale: run python docs/spec_reference.py --write"
