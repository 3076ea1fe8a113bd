"""The mp4 writer's container: tags as ComfyUI writes them, the index before the media data."""

from __future__ import annotations

import json
from pathlib import Path

import av
import torch
from hallo_nodes.pipeline.video.writer import VideoWriter


def top_level_boxes(path: Path) -> list[str]:
    data, pos, names = path.read_bytes(), 0, []
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        names.append(data[pos + 4:pos + 8].decode("latin-1"))
        if size < 8:
            break
        pos += size
    return names


def test_tags_are_mp4_keys_and_the_index_comes_first(tmp_path: Path) -> None:
    tags = {"workflow": json.dumps({"nodes": [{"id": 1, "type": "Hallo…"}]}), "prompt": json.dumps({"1": {}})}
    path = tmp_path / "tagged.mp4"
    with VideoWriter(path, 25.0, 64, 64, metadata=tags) as writer:
        writer.write(torch.rand(3, 64, 64, 3))
    with av.open(str(path)) as c:
        stored = dict(c.metadata)
    assert {k: stored[k] for k in tags} == tags
    assert b"keys" in path.read_bytes()  # QuickTime 'mdta' keys: what the ComfyUI frontend parses
    boxes = top_level_boxes(path)
    assert boxes.index("moov") < boxes.index("mdat"), boxes  # plays while loading; tags within the first bytes
