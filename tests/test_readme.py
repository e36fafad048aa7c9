"""Every `console` example in README.md and docs/*.md runs and exits 0.

A console block holds lines starting with `$ ` (a command) followed by an excerpt of what it
prints; the excerpt lines that are not `...` must appear in the output.
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

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```console\n(.*?)```", re.S)


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
