"""Packaging rules: requirements mirror pyproject, the user's torch is left alone, import stays light."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from .conftest import REPO

FORBIDDEN = ("torch", "torchvision", "torchaudio", "xformers")


def _name(requirement: str) -> str:
    for sep in "<>=!~[; ":
        requirement = requirement.split(sep)[0]
    return requirement.strip().lower()


def test_requirements_txt_is_identical_to_project_dependencies() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = [ln.strip() for ln in (REPO / "requirements.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines == project["dependencies"]


def test_every_requirement_has_a_floor_and_no_cap() -> None:
    """Floors are the releases the tests ran with; a bare name would let pip pick an older, untested one
    (diffusers 0.27 does not import with today's huggingface_hub), and a pin or cap would test yesterday's."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lists = [project["dependencies"], project["optional-dependencies"]["test"]]
    for requirement in (r for requirements in lists for r in requirements):
        spec = requirement.split(";")[0]
        assert ">=" in spec, f"{requirement}: give the tested release as a floor"
        assert not any(op in spec for op in ("==", "<", "~=", "!=")), f"{requirement}: floors only"


def test_ci_floor_pins_are_the_declared_floors() -> None:
    """CI's floors phase installs ``.ci/floors.txt``: it must pin every runtime dependency at exactly the floor
    pyproject declares, or a floor goes untested."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {_name(r): r.split(">=")[1].split(";")[0].strip() for r in project["dependencies"]}
    lines = [ln.strip() for ln in (REPO / ".ci" / "floors.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    pinned = {_name(ln): ln.split("==")[1].strip() for ln in lines}
    assert all("==" in ln for ln in lines), lines
    assert pinned == declared


def test_no_torch_family_in_any_requirement_list() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lists = [project["dependencies"], *project.get("optional-dependencies", {}).values()]
    for requirements in lists:
        assert not {_name(r) for r in requirements} & set(FORBIDDEN)


def test_comfy_metadata_present() -> None:
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["comfy"]
    assert tool["PublisherId"] and tool["DisplayName"]


def test_package_import_is_light_and_exposes_the_comfy_entry(tmp_path: Path) -> None:
    code = (
        "import sys, hallo_nodes\n"
        "heavy = [m for m in ('diffusers', 'transformers', 'mediapipe', 'onnxruntime', 'cv2', 'av') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert hallo_nodes.WEB_DIRECTORY == './js'\n"
        "assert len(hallo_nodes.NODE_CLASS_MAPPINGS) >= 8\n"
        "assert all(k.startswith('Hallo') for k in hallo_nodes.NODE_CLASS_MAPPINGS)\n"
        "assert set(hallo_nodes.NODE_CLASS_MAPPINGS) == set(hallo_nodes.NODE_DISPLAY_NAME_MAPPINGS)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_entry_file_loads_alone(tmp_path: Path) -> None:
    """pytest imports the root ``__init__.py`` as a lone file when the checkout's folder name is not an
    identifier (``git clone ... hallo-nodes``): that must not fail the whole run."""
    code = f"import runpy; ns = runpy.run_path({str(REPO / '__init__.py')!r}); assert ns['WEB_DIRECTORY'] == './js'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


OPENCV_DISTRIBUTIONS = {"opencv-python", "opencv-python-headless", "opencv-contrib-python",
                        "opencv-contrib-python-headless"}


def _installed_distributions() -> set[str]:
    from importlib.metadata import distributions

    return {(d.metadata["Name"] or "").lower().replace("_", "-") for d in distributions()}


def test_exactly_one_opencv_distribution_is_installed() -> None:
    """Every OpenCV build writes the same ``cv2/`` folder: two of them installed means uninstalling either one
    breaks ``import cv2`` while ``pip check`` reports nothing. The pack declares none; mediapipe brings one."""
    installed = sorted(_installed_distributions() & OPENCV_DISTRIBUTIONS)
    assert len(installed) == 1, f"OpenCV distributions installed together: {installed}"


def test_no_requirement_list_declares_an_opencv_build() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lists = [project["dependencies"], *project.get("optional-dependencies", {}).values()]
    declared = {_name(r) for requirements in lists for r in requirements}
    assert not declared & OPENCV_DISTRIBUTIONS
    # insightface requires the GUI opencv-python: it would bring a second build (see tests/insightface_reference.py)
    assert "insightface" not in declared


def test_the_landmarker_task_is_package_data() -> None:
    """The MediaPipe ``.task`` ships inside the package (the demo and a model folder without one use it)."""
    import fnmatch
    import hashlib

    from hallo_nodes.pipeline.paths import SHIPPED_LANDMARKER_TASK

    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    package = "hallo_nodes.pipeline.face.assets"
    assert package in setuptools["packages"]
    package_dir = REPO / "pipeline" / "face" / "assets"
    shipped = [p.name for p in package_dir.iterdir()]
    patterns = setuptools["package-data"][package]
    assert all(any(fnmatch.fnmatch(name, pat) for pat in patterns) for name in shipped), (shipped, patterns)
    assert SHIPPED_LANDMARKER_TASK.parent == package_dir
    digest = hashlib.sha256(SHIPPED_LANDMARKER_TASK.read_bytes()).hexdigest()
    assert digest == "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
    assert digest in (package_dir / "README.md").read_text()


def test_readme_dependency_table_matches_pyproject() -> None:
    """The README's dependency table lists exactly the declared dependencies with their floors (no typed-in
    versions to go stale)."""
    readme = (REPO / "README.md").read_text()
    table = readme.split("<!-- dependency table:", 1)[1].split("\n\n", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[1:]
            if line.startswith("|") and not line.startswith("|---")]
    documented = {name.lower(): floor for name, floor, _ in rows[1:]}  # rows[0] is the header
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {_name(r): r.split(">=")[1].split(";")[0].strip() for r in project["dependencies"]}
    assert {k: v for k, v in documented.items() if v != "not declared"} == declared
    assert {"torch", "opencv"} <= {k for k, v in documented.items() if v == "not declared"}
