// Hallo nodes: small graph helpers.
// * HalloSampler / HalloRenderToVideoFile show the frames, clips and duration they will render once the
//   connected HalloAudioEncode has run (it reports them in its "hallo_audio" ui output); after a run they show
//   what that run itself reported ("hallo_render"), so a cached encoder cannot leave the text stale.
// * HalloFaceAnalysis shows how many faces were found and a legend for the mask overlay preview it returns.
// * Every Hallo node shows the notices of its last run (its "text" ui output: silent audio, a stretched
//   portrait, an odd photo size, skipped vocal separation, ...). The text grows its node only into free
//   space: where a neighbour sits below, it is cut short (the whole text is the widget's tooltip).
// * HalloRenderToVideoFile: the frontend plays its mp4 on the node; this drops the node's live previews once the
//   mp4 is written, which core does not do (they would hide the video).
// * Hallo Sampler Options greys out solver / cfg_steps / cache_interval unless the preset is custom, and choosing
//   a preset sets the steps of the samplers it feeds to the preset's count.
// * Workflows saved with the samplers' old widgets are rewritten when they load (hallo_migrate.js).
// The text sits in a widget of its own above any preview, not at the node's bottom edge, where the frontend
// writes the size of a previewed image. The widget is never saved in workflows nor sent with prompts.
import { app } from "../../scripts/app.js";
import { migrateWorkflow } from "./hallo_migrate.js";

const SAMPLERS = new Set(["HalloSampler", "HalloRenderToVideoFile"]);
const INFO_COLOR = "#9fd4ff";
const NOTE_COLOR = "#ffcf6e";
const LINE = 14;
const INFO_WIDGET = "hallo_info";
const FONT = "11px sans-serif";
const CUSTOM_ONLY = ["solver", "cfg_steps", "cache_interval"];
// What the migration and the options node read from the node definitions (filled in beforeRegisterNodeDef).
const DEFS = { recipes: null, optionNames: [], optionDefaults: {}, dropChoices: [], inputOrder: {},
  samplerHeight: { HalloSampler: 420, HalloRenderToVideoFile: 480 }, segmentDefault: 400 };

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
  const start = chained ? null : 0;
  const segment = inputNode(node, "segment");
  const num = segment ? Number(widgetValue(segment, "frames", 0)) : 0;
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

let measureCtx = null;

function textWidth(text) {
  measureCtx ??= document.createElement("canvas").getContext("2d");
  measureCtx.font = FONT;
  return measureCtx.measureText(text).width;
}

function wrap(text, width) {
  const out = [];
  let line = "";
  for (const word of text.split(" ")) {
    const next = line ? `${line} ${word}` : word;
    if (line && textWidth(next) > width) {
      out.push(line);
      line = word;
    } else {
      line = next;
    }
  }
  if (line) out.push(line);
  return out;
}

// The text lines of a node at a width: [text, colour] pairs.
function textLines(node, width) {
  const out = [];
  for (const [text, color] of infoLines(node)) {
    for (const part of wrap(text, width - 16)) out.push([part, color]);
  }
  return out;
}

function nodeBox(node, height = node.size[1]) {
  const title = globalThis.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
  return [node.pos[0], node.pos[1] - title, node.size[0], height + title];
}

function intersects(a, b) {
  return a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3];
}

// Would the node, grown to `height`, cover a node it does not cover now?
function growthCovers(node, height) {
  const nodes = node.graph?._nodes ?? node.graph?.nodes ?? [];
  const now = nodeBox(node);
  const grown = nodeBox(node, height);
  return nodes.some((o) => o !== node && o.pos && o.size && intersects(grown, nodeBox(o))
    && !intersects(now, nodeBox(o)));
}

// The rows the text gets: all it needs when the node can grow into free space, else as many as fit.
function fitRows(node, widget, wanted) {
  const have = widget.rows;
  if (wanted <= have || !node.size || !node.pos) return wanted;
  for (let rows = wanted; rows > have; rows--) {
    widget.rows = rows;
    const height = node.computeSize?.()[1] ?? node.size[1];
    widget.rows = have;
    if (height <= node.size[1] || !growthCovers(node, height)) return rows;
  }
  return have;
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
      const lines = textLines(owner, width);
      const shown = lines.slice(0, this.rows);
      if (lines.length > shown.length && shown.length) { // cut short: end the last row with an ellipsis
        const last = shown[shown.length - 1];
        let text = last[0];
        while (text && textWidth(`${text}…`) > width - 16) text = text.slice(0, -1);
        shown[shown.length - 1] = [`${text}…`, last[1]];
      }
      ctx.save();
      ctx.font = FONT;
      ctx.textAlign = "left";
      shown.forEach(([text, color], row) => {
        ctx.fillStyle = color;
        ctx.fillText(text, 8, y + LINE * (row + 1) - 2, width - 16);
      });
      ctx.restore();
    },
    computeSize(width) {
      return [width, Math.max(1, this.rows) * LINE + 4];
    },
  });
  // Nodes 2.0 sizes the widget's own canvas by the height the canvas layout last computed, which goes stale when
  // the text changes: the widget's height is always its rows'
  Object.defineProperty(widget, "computedHeight", {
    get() { return Math.max(1, this.rows) * LINE + 4; },
    set() {},
    configurable: true,
  });
  return widget;
}

// Lay the text out again: grow the node only into free space (never over a neighbour), never shrink it.
function relayout(node) {
  const widget = infoWidget(node);
  if (!widget || !node.size) return;
  const lines = textLines(node, node.size[0]);
  widget.tooltip = infoLines(node).map(([text]) => text).join("\n");
  const rows = Math.max(1, fitRows(node, widget, lines.length));
  if (rows === widget.rows) return;
  widget.rows = rows;
  const height = node.computeSize?.()[1];
  if (height && height > node.size[1]) node.setSize?.([node.size[0], height]);
}

function show(node, info, notes) {
  if (info !== undefined) node.hallo_info = info;
  if (notes !== undefined) node.hallo_notes = notes;
  relayout(node);
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

function choicesOf(spec) {
  return Array.isArray(spec?.[0]) ? spec[0] : spec?.[1]?.options ?? [];
}

function inputOrder(nodeData) {
  const order = nodeData.input_order;
  if (order) return [...(order.required ?? []), ...(order.optional ?? [])];
  return [...Object.keys(nodeData.input?.required ?? {}), ...Object.keys(nodeData.input?.optional ?? {})];
}

function readDefinitions(name, nodeData) {
  const required = nodeData.input?.required ?? {};
  if (name === "HalloSamplerOptions") {
    DEFS.optionNames = inputOrder(nodeData);
    DEFS.optionDefaults = Object.fromEntries(DEFS.optionNames.map((n) => [n, required[n]?.[1]?.default]));
    DEFS.recipes = required.preset?.[1]?.recipes ?? null;
    DEFS.dropChoices = choicesOf(required.motion_frame_drop);
  } else if (name === "HalloSegment") {
    DEFS.segmentDefault = required.frames?.[1]?.default ?? DEFS.segmentDefault;
  } else if (SAMPLERS.has(name)) {
    DEFS.inputOrder[name] = inputOrder(nodeData);
  }
}

// Solver, cfg_steps and cache_interval are the custom recipe's: greyed out under the named presets.
function greyCustomOnly(node) {
  const custom = widgetValue(node, "preset", "faithful") === "custom";
  for (const w of node.widgets ?? []) {
    if (CUSTOM_ONLY.includes(w.name)) w.disabled = !custom;
  }
  node.setDirtyCanvas?.(true, true);
}

// A named preset chosen by hand: the samplers it feeds get its step count (steps runs under every preset).
// Choosing custom keeps their steps: it is the recipe to tune.
function presetChosen(node, preset) {
  const steps = preset === "custom" ? null : DEFS.recipes?.[preset]?.steps;
  if (!steps) return;
  // through getOutputNodes: newer frontends warn on every read of output.links
  for (const target of (node.graph && node.getOutputNodes?.(0)) ?? []) {
    const w = target?.widgets?.find((x) => x.name === "steps");
    if (!w || !SAMPLERS.has(target.comfyClass ?? target.type)) continue;
    w.value = steps;
    w.callback?.(steps);
    target.setDirtyCanvas?.(true, true);
  }
}

function optionsNode() {
  const preset = (this.widgets ?? []).find((w) => w.name === "preset");
  if (preset) {
    const original = preset.callback;
    const node = this;
    preset.callback = function (value, ...rest) {
      const r = original?.call(this, value, ...rest);
      greyCustomOnly(node);
      presetChosen(node, value);
      return r;
    };
  }
  greyCustomOnly(this);
}

app.registerExtension({
  name: "hallo.nodes",
  async beforeConfigureGraph(graphData) {
    if (!DEFS.recipes) return;
    const count = migrateWorkflow(graphData, DEFS, (message) => console.warn(`hallo-nodes: ${message}`));
    if (count) console.info(`hallo-nodes: ${count} sampler(s) saved with the old widgets now use the option nodes`);
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const name = nodeData.name;
    if (!name?.startsWith("Hallo")) return;
    readDefinitions(name, nodeData);
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
    } else if (name === "HalloSegment") {
      // the canvas redraws the samplers' text on every frame; Nodes 2.0 only when told
      chain(nodeType.prototype, "onWidgetChanged", refreshSamplers);
    } else if (name === "HalloSamplerOptions") {
      chain(nodeType.prototype, "onNodeCreated", optionsNode);
      chain(nodeType.prototype, "onConfigure", function () { greyCustomOnly(this); });
    } else if (name === "HalloFaceAnalysis") {
      chain(nodeType.prototype, "onExecuted", function (message) {
        this.hallo_face = message?.hallo_face?.[0] ?? null;
        show(this, faceInfo(this.hallo_face));
      });
    }
  },
});
