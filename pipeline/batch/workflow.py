"""``--from-workflow``: the sampler, face and audio settings of a ComfyUI workflow saved in API format.

The widget values of one sampler and of the nodes it reads from (model loader, audio encode, face analysis,
Hallo Sampler Options, Hallo Weight Schedule; or the sampler widgets of prompts saved by the first releases)
become defaults for every row, under the same names as ``hallo-render``'s options (they then go through its
parser and checks like any other default). A setting ``hallo-render`` cannot reproduce (paste-back into a photo,
a segment, a custom loudness, a weight list from another node pack) is refused with the node, the input and the
fix, never dropped silently.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..errors import HalloInputError

logger = logging.getLogger(__name__)

SAMPLERS = ("HalloSampler", "HalloRenderToVideoFile")
OPTIONS_NODE = "HalloSamplerOptions"
SCHEDULE_NODE = "HalloWeightSchedule"
BRANCHES = ("pose", "face", "lip")
# Nodes whose work hallo-render does not do: their presence means the workflow renders something else.
UNSUPPORTED_NODES = {
    "HalloFaceCrop": "a face crop of a larger photo (hallo-render animates the portrait as it is)",
    "HalloPasteBack": "paste-back into the full photo",
}


class WorkflowError(HalloInputError):
    """Settings of the workflow that hallo-batch cannot render; ``problems`` holds one line each."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.problems = [f"{path}: {p}" for p in problems]
        super().__init__("; ".join(self.problems))


def read_workflow(path: Path) -> dict[str, dict[str, Any]]:
    """The API-format workflow (``{node id: {"class_type", "inputs"}}``) in ``path``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise HalloInputError(f"--from-workflow {path}: cannot be read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HalloInputError(f"--from-workflow {path} is not JSON ({exc})") from None
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise HalloInputError(f"--from-workflow {path} is a workflow in UI format; in ComfyUI use 'Export (API)' "
                              "(Workflow menu) and pass that file")
    if not isinstance(data, dict) or not all(isinstance(n, dict) and "class_type" in n for n in data.values()):
        raise HalloInputError(f"--from-workflow {path} is not a ComfyUI workflow in API format (an object of nodes "
                              "with class_type and inputs); export it with 'Export (API)'")
    return data


def _linked(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


class _Reader:
    """Collects the option values and the problems of one workflow."""

    def __init__(self) -> None:
        self.cells: dict[str, Any] = {}
        self.problems: list[str] = []

    def take(self, node: str, kind: str, inputs: dict[str, Any], name: str, dest: str | None = None) -> Any:
        """The widget value ``name`` (None if absent); a wired input is a problem."""
        value = inputs.get(name)
        if _linked(value):
            self.problems.append(f"node {node} ({kind}) input '{name}' is wired from node {value[0]}; hallo-batch "
                                 "needs its value: set it as a widget")
            return None
        if value is not None and dest is not None:
            self.cells[dest] = value
        return value

    def require(self, node: str, kind: str, inputs: dict[str, Any], name: str, default: Any, why: str) -> None:
        """An input hallo-render has no option for: only its default can be rendered."""
        value = self.take(node, kind, inputs, name)
        if value is not None and value != default:
            self.problems.append(f"node {node} ({kind}) sets {name}={value!r}, which hallo-render cannot do "
                                 f"({why}); set it back to {default!r} or render this workflow in ComfyUI")


def _loader(r: _Reader, node: str, inputs: dict[str, Any]) -> None:
    checkpoint = r.take(node, "HalloModelLoader", inputs, "checkpoint")
    if isinstance(checkpoint, str):
        variant = Path(checkpoint.replace("\\", "/")).parts[0] if checkpoint else ""
        if variant in ("hallo", "hallo2"):
            r.cells["variant"] = variant
        else:
            r.problems.append(f"node {node} (HalloModelLoader) checkpoint {checkpoint!r} is neither hallo/ nor "
                              "hallo2/ of the model folder")
    r.take(node, "HalloModelLoader", inputs, "dtype", "dtype")


def _audio(r: _Reader, node: str, inputs: dict[str, Any]) -> None:
    kind = "HalloAudioEncode"
    r.take(node, kind, inputs, "separate_vocals", "separate_vocals")
    r.require(node, kind, inputs, "fps", 25.0, "it renders at 25 fps, as the original")
    r.require(node, kind, inputs, "loudness", "none", "it has no loudness option")
    r.require(node, kind, inputs, "segment_seconds", 0.0, "it encodes the audio as the variant does")


def _face(r: _Reader, node: str, inputs: dict[str, Any]) -> None:
    kind = "HalloFaceAnalysis"
    for name in ("width", "height", "face_expand_ratio", "face_index", "allow_no_face"):
        r.take(node, kind, inputs, name, name)
    r.require(node, kind, inputs, "face_order", "largest", "it numbers faces from the largest")
    for mask in ("lip_mask", "face_mask", "full_mask"):
        if _linked(inputs.get(mask)):
            r.problems.append(f"node {node} ({kind}) takes a hand-made {mask}; hallo-render computes the masks")


def _weights(r: _Reader, nodes: dict[str, dict[str, Any]], node: str, kind: str, inputs: dict[str, Any]) -> None:
    """pose / face / lip: a number, a Hallo Weight Schedule wired in, or a saved prompt's ``*_schedule`` text."""
    for branch in BRANCHES:
        name = f"{branch}_weight"
        value, schedule = inputs.get(name), inputs.get(f"{branch}_schedule")
        if isinstance(schedule, str) and schedule.strip():
            r.cells[name] = schedule
        elif _linked(value):
            source = nodes.get(str(value[0]), {})
            keyframes = source.get("inputs", {}).get("keyframes")
            if source.get("class_type") == SCHEDULE_NODE and isinstance(keyframes, str):
                r.cells[name] = keyframes
            else:
                r.problems.append(f"node {node} ({kind}) input '{name}' is wired from node {value[0]} "
                                  f"({source.get('class_type', 'missing')}); hallo-batch takes a number or a "
                                  f"{SCHEDULE_NODE}'s keyframes")
        elif value is not None:
            r.cells[name] = value


def _options(r: _Reader, node: str, inputs: dict[str, Any], steps: int | None) -> None:
    """A Hallo Sampler Options node (or the same settings as a saved prompt's old sampler widgets)."""
    kind = inputs.get("_kind", "HalloSamplerOptions")
    preset = r.take(node, kind, inputs, "preset", "preset")
    custom = preset == "custom"
    if custom:
        r.take(node, kind, inputs, "solver", "solver")
        cfg_steps = r.take(node, kind, inputs, "cfg_steps")
        if cfg_steps and (steps is None or cfg_steps < steps):  # 0 or >= steps: CFG on every step
            r.cells["cfg_steps"] = cfg_steps
        cache = r.take(node, kind, inputs, "cache_interval")
        if cache:  # 0: the preset's
            r.cells["cache_interval"] = cache
    dtype = r.take(node, kind, inputs, "dtype")
    if dtype not in (None, "auto"):
        r.cells["dtype"] = dtype  # the compute precision; hallo-render loads and computes in one precision
    r.take(node, kind, inputs, "low_vram", "low_vram")
    if r.take(node, kind, inputs, "compile"):
        r.cells["compile"] = "default"
    drop = r.take(node, kind, inputs, "motion_frame_drop")
    if drop is not None and drop != -1.0 and not (isinstance(drop, str) and drop.startswith("as trained")):
        r.problems.append(f"node {node} ({kind}) sets motion_frame_drop={drop!r}, which hallo-render cannot do "
                          "(it drops motion-frame pixels as the variant was trained); set it back to as trained")
    r.require(node, kind, inputs, "reference_quirks", True, "it always reproduces the original's reference attention")
    r.require(node, kind, inputs, "faithful", True, "it always reproduces the original's reference attention")


def _sampler(r: _Reader, nodes: dict[str, dict[str, Any]], node: str, kind: str, inputs: dict[str, Any]) -> None:
    for name in ("cfg", "seed", "still"):
        r.take(node, kind, inputs, name, name)
    steps = r.take(node, kind, inputs, "steps")
    if steps:  # 0 (a saved prompt of the first releases): the preset's count
        r.cells["steps"] = steps
    _weights(r, nodes, node, kind, inputs)
    options = inputs.get("options")
    if _linked(options):
        source = nodes.get(str(options[0]), {})
        if source.get("class_type") != OPTIONS_NODE:
            r.problems.append(f"node {node} ({kind}) takes its options from node {options[0]} "
                              f"({source.get('class_type', 'missing')}), not a {OPTIONS_NODE}")
        else:
            _options(r, str(options[0]), {**source.get("inputs", {}), "_kind": OPTIONS_NODE}, steps or None)
    else:  # a saved prompt of the first releases: the options were widgets of the sampler
        _options(r, node, {**inputs, "_kind": kind}, steps or None)
    if kind == "HalloSampler":
        r.require(node, kind, inputs, "start_frame", -1, "it renders the whole audio")
        r.require(node, kind, inputs, "num_frames", 0, "it renders the whole audio")
        if _linked(inputs.get("segment")) or _linked(inputs.get("motion")):
            r.problems.append(f"node {node} ({kind}) renders a segment (segment or motion wired); hallo-render "
                              "renders the whole audio")
    for name in ("original", "crop"):
        if _linked(inputs.get(name)):
            r.problems.append(f"node {node} ({kind}) pastes the frames back into a photo ('{name}' is wired); "
                              "hallo-render renders the portrait itself")


def _ancestors(nodes: dict[str, dict[str, Any]], start: str) -> list[str]:
    """``start`` and every node it reads from, through the links of its inputs."""
    seen, todo = [], [start]
    while todo:
        nid = todo.pop()
        if nid in seen or nid not in nodes:
            continue
        seen.append(nid)
        todo += [str(v[0]) for v in nodes[nid].get("inputs", {}).values() if _linked(v)]
    return seen


def _pick_sampler(path: Path, nodes: dict[str, dict[str, Any]], node: str | None) -> str:
    samplers = [nid for nid, n in nodes.items() if n["class_type"] in SAMPLERS]
    listed = ", ".join(f"{nid} ({nodes[nid]['class_type']})" for nid in samplers) or "none"
    if node is not None:
        if node not in samplers:
            raise WorkflowError(path, [f"--workflow-node {node} is not a sampler node; the sampler nodes are: "
                                       f"{listed}"])
        return node
    if len(samplers) != 1:
        raise WorkflowError(path, [f"hallo-batch takes one sampler's look; this workflow has {len(samplers)} "
                                   f"sampler nodes ({listed}): pick one with --workflow-node ID"])
    return samplers[0]


def workflow_settings(path: Path, node: str | None = None) -> dict[str, Any]:
    """The settings of the sampler ``node`` (default: the workflow's only sampler) and of the nodes it reads
    from, as ``{hallo-render option dest: value}``; raises :class:`WorkflowError`."""
    nodes = read_workflow(path)
    sampler = _pick_sampler(path, nodes, node)
    reader = _Reader()
    order = ["HalloModelLoader", "HalloAudioEncode", "HalloFaceAnalysis", *SAMPLERS]  # the sampler's dtype wins
    used = [nid for nid in _ancestors(nodes, sampler) if nodes[nid]["class_type"] in (*order, *UNSUPPORTED_NODES)]
    for nid in sorted(used, key=lambda n: (order.index(nodes[n]["class_type"])
                                           if nodes[n]["class_type"] in order else -1, n)):
        kind, inputs = nodes[nid]["class_type"], nodes[nid].get("inputs", {})
        if kind in UNSUPPORTED_NODES:
            reader.problems.append(f"node {nid} ({kind}) does {UNSUPPORTED_NODES[kind]}, which hallo-render "
                                   "does not; render this workflow in ComfyUI")
        elif kind == "HalloModelLoader":
            _loader(reader, nid, inputs)
        elif kind == "HalloAudioEncode":
            _audio(reader, nid, inputs)
        elif kind == "HalloFaceAnalysis":
            _face(reader, nid, inputs)
        else:
            _sampler(reader, nodes, nid, kind, inputs)
    if reader.problems:
        raise WorkflowError(path, reader.problems)
    logger.info("settings of node %s in %s: %s", sampler, path,
                ", ".join(f"{k}={v}" for k, v in sorted(reader.cells.items())))
    return reader.cells
