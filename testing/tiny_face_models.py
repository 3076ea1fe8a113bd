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
  the face centre; faces given as ``[]`` give all-zero scores. The same file therefore works for any
  image size and aspect, and the real letterbox / decode / threshold / NMS / rescale code runs on
  its real outputs in onnxruntime. Key points are placed like the ArcFace template inside each box.
* **Recogniser** (input ``input.1`` ``[1,3,112,112]`` -> ``[1,512]``): 8x8 average pooling, then a
  seeded random linear map to 512 values plus a bias. A deterministic function of the aligned
  crop, so tests can recompute the embedding independently.

The MediaPipe landmarker cannot be faked this way; :func:`write_face_models` copies the real
``face_landmarker_v2_with_blendshapes.task`` in when given one (``landmarker_task``). Without it
the folder works for detection and embedding, and the masks stop with an error naming the file.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..pipeline.face.detection import ARCFACE_TEMPLATE, DETECTOR_FILE, RECOGNIZER_FILE
from ..pipeline.face.landmarks import TASK_FILE

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


def _detector_model(faces: Sequence[Sequence[float]]):
    from onnx import TensorProto, helper

    nodes: list = []
    inits: list = []

    def const(name: str, value, dtype=np.float32) -> str:
        arr = np.asarray(value, dtype=dtype)
        inits.append(helper.make_tensor(name, TensorProto.FLOAT if dtype == np.float32 else TensorProto.INT64,
                                        arr.shape, arr.reshape(-1).tolist()))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=f"{op}_{len(nodes)}", **attrs))
        return output

    present = len(faces) > 0
    boxes = np.asarray(faces if present else [(0.4, 0.4, 0.6, 0.6)], np.float32).reshape(-1, 4)
    k = boxes.shape[0]
    const("face_boxes", boxes)
    const("face_centres", (boxes[:, :2] + boxes[:, 2:]) / 2)
    const("face_wh", boxes[:, 2:] - boxes[:, :2])
    const("face_kps", np.stack([template_kps(b) for b in boxes]).reshape(k, 5, 2))
    const("score_scale", 1.0 if present else 0.0)
    const("pad_level", -0.99)
    const("one_f", 1.0)
    const("zero_i", 0, np.int64)
    const("one_i", 1, np.int64)
    const("sigma_frac", 0.15)
    const("sigma_min", 8.0)
    const("two_f", 2.0)
    const("minus_one_f", -1.0)
    const("shape_n12", [-1, 1, 2], np.int64)
    const("shape_n2", [-1, 2], np.int64)
    const("shape_n10", [-1, 10], np.int64)
    const("shape_1n", [1, -1], np.int64)
    const("shape_n1", [-1, 1], np.int64)
    const("ax0", [0], np.int64)
    const("ax1", [1], np.int64)
    const("ax2", [2], np.int64)
    const("s0", [0], np.int64)
    const("s2", [2], np.int64)
    const("s4", [4], np.int64)

    # Content extent of the letterboxed input (non-padding rows/columns, top-left aligned).
    node("ReduceMax", ["input.1"], "chan_max", axes=[1], keepdims=0)  # [1,H,W]
    node("Shape", ["input.1"], "in_shape")
    for axis, tag in ((2, "h"), (3, "w")):
        const(f"axis_{tag}", axis, np.int64)
        node("Gather", ["in_shape", f"axis_{tag}"], f"size_{tag}", axis=0)
        node("Cast", [f"size_{tag}"], f"size_{tag}_f", to=TensorProto.FLOAT)
        node("Add", [f"size_{tag}_f", "one_f"], f"size_{tag}_p1")
        node("Range", ["one_f", f"size_{tag}_p1", "one_f"], f"pos_{tag}")  # 1..size
        other = 2 if tag == "h" else 1  # reduce the other spatial axis of [1,H,W]
        node("ReduceMax", ["chan_max"], f"line_max_{tag}", axes=[other], keepdims=0)  # [1,size]
        node("Greater", [f"line_max_{tag}", "pad_level"], f"content_{tag}_b")
        node("Cast", [f"content_{tag}_b"], f"content_{tag}", to=TensorProto.FLOAT)
        node("Mul", [f"content_{tag}", f"pos_{tag}"], f"content_pos_{tag}")
        node("ReduceMax", [f"content_pos_{tag}"], f"new_{tag}", keepdims=1)  # [1,1]
    const("one_shape", [1], np.int64)
    node("Reshape", ["new_w", "one_shape"], "new_w1")
    node("Reshape", ["new_h", "one_shape"], "new_h1")
    node("Concat", ["new_w1", "new_h1"], "scale2", axis=0)  # [2] = (new_w, new_h)
    node("Concat", ["scale2", "scale2"], "scale4", axis=0)
    node("Mul", ["face_boxes", "scale4"], "boxes_px")  # [K,4]
    node("Mul", ["face_centres", "scale2"], "centres_px")  # [K,2]
    node("Mul", ["face_kps", "scale2"], "kps_px")  # [K,5,2]
    node("Mul", ["face_wh", "scale2"], "wh_px")
    node("ReduceMax", ["wh_px"], "face_side", axes=[1], keepdims=0)  # [K]
    node("Mul", ["face_side", "sigma_frac"], "sigma_raw")
    node("Max", ["sigma_raw", "sigma_min"], "sigma")
    node("Mul", ["sigma", "sigma"], "sigma2")
    node("Mul", ["sigma2", "two_f"], "denom")  # [K]
    node("Unsqueeze", ["centres_px", "ax0"], "centres_1k2")
    node("Slice", ["boxes_px", "s0", "s2", "ax1"], "box_lt")  # [K,2]
    node("Slice", ["boxes_px", "s2", "s4", "ax1"], "box_rb")

    outs: dict[str, list[str]] = {"score": [], "bbox": [], "kps": []}
    for s in STRIDES:
        p = f"s{s}_"
        const(p + "stride_i", s, np.int64)
        const(p + "stride_f", float(s))
        node("Div", ["size_h", p + "stride_i"], p + "hs")
        node("Div", ["size_w", p + "stride_i"], p + "ws")
        node("Range", ["zero_i", p + "hs", "one_i"], p + "ry")
        node("Range", ["zero_i", p + "ws", "one_i"], p + "rx")
        node("Cast", [p + "ry"], p + "ry_f", to=TensorProto.FLOAT)
        node("Cast", [p + "rx"], p + "rx_f", to=TensorProto.FLOAT)
        node("Mul", [p + "ry_f", p + "stride_f"], p + "ys")
        node("Mul", [p + "rx_f", p + "stride_f"], p + "xs")
        node("Reshape", [p + "hs", "one_shape"], p + "hs1")
        node("Reshape", [p + "ws", "one_shape"], p + "ws1")
        node("Concat", [p + "hs1", p + "ws1"], p + "grid_shape", axis=0)
        node("Reshape", [p + "xs", "shape_1n"], p + "xs_row")
        node("Reshape", [p + "ys", "shape_n1"], p + "ys_col")
        node("Expand", [p + "xs_row", p + "grid_shape"], p + "gx")
        node("Expand", [p + "ys_col", p + "grid_shape"], p + "gy")
        node("Unsqueeze", [p + "gx", "ax2"], p + "gx3")
        node("Unsqueeze", [p + "gy", "ax2"], p + "gy3")
        node("Concat", [p + "gx3", p + "gy3"], p + "grid", axis=2)  # [Hs,Ws,2] (x, y)
        node("Reshape", [p + "grid", "shape_n12"], p + "c1")
        node("Concat", [p + "c1", p + "c1"], p + "c2", axis=1)  # 2 anchors per location
        node("Reshape", [p + "c2", "shape_n2"], p + "centers")  # [N,2]
        node("Unsqueeze", [p + "centers", "ax1"], p + "centers_n12")
        node("Sub", [p + "centers_n12", "centres_1k2"], p + "diff")  # [N,K,2]
        node("Mul", [p + "diff", p + "diff"], p + "diff2")
        node("ReduceSum", [p + "diff2", "ax2"], p + "d2", keepdims=0)  # [N,K]
        node("Div", [p + "d2", "denom"], p + "d2n")
        node("Mul", [p + "d2n", "minus_one_f"], p + "neg")
        node("Exp", [p + "neg"], p + "score_nk")
        node("ReduceMax", [p + "score_nk"], p + "score_raw", axes=[1], keepdims=1)  # [N,1]
        node("Mul", [p + "score_raw", "score_scale"], p + "score")
        node("ArgMax", [p + "score_nk"], p + "nearest", axis=1, keepdims=0)  # [N]
        node("Gather", ["box_lt", p + "nearest"], p + "lt", axis=0)
        node("Gather", ["box_rb", p + "nearest"], p + "rb", axis=0)
        node("Sub", [p + "centers", p + "lt"], p + "d_lt")
        node("Sub", [p + "rb", p + "centers"], p + "d_rb")
        node("Concat", [p + "d_lt", p + "d_rb"], p + "dist_px", axis=1)
        node("Div", [p + "dist_px", p + "stride_f"], p + "bbox")
        node("Gather", ["kps_px", p + "nearest"], p + "kps_sel", axis=0)  # [N,5,2]
        node("Sub", [p + "kps_sel", p + "centers_n12"], p + "kps_off")
        node("Div", [p + "kps_off", p + "stride_f"], p + "kps_n52")
        node("Reshape", [p + "kps_n52", "shape_n10"], p + "kps")
        outs["score"].append(p + "score")
        outs["bbox"].append(p + "bbox")
        outs["kps"].append(p + "kps")

    inputs = [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "?", "?"])]
    outputs = []
    for kind, width in (("score", 1), ("bbox", 4), ("kps", 10)):
        for i, name in enumerate(outs[kind]):
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [f"n{STRIDES[i]}", width]))
    graph = helper.make_graph(nodes, "tiny_scrfd_10g_bnkps", inputs, outputs, initializer=inits)
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
) -> dict[str, Path]:
    """Write the tiny detector and recogniser into ``dst_models_dir`` (the ``face_analysis/models``
    folder). ``faces``: normalised (x1, y1, x2, y2) boxes the detector reports (default: one
    centred face; ``[]``: a detector that never finds a face). ``landmarker_task``: the real
    MediaPipe ``.task`` file to copy in (it is needed for the masks). Returns ``{file name: path}``."""
    import onnx

    if landmarker_task is not None and not Path(landmarker_task).is_file():
        raise FileNotFoundError(f"landmarker_task: {landmarker_task} is not a file; pass the real {TASK_FILE}")
    dst = Path(dst_models_dir)
    dst.mkdir(parents=True, exist_ok=True)
    faces = DEFAULT_FACES if faces is None else faces
    for box in faces:
        x1, y1, x2, y2 = (float(v) for v in box)
        if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
            raise ValueError(f"face boxes must be normalised x1 < x2, y1 < y2 within 0..1, got {box}")
    written = {}
    for name, model in ((DETECTOR_FILE, _detector_model(faces)), (RECOGNIZER_FILE, _recognizer_model(seed))):
        onnx.checker.check_model(model)
        path = dst / name
        onnx.save(model, str(path))
        written[name] = path
    if landmarker_task is not None:
        written[TASK_FILE] = dst / TASK_FILE
        shutil.copyfile(landmarker_task, written[TASK_FILE])
    else:
        logger.info("no %s given: face masks will need it in %s", TASK_FILE, dst)
    return written
