// Hallo nodes: small graph helpers.
// * HalloSampler / HalloRenderToVideoFile show the frames, clips and duration they will render once the
//   connected HalloAudioEncode has run (it reports them in its "hallo_audio" ui output); after a run they show
//   what that run itself reported ("hallo_render"), so a cached encoder cannot leave the text stale.
// * HalloFaceAnalysis shows how many faces were found and a legend for the mask overlay preview it returns.
// * HalloSampler's start_frame widget steps through -1, 0, 16, 32, ... (see snapStartFrame).
// * Every Hallo node shows the notices of its last run (its "text" ui output: silent audio, a stretched
//   portrait, an odd photo size, skipped vocal separation, ...).
// * HalloRenderToVideoFile: the frontend plays its mp4 on the node; this drops the node's live previews once the
//   mp4 is written, which core does not do (they would hide the video).
// The text sits in a widget of its own above any preview, not at the node's bottom edge, where the frontend
// writes the size of a previewed image. The widget is never saved in workflows nor sent with prompts.
import { app } from "../../scripts/app.js";

const SAMPLERS = new Set(["HalloSampler", "HalloRenderToVideoFile"]);
const INFO_COLOR = "#9fd4ff";
const NOTE_COLOR = "#ffcf6e";
const LINE = 14;
const INFO_WIDGET = "hallo_info";

// Through getInputNode: newer frontends warn on every read of input.link.
function inputNode(node, name) {
  const slot = (node.inputs || []).findIndex((i) => i.name === name);
  if (slot < 0 || !node.graph || typeof node.getInputNode !== "function") return null;
  return node.getInputNode(slot) ?? null;
}

function widgetValue(node, name, fallback) {
  const w = (node.widgets || []).find((x) => x.name === name);
  return w ? w.value : fallback;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

// The number of clips comes from the Python side (a run's report, or the encoder's clip length), which
// defines the clip length.
function clipCount(start, end, clipLength) {
  return Math.max(0, Math.ceil(end / clipLength) - Math.floor(start / clipLength));
}

function summary(start, end, total, fps, clips) {
  const frames = Math.max(0, end - start);
  const seconds = (frames / fps).toFixed(2);
  const range = start > 0 || end < total ? ` (frames ${start}-${end - 1} of ${total})` : "";
  return `${plural(frames, "frame")} · ${plural(clips, "clip")} · ${seconds} s @ ${fps} fps${range}`;
}

// What a sampler will render, from the audio summary of its HalloAudioEncode.
export function samplerInfo(node) {
  const enc = inputNode(node, "audio_features");
  if (!enc) return "connect HalloAudioEncode to see frames and duration";
  const audio = enc.hallo_audio;
  if (!audio) return "run the graph once to see frames and duration";
  const total = audio.frames;
  const chained = !!inputNode(node, "motion");
  let start = Number(widgetValue(node, "start_frame", 0));
  if (start < 0) start = chained ? null : 0;
  const num = Number(widgetValue(node, "num_frames", 0));
  if (start === null) {
    const frames = num > 0 ? `${num} frames` : "the rest of the audio";
    return `continues the previous segment: ${frames} of ${total} @ ${audio.fps} fps`;
  }
  const end = num > 0 ? Math.min(total, start + num) : total;
  return summary(start, end, total, audio.fps, clipCount(start, end, audio.clip_length));
}

// What a sampler's own run rendered (its "hallo_render" ui output).
export function renderInfo(r) {
  let text = summary(r.start_frame, r.end_frame, r.total_frames, r.fps, r.clips);
  if (r.render_seconds != null) text += ` · rendered in ${r.render_seconds} s`;
  if (r.preset) text += ` · ${r.preset}: ${r.solver}, ${plural(r.steps, "step")}`;
  return text;
}

// start_frame is -1 (continue from 'motion') or a multiple of the clip length. With min -1 and step 16 the
// frontend would snap the widget to -1 + 16k (15, 31, ...); this keeps -1, takes one step up from -1 (15) to 0
// and snaps the rest to 0, 16, 32, ...: the arrows go -1, 0, 16, 32 and back.
export function snapStartFrame(value, clip) {
  if (value < 0) return -1;
  return value === clip - 1 ? 0 : Math.round(value / clip) * clip;
}

function honestStartFrame() {
  const w = (this.widgets || []).find((x) => x.name === "start_frame");
  if (!w) return;
  const clip = w.options?.step2 || 16;
  w.callback = function (value) {
    this.value = snapStartFrame(Number(value), clip);
  };
}

function faceInfo(face) {
  if (!face) return null;
  const found = face.faces === 0 ? "no face found (zero identity embedding)" : `${plural(face.faces, "face")} found, using #${face.face_index}`;
  const masks = face.masks === "box" ? "approximate masks from a box" : "masks";
  return `${found} · ${face.width}x${face.height} · ${masks}: red lip, green face, blue full`;
}

function infoLines(node) {
  const lines = [];
  if (node.hallo_info) lines.push([node.hallo_info, INFO_COLOR]);
  for (const note of node.hallo_notes ?? []) lines.push([`⚠ ${note}`, NOTE_COLOR]);
  return lines;
}

function wrap(ctx, text, width) {
  const out = [];
  let line = "";
  for (const word of text.split(" ")) {
    const next = line ? `${line} ${word}` : word;
    if (line && ctx.measureText(next).width > width) {
      out.push(line);
      line = word;
    } else {
      line = next;
    }
  }
  if (line) out.push(line);
  return out;
}

// A read-only text widget: drawn in the widget area, never serialized (workflow or prompt).
function infoWidget(node) {
  let widget = (node.widgets || []).find((w) => w.name === INFO_WIDGET);
  if (widget || typeof node.addCustomWidget !== "function") return widget;
  widget = node.addCustomWidget({
    name: INFO_WIDGET,
    type: "hallo_info",
    value: "",
    serialize: false,
    options: { serialize: false },
    rows: 1,
    draw(ctx, owner, width, y) {
      ctx.save();
      ctx.font = "11px sans-serif";
      ctx.textAlign = "left";
      let row = 0;
      for (const [text, color] of infoLines(owner)) {
        ctx.fillStyle = color;
        for (const part of wrap(ctx, text, width - 16)) {
          ctx.fillText(part, 8, y + LINE * (row + 1) - 2, width - 16);
          row += 1;
        }
      }
      ctx.restore();
      if (row !== this.rows) {
        this.rows = row;
        owner.setSize?.([owner.size[0], Math.max(owner.size[1], owner.computeSize()[1])]);
        // Nodes 2.0 sizes the widget's own canvas from computeSize before drawing: draw again at the new height
        if (this.triggerDraw) requestAnimationFrame(() => this.triggerDraw?.());
      }
    },
    computeSize(width) {
      return [width, Math.max(1, this.rows) * LINE + 4];
    },
  });
  return widget;
}

function show(node, info, notes) {
  if (info !== undefined) node.hallo_info = info;
  if (notes !== undefined) node.hallo_notes = notes;
  // Nodes 2.0 (Vue nodes) draws a canvas widget into a canvas of its own only when asked (triggerDraw)
  infoWidget(node)?.triggerDraw?.();
  node.setDirtyCanvas?.(true, true);
}

function chain(proto, name, fn) {
  const original = proto[name];
  proto[name] = function (...args) {
    const r = original?.apply(this, args);
    fn.apply(this, args);
    return r;
  };
}

function refreshSamplers() {
  for (const node of app.graph?._nodes ?? []) {
    if (SAMPLERS.has(node.comfyClass ?? node.type) && !node.hallo_render) {
      show(node, samplerInfo(node));
    }
  }
  app.graph?.setDirtyCanvas(true, false);
}

function projected() {
  this.hallo_render = null; // the settings changed: show what the next run will render
  show(this, samplerInfo(this));
}

// The video itself is drawn by the frontend, as for core Save Video: the render node returns the same ui
// ("images" with the mp4, "animated"). What core does not do is drop a node's live previews when its output
// arrives: the frontend keeps a node's last live preview in front of its output, so a node that previews its
// frames while it renders and then outputs a video would go on showing (or, on newer frontends, trying to play)
// the last preview. Once the mp4 is written, drop the node's previews from the frontend's output store (and
// from the legacy app.nodePreviewImages, which older frontends read directly), and the preview images already
// loaded on the node, so the frontend shows the video.
const PREVIEW_WIDGETS = new Set(["$$canvas-image-preview", "$$comfy_animation_preview"]);

function locatorId(node) {
  return node.graph && !node.graph.isRootGraph ? `${node.graph.id}:${node.id}` : String(node.id);
}

function outputStore() {
  const stores = app.extensionManager?._p?._s; // the frontend's Pinia stores
  const store = typeof stores?.get === "function" ? stores.get("nodeOutput") : null;
  return typeof store?.revokePreviewsByLocatorId === "function" ? store : null;
}

function dropPreviewImages(node) {
  if (!node.imgs?.length && !node.widgets?.some((w) => PREVIEW_WIDGETS.has(w.name))) return;
  node.imgs = undefined;
  for (let i = (node.widgets?.length ?? 0) - 1; i >= 0; i--) {
    if (!PREVIEW_WIDGETS.has(node.widgets[i].name)) continue;
    node.widgets[i].onRemove?.();
    node.widgets.splice(i, 1);
  }
  node.setDirtyCanvas?.(true, true);
}

function showVideoOutput(message) {
  this.hallo_video = !!message?.images?.some((f) => String(f.filename).endsWith(".mp4"));
  if (!this.hallo_video) return;
  const id = locatorId(this);
  outputStore()?.revokePreviewsByLocatorId(id);
  const legacy = app.nodePreviewImages;
  if (legacy?.[id]) {
    for (const url of legacy[id]) URL.revokeObjectURL(url);
    delete legacy[id];
  }
  dropPreviewImages(this);
}

app.registerExtension({
  name: "hallo.nodes",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const name = nodeData.name;
    if (!name?.startsWith("Hallo")) return;
    chain(nodeType.prototype, "onExecuted", function (message) {
      show(this, undefined, Array.isArray(message?.text) ? message.text.map(String) : []);
    });
    if (name === "HalloAudioEncode") {
      chain(nodeType.prototype, "onExecuted", function (message) {
        const audio = message?.hallo_audio?.[0];
        if (!audio) return;
        this.hallo_audio = audio;
        show(this, `${plural(audio.frames, "frame")} · ${plural(audio.clips, "clip")} · ${audio.duration.toFixed(2)} s`);
        refreshSamplers();
      });
    } else if (SAMPLERS.has(name)) {
      chain(nodeType.prototype, "onNodeCreated", projected);
      chain(nodeType.prototype, "onNodeCreated", honestStartFrame);
      chain(nodeType.prototype, "onConnectionsChange", projected);
      chain(nodeType.prototype, "onWidgetChanged", function (widgetName) {
        if (widgetName !== INFO_WIDGET) projected.call(this);
      });
      chain(nodeType.prototype, "onExecuted", function (message) {
        const r = message?.hallo_render?.[0];
        if (!r) return;
        this.hallo_render = r;
        show(this, renderInfo(r));
      });
      chain(nodeType.prototype, "onDrawForeground", function () {
        if (!this.hallo_render) this.hallo_info = samplerInfo(this);
      });
      if (name === "HalloRenderToVideoFile") {
        chain(nodeType.prototype, "onExecuted", showVideoOutput);
        chain(nodeType.prototype, "onExecutionStart", function () { this.hallo_video = false; });
        chain(nodeType.prototype, "onDrawForeground", function () { if (this.hallo_video) dropPreviewImages(this); });
      }
    } else if (name === "HalloFaceAnalysis") {
      chain(nodeType.prototype, "onExecuted", function (message) {
        this.hallo_face = message?.hallo_face?.[0] ?? null;
        show(this, faceInfo(this.hallo_face));
      });
    }
  },
});
