"""Build, convert and validate the shipped workflows against the node definitions.

* ``object_info()``: node definitions in ComfyUI's ``/object_info`` shape: the pack's nodes rendered from
  their ``INPUT_TYPES`` (as ComfyUI's server does) plus the core nodes recorded from a real ComfyUI
  (``fixtures/comfyui_core_object_info.json``).
* ``validate_ui`` / ``validate_api``: node types exist, links connect existing slots of matching types,
  widget values are valid (combo membership, ranges, types), required inputs are present.
* ``ui_to_api``: the API ("prompt") format a UI workflow turns into, widget by widget, as the frontend
  does; the API twins in ``tests/fixtures/workflows_api`` must equal it.
* ``python tests/workflow_tools.py``: (re)writes ``example_workflows/*.json``,
  ``tests/fixtures/workflows_api/*.json`` and the thumbnails from the specs below.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hallo_nodes.pipeline.sampling.presets import PRESETS

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / "example_workflows"
API_DIR = Path(__file__).resolve().parent / "fixtures" / "workflows_api"
CORE_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "comfyui_core_object_info.json"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = ["fixed", "increment", "decrement", "randomize"]
# Upload widgets the frontend adds after the file combo (their values are not sent to the server).
EXTRA_UPLOAD_WIDGETS = {"image_upload": 1, "audio_upload": 2}
PORTRAIT = "hallo_portrait.jpg"
SPEECH = "hallo_speech.wav"

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# node definitions
# ------------------------------------------------------------------------------------------------
def node_info(cls: type, name: str, display: str) -> dict:
    """What ComfyUI's server reports for a V1 node class (server.py ``node_info``)."""
    inputs = cls.INPUT_TYPES()
    return {
        "input": inputs,
        "input_order": {k: list(v) for k, v in inputs.items()},
        "output": list(cls.RETURN_TYPES),
        "output_is_list": [False] * len(cls.RETURN_TYPES),
        "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
        "name": name,
        "display_name": display,
        "description": getattr(cls, "DESCRIPTION", ""),
        "category": cls.CATEGORY,
        "output_node": bool(getattr(cls, "OUTPUT_NODE", False)),
    }


def pack_object_info() -> dict[str, dict]:
    from hallo_nodes.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    return {k: node_info(c, k, NODE_DISPLAY_NAME_MAPPINGS.get(k, k)) for k, c in NODE_CLASS_MAPPINGS.items()}


def core_object_info() -> dict[str, dict]:
    return json.loads(CORE_FIXTURE.read_text())["nodes"]


def object_info() -> dict[str, dict]:
    return {**core_object_info(), **pack_object_info()}


def input_spec(info: dict, name: str) -> tuple[Any, dict, bool] | None:
    """(type, options, required) of input ``name``."""
    for section in ("required", "optional"):
        spec = info["input"].get(section, {}).get(name)
        if spec is not None:
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            return spec[0], opts, section == "required"
    return None


def type_name(t: Any) -> str:
    return "COMBO" if isinstance(t, list) else str(t)


def is_widget(t: Any, opts: dict) -> bool:
    return type_name(t) in WIDGET_TYPES and not opts.get("forceInput")


def combo_options(t: Any, opts: dict) -> list | None:
    if isinstance(t, list):
        return t
    if t == "COMBO":
        return list(opts.get("options", []))
    return None


def ordered_inputs(info: dict) -> list[str]:
    order = info.get("input_order") or {k: list(v) for k, v in info["input"].items()}
    return list(order.get("required", [])) + list(order.get("optional", []))


def widget_inputs(info: dict) -> list[str]:
    out = []
    for name in ordered_inputs(info):
        t, opts, _ = input_spec(info, name)
        if is_widget(t, opts):
            out.append(name)
    return out


def has_control(name: str, opts: dict) -> bool:
    return bool(opts.get("control_after_generate")) or name in ("seed", "noise_seed")


def check_value(node: str, name: str, t: Any, opts: dict, value: Any) -> list[str]:
    """Errors for a widget value."""
    where = f"{node}.{name}"
    kind = type_name(t)
    if kind == "COMBO":
        options = combo_options(t, opts)
        if options and value not in options:
            return [f"{where}: {value!r} is not one of {options}"]
        if not isinstance(value, str):
            return [f"{where}: combo value must be a string, got {value!r}"]
        return []
    if kind == "BOOLEAN":
        return [] if isinstance(value, bool) else [f"{where}: expected a boolean, got {value!r}"]
    if kind == "STRING":
        return [] if isinstance(value, str) else [f"{where}: expected a string, got {value!r}"]
    if kind in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return [f"{where}: expected a number, got {value!r}"]
        if kind == "INT" and not float(value).is_integer():
            return [f"{where}: expected an integer, got {value!r}"]
        errs = []
        if "min" in opts and value < opts["min"]:
            errs.append(f"{where}: {value} is below the minimum {opts['min']}")
        if "max" in opts and value > opts["max"]:
            errs.append(f"{where}: {value} is above the maximum {opts['max']}")
        return errs
    return [f"{where}: {kind} is not a widget type"]


def types_match(out_type: str, in_type: Any) -> bool:
    in_name = type_name(in_type)
    if "*" in (out_type, in_name):
        return True
    return bool(set(out_type.split(",")) & set(in_name.split(",")))


# ------------------------------------------------------------------------------------------------
# UI format
# ------------------------------------------------------------------------------------------------
def ui_widget_values(node: dict, info: dict) -> tuple[dict[str, Any], list[str]]:
    """Map a UI node's ``widgets_values`` onto its widget inputs (as the frontend does)."""
    values = list(node.get("widgets_values") or [])
    errors: list[str] = []
    out: dict[str, Any] = {}
    i = 0
    label = f"node {node['id']} ({node['type']})"
    for name in widget_inputs(info):
        t, opts, _ = input_spec(info, name)
        if i >= len(values):
            if not all(not input_spec(info, n)[2] for n in widget_inputs(info)[len(out):]):
                errors.append(f"{label}: no widget value for '{name}'")
            break  # optional widgets added after the workflow was saved: the frontend gives their defaults
        out[name] = values[i]
        i += 1
        if type_name(t) == "INT" and has_control(name, opts):
            if i >= len(values) or values[i] not in CONTROL_VALUES:
                errors.append(f"{label}: '{name}' needs a control_after_generate value after it "
                              f"(one of {CONTROL_VALUES})")
            i += 1
        for flag, extra in EXTRA_UPLOAD_WIDGETS.items():
            if opts.get(flag):
                i += extra
    if len(values) > i:
        errors.append(f"{label}: {len(values) - i} widget value(s) too many: {values[i:]}")
    return out, errors


SUBGRAPH_INPUT, SUBGRAPH_OUTPUT = -10, -20


def as_link(link: list | dict) -> list:
    """A link as [id, origin, origin_slot, target, target_slot, type] (schema 1 stores objects)."""
    if isinstance(link, dict):
        return [link["id"], link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"],
                link["type"]]
    return list(link)


def subgraph_info(definition: dict) -> dict:
    """What a node running subgraph ``definition`` looks like, in /object_info's shape."""
    return {"input": {"required": {i["name"]: (i["type"], {}) for i in definition["inputs"]}},
            "input_order": {"required": [i["name"] for i in definition["inputs"]]},
            "output": [o["type"] for o in definition["outputs"]],
            "output_name": [o["name"] for o in definition["outputs"]], "name": definition["id"],
            "display_name": definition["name"], "subgraph": True}


def with_subgraphs(workflow: dict, info: dict[str, dict]) -> dict[str, dict]:
    return {**info, **{d["id"]: subgraph_info(d) for d in workflow.get("definitions", {}).get("subgraphs", [])}}


def validate_ui(workflow: dict, info: dict[str, dict], subgraph: dict | None = None) -> list[str]:
    """Errors of a UI workflow (``subgraph``: the definition whose inner graph ``workflow`` is)."""
    errors: list[str] = []
    info = with_subgraphs(workflow, info)
    nodes = {n["id"]: n for n in workflow["nodes"]}
    if subgraph is None:
        for key in ("last_node_id", "last_link_id", "nodes", "links", "version"):
            if key not in workflow:
                errors.append(f"missing top-level key '{key}'")
        for definition in workflow.get("definitions", {}).get("subgraphs", []):
            errors += [f"subgraph {definition['name']}: {e}" for e in validate_ui(definition, info, definition)]
    links = {}
    for link in map(as_link, workflow["links"]):
        link_id, src, src_slot, dst, dst_slot, ltype = link
        links[link_id] = link
        if subgraph is not None and (SUBGRAPH_INPUT == src or SUBGRAPH_OUTPUT == dst):
            io = subgraph["inputs"][src_slot] if src == SUBGRAPH_INPUT else subgraph["outputs"][dst_slot]
            if io["type"] != ltype or link_id not in io["linkIds"]:
                errors.append(f"link {link_id}: subgraph {io['name']} ({io['type']}) does not list it as {ltype}")
            continue
        if src not in nodes or dst not in nodes:
            errors.append(f"link {link_id}: unknown node {src if src not in nodes else dst}")
            continue
        s_info, d_info = info.get(nodes[src]["type"]), info.get(nodes[dst]["type"])
        if s_info is None or d_info is None:
            continue
        if src_slot >= len(s_info["output"]):
            errors.append(f"link {link_id}: {nodes[src]['type']} has no output {src_slot}")
            continue
        out_type = s_info["output"][src_slot]
        d_inputs = nodes[dst].get("inputs", [])
        if dst_slot >= len(d_inputs):
            errors.append(f"link {link_id}: {nodes[dst]['type']} has no input slot {dst_slot}")
            continue
        in_name = d_inputs[dst_slot]["name"]
        spec = input_spec(d_info, in_name)
        if spec is None:
            errors.append(f"link {link_id}: {nodes[dst]['type']} has no input '{in_name}'")
            continue
        if not types_match(out_type, spec[0]) or ltype != out_type:
            errors.append(f"link {link_id}: {nodes[src]['type']}.{s_info['output_name'][src_slot]} ({out_type}) -> "
                          f"{nodes[dst]['type']}.{in_name} ({type_name(spec[0])}), link says {ltype}")
        if d_inputs[dst_slot].get("link") != link_id:
            errors.append(f"link {link_id}: input slot {in_name} of node {dst} does not point back to it")
        if link_id not in (nodes[src]["outputs"][src_slot].get("links") or []):
            errors.append(f"link {link_id}: output {src_slot} of node {src} does not list it")
    for node in workflow["nodes"]:
        ninfo = info.get(node["type"])
        label = f"node {node['id']} ({node['type']})"
        if ninfo is None:
            errors.append(f"{label}: unknown node type")
            continue
        linked = {}
        for slot in node.get("inputs", []):
            spec = input_spec(ninfo, slot["name"])
            if spec is None:
                errors.append(f"{label}: unknown input '{slot['name']}'")
                continue
            if slot.get("link") is not None:
                if slot["link"] not in links:
                    errors.append(f"{label}: input '{slot['name']}' uses missing link {slot['link']}")
                linked[slot["name"]] = slot["link"]
        if len(node.get("outputs", [])) != len(ninfo["output"]):
            errors.append(f"{label}: {len(node.get('outputs', []))} outputs, the node has {len(ninfo['output'])}")
        values, errs = ui_widget_values(node, ninfo)
        errors += errs
        for name, value in values.items():
            if name in linked:
                continue
            t, opts, _ = input_spec(ninfo, name)
            errors += check_value(label, name, t, opts, value)
        for name in ordered_inputs(ninfo):
            t, opts, required = input_spec(ninfo, name)
            if required and not is_widget(t, opts) and name not in linked:
                errors.append(f"{label}: required input '{name}' ({type_name(t)}) is not connected")
    return errors


class _Scope:
    """A graph as the frontend flattens it: the root, or one subgraph node's inner graph (ids ``<node>:<id>``)."""

    def __init__(self, graph: dict, prefix: str = "", outer: tuple[_Scope, dict] | None = None) -> None:
        self.nodes = {n["id"]: n for n in graph["nodes"]}
        self.links = {lk[0]: lk for lk in map(as_link, graph["links"])}
        self.prefix, self.outer = prefix, outer


def ui_to_api(workflow: dict, info: dict[str, dict]) -> dict:
    """The API prompt the frontend queues for ``workflow``: subgraph nodes are replaced by their inner nodes."""
    info = with_subgraphs(workflow, info)
    definitions = {d["id"]: d for d in workflow.get("definitions", {}).get("subgraphs", [])}
    prompt: dict[str, dict] = {}

    def output_ref(scope: _Scope, node_id: int, slot: int) -> list:
        node = scope.nodes[node_id]
        if node["type"] not in definitions:
            return [f"{scope.prefix}{node_id}", slot]
        inner = _Scope(definitions[node["type"]], f"{scope.prefix}{node_id}:", (scope, node))
        link = next(lk for lk in inner.links.values() if (lk[3], lk[4]) == (SUBGRAPH_OUTPUT, slot))
        return output_ref(inner, link[1], link[2])

    def link_value(scope: _Scope, link_id: int) -> Any:
        link = scope.links[link_id]
        if link[1] != SUBGRAPH_INPUT:
            return output_ref(scope, link[1], link[2])
        outer, node = scope.outer
        slot = node["inputs"][link[2]]
        if slot.get("link") is not None:
            return link_value(outer, slot["link"])
        widgets = [i["name"] for i in node["inputs"] if "widget" in i]
        return node["widgets_values"][widgets.index(slot["name"])]  # a promoted widget's value

    def add(scope: _Scope) -> None:
        for node in sorted(scope.nodes.values(), key=lambda n: n["id"]):
            if node.get("mode", 0) in (2, 4):  # muted / bypassed
                continue
            if node["type"] in definitions:
                add(_Scope(definitions[node["type"]], f"{scope.prefix}{node['id']}:", (scope, node)))
                continue
            ninfo = info[node["type"]]
            values, _ = ui_widget_values(node, ninfo)
            inputs: dict[str, Any] = {}
            linked = {s["name"]: s["link"] for s in node.get("inputs", []) if s.get("link") is not None}
            for name in ordered_inputs(ninfo):
                if name in linked:
                    inputs[name] = link_value(scope, linked[name])
                elif name in values:
                    inputs[name] = values[name]
            title = node.get("title") or ninfo.get("display_name") or node["type"]
            prompt[f"{scope.prefix}{node['id']}"] = {"inputs": inputs, "class_type": node["type"],
                                                     "_meta": {"title": title}}

    add(_Scope(workflow))
    return prompt


# ------------------------------------------------------------------------------------------------
# API format
# ------------------------------------------------------------------------------------------------
def validate_api(prompt: dict, info: dict[str, dict]) -> list[str]:
    errors = []
    for node_id, node in prompt.items():
        ninfo = info.get(node.get("class_type"))
        label = f"node {node_id} ({node.get('class_type')})"
        if ninfo is None:
            errors.append(f"{label}: unknown node type")
            continue
        inputs = node.get("inputs", {})
        for name, value in inputs.items():
            spec = input_spec(ninfo, name)
            if spec is None:
                errors.append(f"{label}: unknown input '{name}'")
                continue
            t, opts, _ = spec
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                src = prompt.get(value[0])
                if src is None:
                    errors.append(f"{label}.{name}: links to missing node {value[0]}")
                    continue
                s_info = info.get(src["class_type"])
                if s_info is None:
                    continue
                if not 0 <= value[1] < len(s_info["output"]):
                    errors.append(f"{label}.{name}: {src['class_type']} has no output {value[1]}")
                    continue
                out_type = s_info["output"][value[1]]
                if not types_match(out_type, t):
                    errors.append(f"{label}.{name}: expects {type_name(t)}, linked to {src['class_type']} "
                                  f"output {value[1]} ({out_type})")
            elif is_widget(t, opts):
                errors += check_value(label, name, t, opts, value)
            else:
                errors.append(f"{label}.{name}: a {type_name(t)} input must be linked, got {value!r}")
        for name in ordered_inputs(ninfo):
            t, opts, required = input_spec(ninfo, name)
            if required and name not in inputs:
                errors.append(f"{label}: required input '{name}' missing")
    if not any(info.get(n.get("class_type"), {}).get("output_node") for n in prompt.values()):
        errors.append("the prompt has no output node")
    return errors


# ------------------------------------------------------------------------------------------------
# building the shipped workflows
# ------------------------------------------------------------------------------------------------
class Graph:
    """A tiny builder producing the UI format (litegraph 0.4) from nodes and links."""

    def __init__(self, info: dict[str, dict], first_node: int = 1, first_link: int = 1) -> None:
        self.info = info
        self.nodes: list[dict] = []
        self.links: list[list] = []
        self.first_node, self.first_link = first_node, first_link
        self.subgraphs: list[Subgraph] = []

    def node(self, node_id: int) -> dict:
        return self.nodes[node_id - self.first_node]

    def next_link(self) -> int:
        return self.first_link + len(self.links)

    def add(self, node_type: str, pos: tuple[int, int], widgets: dict[str, Any] | None = None,
            title: str | None = None, size: tuple[int, int] = (320, 200)) -> int:
        ninfo = self.info[node_type]
        widgets = dict(widgets or {})
        values: list[Any] = []
        for name in widget_inputs(ninfo):
            t, opts, _ = input_spec(ninfo, name)
            if name in widgets:
                value = widgets.pop(name)
            elif "default" in opts:
                value = opts["default"]
            else:
                options = combo_options(t, opts)
                value = options[0] if options else None
            values.append(value)
            if type_name(t) == "INT" and has_control(name, opts):
                values.append("fixed")
            if opts.get("image_upload"):
                values.append("image")
            if opts.get("audio_upload"):
                values += [None, None]
        if widgets:
            raise KeyError(f"{node_type}: unknown widgets {sorted(widgets)}")
        inputs = []
        for name in ordered_inputs(ninfo):
            t, opts, _ = input_spec(ninfo, name)
            if not is_widget(t, opts):
                inputs.append({"name": name, "type": type_name(t), "link": None})
        outputs = [{"name": n, "type": t, "links": [], "slot_index": i}
                   for i, (n, t) in enumerate(zip(ninfo["output_name"], ninfo["output"], strict=True))]
        node_id = self.first_node + len(self.nodes)
        node = {"id": node_id, "type": node_type, "pos": list(pos), "size": list(size), "flags": {},
                "order": node_id - 1, "mode": 0, "inputs": inputs, "outputs": outputs,
                "properties": {"Node name for S&R": node_type}, "widgets_values": values}
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node_id

    def connect(self, src: int, output: str, dst: int, input_name: str) -> None:
        s, d = self.node(src), self.node(dst)
        s_info, d_info = self.info[s["type"]], self.info[d["type"]]
        slot = s_info["output_name"].index(output)
        out_type = s_info["output"][slot]
        in_slots = [i["name"] for i in d["inputs"]]
        if input_name not in in_slots:  # a widget turned into a socket
            t, opts, _ = input_spec(d_info, input_name)
            d["inputs"].append({"name": input_name, "type": type_name(t), "widget": {"name": input_name},
                                "link": None})
            in_slots.append(input_name)
        link_id = self.next_link()
        d["inputs"][in_slots.index(input_name)]["link"] = link_id
        s["outputs"][slot]["links"].append(link_id)
        self.links.append([link_id, src, slot, dst, in_slots.index(input_name), out_type])

    def ui(self) -> dict:
        order = topological(self.nodes, self.links)
        for i, nid in enumerate(order):
            self.node(nid)["order"] = i
        last_node = max([n["id"] for n in self.nodes] + [n["id"] for sg in self.subgraphs for n in sg.nodes])
        last_link = max([lk[0] for lk in self.links] + [lk[0] for sg in self.subgraphs for lk in sg.all_links()])
        ui = {"last_node_id": last_node, "last_link_id": last_link, "nodes": self.nodes, "links": self.links,
              "groups": [], "config": {}, "extra": {"ds": {"scale": 0.75, "offset": [40, 40]}}, "version": 0.4}
        if self.subgraphs:
            ui["definitions"] = {"subgraphs": [sg.definition() for sg in self.subgraphs]}
        return ui

    def add_instance(self, sub: Subgraph, pos: tuple[int, int], title: str, widgets: dict[str, Any] | None = None,
                     size: tuple[int, int] = (300, 160)) -> int:
        """A node that runs subgraph ``sub``; ``widgets``: values of its promoted widgets (inputs that feed a
        widget inside)."""
        if sub not in self.subgraphs:
            self.subgraphs.append(sub)
        self.info[sub.id] = sub.node_info()
        widgets = dict(widgets or {})
        inputs = []
        for name, kind in sub.inputs:
            slot = {"name": name, "type": kind, "link": None}
            if name in sub.promoted:
                slot["widget"] = {"name": name}
            inputs.append(slot)
        node_id = self.first_node + len(self.nodes)
        self.nodes.append({
            "id": node_id, "type": sub.id, "pos": list(pos), "size": list(size), "flags": {}, "order": 0, "mode": 0,
            "inputs": inputs, "outputs": [{"name": n, "type": t, "links": []} for n, t in sub.outputs],
            "title": title, "properties": {}, "widgets_values": [widgets.pop(n) for n in sub.promoted]})
        if widgets:
            raise KeyError(f"{sub.name}: no promoted widgets {sorted(widgets)}")
        return node_id


class Subgraph(Graph):
    """A subgraph definition (frontend workflow schema 1, as ``definitions.subgraphs`` of a 0.4 workflow): its
    nodes, links (as objects) and the input / output nodes that connect it to the graph around it."""

    INPUT, OUTPUT = -10, -20

    def __init__(self, info: dict[str, dict], sub_id: str, name: str, inputs: list[tuple[str, str]],
                 outputs: list[tuple[str, str]], first_node: int, first_link: int) -> None:
        super().__init__(info, first_node, first_link)
        self.id, self.name, self.inputs, self.outputs = sub_id, name, inputs, outputs
        self.io_links: list[list] = []
        self.promoted: list[str] = []  # inputs that feed a widget inside: a widget on the node outside

    def all_links(self) -> list[list]:
        return self.links + self.io_links

    def next_link(self) -> int:
        return self.first_link + len(self.links) + len(self.io_links)

    def from_input(self, name: str, dst: int, input_name: str) -> None:
        """Subgraph input ``name`` into input ``input_name`` of inner node ``dst`` (a widget input promotes it)."""
        index = [n for n, _ in self.inputs].index(name)
        d = self.node(dst)
        in_slots = [i["name"] for i in d["inputs"]]
        if input_name not in in_slots:  # a widget fed from outside: its value comes from the node outside
            t, _, _ = input_spec(self.info[d["type"]], input_name)
            d["inputs"].append({"name": input_name, "type": type_name(t), "widget": {"name": input_name},
                                "link": None})
            in_slots.append(input_name)
            if name not in self.promoted:
                self.promoted.append(name)
        link_id = self.next_link()
        d["inputs"][in_slots.index(input_name)]["link"] = link_id
        self.io_links.append([link_id, self.INPUT, index, dst, in_slots.index(input_name), self.inputs[index][1]])

    def to_output(self, src: int, output: str, name: str) -> None:
        index = [n for n, _ in self.outputs].index(name)
        s = self.node(src)
        slot = self.info[s["type"]]["output_name"].index(output)
        link_id = self.next_link()
        s["outputs"][slot]["links"].append(link_id)
        self.io_links.append([link_id, src, slot, self.OUTPUT, index, self.outputs[index][1]])

    def node_info(self) -> dict:
        """What the node outside looks like, in /object_info's shape."""
        return {"input": {"required": {n: (t, {}) for n, t in self.inputs}},
                "input_order": {"required": [n for n, _ in self.inputs]},
                "output": [t for _, t in self.outputs], "output_name": [n for n, _ in self.outputs],
                "name": self.id, "display_name": self.name, "subgraph": True}

    def definition(self) -> dict:
        order = topological(self.nodes, self.links)
        for i, nid in enumerate(order):
            self.node(nid)["order"] = i
        xs = [n["pos"][0] for n in self.nodes]
        ys = [n["pos"][1] for n in self.nodes]
        right = max(n["pos"][0] + n["size"][0] for n in self.nodes)

        def io(items: list[tuple[str, str]], outputs: bool) -> list[dict]:
            out = []
            for i, (n, t) in enumerate(items):
                ends = [lk for lk in self.io_links if (lk[3], lk[4]) == (self.OUTPUT, i)] if outputs else \
                    [lk for lk in self.io_links if (lk[1], lk[2]) == (self.INPUT, i)]
                out.append({"id": str(uuid.uuid5(uuid.UUID(self.id), f"{'out' if outputs else 'in'}/{n}")),
                            "name": n, "type": t, "localized_name": n, "linkIds": [lk[0] for lk in ends]})
            return out

        links = [{"id": lk[0], "origin_id": lk[1], "origin_slot": lk[2], "target_id": lk[3], "target_slot": lk[4],
                  "type": lk[5]} for lk in sorted(self.all_links())]
        return {"id": self.id, "version": 1, "revision": 0, "name": self.name, "config": {}, "extra": {},
                "state": {"lastGroupId": 0, "lastNodeId": max(n["id"] for n in self.nodes),
                          "lastLinkId": max(lk["id"] for lk in links), "lastRerouteId": 0},
                "inputNode": {"id": self.INPUT, "bounding": [min(xs) - 220, min(ys), 140, 40 + 20 * len(self.inputs)]},
                "outputNode": {"id": self.OUTPUT, "bounding": [right + 80, min(ys), 140, 40 + 20 * len(self.outputs)]},
                "inputs": io(self.inputs, False), "outputs": io(self.outputs, True), "widgets": [], "groups": [],
                "nodes": self.nodes, "links": links}


def topological(nodes: list[dict], links: list[list]) -> list[int]:
    deps: dict[int, set[int]] = {n["id"]: set() for n in nodes}
    for _, src, _, dst, _, _ in links:
        if src in deps and dst in deps:
            deps[dst].add(src)
    order: list[int] = []
    while deps:
        ready = sorted(n for n, d in deps.items() if not d - set(order))
        if not ready:
            raise ValueError("the graph has a cycle")
        order += ready
        for n in ready:
            deps.pop(n)
    return order


def _front(g: Graph, image_input: int | None = None) -> dict[str, int]:
    """The loaders, audio encoding, face analysis and reference shared by every workflow."""
    ids = {
        "model": g.add("HalloModelLoader", (20, 40), {"checkpoint": "hallo/net.pth", "dtype": "auto"},
                       size=(320, 110)),
        "audio": g.add("LoadAudio", (20, 200), {"audio": SPEECH}, size=(320, 140)),
    }
    if image_input is None:
        ids["image"] = g.add("LoadImage", (20, 380), {"image": PORTRAIT}, size=(320, 320))
        image_input = ids["image"]
    ids["encode"] = g.add("HalloAudioEncode", (380, 40), size=(320, 200))
    ids["face"] = g.add("HalloFaceAnalysis", (380, 300), size=(320, 330))
    ids["reference"] = g.add("HalloReference", (740, 300), size=(300, 100))
    g.connect(ids["model"], "model", ids["encode"], "model")
    g.connect(ids["audio"], "AUDIO", ids["encode"], "audio")
    g.connect(ids["model"], "model", ids["face"], "model")
    g.connect(image_input, "IMAGE" if g.nodes[image_input - 1]["type"] == "LoadImage" else "image",
              ids["face"], "image")
    g.connect(ids["model"], "model", ids["reference"], "model")
    g.connect(image_input, "IMAGE" if g.nodes[image_input - 1]["type"] == "LoadImage" else "image",
              ids["reference"], "image")
    g.connect(ids["face"], "face", ids["reference"], "face")
    return ids


def _sampler(g: Graph, ids: dict[str, int], pos: tuple[int, int], widgets: dict | None = None,
             title: str | None = None) -> int:
    s = g.add("HalloSampler", pos, widgets, title=title, size=(400, 420))  # the frontend's own height: 382
    g.connect(ids["model"], "model", s, "model")
    g.connect(ids["reference"], "reference", s, "reference")
    g.connect(ids["encode"], "audio_features", s, "audio_features")
    g.connect(ids["audio"], "AUDIO", s, "audio")
    return s


def _options(g: Graph, pos: tuple[int, int], widgets: dict, *samplers: int) -> int:
    """A Hallo Sampler Options node feeding ``samplers``."""
    o = g.add("HalloSamplerOptions", pos, widgets, size=(330, 280))
    for s in samplers:
        g.connect(o, "options", s, "options")
    return o


def _save(g: Graph, images: tuple[int, str], audio: tuple[int, str], fps: tuple[int, str], pos: tuple[int, int],
          prefix: str) -> None:
    create = g.add("CreateVideo", pos, size=(270, 100))
    save = g.add("SaveVideo", (pos[0] + 300, pos[1]), {"filename_prefix": prefix}, size=(400, 400))
    g.connect(images[0], images[1], create, "images")
    g.connect(audio[0], audio[1], create, "audio")
    g.connect(fps[0], fps[1], create, "fps")
    g.connect(create, "VIDEO", save, "video")


def build_basic(info: dict) -> dict:
    g = Graph(info)
    ids = _front(g)
    s = _sampler(g, ids, (1080, 40))
    _save(g, (s, "images"), (s, "audio"), (s, "fps"), (1520, 40), "hallo/basic")
    return g.ui()


def build_crop_paste(info: dict) -> dict:
    g = Graph(info)
    model = g.add("HalloModelLoader", (20, 40), {"checkpoint": "hallo/net.pth"}, size=(320, 110))
    photo = g.add("LoadImage", (20, 380), {"image": PORTRAIT}, size=(320, 320))
    crop = g.add("HalloFaceCrop", (20, 740), size=(320, 230))
    g.connect(model, "model", crop, "model")
    g.connect(photo, "IMAGE", crop, "image")
    g.nodes[model - 1]["pos"] = [20, 40]
    ids = {"model": model}
    ids["audio"] = g.add("LoadAudio", (20, 200), {"audio": SPEECH}, size=(320, 140))
    ids["encode"] = g.add("HalloAudioEncode", (380, 40), size=(320, 200))
    ids["face"] = g.add("HalloFaceAnalysis", (380, 300), size=(320, 330))
    ids["reference"] = g.add("HalloReference", (740, 300), size=(300, 100))
    g.connect(model, "model", ids["encode"], "model")
    g.connect(ids["audio"], "AUDIO", ids["encode"], "audio")
    g.connect(model, "model", ids["face"], "model")
    g.connect(crop, "image", ids["face"], "image")
    g.connect(model, "model", ids["reference"], "model")
    g.connect(crop, "image", ids["reference"], "image")
    g.connect(ids["face"], "face", ids["reference"], "face")
    s = _sampler(g, ids, (1080, 40))
    paste = g.add("HalloPasteBack", (1520, 300), size=(300, 130))
    g.connect(s, "images", paste, "images")
    g.connect(photo, "IMAGE", paste, "original")
    g.connect(crop, "crop", paste, "crop")
    _save(g, (paste, "images"), (s, "audio"), (s, "fps"), (1860, 40), "hallo/pasted")
    return g.ui()


def build_chained(info: dict) -> dict:
    g = Graph(info)
    ids = _front(g)
    a = _sampler(g, ids, (1080, 40), title="Hallo Sampler: segment 1 (frames 0-95)")
    segment = g.add("HalloSegment", (740, 480), {"frames": 96}, title="Hallo Segment: the first 96 frames",
                    size=(300, 90))
    g.connect(segment, "segment", a, "segment")
    b = _sampler(g, ids, (1080, 780), title="Hallo Sampler: segment 2 (continues from segment 1)")
    g.connect(a, "motion", b, "motion")
    _save(g, (a, "images"), (a, "audio"), (a, "fps"), (1520, 40), "hallo/segment1")
    _save(g, (b, "images"), (b, "audio"), (b, "fps"), (1520, 780), "hallo/segment2")
    return g.ui()


def build_upscale(info: dict) -> dict:
    g = Graph(info)
    ids = _front(g)
    s = _sampler(g, ids, (1080, 40))
    up = g.add("ImageScaleBy", (1520, 300), {"upscale_method": "lanczos", "scale_by": 2.0}, size=(300, 100))
    g.connect(s, "images", up, "image")
    _save(g, (up, "IMAGE"), (s, "audio"), (s, "fps"), (1860, 40), "hallo/upscaled")
    return g.ui()


def build_render_to_file(info: dict) -> dict:
    g = Graph(info)
    ids = _front(g)
    r = g.add("HalloRenderToVideoFile", (1080, 40), {"filename_prefix": "hallo/long"}, size=(360, 470))
    g.connect(ids["model"], "model", r, "model")
    g.connect(ids["reference"], "reference", r, "reference")
    g.connect(ids["encode"], "audio_features", r, "audio_features")
    g.connect(ids["audio"], "AUDIO", r, "audio")
    return g.ui()


def build_compare_presets(info: dict) -> dict:
    """The same portrait and voice rendered with the faithful and the fast preset, both measured by
    HalloEvaluate: one report and one plot with the two videos side by side in colours."""
    g = Graph(info)
    ids = _front(g)
    a = _sampler(g, ids, (1080, 40), title="Hallo Sampler: faithful (no options: the original)")
    b = _sampler(g, ids, (1080, 780), {"steps": PRESETS["fast"].steps}, title="Hallo Sampler: fast preset")
    _options(g, (740, 800), {"preset": "fast"}, b)
    ev = g.add("HalloEvaluate", (2280, 40), {"names": "faithful, fast"}, size=(360, 260))
    g.connect(ids["model"], "model", ev, "model")
    g.connect(a, "images", ev, "images")
    g.connect(ids["image"], "IMAGE", ev, "reference")
    g.connect(a, "fps", ev, "fps")
    g.connect(a, "audio", ev, "audio")
    g.connect(b, "images", ev, "images_b")
    plot = g.add("PreviewImage", (2280, 360), size=(500, 420))
    g.connect(ev, "plot", plot, "images")
    _save(g, (a, "images"), (a, "audio"), (a, "fps"), (1520, 40), "hallo/faithful")
    _save(g, (b, "images"), (b, "audio"), (b, "fps"), (1520, 780), "hallo/fast")
    return g.ui()


GROUP_PHOTO = "hallo_group_photo.jpg"
SPEECH_B = "hallo_speech_2.wav"


def _turns(g: Graph, voice_a: int, voice_b: int) -> tuple[int, int, int]:
    """(speaker A's track, speaker B's track, the soundtrack): A speaks, then B; each speaker's track holds
    the other's turn muted (-100 dB), so both tracks, and the two renders, have the same length."""
    mute_a = g.add("AudioAdjustVolume", (380, 200), {"volume": -100}, title="A muted (B's turn)", size=(300, 80))
    mute_b = g.add("AudioAdjustVolume", (380, 740), {"volume": -100}, title="B muted (A's turn)", size=(300, 80))
    track_a = g.add("AudioConcat", (380, 40), {"direction": "after"}, title="Track A: A speaks, then silence",
                    size=(300, 100))
    track_b = g.add("AudioConcat", (380, 580), {"direction": "after"}, title="Track B: silence, then B speaks",
                    size=(300, 100))
    sound = g.add("AudioConcat", (380, 1000), {"direction": "after"}, title="Soundtrack: A, then B",
                  size=(300, 100))
    g.connect(voice_a, "AUDIO", mute_a, "audio")
    g.connect(voice_b, "AUDIO", mute_b, "audio")
    for dst, first, second in ((track_a, voice_a, mute_b), (track_b, mute_a, voice_b), (sound, voice_a, voice_b)):
        g.connect(first, "AUDIO", dst, "audio1")
        g.connect(second, "AUDIO", dst, "audio2")
    return track_a, track_b, sound


TALKING_HEAD = str(uuid.uuid5(uuid.NAMESPACE_URL, "hallo-nodes/subgraphs/talking-head"))


def talking_head(info: dict, first_node: int, first_link: int) -> Subgraph:
    """One face of a photo animated by a voice and pasted into a background: crop, audio encoding, face analysis,
    reference, sampler and paste-back, as one subgraph."""
    sub = Subgraph(info, TALKING_HEAD, "Hallo talking head",
                   [("model", "HALLO_MODEL"), ("photo", "IMAGE"), ("voice", "AUDIO"), ("background", "IMAGE"),
                    ("face_index", "INT")],
                   [("images", "IMAGE"), ("fps", "FLOAT")], first_node, first_link)
    crop = sub.add("HalloFaceCrop", (0, 0), size=(320, 230))
    encode = sub.add("HalloAudioEncode", (0, 290), size=(320, 200))
    face = sub.add("HalloFaceAnalysis", (360, 0), size=(320, 330))
    reference = sub.add("HalloReference", (720, 0), size=(300, 100))
    sampler = sub.add("HalloSampler", (1060, 0), size=(400, 420))
    paste = sub.add("HalloPasteBack", (1500, 0), size=(300, 130))
    for node in (crop, encode, face, reference, sampler):
        sub.from_input("model", node, "model")
    sub.from_input("photo", crop, "image")
    sub.from_input("face_index", crop, "face_index")
    sub.from_input("voice", encode, "audio")
    sub.from_input("voice", sampler, "audio")
    sub.from_input("background", paste, "original")
    sub.connect(crop, "image", face, "image")
    sub.connect(crop, "image", reference, "image")
    sub.connect(face, "face", reference, "face")
    sub.connect(reference, "reference", sampler, "reference")
    sub.connect(encode, "audio_features", sampler, "audio_features")
    sub.connect(sampler, "images", paste, "images")
    sub.connect(crop, "crop", paste, "crop")
    sub.to_output(paste, "images", "images")
    sub.to_output(sampler, "fps", "fps")
    return sub


def build_two_speakers_subgraph(info: dict) -> dict:
    """Two faces of one group photo take turns speaking: one 'talking head' subgraph used twice, the second
    pasting its face into the first one's frames."""
    g = Graph(info)
    model = g.add("HalloModelLoader", (20, 40), {"checkpoint": "hallo/net.pth"}, size=(320, 110))
    voice_a = g.add("LoadAudio", (20, 200), {"audio": SPEECH}, title="Voice of speaker A", size=(320, 140))
    voice_b = g.add("LoadAudio", (20, 580), {"audio": SPEECH_B}, title="Voice of speaker B", size=(320, 140))
    photo = g.add("LoadImage", (20, 760), {"image": GROUP_PHOTO}, title="Group photo", size=(320, 320))
    track_a, track_b, sound = _turns(g, voice_a, voice_b)
    head = talking_head(info, 100, 100)
    a = g.add_instance(head, (740, 40), "Talking head: speaker A (face 0)", {"face_index": 0}, size=(320, 170))
    b = g.add_instance(head, (740, 600), "Talking head: speaker B (face 1), into A's frames", {"face_index": 1},
                       size=(320, 170))
    for node, track, background in ((a, track_a, (photo, "IMAGE")), (b, track_b, (a, "images"))):
        g.connect(model, "model", node, "model")
        g.connect(photo, "IMAGE", node, "photo")
        g.connect(track, "AUDIO", node, "voice")
        g.connect(background[0], background[1], node, "background")
    _save(g, (b, "images"), (sound, "AUDIO"), (a, "fps"), (1120, 300), "hallo/two_speakers")
    return g.ui()


def build_speed_presets(info: dict) -> dict:
    """The same portrait and voice with the fast preset and, for comparison, the faithful default."""
    g = Graph(info)
    ids = _front(g)
    fast = _sampler(g, ids, (1080, 40), {"steps": PRESETS["fast"].steps},
                    title="Hallo Sampler: fast (20 DPM-Solver++ steps)")
    _options(g, (740, 480), {"preset": "fast"}, fast)
    faithful = _sampler(g, ids, (1520, 40), title="Hallo Sampler: faithful (the original)")
    _save(g, (fast, "images"), (fast, "audio"), (fast, "fps"), (1960, 40), "hallo/fast")
    _save(g, (faithful, "images"), (faithful, "audio"), (faithful, "fps"), (1960, 480), "hallo/faithful")
    return g.ui()


def build_per_frame_control(info: dict) -> dict:
    g = Graph(info)
    ids = _front(g)
    s = _sampler(g, ids, (1080, 40), title="Hallo Sampler: pose and lip weights per frame")
    for branch, keyframes, y in (("pose", "0:1.0, 3s:0.6, 6s:1.2", 480),
                                 ("lip", "0:1.0, 1s:1.0, 2s:1.5, 5s:1.5, 6s:1.0", 610)):
        schedule = g.add("HalloWeightSchedule", (740, y), {"keyframes": keyframes},
                         title=f"Hallo Weight Schedule: {branch}", size=(300, 80))
        g.connect(schedule, "weight", s, f"{branch}_weight")
    still = _sampler(g, ids, (740, 760), {"still": True}, title="Hallo Sampler: still head (presenter)")
    _save(g, (s, "images"), (s, "audio"), (s, "fps"), (1520, 40), "hallo/per_frame")
    _save(g, (still, "images"), (still, "audio"), (still, "fps"), (1200, 800), "hallo/still")
    return g.ui()


BUILDERS = {
    "hallo_talking_video_from_portrait_and_audio": (build_basic, "portrait + voice -> video"),
    "hallo_video_face_cropped_and_pasted_back": (build_crop_paste, "photo -> crop -> animate -> paste back"),
    "hallo_long_audio_video_in_chained_segments": (build_chained, "long audio in two chained segments"),
    "hallo_talking_video_upscaled": (build_upscale, "frames -> ImageScaleBy x2 -> video"),
    "hallo_render_audio_to_video_file": (build_render_to_file, "long render streamed to an mp4"),
    "hallo_video_presets_compared_side_by_side": (build_compare_presets, "faithful vs fast, measured side by side"),
    "hallo_two_speakers_video_from_group_photo_and_audio": (build_two_speakers_subgraph,
                                                            "two faces of one photo take turns speaking"),
    "hallo_fast_video_draft_speed_presets": (build_speed_presets, "fast preset next to the faithful default"),
    "hallo_video_with_per_frame_pose_and_lip_control": (build_per_frame_control, "per-frame weights; a still head"),
}


def shipped_workflows() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.json"))


def write_all() -> list[Path]:
    """Each workflow, its API twin and its thumbnail (drawn from the graph by workflow_thumbnails)."""
    from workflow_thumbnails import thumbnail

    info = object_info()
    API_DIR.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (builder, _caption) in BUILDERS.items():
        ui = builder(info)
        errors = validate_ui(ui, info)
        if errors:
            raise ValueError(f"{name}: {errors}")
        (WORKFLOWS / f"{name}.json").write_text(json.dumps(ui, indent=2) + "\n")
        (API_DIR / f"{name}.json").write_text(json.dumps(ui_to_api(ui, info), indent=2) + "\n")
        thumbnail(ui).save(WORKFLOWS / f"{name}.jpg", quality=90)
        written.append(WORKFLOWS / f"{name}.json")
    return written


def main(argv: Iterable[str] = ()) -> int:
    logging.basicConfig(level=logging.INFO)
    if list(argv):
        raise SystemExit("usage: python tests/workflow_tools.py (no arguments)")
    for path in write_all():
        logger.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
