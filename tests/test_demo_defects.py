"""The defects a viewer saw in the committed VideoFusion demo stay fixed (issue 23), read by the scorer's measures.

Before the fix the key frame (the middle one, drawn by the image model alone) was the frame furthest off the shape's
path in 59 of 64 held-out videos, 0.156 of the frame off the line through the other frames on average; a 16-frame
video blended from 8-frame windows stepped back at every window. These tests generate a few held-out captions with the
committed demo and would fail on either defect.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffusers_video import VideoFusionPipeline
from diffusers_video.data.shapes import ShapesWorld
from diffusers_video.data.shapes_scorer import ShapesScorer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def demo() -> VideoFusionPipeline:
    pipe = VideoFusionPipeline.from_pretrained("pipelines/videofusion/demo", torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def captions(count: int) -> list[str]:
    world = ShapesWorld(height=32, width=32, num_frames=8, split="heldout")
    return [world.scene((0, 0, index)).caption for index in range(count)]


def scores(pipe, count: int, **kwargs) -> list:
    scorer = ShapesScorer()
    result = []
    for index, prompt in enumerate(captions(count)):
        video = pipe(prompt, num_inference_steps=25, guidance_scale=4.0, generator=torch.Generator().manual_seed(index),
                     **kwargs).frames[0]  # fmt: skip
        result.append(scorer.score(video, prompt))
    return result


def test_the_key_frame_stays_on_the_path_of_the_others(demo):
    assert demo.default_num_frames == 8 and demo.key_frame_estimate == "residual"
    found = scores(demo, 4)
    assert all(score.all_ok for score in found)
    assert np.mean([score.path_deviation_loo_max for score in found]) < 0.08  # was 0.156 (64 videos)
    assert sum(score.worst_frame == 4 for score in found) <= 1  # the middle frame was the worst in 92%


@pytest.mark.slow
def test_a_video_twice_the_trained_length_keeps_moving_on(demo):
    found = scores(demo, 4, num_frames=16)
    assert all(score.direction_ok for score in found)
    assert np.mean([score.backward_jump_max for score in found]) < 0.08  # blended windows: 0.21
