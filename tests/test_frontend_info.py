"""The info text of js/hallo.js under Node.js with a stub ``app`` (no browser needed); skipped without ``node``.

Checks that a sampler's text after a run comes from that run's own report (not from an encoder whose output
may be cached and stale), that notices ("text" ui output) are shown on any Hallo node, and that the text
lives in a widget that is neither saved nor sent with prompts (not drawn over the frontend's image caption).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js not installed")

APP_STUB = "export const app = { graph: null, extensions: [], registerExtension(e) { this.extensions.push(e); } };\n"

DRIVER = """
import { app } from "./scripts/app.js";
import "./extensions/hallo/hallo.js";
const ext = app.extensions[0];
const measure = { font: "", measureText: (t) => ({ width: t.length * 6 }) };
globalThis.document = { createElement: () => ({ getContext: () => measure }) };
function makeNode(name, widgets) {
  class NodeType {}
  ext.beforeRegisterNodeDef(NodeType, { name });
  const node = new NodeType();
  node.type = name; node.comfyClass = name; node.inputs = []; node.size = [300, 200];
  node.widgets = widgets.map(([n, v]) => ({ name: n, value: v }));
  node.addCustomWidget = function (w) { this.widgets.push(w); return w; };
  node.computeSize = () => [300, 200];
  return node;
}
const out = {};
const sampler = makeNode("HalloSampler", [["steps", 40]]);
sampler.onNodeCreated?.();
out.before = sampler.hallo_info;
// the encoder was cached: only the sampler reports
sampler.onExecuted({ hallo_render: [{ start_frame: 16, end_frame: 48, frames: 32, clips: 2, fps: 25,
  duration: 1.28, total_frames: 60, render_seconds: 3.5 }], text: ["HalloSampler: the audio is silent"] });
sampler.onDrawForeground?.({});
out.after = sampler.hallo_info;
out.notes = sampler.hallo_notes;
const info = sampler.widgets.find((w) => w.name === "hallo_info");
out.widget = info ? { serialize: info.serialize, options: info.options, last: sampler.widgets.at(-1) === info } : null;
const drawn = [];
const ctx = { save() {}, restore() {}, measureText: (t) => ({ width: t.length * 6 }),
  fillText: (t) => drawn.push(t), set font(v) {}, set fillStyle(v) {}, set textAlign(v) {} };
info.draw(ctx, sampler, 300, 100);
out.drawn = drawn;
sampler.onExecuted({ hallo_render: [{ start_frame: 0, end_frame: 25, frames: 25, clips: 2, fps: 25,
  duration: 1, total_frames: 25, render_seconds: 1 }] });
out.notesCleared = sampler.hallo_notes;
out.second = sampler.hallo_info;
const paste = makeNode("HalloPasteBack", [["feather", 16]]);
paste.onExecuted({ text: ["HalloPasteBack: the photo is 633x630; the frames are 632x630"] });
out.paste = paste.hallo_notes;
console.log(JSON.stringify(out));
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("web")
    (root / "scripts").mkdir()
    (root / "scripts" / "app.js").write_text(APP_STUB)
    ext = root / "extensions" / "hallo"
    ext.mkdir(parents=True)
    for script in ("hallo.js", "hallo_migrate.js"):
        shutil.copy(REPO / "js" / script, ext / script)
    (root / "package.json").write_text('{"type": "module"}')
    (root / "driver.js").write_text(DRIVER)
    proc = subprocess.run([NODE, "driver.js"], cwd=root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_sampler_text_comes_from_its_own_run(result: dict) -> None:
    assert result["before"] == "connect HalloAudioEncode to see frames and duration"
    assert result["after"] == "32 frames · 2 clips · 1.28 s @ 25 fps (frames 16-47 of 60) · rendered in 3.5 s"
    assert result["second"] == "25 frames · 2 clips · 1.00 s @ 25 fps · rendered in 1 s"


def test_notices_are_shown_on_the_node(result: dict) -> None:
    assert result["notes"] == ["HalloSampler: the audio is silent"]
    assert any("audio is silent" in t for t in result["drawn"])
    assert any(t.startswith("32 frames") for t in result["drawn"])
    assert result["notesCleared"] == []  # a run without notices clears the old ones
    assert result["paste"] == ["HalloPasteBack: the photo is 633x630; the frames are 632x630"]


def test_info_is_a_widget_that_is_never_serialized(result: dict) -> None:
    assert result["widget"] == {"serialize": False, "options": {"serialize": False}, "last": True}
