// Workflows saved before the sampler's option nodes, rewritten when they load (no imports: a pure module).
//
// Until then HalloSampler and HalloRenderToVideoFile stored every setting as a widget, and the UI format stores
// widget values by position. migrateWorkflow() finds samplers saved in one of the released layouts (they differ
// in length), keeps steps, cfg, seed, the weights and still (steps 0, "the preset's count", becomes that count)
// and moves the rest onto new nodes placed where the old, taller sampler was: a Hallo Sampler Options node
// (only when an option differs from the original recipe), a Hallo Weight Schedule per non-empty schedule
// text (connected to its weight socket) and a Hallo Segment for num_frames. The frames rendered are the same
// (tests/workflow_migration.py holds the same rules; the tests check both against the nodes).
// `defs` comes from the node definitions (recipes of the presets, the options node's widgets and defaults,
// input orders), so nothing here repeats a value of the Python side.

const HEAD = ["steps", "cfg", "seed", "control_after_generate", "pose_weight", "face_weight", "lip_weight"];
const OPTIONS_V1 = ["preset", "solver", "cfg_steps", "low_vram", "dtype", "compile"];
const SCHEDULES = ["pose_schedule", "face_schedule", "lip_schedule", "still"];

function layouts(middle) {
  const base = [...HEAD, ...middle];
  return [base, [...base, ...OPTIONS_V1], [...base, ...OPTIONS_V1, ...SCHEDULES],
    [...base, ...OPTIONS_V1, "cache_interval", ...SCHEDULES]];
}

// The widget orders that were released: before presets, with presets, with schedules, with DeepCache.
export const OLD_LAYOUTS = {
  HalloSampler: layouts(["start_frame", "num_frames", "faithful", "motion_frame_drop"]),
  HalloRenderToVideoFile: layouts(["faithful", "motion_frame_drop", "filename_prefix", "feather"]),
};
export const NEW_LAYOUT = {
  HalloSampler: [...HEAD, "still"],
  HalloRenderToVideoFile: [...HEAD, "still", "filename_prefix", "feather"],
};
export const OLD_DEFAULTS = {
  steps: 0, cfg: 3.5, seed: 42, control_after_generate: "fixed", pose_weight: 1.0, face_weight: 1.0,
  lip_weight: 1.0, start_frame: -1, num_frames: 0, faithful: true, motion_frame_drop: -1.0, preset: "faithful",
  solver: "ddim", cfg_steps: 0, low_vram: false, dtype: "auto", compile: false, cache_interval: 0,
  pose_schedule: "", face_schedule: "", lip_schedule: "", still: false, filename_prefix: "hallo/Hallo", feather: 16,
};
// The old widgets an options node replaces, and the options widget each one's link moves to.
export const OPTION_NAMES = ["faithful", "motion_frame_drop", "preset", "solver", "cfg_steps", "low_vram", "dtype",
  "compile", "cache_interval"];
const MOVED_LINKS = { faithful: "reference_quirks", preset: "preset", solver: "solver", cfg_steps: "cfg_steps",
  low_vram: "low_vram", dtype: "dtype", compile: "compile", cache_interval: "cache_interval" };

export function oldLayout(type, values) {
  return (OLD_LAYOUTS[type] ?? []).find((layout) => layout.length === values?.length) ?? null;
}

function dropChoice(value, choices) {
  if (value < 0) return choices[0];
  let best = choices[1];
  for (const c of choices.slice(1)) if (Math.abs(Number(c) - value) < Math.abs(Number(best) - value)) best = c;
  return best;
}

// One old sampler's values (by name) -> {widgets, options, schedules, segment}, as tests/workflow_migration.py.
export function migrateValues(type, old, defs) {
  const v = { ...OLD_DEFAULTS, ...old };
  const recipes = defs.recipes;
  const steps = Number(v.steps) || recipes[v.preset].steps;
  const widgets = {};
  for (const name of NEW_LAYOUT[type]) widgets[name] = v[name];
  widgets.steps = steps;
  let options = null;
  if (OPTION_NAMES.some((name) => v[name] !== OLD_DEFAULTS[name])) {
    options = { ...defs.optionDefaults, dtype: v.dtype, low_vram: v.low_vram, compile: v.compile,
      reference_quirks: v.faithful, motion_frame_drop: dropChoice(Number(v.motion_frame_drop), defs.dropChoices) };
    const interval = Number(v.cache_interval);
    if (v.preset === "custom") {
      Object.assign(options, { preset: "custom", solver: v.solver, cfg_steps: Number(v.cfg_steps) || steps,
        cache_interval: interval || 1 });
    } else if (interval) { // a named preset with its DeepCache interval replaced: that recipe, spelled out
      const p = recipes[v.preset];
      Object.assign(options, { preset: "custom", solver: p.solver, cfg_steps: p.cfg_steps || steps,
        cache_interval: interval });
    } else {
      options.preset = v.preset;
    }
  }
  const schedules = {};
  for (const branch of ["pose", "face", "lip"]) {
    const text = String(v[`${branch}_schedule`] ?? "").trim();
    if (text) schedules[branch] = text;
  }
  const segment = type === "HalloSampler" && Number(v.num_frames) > 0 ? Number(v.num_frames) : null;
  return { widgets, options, schedules, segment };
}

// Links of a graph: arrays [id, origin, origin_slot, target, target_slot, type] (format 0.4) or objects.
function linkApi(graph) {
  const links = (graph.links ??= []);
  const asArrays = Array.isArray(links[0]) || (links.length === 0 && graph.version !== 1 && !graph.inputNode);
  return {
    find: (id) => links.find((l) => (Array.isArray(l) ? l[0] : l.id) === id),
    setTarget(link, target, slot) {
      if (Array.isArray(link)) { link[3] = target; link[4] = slot; } else { link.target_id = target; link.target_slot = slot; }
    },
    add(id, origin, originSlot, target, targetSlot, type) {
      links.push(asArrays ? [id, origin, originSlot, target, targetSlot, type]
        : { id, origin_id: origin, origin_slot: originSlot, target_id: target, target_slot: targetSlot, type });
    },
    remove(id) {
      const i = links.findIndex((l) => (Array.isArray(l) ? l[0] : l.id) === id);
      if (i >= 0) links.splice(i, 1);
    },
  };
}

function ids(graphData) {
  let node = 0;
  let link = 0;
  for (const g of [graphData, ...(graphData.definitions?.subgraphs ?? [])]) {
    for (const n of g.nodes ?? []) node = Math.max(node, Number(n.id) || 0);
    for (const l of g.links ?? []) link = Math.max(link, Number(Array.isArray(l) ? l[0] : l.id) || 0);
  }
  node = Math.max(node, graphData.last_node_id ?? 0, graphData.state?.lastNodeId ?? 0);
  link = Math.max(link, graphData.last_link_id ?? 0, graphData.state?.lastLinkId ?? 0);
  return {
    node: () => ++node,
    link: () => ++link,
    save() {
      if ("last_node_id" in graphData || graphData.version !== 1) {
        graphData.last_node_id = node;
        graphData.last_link_id = link;
      }
      if (graphData.state) {
        graphData.state.lastNodeId = node;
        graphData.state.lastLinkId = link;
      }
    },
  };
}

function migrateNode(graph, n, layout, defs, next, warn) {
  const old = {};
  layout.forEach((name, i) => { old[name] = n.widgets_values[i]; });
  const m = migrateValues(n.type, old, defs);
  const links = linkApi(graph);
  const kept = new Set([...NEW_LAYOUT[n.type], ...defs.inputOrder[n.type]]);
  const moved = {}; // old widget name -> link id, for links that move to a new node's widget
  n.inputs = (n.inputs ?? []).filter((input) => {
    if (kept.has(input.name)) return true;
    if (input.link != null) moved[input.name] = input.link;
    return false;
  });
  n.widgets_values = NEW_LAYOUT[n.type].map((name) => m.widgets[name]);
  const [x, y] = n.pos ?? [0, 0];
  const width = Math.max(330, (n.size?.[0] ?? 400) - 60);
  let top = y + defs.samplerHeight[n.type] + 40;
  const add = (type, values, height, output, outputType, input, inputType, title) => {
    const id = next.node();
    const link = next.link();
    graph.nodes.push({ id, type, pos: [x, top], size: [width, height], flags: {}, order: n.order ?? 0,
      mode: 0, inputs: [], outputs: [{ name: output, type: outputType, links: [link], slot_index: 0 }],
      properties: { "Node name for S&R": type }, widgets_values: values, ...(title ? { title } : {}) });
    top += height + 40;
    let slot = n.inputs.find((i) => i.name === input);
    if (!slot) {
      slot = { name: input, type: inputType, link: null };
      if (NEW_LAYOUT[n.type].includes(input)) slot.widget = { name: input };
      n.inputs.push(slot);
    }
    slot.link = link;
    links.add(link, id, 0, n.id, 0, outputType);
    return { id, values };
  };
  const moveInto = (node, widgetNames, from, to) => {
    const linkId = moved[from];
    if (linkId == null) return;
    delete moved[from];
    const link = links.find(linkId);
    const graphNode = graph.nodes.find((g) => g.id === node.id);
    if (!link || !graphNode) return;
    links.setTarget(link, node.id, widgetNames.indexOf(to));
    graphNode.inputs.push({ name: to, type: link[5] ?? link.type, widget: { name: to }, link: linkId });
  };
  const linkedOption = Object.keys(moved).some((name) => name in MOVED_LINKS);
  if (m.options || linkedOption) {
    const values = m.options ?? { ...defs.optionDefaults };
    const node = add("HalloSamplerOptions", defs.optionNames.map((name) => values[name]), 290, "options",
      "HALLO_SAMPLER_OPTIONS", "options", "HALLO_SAMPLER_OPTIONS");
    for (const [from, to] of Object.entries(MOVED_LINKS)) moveInto(node, defs.optionNames, from, to);
  }
  if (m.segment != null || moved.num_frames != null) {
    const node = add("HalloSegment", [m.segment ?? defs.segmentDefault], 80, "segment", "HALLO_SEGMENT", "segment",
      "HALLO_SEGMENT");
    moveInto(node, ["frames"], "num_frames", "frames");
  }
  for (const branch of ["pose", "face", "lip"]) {
    const name = `${branch}_weight`;
    const from = `${branch}_schedule`;
    if (m.schedules[branch] == null && moved[from] == null) continue;
    if (n.inputs.find((i) => i.name === name)?.link != null) {
      warn(`${n.type} ${n.id}: ${name} is connected, so its old ${from} text is not used`);
      continue;
    }
    const node = add("HalloWeightSchedule", [m.schedules[branch] ?? ""], 80, "weight", "FLOAT", name, "FLOAT",
      `Hallo Weight Schedule: ${branch}`);
    moveInto(node, ["keyframes"], from, "keyframes");
  }
  for (const [name, linkId] of Object.entries(moved)) {
    warn(`${n.type} ${n.id}: the link into its old widget ${name} has no place in the new node and is removed`);
    links.remove(linkId);
    for (const other of graph.nodes) {
      for (const out of other.outputs ?? []) out.links = (out.links ?? []).filter((l) => l !== linkId);
    }
  }
  const order = defs.inputOrder[n.type];
  for (const input of n.inputs) {
    const link = input.link != null ? links.find(input.link) : null;
    const slot = order.indexOf(input.name);
    if (link && slot >= 0) links.setTarget(link, n.id, slot);
  }
  n.size = [n.size?.[0] ?? 400, 100]; // the frontend grows it to the widgets' height
  if (Number(old.start_frame) > 0) {
    warn(`${n.type} ${n.id}: start_frame ${old.start_frame} is dropped; the sampler starts where its motion ends`);
  }
}

// Rewrite every old sampler of a workflow (and of its subgraph definitions) in place; returns how many.
export function migrateWorkflow(graphData, defs, warn = () => {}) {
  if (!graphData || !Array.isArray(graphData.nodes)) return 0;
  const next = ids(graphData);
  let count = 0;
  for (const graph of [graphData, ...(graphData.definitions?.subgraphs ?? [])]) {
    for (const n of [...(graph.nodes ?? [])]) {
      const layout = oldLayout(n.type, n.widgets_values);
      if (!layout) continue;
      migrateNode(graph, n, layout, defs, next, warn);
      count += 1;
    }
  }
  if (count) next.save();
  return count;
}
