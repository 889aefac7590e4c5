"""The README's and the docs pages' Python examples run as written (the ones that need the Hugging Face Hub are
skipped), and every relative link in them points to a file (and heading) that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
NEEDS_HUB = ("stabilityai/", "push_to_hub")

FENCE = re.compile(r"^```.*?^```[ \t]*$", flags=re.DOTALL | re.MULTILINE)
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```[ \t]*$", flags=re.DOTALL | re.MULTILINE)
CODE_SPAN = re.compile(r"`[^`]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def python_blocks(page: Path) -> list[str]:
    return PYTHON_BLOCK.findall(page.read_text())


# (page, index of the block on its page, code, where the same code ran first if it is a repeat)
EXAMPLES: list[tuple[str, int, str, str | None]] = []
_first_seen: dict[str, str] = {}
for _page in PAGES:
    for _index, _code in enumerate(python_blocks(_page)):
        _name = f"{relative(_page)} python block {_index}"
        EXAMPLES.append((relative(_page), _index, _code, _first_seen.get(_code.strip())))
        _first_seen.setdefault(_code.strip(), _name)


def test_the_readme_has_python_examples():
    assert python_blocks(README)


def test_the_docs_have_python_examples():
    assert any(page != "README.md" for page, *_ in EXAMPLES)


@pytest.mark.parametrize(
    ("page", "index", "code", "same_as"), EXAMPLES, ids=[f"{page}-{index}" for page, index, *_ in EXAMPLES]
)
def test_example_runs(page, index, code, same_as, tmp_path, monkeypatch):
    if any(marker in code for marker in NEEDS_HUB):
        pytest.skip("needs the Hugging Face Hub")
    if same_as is not None:
        pytest.skip(f"the same code as {same_as}, which runs")
    (tmp_path / "pipelines").symlink_to(ROOT / "pipelines")  # examples run from the repository root
    monkeypatch.chdir(tmp_path)  # and write their folders (e.g. videofusion-untrained/) into a fresh one
    exec(compile(code, f"{page} python block {index}", "exec"), {"__name__": "__example__"})


def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown page: lower case, punctuation dropped, spaces -> hyphens."""
    anchors = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            anchors.add(re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-"))
    return anchors


def relative_links(page: Path) -> list[str]:
    text = CODE_SPAN.sub("", FENCE.sub("", page.read_text()))  # what is in code is not a link
    return [target for target in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


def test_the_readme_links_into_the_docs():
    assert any(target.startswith("docs/") for target in relative_links(README))


@pytest.mark.parametrize("page", PAGES, ids=[relative(page) for page in PAGES])
def test_relative_links_point_to_existing_files(page):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in heading_anchors(file):
            broken.append(f"{target}: no heading with that anchor in {relative(file)}")
    assert not broken, f"{relative(page)}: " + "; ".join(broken)
