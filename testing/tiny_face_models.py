"""Tiny stand-ins for the released face models, for tests (real weights cannot be downloaded).

:func:`write_face_models` writes ``scrfd_10g_bnkps.onnx`` and ``glintr100.onnx`` with the released
input/output signatures, built with the ``onnx`` helper API:

* **Detector** (input ``input.1`` ``[1,3,?,?]``, 9 outputs: scores ``(N_s,1)``, box distances
  ``(N_s,4)``, key-point offsets ``(N_s,10)`` for strides 8, 16, 32 with 2 anchors per location).
  It has no learned weights; its graph *encodes faces given at build time* in coordinates
  normalised to the image content, and finds that content from the input itself: the letterbox puts
  the image in the top-left corner of a black canvas, so the graph measures the non-black extent
  (``new_w``, ``new_h``) and scales the face boxes to it. Every anchor predicts the box of the
  nearest face (exact distances, so the decode reproduces that box) with a Gaussian score around
  the face centre; faces given as ``[]`` give all-zero scores. A second set of faces can be given for
  square images (the graph compares the content's width and height), so a group photo shows its faces
  and a square face crop of it one centred face, as a real detector would. The same file therefore works for any
  image size and aspect, and the real letterbox / decode / threshold / NMS / rescale code runs on
  its real outputs in onnxruntime. Key points are placed like the ArcFace template inside each box.
* **Recogniser** (input ``input.1`` ``[1,3,112,112]`` -> ``[1,512]``): 8x8 average pooling, then a
  seeded random linear map to 512 values plus a bias. A deterministic function of the aligned
  crop, so tests can recompute the embedding independently.

The MediaPipe landmarker cannot be faked this way; :func:`write_face_models` copies the real
``face_landmarker_v2_with_blendshapes.task`` in when given one (``landmarker_task``). Without it the
face stage uses the identical copy shipped with the pack (``pipeline/face/assets/``).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..pipeline.face.detection import ARCFACE_TEMPLATE
from ..pipeline.paths import DETECTOR_FILE, LANDMARKER_FILE, RECOGNIZER_FILE

logger = logging.getLogger(__name__)

#: Default single face (normalised x1, y1, x2, y2): a centred portrait.
DEFAULT_FACES: tuple[tuple[float, float, float, float], ...] = ((0.28, 0.22, 0.72, 0.78),)
STRIDES = (8, 16, 32)
OPSET = 17
#: Pooled recogniser input: 3 x 14 x 14 values.
POOLED = 3 * 14 * 14


def template_kps(box: Sequence[float]) -> np.ndarray:
    """Five key points (10 values) placed inside ``box`` like the ArcFace template in its 112 crop."""
    x1, y1, x2, y2 = (float(v) for v in box)
    rel = ARCFACE_TEMPLATE / 112.0
    pts = np.stack([x1 + rel[:, 0] * (x2 - x1), y1 + rel[:, 1] * (y2 - y1)], axis=1)
    return pts.reshape(-1).astype(np.float32)


def recognizer_weights(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(W (588, 512), b (512,)) of the tiny recogniser for ``seed``."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((POOLED, 512)) * (2.0 / np.sqrt(POOLED))).astype(np.float32)
    b = (rng.standard_normal(512) * 0.5).astype(np.float32)
    return w, b


class _Graph:
    """Nodes and constant initialisers of an ONNX graph under construction."""

    def __init__(self) -> None:
        from onnx import TensorProto, helper

        self.helper, self.tp = helper, TensorProto
        self.nodes: list = []
        self.inits: list = []

    def const(self, name: str, value, dtype=np.float32) -> str:
        arr = np.asarray(value, dtype=dtype)
        kind = self.tp.FLOAT if dtype == np.float32 else self.tp.INT64
        self.inits.append(self.helper.make_tensor(name, kind, arr.shape, arr.reshape(-1).tolist()))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=f"{op}_{len(self.nodes)}", **attrs))
        return output


def _face_constants(g: _Graph, boxes: np.ndarray, present: bool, shown: tuple[np.ndarray, np.ndarray]) -> None:
    """The faces (normalised boxes, centres, sizes, key points; which ones are reported on a non-square and
    on a square image) and the scalar/shape constants."""
    k = boxes.shape[0]
    g.const("face_boxes", boxes)
    g.const("face_on_other", shown[0])
    g.const("face_on_square", shown[1])
    g.const("face_centres", (boxes[:, :2] + boxes[:, 2:]) / 2)
    g.const("face_wh", boxes[:, 2:] - boxes[:, :2])
    g.const("face_kps", np.stack([template_kps(b) for b in boxes]).reshape(k, 5, 2))
    g.const("score_scale", 1.0 if present else 0.0)
    g.const("pad_level", -0.99)
    g.const("one_f", 1.0)
    g.const("zero_i", 0, np.int64)
    g.const("one_i", 1, np.int64)
    for name, value in (("sigma_frac", 0.15), ("sigma_min", 8.0), ("two_f", 2.0), ("minus_one_f", -1.0)):
        g.const(name, value)
    for name, value in (("shape_n12", [-1, 1, 2]), ("shape_n2", [-1, 2]), ("shape_n10", [-1, 10]),
                        ("shape_1n", [1, -1]), ("shape_n1", [-1, 1]), ("ax0", [0]), ("ax1", [1]), ("ax2", [2]),
                        ("s0", [0]), ("s2", [2]), ("s4", [4])):
        g.const(name, value, np.int64)


def _content_extent(g: _Graph) -> None:
    """``new_w``, ``new_h``: the extent of the letterboxed image (non-padding rows/columns, top-left aligned)."""
    tp = g.tp
    g.node("ReduceMax", ["input.1"], "chan_max", axes=[1], keepdims=0)  # [1,H,W]
    g.node("Shape", ["input.1"], "in_shape")
    for axis, tag in ((2, "h"), (3, "w")):
        g.const(f"axis_{tag}", axis, np.int64)
        g.node("Gather", ["in_shape", f"axis_{tag}"], f"size_{tag}", axis=0)
        g.node("Cast", [f"size_{tag}"], f"size_{tag}_f", to=tp.FLOAT)
        g.node("Add", [f"size_{tag}_f", "one_f"], f"size_{tag}_p1")
        g.node("Range", ["one_f", f"size_{tag}_p1", "one_f"], f"pos_{tag}")  # 1..size
        other = 2 if tag == "h" else 1  # reduce the other spatial axis of [1,H,W]
        g.node("ReduceMax", ["chan_max"], f"line_max_{tag}", axes=[other], keepdims=0)  # [1,size]
        g.node("Greater", [f"line_max_{tag}", "pad_level"], f"content_{tag}_b")
        g.node("Cast", [f"content_{tag}_b"], f"content_{tag}", to=tp.FLOAT)
        g.node("Mul", [f"content_{tag}", f"pos_{tag}"], f"content_pos_{tag}")
        g.node("ReduceMax", [f"content_pos_{tag}"], f"new_{tag}", keepdims=1)  # [1,1]


def _faces_in_pixels(g: _Graph) -> None:
    """Face boxes, centres and key points scaled to the content extent, and each face's score spread."""
    g.const("one_shape", [1], np.int64)
    g.node("Reshape", ["new_w", "one_shape"], "new_w1")
    g.node("Reshape", ["new_h", "one_shape"], "new_h1")
    g.node("Concat", ["new_w1", "new_h1"], "scale2", axis=0)  # [2] = (new_w, new_h)
    g.node("Concat", ["scale2", "scale2"], "scale4", axis=0)
    g.node("Equal", ["new_w1", "new_h1"], "is_square")  # [1]
    g.node("Where", ["is_square", "face_on_square", "face_on_other"], "face_shown")  # [K] 1 = reported
    g.node("Mul", ["face_boxes", "scale4"], "boxes_px")  # [K,4]
    g.node("Mul", ["face_centres", "scale2"], "centres_px")  # [K,2]
    g.node("Mul", ["face_kps", "scale2"], "kps_px")  # [K,5,2]
    g.node("Mul", ["face_wh", "scale2"], "wh_px")
    g.node("ReduceMax", ["wh_px"], "face_side", axes=[1], keepdims=0)  # [K]
    g.node("Mul", ["face_side", "sigma_frac"], "sigma_raw")
    g.node("Max", ["sigma_raw", "sigma_min"], "sigma")
    g.node("Mul", ["sigma", "sigma"], "sigma2")
    g.node("Mul", ["sigma2", "two_f"], "denom")  # [K]
    g.node("Unsqueeze", ["centres_px", "ax0"], "centres_1k2")
    g.node("Slice", ["boxes_px", "s0", "s2", "ax1"], "box_lt")  # [K,2]
    g.node("Slice", ["boxes_px", "s2", "s4", "ax1"], "box_rb")


def _anchor_grid(g: _Graph, stride: int) -> str:
    """``s<stride>_centers``: the ``[N, 2]`` anchor centres (x, y) of one stride, 2 anchors per location."""
    p, tp = f"s{stride}_", g.tp
    g.const(p + "stride_i", stride, np.int64)
    g.const(p + "stride_f", float(stride))
    g.node("Div", ["size_h", p + "stride_i"], p + "hs")
    g.node("Div", ["size_w", p + "stride_i"], p + "ws")
    g.node("Range", ["zero_i", p + "hs", "one_i"], p + "ry")
    g.node("Range", ["zero_i", p + "ws", "one_i"], p + "rx")
    g.node("Cast", [p + "ry"], p + "ry_f", to=tp.FLOAT)
    g.node("Cast", [p + "rx"], p + "rx_f", to=tp.FLOAT)
    g.node("Mul", [p + "ry_f", p + "stride_f"], p + "ys")
    g.node("Mul", [p + "rx_f", p + "stride_f"], p + "xs")
    g.node("Reshape", [p + "hs", "one_shape"], p + "hs1")
    g.node("Reshape", [p + "ws", "one_shape"], p + "ws1")
    g.node("Concat", [p + "hs1", p + "ws1"], p + "grid_shape", axis=0)
    g.node("Reshape", [p + "xs", "shape_1n"], p + "xs_row")
    g.node("Reshape", [p + "ys", "shape_n1"], p + "ys_col")
    g.node("Expand", [p + "xs_row", p + "grid_shape"], p + "gx")
    g.node("Expand", [p + "ys_col", p + "grid_shape"], p + "gy")
    g.node("Unsqueeze", [p + "gx", "ax2"], p + "gx3")
    g.node("Unsqueeze", [p + "gy", "ax2"], p + "gy3")
    g.node("Concat", [p + "gx3", p + "gy3"], p + "grid", axis=2)  # [Hs,Ws,2] (x, y)
    g.node("Reshape", [p + "grid", "shape_n12"], p + "c1")
    g.node("Concat", [p + "c1", p + "c1"], p + "c2", axis=1)  # 2 anchors per location
    return g.node("Reshape", [p + "c2", "shape_n2"], p + "centers")  # [N,2]


def _stride_outputs(g: _Graph, stride: int) -> tuple[str, str, str]:
    """Score, box distances and key-point offsets of one stride: every anchor predicts its nearest face."""
    p = f"s{stride}_"
    centers = _anchor_grid(g, stride)
    g.node("Unsqueeze", [centers, "ax1"], p + "centers_n12")
    g.node("Sub", [p + "centers_n12", "centres_1k2"], p + "diff")  # [N,K,2]
    g.node("Mul", [p + "diff", p + "diff"], p + "diff2")
    g.node("ReduceSum", [p + "diff2", "ax2"], p + "d2", keepdims=0)  # [N,K]
    g.node("Div", [p + "d2", "denom"], p + "d2n")
    g.node("Mul", [p + "d2n", "minus_one_f"], p + "neg")
    g.node("Exp", [p + "neg"], p + "score_all")
    g.node("Mul", [p + "score_all", "face_shown"], p + "score_nk")
    g.node("ReduceMax", [p + "score_nk"], p + "score_raw", axes=[1], keepdims=1)  # [N,1]
    g.node("Mul", [p + "score_raw", "score_scale"], p + "score")
    g.node("ArgMax", [p + "score_nk"], p + "nearest", axis=1, keepdims=0)  # [N]
    g.node("Gather", ["box_lt", p + "nearest"], p + "lt", axis=0)
    g.node("Gather", ["box_rb", p + "nearest"], p + "rb", axis=0)
    g.node("Sub", [centers, p + "lt"], p + "d_lt")
    g.node("Sub", [p + "rb", centers], p + "d_rb")
    g.node("Concat", [p + "d_lt", p + "d_rb"], p + "dist_px", axis=1)
    g.node("Div", [p + "dist_px", p + "stride_f"], p + "bbox")
    g.node("Gather", ["kps_px", p + "nearest"], p + "kps_sel", axis=0)  # [N,5,2]
    g.node("Sub", [p + "kps_sel", p + "centers_n12"], p + "kps_off")
    g.node("Div", [p + "kps_off", p + "stride_f"], p + "kps_n52")
    g.node("Reshape", [p + "kps_n52", "shape_n10"], p + "kps")
    return p + "score", p + "bbox", p + "kps"


def _detector_model(faces: Sequence[Sequence[float]], square_faces: Sequence[Sequence[float]] | None = None):
    """The stand-in SCRFD graph reporting ``faces``, or ``square_faces`` on a square image (see the module
    docstring)."""
    g = _Graph()
    helper, tp = g.helper, g.tp
    boxes = np.asarray(faces, np.float32).reshape(-1, 4)
    shown = (np.ones(len(boxes), np.float32), np.ones(len(boxes), np.float32))
    if square_faces is not None:
        square = np.asarray(square_faces, np.float32).reshape(-1, 4)
        shown = (np.r_[shown[0], np.zeros(len(square), np.float32)], np.r_[np.zeros(len(boxes), np.float32),
                                                                           np.ones(len(square), np.float32)])
        boxes = np.concatenate([boxes, square])
    present = len(boxes) > 0
    if not present:
        boxes, shown = np.asarray([(0.4, 0.4, 0.6, 0.6)], np.float32), (np.ones(1, np.float32),) * 2
    _face_constants(g, boxes, present, shown)
    _content_extent(g)
    _faces_in_pixels(g)
    per_stride = [_stride_outputs(g, s) for s in STRIDES]
    inputs = [helper.make_tensor_value_info("input.1", tp.FLOAT, [1, 3, "?", "?"])]
    outputs = [helper.make_tensor_value_info(names[kind], tp.FLOAT, [f"n{stride}", width])
               for kind, width in enumerate((1, 4, 10)) for stride, names in zip(STRIDES, per_stride, strict=True)]
    graph = helper.make_graph(g.nodes, "tiny_scrfd_10g_bnkps", inputs, outputs, initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="hallo-nodes")
    model.doc_string = (
        "hallo-nodes test stand-in for scrfd_10g_bnkps.onnx: outputs the face boxes given at build time "
        f"(normalised to the image content): {np.round(boxes, 4).tolist() if present else []}"
    )
    return model


def _recognizer_model(seed: int):
    from onnx import TensorProto, helper, numpy_helper

    w, b = recognizer_weights(seed)
    nodes = [
        helper.make_node("AveragePool", ["input.1"], ["pooled"], name="AveragePool_0", kernel_shape=[8, 8],
                         strides=[8, 8]),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="Flatten_1", axis=1),
        helper.make_node("MatMul", ["flat", "fc.weight"], ["proj"], name="MatMul_2"),
        helper.make_node("Add", ["proj", "fc.bias"], ["embedding"], name="Add_3"),
    ]
    graph = helper.make_graph(
        nodes, "tiny_glintr100",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 512])],
        initializer=[numpy_helper.from_array(w, "fc.weight"), numpy_helper.from_array(b, "fc.bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="hallo-nodes")
    model.doc_string = f"hallo-nodes test stand-in for glintr100.onnx (seed {seed})"
    return model


def write_face_models(
    dst_models_dir: Path | str,
    seed: int = 0,
    faces: Sequence[Sequence[float]] | None = None,
    landmarker_task: Path | str | None = None,
    square_faces: Sequence[Sequence[float]] | None = None,
) -> dict[str, Path]:
    """Write the tiny detector and recogniser into ``dst_models_dir`` (the ``face_analysis/models``
    folder). ``faces``: normalised (x1, y1, x2, y2) boxes the detector reports (default: one
    centred face; ``[]``: a detector that never finds a face). ``square_faces``: other boxes it reports
    instead on a square image, e.g. one centred face for the face crops of a group photo (default: the same
    as on any image). ``landmarker_task``: the real MediaPipe ``.task`` file to copy in (it is needed for the
    masks). Returns ``{file name: path}``."""
    import onnx

    if landmarker_task is not None and not Path(landmarker_task).is_file():
        raise FileNotFoundError(f"landmarker_task: {landmarker_task} is not a file; pass the real {LANDMARKER_FILE}")
    dst = Path(dst_models_dir)
    dst.mkdir(parents=True, exist_ok=True)
    faces = DEFAULT_FACES if faces is None else faces
    for box in [*faces, *(square_faces or [])]:
        x1, y1, x2, y2 = (float(v) for v in box)
        if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
            raise ValueError(f"face boxes must be normalised x1 < x2, y1 < y2 within 0..1, got {box}")
    written = {}
    models = ((DETECTOR_FILE, _detector_model(faces, square_faces)), (RECOGNIZER_FILE, _recognizer_model(seed)))
    for name, model in models:
        onnx.checker.check_model(model)
        path = dst / name
        onnx.save(model, str(path))
        written[name] = path
    if landmarker_task is not None:
        written[LANDMARKER_FILE] = dst / LANDMARKER_FILE
        shutil.copyfile(landmarker_task, written[LANDMARKER_FILE])
    else:
        logger.info("no %s given: face masks will need it in %s", LANDMARKER_FILE, dst)
    return written
