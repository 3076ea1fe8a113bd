"""The full-size network, built on the meta device, has exactly the released net.pth keys and shapes."""

from __future__ import annotations

import ast

import pytest
from hallo_nodes.pipeline.models.architecture import HalloArchitecture
from hallo_nodes.pipeline.models.net import build_net
from hallo_nodes.pipeline.models.unets import UNUSED_MOTION_BLOCKS

from .conftest import KEY_LIST


def released_keys() -> dict[str, tuple[int, ...]]:
    """name -> shape of every tensor in the released hallo/net.pth (tests/fixtures/net_pth_keys.tsv)."""
    keys = {}
    for line in KEY_LIST.read_text().splitlines():
        name, shape = line.split("\t")
        keys[name] = tuple(ast.literal_eval(shape))
    return keys


@pytest.fixture(scope="module")
def meta_net():
    return build_net(HalloArchitecture(), "meta")


def test_full_size_keys_and_shapes_match_released_list(meta_net) -> None:
    released = released_keys()
    assert len(released) == 2656
    ours = {k: tuple(v.shape) for k, v in meta_net.state_dict().items()}
    assert sorted(set(released) - set(ours)) == []
    assert sorted(set(ours) - set(released)) == []
    wrong = {k: (ours[k], released[k]) for k in released if ours[k] != released[k]}
    assert wrong == {}


def test_meta_build_allocates_nothing(meta_net) -> None:
    assert all(p.is_meta for p in meta_net.parameters())
    n_params = sum(p.numel() for p in meta_net.parameters())
    n_buffers = sum(b.numel() for b in meta_net.buffers())
    # the released file: ~2424.8 M values in net.pth (parameters plus the pos_encoder tables)
    assert abs((n_params + n_buffers) / 1e6 - 2424.8) < 0.5


def test_prefix_counts_match_released_file(meta_net) -> None:
    counts: dict[str, int] = {}
    for k in meta_net.state_dict():
        counts[k.split(".")[0]] = counts.get(k.split(".")[0], 0) + 1
    assert counts == {"reference_unet": 682, "denoising_unet": 1946, "face_locator": 16, "imageproj": 4,
                      "audioproj": 8}


def test_unused_motion_modules_can_be_dropped(meta_net) -> None:
    import copy

    net = copy.deepcopy(meta_net)
    before = sum(p.numel() for p in net.parameters())
    net.denoising_unet.drop_unused_motion_modules()
    after = sum(p.numel() for p in net.parameters())
    # down3 72.3 M + up0 108.5 M motion parameters are dead weight
    assert abs((before - after) / 1e6 - 180.8) < 0.5
    keys = net.state_dict().keys()
    assert not any(f"{b}.motion_modules" in k for k in keys for b in UNUSED_MOTION_BLOCKS)
