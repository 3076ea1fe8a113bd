"""Face nodes: analysis and masks (HALLO_FACE + three MASKs), face crop and paste-back."""

from __future__ import annotations

import dataclasses
import hashlib
import logging

import numpy as np
import torch
import torch.nn.functional as F

from ..pipeline.face.analysis import FaceAnalysisResult, analyze_face
from ..pipeline.face.crop import CropBox, PasteCompositor, face_crop, paste_back
from ..pipeline.face.detection import NO_FACE_HINT, NoFaceError, load_face_models, select_face
from ..pipeline.face.masks import HalloMasks
from ..pipeline.images import comfy_image_to_rgb
from ..pipeline.paths import FACE_MODELS_SUBDIR
from . import comfy_adapter as comfy
from .common import (
    CATEGORY,
    HALLO_CROP,
    HALLO_FACE,
    HALLO_MODEL,
    FiniteMin,
    HalloInputError,
    HalloModel,
    check_finite,
    check_image,
    check_mask,
    expect,
    node_messages,
    odd_size_notes,
    size_problem,
    with_notes,
)

logger = logging.getLogger(__name__)

FACE_ORDERS = ["largest", "left_to_right"]
PAD_MODES = ["edge", "reflect", "constant"]
SIZE_OPTS = {"default": 512, "min": 64, "max": 2048, "step": 64}
# Overlay colours of the preview: lip red, face green, full (background) blue.
OVERLAY = {"lip": (1.0, 0.15, 0.15), "face": (0.15, 1.0, 0.15), "full": (0.2, 0.4, 1.0)}
#: Longest side of the preview PNGs (the MASK outputs keep the image's resolution).
PREVIEW_MAX_SIDE = 1024
CROP_NO_FACE = (
    "HalloFaceCrop needs a detected face to place the crop: crop the photo to the face by hand (any image "
    "crop node) and connect it to HalloFaceAnalysis, whose 'allow_no_face' option can continue without a "
    "detected face"
)


def _face_select_inputs() -> dict:
    return {
        "face_index": ("INT", {"default": 0, "min": -64, "max": 64,
                               "tooltip": "Which face to use in group photos, counted in face_order (0 = first; "
                                          "negative counts from the end)."}),
        "face_order": (FACE_ORDERS, {"default": "largest",
                                     "tooltip": "How faces are counted: largest first (the original's choice) or "
                                                "from left to right."}),
    }


def resample_levels(mask: torch.Tensor, shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """An image-resolution mask [H,W] -> the flattened per-level masks the denoiser reads."""
    x = mask[None, None].float()
    out = []
    for h, w in shapes:
        mode = "area" if h <= x.shape[-2] and w <= x.shape[-1] else "bilinear"
        kw = {} if mode == "area" else {"align_corners": False}
        out.append(F.interpolate(x, size=(h, w), mode=mode, **kw).clamp(0, 1).reshape(-1))
    return out


def replace_masks(result: FaceAnalysisResult, lip: torch.Tensor | None, face: torch.Tensor | None,
                  full: torch.Tensor | None) -> FaceAnalysisResult:
    """A copy of ``result`` whose masks are replaced by the given [H,W] masks (any resolution)."""
    masks = result.masks
    changes: dict = {}
    sources = dict(masks.sources)
    for name, m in (("lip", lip), ("face", face), ("full", full)):
        if m is None:
            continue
        changes[name] = resample_levels(m, masks.level_shapes)
        sources[name] = m.detach().cpu().float().clamp(0, 1).numpy()
    if not changes:
        return result
    new_masks: HalloMasks = dataclasses.replace(masks, **changes, sources=sources)
    return dataclasses.replace(result, masks=new_masks)


def preview_size(h: int, w: int, max_side: int = PREVIEW_MAX_SIDE) -> tuple[int, int]:
    """(h, w) scaled down so the longest side is at most ``max_side`` (never up)."""
    scale = min(1.0, max_side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def mask_overlay(rgb: np.ndarray, masks: HalloMasks, max_side: int = PREVIEW_MAX_SIDE) -> np.ndarray:
    """The portrait with the three masks tinted over it (uint8 RGB), at most ``max_side`` pixels."""
    import cv2

    h, w = preview_size(*rgb.shape[:2], max_side)
    small = rgb if (h, w) == rgb.shape[:2] else cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    img = small.astype(np.float32) / 255.0
    for name in ("full", "face", "lip"):
        m = masks.preview(name, (h, w))
        a = 0.45 * m[:, :, None]
        img = img * (1 - a) + np.asarray(OVERLAY[name], np.float32)[None, None] * a
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def save_preview(rgb: np.ndarray, tag: str) -> dict | None:
    """Write a PNG into ComfyUI's temp folder; returns the ui entry (or None when it cannot be written)."""
    from PIL import Image

    digest = hashlib.sha1(np.ascontiguousarray(rgb).data).hexdigest()[:16]
    name = f"hallo_{tag}_{digest}.png"
    folder = comfy.temp_directory()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(folder / name, compress_level=1)
    except OSError:
        logger.warning("could not write the preview %s", folder / name, exc_info=True)
        return None
    return {"filename": name, "subfolder": "", "type": "temp"}


def finite_mask(mask, node: str, name: str) -> torch.Tensor:
    """``check_mask`` that also refuses NaN / inf values (clamping would hide them as 0 or 1)."""
    if isinstance(mask, torch.Tensor) and mask.numel() and not bool(torch.isfinite(mask).all()):
        bad = int((~torch.isfinite(mask)).sum())
        raise ValueError(
            f"{node}: input '{name}' contains {bad} NaN or infinite value(s); a mask must hold numbers in 0..1. "
            "Check the node that made it (e.g. a division by zero), or disconnect it to use the computed mask"
        )
    return check_mask(mask, node, name)


def _mask_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None]


class HalloFaceAnalysis:
    DESCRIPTION = (
        "Finds the face in the portrait (SCRFD detector + ArcFace identity embedding) and builds Hallo's lip, "
        "face and full (background) masks from MediaPipe landmarks, for an output of width x height. The masks "
        "come out as MASKs at the image's resolution for viewing or editing; connect edited masks to the "
        "optional inputs to replace the computed ones."
    )
    CATEGORY = f"{CATEGORY}/face"
    RETURN_TYPES = (HALLO_FACE, "MASK", "MASK", "MASK")
    RETURN_NAMES = ("face", "lip_mask", "face_mask", "full_mask")
    OUTPUT_TOOLTIPS = (
        "Identity embedding, face box and masks for HalloReference.",
        "Where the lips are (drives the lip-sync attention).",
        "The face without the lips (drives the expression attention).",
        "Everything but the face (drives the pose attention).",
    )
    FUNCTION = "analyze"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": (HALLO_MODEL, {"tooltip": f"From HalloModelLoader; its {FACE_MODELS_SUBDIR} are used."}),
                "image": ("IMAGE", {"tooltip": "The portrait (the first image of a batch is used). A square image "
                                               "where the face fills 50-70 % works best."}),
                "width": ("INT", dict(SIZE_OPTS, tooltip="Video width; a multiple of 64 (Hallo was trained at 512).")),
                "height": ("INT", dict(SIZE_OPTS, tooltip="Video height; a multiple of 64.")),
                "face_expand_ratio": ("FLOAT", {"default": 1.2, "min": FiniteMin(0.5), "max": 3.0, "step": 0.05,
                                                "tooltip": "How far the face mask extends beyond the face outline "
                                                           "(original: 1.2)."}),
                **_face_select_inputs(),
                "allow_no_face": ("BOOLEAN", {"default": False,
                                              "tooltip": "When no face is found, continue instead of stopping: a "
                                                         "zero identity embedding when the detector finds none "
                                                         "(the original's fallback), and masks from the face box "
                                                         "(or the image centre) when MediaPipe finds no landmarks. "
                                                         "The node reports what it did."}),
            },
            "optional": {
                "lip_mask": ("MASK", {"tooltip": "Replaces the computed lip mask (any resolution; it is resampled "
                                                 "to the attention levels; values 0..1)."}),
                "face_mask": ("MASK", {"tooltip": "Replaces the computed face mask."}),
                "full_mask": ("MASK", {"tooltip": "Replaces the computed full (background) mask."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, width: int | None = None) -> bool | str:  # noqa: N802
        """Only ``width`` (ComfyUI marks every widget this check reads); ``height`` is checked when the node runs."""
        return True if width is None else size_problem("HalloFaceAnalysis", "width", width) or True

    @node_messages("HalloFaceAnalysis")
    def analyze(self, model: HalloModel, image: torch.Tensor, width: int = 512, height: int = 512,
                face_expand_ratio: float = 1.2, face_index: int = 0, face_order: str = "largest",
                allow_no_face: bool = False, lip_mask: torch.Tensor | None = None,
                face_mask: torch.Tensor | None = None, full_mask: torch.Tensor | None = None) -> dict:
        node = "HalloFaceAnalysis"
        for name, value in (("width", width), ("height", height)):
            problem = size_problem(node, name, value)
            if problem:
                raise ValueError(problem)
        check_finite(node, face_expand_ratio=face_expand_ratio)
        model = expect(model, HalloModel, node, "model", HALLO_MODEL)
        rgb = comfy_image_to_rgb(check_image(image, node), name=f"{node} image")
        result = analyze_face(rgb, model.folder.root, output_size=(int(height), int(width)),
                              face_expand_ratio=float(face_expand_ratio), face_index=int(face_index),
                              face_order=face_order, allow_no_face=bool(allow_no_face))
        result = replace_masks(
            result,
            None if lip_mask is None else finite_mask(lip_mask, node, "lip_mask"),
            None if face_mask is None else finite_mask(face_mask, node, "face_mask"),
            None if full_mask is None else finite_mask(full_mask, node, "full_mask"),
        )
        m = result.masks
        info = {"faces": int(result.num_faces), "face_index": int(result.face_rank), "face_order": face_order,
                "bbox": [round(float(v), 1) for v in result.bbox], "width": int(width), "height": int(height),
                "masks": "box" if result.landmark_model == "box" else "landmarks"}
        if result.warning:
            info["warning"] = result.warning
            logger.warning("%s: %s", node, result.warning)
        preview = save_preview(mask_overlay(rgb, m), "masks")
        ui = {"hallo_face": [info]}
        if preview is not None:
            ui["images"] = [preview]
        return {"ui": ui, "result": (result, _mask_tensor(m.lip_image), _mask_tensor(m.face_image),
                                     _mask_tensor(m.full_image))}


class HalloFaceCrop:
    DESCRIPTION = (
        "Cuts a face-centred square out of any photo (the face box spans face_fraction of the side, padded where "
        "the square leaves the image) and scales it to size x size, ready for Hallo. HalloPasteBack puts the "
        "rendered frames back into the photo."
    )
    CATEGORY = f"{CATEGORY}/face"
    RETURN_TYPES = ("IMAGE", HALLO_CROP)
    RETURN_NAMES = ("image", "crop")
    OUTPUT_TOOLTIPS = ("The square face crop.", "Where the crop came from, for HalloPasteBack.")
    FUNCTION = "crop"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": (HALLO_MODEL, {"tooltip": "From HalloModelLoader; its face detector is used."}),
                "image": ("IMAGE", {"tooltip": "Any photo with a face (the first image of a batch is used)."}),
                "face_fraction": ("FLOAT", {"default": 0.6, "min": FiniteMin(0.1), "max": 1.0, "step": 0.05,
                                            "tooltip": "Share of the crop's side the face box spans (Hallo "
                                                       "recommends 0.5-0.7)."}),
                "size": ("INT", dict(SIZE_OPTS, tooltip="Side of the square crop in pixels (multiple of 64).")),
                **_face_select_inputs(),
                "pad_mode": (PAD_MODES, {"default": "edge",
                                         "tooltip": "How to fill where the square leaves the photo: repeat the "
                                                    "border, mirror, or black."}),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, size: int | None = None) -> bool | str:  # noqa: N802
        """Only ``size`` (ComfyUI marks every widget this check reads; face_fraction has ComfyUI's own check)."""
        return True if size is None else size_problem("HalloFaceCrop", "size", size) or True

    @node_messages("HalloFaceCrop")
    def crop(self, model: HalloModel, image: torch.Tensor, face_fraction: float = 0.6, size: int = 512,
             face_index: int = 0, face_order: str = "largest", pad_mode: str = "edge") -> tuple:
        node = "HalloFaceCrop"
        error = size_problem(node, "size", size)
        if error:
            raise ValueError(error)
        check_finite(node, face_fraction=face_fraction)
        model = expect(model, HalloModel, node, "model", HALLO_MODEL)
        rgb = comfy_image_to_rgb(check_image(image, node), name=f"{node} image")
        detector = load_face_models(model.folder.root).detector
        faces = detector.detect(rgb)
        if not faces:
            h, w = rgb.shape[:2]
            raise NoFaceError(f"{node}: {NO_FACE_HINT} (image {w}x{h}) {CROP_NO_FACE}.")
        idx = select_face(faces, face_index=int(face_index), face_order=face_order, image_size=rgb.shape[:2])
        crop, box = face_crop(rgb, faces[idx].bbox, face_fraction=float(face_fraction), size=int(size),
                              pad_mode=pad_mode)
        out = torch.from_numpy(crop.astype(np.float32) / 255.0)[None]
        return (out, box)


class HalloPasteBack:
    DESCRIPTION = (
        "Puts rendered square frames back into the original photo at the place HalloFaceCrop cut them from, "
        "with a feathered seam, giving full-resolution frames. An odd width or height loses its last pixel "
        "column / row, so video encoders (H.264 needs even sides) accept the frames."
    )
    CATEGORY = f"{CATEGORY}/face"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("Full-resolution frames; an odd-sized photo comes out one pixel narrower / shorter (even "
                       "sides, as H.264 video needs).",)
    FUNCTION = "paste"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Rendered frames (e.g. from HalloSampler)."}),
                "original": ("IMAGE", {"tooltip": "The photo that went into HalloFaceCrop, or as many frames of it "
                                                  "as there are rendered frames (e.g. another HalloPasteBack's "
                                                  "output, to animate a second face in the same photo)."}),
                "crop": (HALLO_CROP, {"tooltip": "The crop output of HalloFaceCrop."}),
                "feather": ("INT", {"default": 16, "min": 0, "max": 256, "step": 1,
                                    "tooltip": "Width of the blended seam in original-image pixels."}),
            }
        }

    @node_messages("HalloPasteBack")
    def paste(self, images: torch.Tensor, original: torch.Tensor, crop: CropBox, feather: int = 16) -> dict:
        node = "HalloPasteBack"
        images = check_image(images, node, "images")
        original = check_image(original, node, "original")
        crop = expect(crop, CropBox, node, "crop", HALLO_CROP)
        if original.shape[0] not in (1, images.shape[0]):
            raise HalloInputError(
                f"{node}: input 'original' has {original.shape[0]} frames but 'images' has {images.shape[0]}; "
                "connect one photo, or frames of it as many as were rendered. When a second face of the photo "
                "speaks, give both voice tracks the same length (each speaker's track holds the other's turn "
                "muted, as in the hallo_two_speakers_video_from_group_photo_and_audio example)"
            )
        out = paste_back(images, original, crop, feather=int(feather), even=True)
        notes = odd_size_notes(node, crop.image_height, crop.image_width)
        return {"ui": with_notes({}, notes), "result": (out,)}


def paste_compositor(node: str, original: torch.Tensor | None, crop: CropBox | None,
                     feather: int) -> PasteCompositor | None:
    """The paste-back of HalloRenderToVideoFile (None without it); an odd-sized photo is cut to even sides."""
    if (original is None) != (crop is None):
        raise ValueError(f"{node}: connect both 'original' and 'crop' to paste the frames back, or neither")
    if crop is None:
        return None
    expect(crop, CropBox, node, "crop", HALLO_CROP)
    original = check_image(original, node, "original")
    odd_size_notes(node, crop.image_height, crop.image_width)
    return PasteCompositor(original[0], crop, feather, even=True)
