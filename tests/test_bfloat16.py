"""bfloat16 on the CPU: every pipeline runs in `torch.bfloat16` (after `.to(dtype)` and from `from_pretrained(...,
torch_dtype=...)`), every weight is then bfloat16, and the video is the float32 one up to bfloat16 rounding.

The tiny random models of each pipeline's own tests are used; the float32 run is the reference. bfloat16 keeps 8 bits
of mantissa (relative rounding 2^-9 = 0.2%), so over a few steps of tiny untrained models the latents agree to a few
percent of their scale while a broken dtype path (a tensor left in float32 meeting a bfloat16 weight, a scheduler
losing the noise, NaN) fails outright.
"""

from __future__ import annotations

import pytest
import torch
from conftest import assert_bfloat16_matches
from test_magicvideo import make_pipe as make_magicvideo
from test_pipeline_imagen_video import make_pipe as make_imagen_video
from test_pipeline_videofusion import make_pipe as make_videofusion
from test_videogen import make_pipe as make_videogen

from diffusers_video.training.stand_in import build_t5_text_encoder, build_t5_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "a red circle moving right"


@pytest.fixture(scope="module")
def t5_models():
    tokenizer = build_t5_tokenizer(model_max_length=8)
    return tokenizer, build_t5_text_encoder(len(tokenizer), d_model=16, num_layers=1)


def _calls():
    """(name, builder, call arguments) of every text-to-video pipeline."""
    common = dict(prompt=PROMPT, num_inference_steps=2, output_type="latent")
    return [
        ("videofusion", lambda _: make_videofusion(), dict(common, num_frames=4, guidance_scale=4.0)),
        ("imagen_video", make_imagen_video, dict(common, num_frames=4, height=16, width=16)),
        ("magicvideo", lambda _: make_magicvideo(), dict(common, num_keyframes=3, guidance_scale=4.0)),
        ("videogen", lambda _: make_videogen(), dict(common, num_frames=3, guidance_scale=4.0)),
    ]


def _run(pipe, arguments, seed=0):
    return pipe(generator=torch.Generator().manual_seed(seed), **arguments).frames


@pytest.mark.parametrize("name, build, arguments", _calls(), ids=[c[0] for c in _calls()])
def test_every_pipeline_runs_in_bfloat16_after_to_and_from_pretrained(name, build, arguments, t5_models, tmp_path):
    pipe = build(t5_models)
    reference = _run(pipe, arguments)
    assert reference.dtype == torch.float32
    pipe.save_pretrained(tmp_path)
    pipe = pipe.to(torch.bfloat16)
    assert_bfloat16_matches(_run(pipe, arguments), reference)
    loaded = type(pipe).from_pretrained(tmp_path, dtype=torch.bfloat16)
    loaded.set_progress_bar_config(disable=True)
    for component_name, component in loaded.components.items():
        if isinstance(component, torch.nn.Module):
            dtypes = {p.dtype for p in component.parameters()}
            assert dtypes == {torch.bfloat16}, (component_name, dtypes)
    low = _run(loaded, arguments)
    torch.testing.assert_close(low, _run(pipe, arguments), rtol=0, atol=0)  # loading in bfloat16 == casting
    frames = _run(loaded, dict(arguments, output_type="np"))  # decoded and handed back as float32 in [0, 1]
    assert frames.dtype.name == "float32" and 0 <= frames.min() and frames.max() <= 1
