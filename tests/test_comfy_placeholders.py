"""The test-only torchvision/torchaudio placeholders that let ComfyUI 0.3.64 start on a CPU-only torch.

They run in a child interpreter with ``tests/comfy_placeholders`` on its path, as ComfyUI gets them, so that
they never shadow a real torchvision/torchaudio in this process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from .conftest import REPO

PLACEHOLDERS = REPO / "tests" / "comfy_placeholders"


def run_with_placeholders(code: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(PLACEHOLDERS)}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env=env, cwd=PLACEHOLDERS)
    assert result.returncode == 0, result.stderr[-3000:]


def test_torchvision_imports_what_comfyui_and_transformers_import_and_raises_on_use() -> None:
    run_with_placeholders("""
        import enum, pytest
        import torchvision
        from torchvision import transforms
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.functional import pil_to_tensor
        from torchvision.transforms.v2 import functional as tvF
        from torchvision.ops.boxes import batched_nms
        from torchvision.io import decode_image
        assert "comfy_placeholders" in torchvision.__file__
        assert issubclass(InterpolationMode, enum.Enum) and InterpolationMode("bilinear") is InterpolationMode.BILINEAR
        assert not hasattr(torchvision, "__wrapped__")  # dunder probes are not answered with stand-ins
        for fn in (pil_to_tensor, tvF.resize, batched_nms, decode_image, torchvision.models.efficientnet_v2_s,
                   transforms.Compose, transforms.functional.resize):
            with pytest.raises(RuntimeError, match="placeholder"):
                fn(None)
    """)


def test_torchaudio_resample_really_resamples() -> None:
    run_with_placeholders("""
        import math, numpy as np, pytest, torch, torchaudio
        t = torch.arange(44100) / 44100
        x = torch.stack([torch.sin(2 * math.pi * 440 * t), 0.5 * torch.sin(2 * math.pi * 10000 * t)])[None]
        assert torchaudio.functional.resample(x, 44100, 44100) is x
        y = torchaudio.functional.resample(x, 44100, 16000)
        assert y.shape == (1, 2, 16000) and y.dtype == x.dtype
        spectrum = np.abs(np.fft.rfft(y[0, 0].numpy()))
        assert spectrum.argmax() == 440  # 1 s at 16 kHz: bin = Hz
        inner = y[0, :, 1000:-1000]
        assert abs(float(inner[0].abs().max()) - 1.0) < 0.01  # the 440 Hz tone keeps its amplitude
        assert float(inner[1].abs().max()) < 0.01  # 10 kHz is above the new Nyquist frequency: filtered out
        z = torchaudio.functional.resample(x[..., :1001].double(), 16000, 44100)
        assert z.shape[-1] == math.ceil(1001 * 44100 / 16000) and z.dtype == torch.float64
        with pytest.raises(ValueError, match="rates must be positive"):
            torchaudio.functional.resample(x, 0, 16000)
        with pytest.raises(RuntimeError, match="placeholder"):
            torchaudio.transforms.MelSpectrogram(sample_rate=16000)
    """)
