"""Every `console` and `python` example in README.md and docs/ (the documentation site) runs.

A console block holds lines starting with `$ ` (a command) followed by an excerpt of what it
prints; the excerpt lines that are not `...` must appear in the output. The python blocks of one
page run in order in one fresh interpreter (a page's examples build on each other), in a folder
where ``data`` is the real data and ``demo-repo`` the default demo's repository (collection
``qa/demo``), as the pages say; they must exit 0 (their ``assert`` lines are what a reader checks).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SHARED_DATA  # noqa: E402

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"```console\n(.*?)```", re.S)
PYTHON = re.compile(r"```python\n(.*?)```", re.S)


def _examples() -> list[tuple[str, str, list[str]]]:
    found = []
    for doc in DOCS:
        for block in BLOCK.findall(doc.read_text()):
            command, expected = None, []
            for line in block.splitlines() + ["$ "]:
                if line.startswith("$ "):
                    if command:
                        found.append((f"{doc.name}: {command}", command, expected))
                    command, expected = line[2:].strip(), []
                elif line.strip() and line.strip() != "...":
                    expected.append(line.strip())
    return found


@pytest.mark.parametrize("label,command,expected", _examples(), ids=[e[0] for e in _examples()])
def test_doc_example_runs(label: str, command: str, expected: list[str], tmp_path: Path) -> None:
    (tmp_path / "data").symlink_to(SHARED_DATA)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{command!r} failed:\n{result.stdout}\n{result.stderr}"
    for line in expected:
        assert line in result.stdout, f"{command!r}: expected {line!r} in output:\n{result.stdout}"


def test_examples_exist() -> None:
    assert _examples(), "README.md and docs/ should hold runnable console examples"


def _python_pages() -> list[tuple[str, str]]:
    return [(str(doc.relative_to(ROOT)), "\n".join(blocks)) for doc in DOCS
            if (blocks := PYTHON.findall(doc.read_text()))]


@pytest.mark.parametrize("page,code", _python_pages(), ids=[p for p, _ in _python_pages()])
def test_doc_python_examples_run(page: str, code: str, tmp_path: Path, rubin_demo_repo) -> None:
    (tmp_path / "data").symlink_to(SHARED_DATA)
    repo, collection = rubin_demo_repo
    assert collection == "qa/demo"
    (tmp_path / "demo-repo").symlink_to(repo)
    script = tmp_path / "example.py"
    script.write_text(code)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"the python examples of {page} fail:\n{result.stdout}\n{result.stderr}"
