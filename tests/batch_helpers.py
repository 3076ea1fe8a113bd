"""Helpers for the hallo-batch tests: a jobs folder with real portraits and speech, single-render digests."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from cli_helpers import short_speech
from PIL import Image

#: Options every test job renders with: the smallest frame the UNet takes, 2 steps.
FAST = ["--size", "64", "--steps", "2"]


def workspace(root: Path, assets: Path) -> Path:
    """``root`` with two portraits, a face-less grey image, 0.4 s and 0.8 s of real speech, and broken audio."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("statue.jpg", "photo_woman.jpg"):
        shutil.copyfile(assets / "portraits" / name, root / name)
    Image.new("RGB", (256, 256), (128, 128, 128)).save(root / "grey.png")
    short_speech(assets, root / "short.wav", seconds=0.4)
    short_speech(assets, root / "longer.wav", seconds=0.8)
    (root / "broken.wav").write_bytes(b"RIFF not really a wave file" * 40)
    return root


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run_batch(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``hallo-batch`` in this process: (exit status, stderr)."""
    from hallo_nodes.pipeline.batch.cli import main

    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def results(folder: Path) -> dict[int, dict]:
    """The results table by row number."""
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    return {r["row"]: r for r in rows}


def solo_digest(image: Path, audio: Path, models: Path, out: Path, *argv: str) -> str:
    """SHA-256 of the frames ``hallo-render`` (its own option parsing, one render) writes for one job."""
    from hallo_nodes.pipeline import cli
    from hallo_nodes.pipeline.render import render_file

    args = cli.build_parser().parse_args(["--image", str(image), "--audio", str(audio), "--models", str(models),
                                          "--out", str(out), *argv])
    digest = hashlib.sha256()
    render_file(args.image, args.audio, args.models, args.out, cli._options(args),
                on_frames=lambda frames: digest.update(np.ascontiguousarray(frames).tobytes()))
    return digest.hexdigest()


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def identity(path: Path) -> tuple[int, int, int]:
    """(inode, size, mtime): the same file, not rewritten (reading it changes only its access time)."""
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


def partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.partial*"))
