"""The README's Python examples run as written (the ones that need the Hugging Face Hub are skipped)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
NEEDS_HUB = ("stabilityai/", "push_to_hub")


def test_the_readme_has_python_examples():
    assert BLOCKS


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    code = BLOCKS[index]
    if any(marker in code for marker in NEEDS_HUB):
        pytest.skip("needs the Hugging Face Hub")
    (tmp_path / "pipelines").symlink_to(README.parent / "pipelines")  # examples run from the repository root
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})
