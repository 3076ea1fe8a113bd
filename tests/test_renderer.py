"""Load once, render many: a ``Renderer``'s jobs give the frames each job gets rendered alone.

Frames are compared as the sampler hands them to the encoder (``on_frames``): libx264's threaded encode of
tiny 64-pixel frames is not reproducible from one run to the next, even for identical frames.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from cli_helpers import add_face_task, short_speech
from hallo_nodes.pipeline.render import Renderer, RenderOptions, render_file
from hallo_nodes.pipeline.sampling.sampler import SamplerSettings


@pytest.fixture()
def models(tiny_model_dir: Path, assets: Path) -> Path:
    return add_face_task(tiny_model_dir, assets)


class Frames(list):
    """Collects the frames a render writes; ``array()`` stacks them."""

    def __call__(self, frames: np.ndarray) -> None:
        self.append(frames.copy())

    def array(self) -> np.ndarray:
        return np.concatenate(self)


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_one_load_renders_many_jobs_with_their_solo_frames(models: Path, assets: Path, tmp_path: Path) -> None:
    voice = short_speech(assets, tmp_path / "voice.wav", seconds=0.8)
    first = RenderOptions(width=64, height=64, sampler=SamplerSettings(steps=2, seed=3))
    second = RenderOptions(width=64, height=64, sampler=SamplerSettings(steps=2, seed=9, lip_weight=1.5))
    renderer = Renderer(models)
    seen = {name: Frames() for name in ("a", "b", "a_alone", "b_alone")}
    a = renderer.render(assets / "portraits" / "statue.jpg", voice, tmp_path / "a.mp4", first, on_frames=seen["a"])
    b = renderer.render(assets / "portraits" / "photo_woman.jpg", voice, tmp_path / "b.mp4", second,
                        on_frames=seen["b"])
    assert renderer.loads == 1
    assert a["load"] > 0 and b["load"] < a["load"] / 10  # the second job found the networks loaded
    assert a["frames"] == b["frames"] == 20 == decoded_frames(tmp_path / "b.mp4")
    render_file(assets / "portraits" / "photo_woman.jpg", voice, models, tmp_path / "b_alone.mp4", second,
                on_frames=seen["b_alone"])
    render_file(assets / "portraits" / "statue.jpg", voice, models, tmp_path / "a_alone.mp4", first,
                on_frames=seen["a_alone"])
    assert np.array_equal(seen["b"].array(), seen["b_alone"].array())
    assert np.array_equal(seen["a"].array(), seen["a_alone"].array())
    assert not np.array_equal(seen["a"].array(), seen["b"].array())


def test_other_networks_replace_the_loaded_ones(models: Path, assets: Path, tmp_path: Path) -> None:
    voice = short_speech(assets, tmp_path / "voice.wav")
    options = RenderOptions(width=64, height=64, sampler=SamplerSettings(steps=1))
    renderer = Renderer(models)
    a, c = Frames(), Frames()
    renderer.render(assets / "portraits" / "statue.jpg", voice, tmp_path / "a.mp4", options, on_frames=a)
    renderer.render(assets / "portraits" / "statue.jpg", voice, tmp_path / "b.mp4",
                    RenderOptions(width=64, height=64, variant="hallo2", sampler=SamplerSettings(steps=1)))
    renderer.render(assets / "portraits" / "statue.jpg", voice, tmp_path / "c.mp4", options, on_frames=c,
                    metadata={"hallo_job": "job-c"})
    assert renderer.loads == 3
    assert np.array_equal(a.array(), c.array())
    with av.open(str(tmp_path / "c.mp4")) as container:  # the tags travel with the video
        assert container.metadata["hallo_job"] == "job-c"
