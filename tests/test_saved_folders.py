"""Folders saved before the shared denoising loop and the `hub/` split keep loading and generate the same frames.

`tests/data/saved_by_e44bf79/` was written by `save_pretrained` of main at commit e44bf79 (before this package's
modules moved): a tiny VideoFusion pipeline with a base generator, and a two-stage Imagen Video cascade (a distilled
base stage, a DDIM super-resolution stage), with the frames that code generated (`expected_frames.npz`). Module paths in
`model_index.json` and the remote-code shims are part of the saved format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_pipeline_videofusion import assert_close_relative

from diffusers_video import ImagenVideoPipeline, VideoFusionPipeline
from diffusers_video.pipelines.pipeline_utils import VideoDiffusionPipeline

FOLDER = Path(__file__).parent / "data" / "saved_by_e44bf79"


pytestmark = pytest.mark.usefixtures("one_thread")


def expected(name: str) -> np.ndarray:
    return np.load(FOLDER / "expected_frames.npz")[name]


@pytest.mark.parametrize("loader", [VideoFusionPipeline, VideoDiffusionPipeline])
def test_a_videofusion_folder_saved_by_the_old_main_generates_the_same_frames(loader):
    pipe = loader.from_pretrained(FOLDER / "videofusion")
    assert type(pipe) is VideoFusionPipeline
    pipe.set_progress_bar_config(disable=True)
    frames = pipe("a red circle", num_frames=4, num_inference_steps=3, guidance_scale=4.0, output_type="latent",
                  generator=torch.Generator().manual_seed(0)).frames  # fmt: skip
    # float32 rounding relative to the largest latent (another kernel, e.g. the temporal convolution run as a 2D
    # one, moves them by ~1e-6 of their scale; a changed computation by O(1))
    assert_close_relative(frames, torch.from_numpy(expected("videofusion")))


@pytest.mark.parametrize("loader", [ImagenVideoPipeline, VideoDiffusionPipeline])
def test_an_imagen_video_folder_saved_by_the_old_main_generates_the_same_frames(loader):
    pipe = loader.from_pretrained(FOLDER / "imagen_video")
    assert type(pipe) is ImagenVideoPipeline and pipe.num_stages == 2
    pipe.set_progress_bar_config(disable=True)
    frames = pipe("a red circle", num_frames=2, height=16, width=16, num_inference_steps=[2, 3], guidance_scale=3.0,
                  output_type="latent", generator=torch.Generator().manual_seed(0)).frames  # fmt: skip
    # float32 rounding relative to the largest latent (another kernel, e.g. the temporal convolution run as a 2D
    # one, moves them by ~1e-6 of their scale; a changed computation by O(1))
    assert_close_relative(frames, torch.from_numpy(expected("imagen_video")))
    # its distilled base records no step count of its own: the default is its distillation grid's 8 steps
    assert pipe.default_num_inference_steps(0) == 8 and pipe.default_num_inference_steps(1) == 50
