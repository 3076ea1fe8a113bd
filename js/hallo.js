// Hallo nodes: small graph helpers.
// * HalloSampler / HalloRenderToVideoFile show the frames, clips and duration they will render once the
//   connected HalloAudioEncode has run (it reports them in its "hallo_audio" ui output), and the render time.
// * HalloFaceAnalysis shows how many faces were found and a legend for the mask overlay preview it returns.
import { app } from "../../scripts/app.js";

const CLIP = 16;
const SAMPLERS = new Set(["HalloSampler", "HalloRenderToVideoFile"]);
const INFO_COLOR = "#9fd4ff";

function getLink(graph, id) {
  if (id == null || !graph) return null;
  const links = graph.links;
  if (!links) return null;
  return typeof links.get === "function" ? links.get(id) : links[id];
}

function inputNode(node, name) {
  const input = (node.inputs || []).find((i) => i.name === name);
  const link = input ? getLink(node.graph ?? app.graph, input.link) : null;
  return link ? (node.graph ?? app.graph).getNodeById(link.origin_id) : null;
}

function widgetValue(node, name, fallback) {
  const w = (node.widgets || []).find((x) => x.name === name);
  return w ? w.value : fallback;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
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
  const frames = Math.max(0, end - start);
  const clips = Math.max(0, Math.ceil(end / CLIP) - Math.floor(start / CLIP));
  const seconds = (frames / audio.fps).toFixed(2);
  const range = start > 0 || end < total ? ` (frames ${start}-${end - 1} of ${total})` : "";
  return `${plural(frames, "frame")} · ${plural(clips, "clip")} · ${seconds} s @ ${audio.fps} fps${range}`;
}

function faceInfo(face) {
  if (!face) return null;
  const found = face.faces === 0 ? "no face found (zero identity embedding)" : `${plural(face.faces, "face")} found, using #${face.face_index}`;
  const masks = face.masks === "box" ? "approximate masks from a box" : "masks";
  return `${found} · ${face.width}x${face.height} · ${masks}: red lip, green face, blue full`;
}

function drawInfo(node, ctx, text) {
  if (!text || node.flags?.collapsed) return;
  ctx.save();
  ctx.font = "11px sans-serif";
  ctx.fillStyle = INFO_COLOR;
  ctx.textAlign = "left";
  ctx.fillText(text, 8, node.size[1] - 6, node.size[0] - 16);
  ctx.restore();
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
    if (SAMPLERS.has(node.comfyClass ?? node.type)) {
      node.hallo_info = samplerInfo(node);
    }
  }
  app.graph?.setDirtyCanvas(true, false);
}

app.registerExtension({
  name: "hallo.nodes",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const name = nodeData.name;
    if (name === "HalloAudioEncode") {
      chain(nodeType.prototype, "onExecuted", function (message) {
        const audio = message?.hallo_audio?.[0];
        if (!audio) return;
        this.hallo_audio = audio;
        this.hallo_info = `${plural(audio.frames, "frame")} · ${plural(audio.clips, "clip")} · ${audio.duration.toFixed(2)} s`;
        refreshSamplers();
      });
      chain(nodeType.prototype, "onDrawForeground", function (ctx) {
        drawInfo(this, ctx, this.hallo_info);
      });
    } else if (SAMPLERS.has(name)) {
      chain(nodeType.prototype, "onNodeCreated", function () {
        this.hallo_info = samplerInfo(this);
      });
      chain(nodeType.prototype, "onConnectionsChange", function () {
        this.hallo_info = samplerInfo(this);
      });
      chain(nodeType.prototype, "onWidgetChanged", function () {
        this.hallo_info = samplerInfo(this);
      });
      chain(nodeType.prototype, "onExecuted", function (message) {
        const r = message?.hallo_render?.[0];
        this.hallo_info = samplerInfo(this);
        if (r?.render_seconds != null) this.hallo_info += ` · rendered in ${r.render_seconds} s`;
      });
      chain(nodeType.prototype, "onDrawForeground", function (ctx) {
        if (!this.hallo_info || !this.hallo_info.includes("rendered")) this.hallo_info = samplerInfo(this);
        drawInfo(this, ctx, this.hallo_info);
      });
    } else if (name === "HalloFaceAnalysis") {
      chain(nodeType.prototype, "onExecuted", function (message) {
        this.hallo_face = message?.hallo_face?.[0] ?? null;
        this.hallo_info = faceInfo(this.hallo_face);
      });
      chain(nodeType.prototype, "onDrawForeground", function (ctx) {
        drawInfo(this, ctx, this.hallo_info);
      });
    }
  },
});
