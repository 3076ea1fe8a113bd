"""Load time and peak host memory of the network loader (one JSON line).

    python bench/bench_load.py                 # tiny model folder (written to a temp dir)
    python bench/bench_load.py --full          # full-size network from the SD-1.5 config, random weights
    python bench/bench_load.py --full --safetensors   # the same after the one-time safetensors conversion

``--full`` writes a random-weight ``net.pth`` in the released layout (fp16, ~4.85 GB) to a temp dir first
(not timed), then times ``load_net`` in a fresh process so the peak RSS is the loader's own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM; ``ru_maxrss`` would carry the parent's peak over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(models: Path, variant: str, dtype: str) -> None:
    import torch
    from hallo_nodes.pipeline.models.loading import load_net

    started = time.perf_counter()
    net = load_net(models, variant, dtype=dtype)
    seconds = time.perf_counter() - started
    after_load = peak_rss_mb()
    # A memory-mapped checkpoint is paged in on first use: read every weight once to see the resident cost.
    started = time.perf_counter()
    with torch.no_grad():
        for p in net.parameters():
            p.sum()
    touch = time.perf_counter() - started
    params = sum(p.numel() for p in net.parameters())
    print(json.dumps({"load_s": round(seconds, 2), "first_touch_s": round(touch, 2), "params_m": round(params / 1e6, 1),
                      "peak_rss_after_load_mb": round(after_load), "peak_rss_after_touch_mb": round(peak_rss_mb())}))


def write_full_folder(root: Path) -> None:
    import json as _json

    from hallo_nodes.pipeline.models.architecture import SD15_UNET_CONFIG, HalloArchitecture
    from hallo_nodes.testing.tiny_models import write_net

    unet = root / "stable-diffusion-v1-5" / "unet"
    unet.mkdir(parents=True)
    (unet / "config.json").write_text(_json.dumps(SD15_UNET_CONFIG))
    write_net(root / "hallo" / "net.pth", HalloArchitecture(), seed=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="full-size network with random weights")
    ap.add_argument("--safetensors", action="store_true", help="convert net.pth to safetensors first")
    ap.add_argument("--dtype", default="fp16", choices=("fp32", "fp16", "bf16"))
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        child(args.child, "hallo", args.dtype)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "models"
        if args.full:
            write_full_folder(root)
        else:
            from hallo_nodes.testing.tiny_models import write_tiny_model_folder

            write_tiny_model_folder(root, variants=("hallo",), with_face_models=False, with_wav2vec=False)
        if args.safetensors:
            from hallo_nodes.pipeline.models.checkpoint import convert_to_safetensors

            convert_to_safetensors(root / "hallo" / "net.pth")
        out = subprocess.run([sys.executable, __file__, "--child", str(root), "--dtype", args.dtype],
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        result = json.loads(out)
        name = "net.safetensors" if args.safetensors else "net.pth"
        size = (root / "hallo" / name).stat().st_size
        result.update({"model": "full" if args.full else "tiny", "dtype": args.dtype,
                       "format": "safetensors" if args.safetensors else "pth", "checkpoint_mb": round(size / 2**20)})
        print(json.dumps(result))


if __name__ == "__main__":
    main()
