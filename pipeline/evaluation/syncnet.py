"""Optional SyncNet LSE-C / LSE-D (the lip-sync scores of Wav2Lip and most talking-head papers).

Used only when the user puts the SyncNet checkpoint ``syncnet_v2.model`` (Chung & Zisserman 2016, as
released with ``joonson/syncnet_python``) into the model folder and has installed the optional package
``syncnet-python`` (which brings the network and the scoring code); imported lazily, so the pack works
without either. The face track comes from the pack's own SCRFD detector instead of the package's S3FD:
per frame, the crop that package's pipeline makes around the face box (box half-size ``bs``, crop scale
0.4), resized to 224x224, at 25 fps, with the voice as 16 kHz mono. LSE-D is the smallest mean feature
distance over offsets of +-15 frames, LSE-C the median distance minus that minimum.
"""

from __future__ import annotations

import logging
import tempfile
import types
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import public_name
from ..lazy_import import cv2

logger = logging.getLogger(__name__)

SYNCNET_FILE = "syncnet_v2.model"
SYNCNET_FPS = 25.0
SYNCNET_RATE = 16000
CROP_SIZE = 224
CROP_SCALE = 0.4
VSHIFT = 15


@public_name
class SyncNetUnavailable(RuntimeError):
    """The optional syncnet-python package is missing or cannot be imported."""


@dataclass
class SyncNetScores:
    offset: int  # frames
    confidence: float  # LSE-C
    distance: float  # LSE-D


def _package() -> types.ModuleType:
    try:
        import syncnet_python
    except ImportError as exc:
        raise SyncNetUnavailable(
            f"{SYNCNET_FILE} is in the model folder but the optional package syncnet-python cannot be imported "
            f"({exc}); install it with `pip install syncnet-python` for the LSE-C / LSE-D scores") from exc
    return syncnet_python


def load_syncnet(checkpoint: Path | str, device: str = "cpu") -> Any:
    """The package's ``SyncNetInstance`` with the weights of ``checkpoint`` (a state dict, loaded with
    ``weights_only=True``: no arbitrary objects are unpickled)."""
    import torch

    pkg = _package()
    state = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{checkpoint}: expected a SyncNet state dict, got {type(state).__name__}")
    instance = pkg.SyncNetInstance(pkg.SyncNetModel(), device=device)
    net = instance.__S__  # a dunder name: not mangled
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{checkpoint} is not a SyncNet v2 checkpoint: {exc}") from exc
    return instance


def face_crop(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The syncnet_python pipeline's crop around a face box, resized to 224x224 (BGR, as it reads jpgs)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    bs = max(x2 - x1, y2 - y1) / 2
    mx, my = (x1 + x2) / 2, (y1 + y2) / 2
    pad = int(bs * (1 + 2 * CROP_SCALE))
    padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), constant_values=110)
    mx, my = mx + pad, my + pad
    crop = padded[int(my - bs):int(my + bs * (1 + 2 * CROP_SCALE)),
                  int(mx - bs * (1 + CROP_SCALE)):int(mx + bs * (1 + CROP_SCALE))]
    return cv2.cvtColor(cv2.resize(crop, (CROP_SIZE, CROP_SIZE)), cv2.COLOR_RGB2BGR)


def _write_inputs(folder: Path, frames: np.ndarray, wave_16k: np.ndarray, fps: float, models: Any) -> int:
    """jpg face crops at 25 fps and audio.wav, as the package's ``evaluate`` reads them; returns the count."""
    count = int(len(frames) * SYNCNET_FPS / fps)
    box = None
    for i in range(count):
        frame = frames[min(int(i * fps / SYNCNET_FPS), len(frames) - 1)]
        faces = models.detector.detect(frame)
        if faces:
            box = max(faces, key=lambda f: f.area).bbox
        if box is None:
            h, w = frame.shape[:2]
            box = np.array([w * 0.25, h * 0.25, w * 0.75, h * 0.75])
        cv2.imwrite(str(folder / f"{i:06d}.jpg"), face_crop(frame, box))
    pcm = (np.clip(wave_16k, -1, 1) * 32767).astype("<i2")
    with wave.open(str(folder / "audio.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SYNCNET_RATE)
        out.writeframes(pcm.tobytes())
    return count


def syncnet_scores(frames: np.ndarray, audio: tuple[np.ndarray, int], fps: float, checkpoint: Path | str,
                   models: Any, device: str = "cpu") -> SyncNetScores:
    """LSE-C / LSE-D of ``frames`` against the mono ``audio`` = (wave, rate) with the package's scoring."""
    import torch

    from ..audio.decode import resample_waveform

    wave_mono, rate = audio
    wave_16k = resample_waveform(torch.from_numpy(wave_mono)[None], rate, SYNCNET_RATE)[0].numpy()
    instance = load_syncnet(checkpoint, device)
    with tempfile.TemporaryDirectory(prefix="hallo-syncnet-") as tmp:
        count = _write_inputs(Path(tmp), frames, wave_16k, fps, models)
        if count < 6 or len(wave_16k) < 6 * SYNCNET_RATE / SYNCNET_FPS:
            raise ValueError("SyncNet needs at least 6 frames (0.24 s) of video and audio")
        opt = types.SimpleNamespace(tmp_dir=tmp, batch_size=20, vshift=VSHIFT)
        with torch.no_grad():
            offset, conf, dist = instance.evaluate(opt)
    return SyncNetScores(offset=int(offset), confidence=float(conf), distance=float(dist))
