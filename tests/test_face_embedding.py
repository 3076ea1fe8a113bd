"""SCRFD decode + ArcFace through real onnxruntime on test-built models with the released signatures."""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from face_helpers import (  # noqa: E402
    GROUP,
    LARGEST_GROUP_FACE,
    SIX_FACE_BOXES,
    load_rgb,
    make_model_dir,
    normalised,
)
from hallo_nodes.pipeline.face.detection import (  # noqa: E402
    ARCFACE_TEMPLATE,
    FaceModelMissingError,
    NoFaceError,
    load_face_models,
    nms,
    select_face,
    similarity_transform,
)
from hallo_nodes.testing.tiny_face_models import recognizer_weights  # noqa: E402
from insightface_reference import insightface_outputs, load_goldens, record_goldens  # noqa: E402


@pytest.fixture(scope="module")
def group_dir(tmp_path_factory) -> Path:
    rgb = load_rgb(GROUP)
    h, w = rgb.shape[:2]
    return make_model_dir(tmp_path_factory.mktemp("group"), faces=normalised(SIX_FACE_BOXES, w, h), seed=3)


@pytest.fixture(scope="module")
def single_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("single"))


def test_released_signatures(single_dir):
    models = single_dir / "face_analysis" / "models"
    det = ort.InferenceSession(str(models / "scrfd_10g_bnkps.onnx"), providers=["CPUExecutionProvider"])
    (inp,) = det.get_inputs()
    assert inp.name == "input.1" and inp.shape[:2] == [1, 3] and all(isinstance(d, str) for d in inp.shape[2:])
    outs = det.get_outputs()
    assert len(outs) == 9
    out = det.run(None, {"input.1": np.zeros((1, 3, 640, 640), np.float32)})
    for i, stride in enumerate((8, 16, 32)):
        n = (640 // stride) ** 2 * 2
        assert out[i].shape == (n, 1) and out[i + 3].shape == (n, 4) and out[i + 6].shape == (n, 10)
    rec = ort.InferenceSession(str(models / "glintr100.onnx"), providers=["CPUExecutionProvider"])
    assert rec.get_inputs()[0].shape == [1, 3, 112, 112]
    assert rec.get_outputs()[0].shape == [1, 512]
    onnx.checker.check_model(onnx.load(str(models / "glintr100.onnx")))


@pytest.mark.parametrize("size", [(886, 1280), (900, 400), (640, 640), (3000, 2000)])
def test_detector_boxes_map_back_to_image(tmp_path, size):
    """Letterbox, decode and rescale: the box comes back where it was put, for any aspect ratio."""
    h, w = size
    box = (0.3, 0.2, 0.65, 0.7)
    models = load_face_models(make_model_dir(tmp_path, faces=[box]))
    rgb = np.random.default_rng(0).integers(30, 255, (h, w, 3), dtype=np.uint8)
    faces = models.detector.detect(rgb)
    assert len(faces) == 1  # many anchors fire, NMS leaves one
    expect = np.array(box) * [w, h, w, h]
    assert np.abs(faces[0].bbox - expect).max() < 0.01 * max(h, w)
    assert faces[0].score > 0.5 and faces[0].kps.shape == (5, 2)
    assert (faces[0].kps[:, 0] > expect[0]).all() and (faces[0].kps[:, 0] < expect[2]).all()


def test_similarity_transform_is_umeyama():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 500, (5, 2))
    ang, s, t = 0.3, 0.4, np.array([12.0, -7.0])
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = s * src @ rot.T + t
    m = similarity_transform(src, dst)
    assert np.allclose(m[:, :2], s * rot) and np.allclose(m[:, 2], t)
    skimage = pytest.importorskip("skimage.transform")
    noisy = dst + rng.normal(0, 3, dst.shape)
    tf = skimage.SimilarityTransform()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tf.estimate(src, noisy)
    assert np.allclose(similarity_transform(src, noisy), tf.params[:2], atol=1e-8)


def test_arcface_embedding_raw_and_independently_recomputed(group_dir):
    """The embedding equals the test's own alignment + normalisation + the model's known weights."""
    rgb = load_rgb(GROUP)
    models = load_face_models(group_dir)
    faces = models.detector.detect(rgb)
    face = faces[0]
    emb = models.recognizer.embed(rgb, face.kps)
    assert emb.shape == (512,) and emb.dtype == np.float32
    assert abs(np.linalg.norm(emb) - 1.0) > 0.5  # raw, not normalised
    # independent: least-squares similarity onto the ArcFace template (closed form with complex
    # numbers: w = a z + b), warp, (x - 127.5) / 127.5, 8x8 mean pooling, W x + b
    z = face.kps[:, 0].astype(np.float64) + 1j * face.kps[:, 1]
    t = ARCFACE_TEMPLATE[:, 0].astype(np.float64) + 1j * ARCFACE_TEMPLATE[:, 1]
    zc, tc = z - z.mean(), t - t.mean()
    a = (tc * np.conj(zc)).sum() / (np.abs(zc) ** 2).sum()
    b = t.mean() - a * z.mean()
    m = np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])
    aligned = cv2.warpAffine(rgb, m, (112, 112), borderValue=0.0).astype(np.float32)
    x = ((aligned - 127.5) / 127.5).transpose(2, 0, 1)
    pooled = x.reshape(3, 14, 8, 14, 8).mean(axis=(2, 4)).reshape(-1)
    w, b = recognizer_weights(3)
    expect = pooled @ w + b
    assert np.allclose(emb, expect, atol=1e-3)
    # different faces give different embeddings
    other = models.recognizer.embed(rgb, faces[1].kps)
    assert np.corrcoef(emb, other)[0, 1] < 0.99


def test_six_faces_selection(group_dir):
    rgb = load_rgb(GROUP)
    h, w = rgb.shape[:2]
    faces = load_face_models(group_dir).detector.detect(rgb)
    assert len(faces) == 6
    boxes = np.array(SIX_FACE_BOXES, float)

    def which(i):
        return int(np.argmin(np.abs(boxes - faces[i].bbox).sum(1)))

    assert which(select_face(faces)) == LARGEST_GROUP_FACE  # original: largest box
    assert [which(select_face(faces, face_index=k, face_order="left_to_right")) for k in range(6)] == list(range(6))
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert which(select_face(faces, face_index=1)) == int(np.argsort(-areas)[1])
    assert which(select_face(faces, face_index=-1, face_order="left_to_right")) == 5
    x1, y1, x2, y2 = SIX_FACE_BOXES[3]
    pt = ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h)
    assert which(select_face(faces, face_point=pt, image_size=(h, w))) == 3
    assert which(select_face(faces, face_point=(0.99, 0.99), image_size=(h, w))) == 5  # nearest centre
    with pytest.raises(ValueError, match=r"face_index 6 is out of range: 6 face\(s\) were found"):
        select_face(faces, face_index=6)


def test_no_face_detector(tmp_path):
    models = load_face_models(make_model_dir(tmp_path, faces=[]))
    assert models.detector.detect(load_rgb("photo_woman.jpg")) == []
    with pytest.raises(NoFaceError, match="no face was found in the image; use a closer crop"):
        select_face([])


def test_missing_model_files_named(tmp_path):
    with pytest.raises(FaceModelMissingError) as err:
        load_face_models(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "face_analysis" / "models" / "scrfd_10g_bnkps.onnx") in msg
    assert "fudan-generative-ai/hallo" in msg and "face_analysis/models" in msg
    make_model_dir(tmp_path)
    (tmp_path / "face_analysis" / "models" / "glintr100.onnx").unlink()
    with pytest.raises(FaceModelMissingError, match="glintr100.onnx"):
        load_face_models(tmp_path)


def test_nms_merges_overlaps():
    dets = np.array([[0, 0, 100, 100, 0.9], [5, 5, 105, 105, 0.8], [200, 200, 300, 300, 0.7]], np.float32)
    assert nms(dets, 0.4) == [0, 2]


def _recognizer_graph(path: Path, normalises_itself: bool) -> Path:
    """An ArcFace-signature graph ([1,3,112,112] -> [1,512]); MXNet conversions start with Sub/Mul nodes that
    normalise raw 0..255 pixels themselves, PyTorch exports expect (x - 127.5) / 127.5 already applied."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    w = numpy_helper.from_array(rng.normal(0, 1, (3, 512)).astype(np.float32), "w")
    nodes, inits, x = [], [w], "data"
    if normalises_itself:
        inits += [numpy_helper.from_array(np.array(127.5, np.float32), "mean"),
                  numpy_helper.from_array(np.array(1 / 127.5, np.float32), "scale")]
        nodes += [helper.make_node("Sub", ["data", "mean"], ["centred"], name="_minus0"),
                  helper.make_node("Mul", ["centred", "scale"], ["normed"], name="_mulscalar0")]
        x = "normed"
    nodes += [helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"),
              helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
              helper.make_node("MatMul", ["flat", "w"], ["fc1"], name="fc1")]
    graph = helper.make_graph(nodes, "arcface", [helper.make_tensor_value_info("data", TensorProto.FLOAT,
                                                                               [1, 3, 112, 112])],
                              [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 512])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_recognizer_input_normalisation_follows_the_graph(tmp_path):
    """insightface's rule: a graph that normalises itself gets raw pixels; both graphs then embed alike."""
    from hallo_nodes.pipeline.face.detection import ArcFaceRecognizer

    mx = ArcFaceRecognizer(_recognizer_graph(tmp_path / "mx.onnx", True))
    pt = ArcFaceRecognizer(_recognizer_graph(tmp_path / "pt.onnx", False))
    assert (mx.input_mean, mx.input_std) == (0.0, 1.0)
    assert (pt.input_mean, pt.input_std) == (127.5, 127.5)
    face = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    expect = ((face.astype(np.float64) - 127.5) / 127.5).mean(axis=(0, 1)) @ np.random.default_rng(5).normal(
        0, 1, (3, 512))
    assert np.allclose(mx.embed_aligned(face), expect, atol=1e-4)
    assert np.allclose(pt.embed_aligned(face), expect, atol=1e-4)


@pytest.mark.parametrize("name", ["group_six_faces.jpg", "painting_girl.jpg", "stylized_3d.jpg"])
def test_same_boxes_points_and_embeddings_as_insightface(tmp_path, name):
    """Our SCRFD decode and ArcFace alignment give what insightface's own model_zoo classes give (the library
    the original calls) on the same ONNX files and real portraits: recorded goldens, and live where installed."""
    rgb = load_rgb(name)
    h, w = rgb.shape[:2]
    boxes = normalised(SIX_FACE_BOXES, w, h) if name == GROUP else [(0.1, 0.2, 0.4, 0.6), (0.5, 0.1, 0.9, 0.7)]
    root = make_model_dir(tmp_path, faces=boxes, seed=5, landmarker=False)
    # (reference, embedding bound relative to its largest value): live, insightface warps and runs the ONNX
    # graph with the same OpenCV and onnxruntime as ours; the goldens were recorded with OpenCV 5.1 and
    # onnxruntime 1.32, and at the floors (OpenCV 4.11, onnxruntime 1.15) warpAffine's rounding moves this
    # tiny random network's embeddings by up to 5.2e-4 of their largest value. A misaligned face moves them
    # by far more (test_embedding_depends_on_alignment).
    references = []
    if importlib.util.find_spec("insightface") is not None:
        live = insightface_outputs(root / "face_analysis" / "models", rgb)
        if os.environ.get("HALLO_RECORD_INSIGHTFACE"):
            record_goldens(name, live)
        references.append((live, 1e-4))
    references.append((load_goldens(name), GOLDEN_EMBEDDING_REL))
    ours = load_face_models(root)
    faces = ours.detector.detect(rgb)
    for ref, rel in references:
        assert len(faces) == len(ref["boxes"]) == len(boxes)
        np.testing.assert_allclose(np.array([np.r_[f.bbox, f.score] for f in faces]), ref["boxes"], atol=1e-3)
        np.testing.assert_allclose(np.array([f.kps for f in faces]), ref["kps"], atol=1e-3)
        for f, emb in zip(faces, ref["embeddings"], strict=True):
            mine = ours.recognizer.embed(rgb, f.kps)
            assert np.abs(mine - emb).max() <= rel * np.abs(emb).max() + 1e-5


GOLDEN_EMBEDDING_REL = 1.5e-3


def test_embedding_depends_on_alignment(tmp_path):
    """The guard for the golden bound: key points one pixel off move the embedding by far more than it."""
    rgb = load_rgb("painting_girl.jpg")
    root = make_model_dir(tmp_path, faces=[(0.1, 0.2, 0.4, 0.6)], seed=5, landmarker=False)
    ours = load_face_models(root)
    face = ours.detector.detect(rgb)[0]
    emb = ours.recognizer.embed(rgb, face.kps)
    shifted = ours.recognizer.embed(rgb, face.kps + np.array([1.0, 0.0]))
    assert np.abs(shifted - emb).max() > 5 * GOLDEN_EMBEDDING_REL * np.abs(emb).max()
