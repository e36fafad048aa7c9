"""The declared minimum versions are the tested ones (QAWG-REC-22).

CI installs `constraints.txt` and nothing else: a lower bound in `pyproject.toml` below the pinned
version would promise a combination no test has run. So every direct dependency's lower bound is
the version CI pins, and every direct dependency is pinned.
"""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from conftest import ROOT


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = re.split(r"==", line, maxsplit=1)
            pins[canonicalize_name(name.split("[")[0])] = Version(version.strip())
    return pins


def _direct() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project.get("optional-dependencies", {}).values() for r in group]
    return [Requirement(r) for r in project["dependencies"] + extras]


def test_every_direct_dependency_is_pinned():
    pins = _pins()
    missing = [str(r) for r in _direct() if canonicalize_name(r.name) not in pins]
    assert not missing, f"not pinned in constraints.txt: {missing}"


def test_lower_bounds_are_the_pinned_versions():
    pins = _pins()
    wrong = []
    for req in _direct():
        lower = [Version(s.version) for s in req.specifier if s.operator in (">=", "==")]
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is None:
            continue  # reported by the test above
        if not lower or max(lower) != pinned:
            wrong.append(f"{req} (CI tests {pinned})")
        if not req.specifier.contains(pinned, prereleases=True):
            wrong.append(f"{req} excludes the pinned {pinned}")
    assert not wrong, "lower bounds that are not the tested versions: " + "; ".join(wrong)
