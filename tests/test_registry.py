"""Ready for the ComfyUI registry: pyproject's fields as the registry reads them (the rules of comfy-cli's
``comfy node validate``, which CI also runs: .ci/validate-registry), and the icon, drawn by us and kept here.

* ``[project]``: a name the registry accepts, a semantic version, a description, a licence, the four URLs it shows,
  and only the OS and accelerator classifiers it knows (an unknown one makes it drop them all);
* ``[tool.comfy]``: a publisher, a display name, ``requires-comfyui`` in its version syntax, and ``Icon`` and
  ``Banner``: raw URLs of files in this repository (the repository's own URL, ``main`` branch), which exist;
* ``docs/icon.png`` is ``docs/icon.svg`` as Chromium draws it (``HALLO_UPDATE_SCREENSHOTS=1`` redraws it).
"""

from __future__ import annotations

import base64
import io
import os
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
from comfyui_harness import CHROMIUM, Chromium
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT, COMFY = PYPROJECT["project"], PYPROJECT["tool"]["comfy"]
ICON_SVG, ICON_PNG = REPO / "docs" / "icon.svg", REPO / "docs" / "icon.png"
#: What comfy-cli accepts (comfy_cli/registry/config_parser.py: validate_and_extract_*_classifiers)
OS_PREFIXES = ("Microsoft", "POSIX", "MacOS", "OS Independent")
ACCELERATORS = {"GPU :: NVIDIA CUDA", "GPU :: AMD ROCm", "GPU :: Intel Arc", "NPU :: Huawei Ascend",
                "GPU :: Apple Metal"}
VERSION_PART = r"^(?:(==|>=|<=|!=|~=|>|<|<>|=)\s*)?(\d+\.\d+\.\d+(?:-[a-zA-Z0-9]+)?)?$"


def test_project_fields_the_registry_shows() -> None:
    name = PROJECT["name"]
    assert len(name) < 100 and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*([-_.][A-Za-z0-9]+)*", name)
    assert "comfyui" not in name.lower()
    assert re.fullmatch(r"\d+\.\d+\.\d+", PROJECT["version"])
    assert PROJECT["description"] and PROJECT["license"] == "MIT" and (REPO / "README.md").is_file()
    urls = PROJECT["urls"]
    assert set(urls) >= {"Homepage", "Repository", "Documentation", "Issues"}
    assert all(u.startswith(urls["Repository"]) for u in urls.values()), urls
    classifiers = PROJECT["classifiers"]
    systems = [c.removeprefix("Operating System :: ") for c in classifiers if c.startswith("Operating System :: ")]
    accelerators = [c.removeprefix("Environment :: ") for c in classifiers if c.startswith("Environment ::")]
    assert systems and all(s.startswith(OS_PREFIXES) for s in systems), systems
    assert accelerators and set(accelerators) <= ACCELERATORS, accelerators


def raw_file(url: str) -> Path:
    """The file of this repository that a raw.githubusercontent.com URL of its main branch names."""
    repo = PROJECT["urls"]["Repository"].removeprefix("https://github.com/")
    prefix = f"https://raw.githubusercontent.com/{repo}/main/"
    assert url.startswith(prefix), f"{url} is not a file of {repo} (main)"
    return REPO / url.removeprefix(prefix)


def test_tool_comfy_fields_and_their_files() -> None:
    assert COMFY["PublisherId"] and COMFY["DisplayName"]
    assert all(re.match(VERSION_PART, p.strip()) for p in COMFY["requires-comfyui"].split(","))
    icon = raw_file(COMFY["Icon"])
    assert icon == ICON_PNG and icon.is_file()
    with Image.open(icon) as im:
        assert im.format == "PNG" and im.size == (400, 400) and im.mode == "RGBA"  # square, <= 400 px
    banner = raw_file(COMFY["Banner"])
    with Image.open(banner) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1]
    assert re.search(r'viewBox="0 0 400 400"', ICON_SVG.read_text())


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian package 'chromium')")
def test_icon_png_is_the_svg_drawn(tmp_path: Path) -> None:
    browser = Chromium(CHROMIUM, tmp_path / "profile")
    try:
        browser.call("Page.enable")
        browser.call("Emulation.setDefaultBackgroundColorOverride", color={"r": 0, "g": 0, "b": 0, "a": 0})
        browser.call("Emulation.setDeviceMetricsOverride", width=400, height=400, deviceScaleFactor=1, mobile=False)
        svg = base64.b64encode(ICON_SVG.read_bytes()).decode()
        browser.evaluate(f"""new Promise((done) => {{ document.body.style.margin = '0';
            const img = new Image(); img.onload = () => done(true); img.src = 'data:image/svg+xml;base64,{svg}';
            document.body.appendChild(img); }})""")
        shot = browser.call("Page.captureScreenshot", format="png",
                            clip={"x": 0, "y": 0, "width": 400, "height": 400, "scale": 1})
    finally:
        browser.close()
    drawn = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGBA")
    assert drawn.size == (400, 400)
    alpha = np.asarray(drawn)[..., 3]
    assert alpha[0, 0] == 0 and alpha[200, 200] == 255  # transparent corners, an opaque tile
    if os.environ.get("HALLO_UPDATE_SCREENSHOTS") == "1":
        drawn.save(ICON_PNG, optimize=True)
    with Image.open(ICON_PNG) as committed:
        diff = np.abs(np.asarray(committed.convert("RGBA"), np.int16) - np.asarray(drawn, np.int16))
    assert diff.mean() < 2.0, f"docs/icon.png is not docs/icon.svg (mean difference {diff.mean():.2f}): " \
                              "run with HALLO_UPDATE_SCREENSHOTS=1"
