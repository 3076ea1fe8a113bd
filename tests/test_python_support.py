"""The pack's source runs on the oldest Python that pyproject's ``requires-python`` admits.

Torch has no wheel for that Python on CI's machine, so the tests themselves run on a newer one; these two
checks stand in: the oldest interpreter compiles every shipped file, and no standard-library feature newer
than it is used (vermin reads the source for module, function and argument availability)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from .conftest import REPO

#: The folders and files that ship in the wheel (pyproject's [tool.setuptools] packages).
SHIPPED = ("__init__.py", "nodes", "pipeline", "testing", "bench")


def _oldest_python() -> tuple[int, int]:
    spec = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    match = re.fullmatch(r">=\s*3\.(\d+)", spec.strip())
    assert match, f"requires-python {spec!r}: expected a plain floor such as '>=3.10'"
    return 3, int(match.group(1))


def test_requires_python_admits_3_10() -> None:
    """The issue's promise: the pack runs on Python 3.10 to 3.13."""
    assert _oldest_python() <= (3, 10)


def test_shipped_source_uses_nothing_newer_than_requires_python() -> None:
    major, minor = _oldest_python()
    vermin = ["-c", "import sys, vermin; sys.exit(vermin.main())"]
    options = [f"--target={major}.{minor}-", "--violations", "--no-tips", "--no-parse-comments", "--eval-annotations"]
    paths = [str(REPO / name) for name in SHIPPED]
    result = subprocess.run([sys.executable, *vermin, *options, *paths], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, f"source needs a Python newer than {major}.{minor}:\n{result.stdout}{result.stderr}"


def _interpreter(major: int, minor: int) -> str | None:
    """``pythonX.Y`` from PATH, else from pyenv's versions (whose shim fails unless that version is selected)."""
    candidates = [shutil.which(f"python{major}.{minor}")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip()
        found = Path(root, "versions").glob(f"{major}.{minor}.*/bin/python{major}.{minor}") if root else ()
        candidates += sorted(map(str, found), reverse=True)
    probe = f"import sys; assert sys.version_info[:2] == ({major}, {minor})"
    for python in filter(None, candidates):
        if subprocess.run([python, "-c", probe], capture_output=True).returncode == 0:
            return python
    return None


def test_shipped_source_compiles_with_the_oldest_python() -> None:
    major, minor = _oldest_python()
    python = _interpreter(major, minor)
    if python is None:
        pytest.skip(f"no python{major}.{minor} on PATH or in pyenv (CI's machine has it, from pyenv)")
    files = [str(f) for name in SHIPPED for f in ([REPO / name] if name.endswith(".py") else
                                                  sorted((REPO / name).rglob("*.py")))]
    code = "import sys\nfor f in sys.argv[1:]:\n    compile(open(f, encoding='utf-8').read(), f, 'exec')\n"
    result = subprocess.run([python, "-c", code, *files], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, f"python{major}.{minor} cannot compile the pack:\n{result.stderr}"
