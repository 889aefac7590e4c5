"""`torch.compile(model, fullgraph=True)` for every model of the package: no graph break, the eager output, and no
recompilation between denoising steps.

As diffusers tests its own models (`TorchCompileTesterMixin.test_torch_compile_recompilation_and_graph_break`):
`fullgraph=True` turns any graph break into an error, and `torch._dynamo.config.error_on_recompile` turns any
recompilation into one. Compiles are also counted (`CompileCounterWithBackend`: one graph, with operations in it).
Timesteps come as a denoising loop passes them: the 0-d tensors of `scheduler.timesteps`, one after the other; the
same sample at every step, so that each step's output differs only through the timestep and a graph that had frozen
the first timestep in would not match eager. Backends "eager" and "aot_eager" (no code generation), tiny models,
`torch._dynamo.reset()` around every test.

Two recompilations of `UNet3DModel` were found this way and fixed: a fresh model recompiled at the second step (the
automatic feed-forward chunking set an attribute inside the first compiled call; it now changes nothing while
compiling), and python-number timesteps recompiled at every step (`scalar_tensor` used `torch.as_tensor(value)`,
which dynamo specialises on the value; it now builds `torch.tensor([value])` as diffusers' UNets do).
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from conftest import tiny_vae
from diffusers import DDIMScheduler
from torch._dynamo.testing import CompileCounterWithBackend

from diffusers_video import UNet3DModel
from diffusers_video.models.flow_upsampler import FlowTemporalUpsampler
from diffusers_video.models.i2vgen_xl_content import I2VGenXLContentEncoder
from diffusers_video.models.video_vae import AutoencoderKLVideo

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT_DIM = 8
LAYOUTS = {
    "default": dict(),  # the sequential layout: temporal attention after each spatial transformer
    "modelscope": dict(temporal_layout="modelscope", frame_position_encoding=None),
    "parallel": dict(  # MagicVideo: S-Attn(z) + T-Attn(z), per-convolution adaptors, directed and causal, an fps
        temporal_layout="parallel",
        frame_adaptor="conv",
        temporal_attention="directed",
        temporal_conv_padding="causal",
        scalar_conditions=("fps",),
    ),
}


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _perturb(model: torch.nn.Module, seed: int = 1, scale: float = 0.05) -> torch.nn.Module:
    """Random weights everywhere (the zero-initialised temporal outputs too), so that every layer counts."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * scale)
    return model.eval()


def compiled(fn, backend: str = "eager"):
    """`torch.compile(fn, fullgraph=True)` through a compile counter."""
    counter = CompileCounterWithBackend(backend)
    return torch.compile(fn, fullgraph=True, backend=counter), counter


def no_recompilation():
    return torch._dynamo.config.patch(error_on_recompile=True)


def denoising_timesteps(steps: int = 4) -> list[torch.Tensor]:
    """The timesteps of a denoising loop as pipelines pass them: 0-d views into `scheduler.timesteps`."""
    scheduler = DDIMScheduler()
    scheduler.set_timesteps(steps)
    return list(scheduler.timesteps)


def tiny_unet(blocks: int = 2, **temporal) -> UNet3DModel:
    """Two blocks (one with attention, one without, a downsampler between) or, to trace faster, one."""
    torch.manual_seed(0)
    config = dict(
        sample_size=8, block_out_channels=(8, 16)[:blocks],
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D")[:blocks],
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")[-blocks:], layers_per_block=1, attention_head_dim=2,
        cross_attention_dim=TEXT_DIM, norm_num_groups=4, temporal_attention_head_dim=4,
    )  # fmt: skip
    config.update(temporal)
    return _perturb(UNet3DModel(**config))


def unet_inputs(batch: int = 2, frames: int = 3):
    """A CFG-sized batch of one noisy sample and its text, kept over the steps."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, 4, frames, 8, 8, generator=g), torch.randn(batch, 5, TEXT_DIM, generator=g)


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------------- UNet3DModel


@pytest.mark.parametrize("layout, backend", [("default", "eager"), ("modelscope", "eager"), ("parallel", "aot_eager")])
def test_unet_compiles_to_one_graph_that_equals_eager_at_every_denoising_step(layout, backend):
    model = tiny_unet(**LAYOUTS[layout])
    sample, text = unet_inputs()
    conds = {"scalar_conds": {"fps": 8.0}} if model.config.scalar_conditions else {}  # a number, as MagicVideo passes
    timesteps = denoising_timesteps()
    with torch.no_grad():
        # eager first: the references, and the model's automatic chunk size set (its first call in a process sets it,
        # which a compiled first call would recompile for: `test_a_fresh_compiled_unet_...` below)
        expected = [model(sample, t, text, **conds, return_dict=False)[0] for t in timesteps]
        unet, counter = compiled(model, backend)
        with no_recompilation():
            for t, reference in zip(timesteps, expected):
                close(unet(sample, t, text, **conds, return_dict=False)[0], reference)
    assert counter.frame_count == 1 and counter.op_count > 100  # one whole-model graph for every step
    # each step's output depends on its timestep, so matching them all means the graph reads it
    assert min((expected[i] - expected[i + 1]).abs().max() for i in range(len(expected) - 1)) > 1e-4


def test_a_fresh_compiled_unet_does_not_recompile_at_the_second_step():
    model = tiny_unet(blocks=1)
    sample, text = unet_inputs()
    unet, counter = compiled(model)
    with torch.no_grad(), no_recompilation():
        for t in denoising_timesteps(2):
            unet(sample, t, text)
    assert counter.frame_count == 1


def test_python_number_timesteps_do_not_recompile_the_unet_at_every_step():
    """Ints, then floats, as a loop over a list of numbers passes them: dynamo may compile once more when a number
    first changes (it then makes it dynamic) and once when its type changes, never at every step."""
    model = tiny_unet(blocks=1)
    sample, text = unet_inputs()
    with torch.no_grad():
        model(sample, torch.tensor(0), text)  # eager first, as above
        unet, counter = compiled(model)
        for values in ([999, 749, 499, 249], [999.5, 749.5, 499.5, 249.5]):
            first, rest = (values[:2], values[2:]) if counter.frame_count == 0 else (values[:1], values[1:])
            for t in first:
                close(unet(sample, t, text).sample, model(sample, t, text).sample)
            with no_recompilation():
                for t in rest:
                    close(unet(sample, t, text).sample, model(sample, t, text).sample)
    assert counter.frame_count <= 3  # diffusers' UNet2DConditionModel: 3 (the first int, a dynamic int, a float)


# ------------------------------------------------------------------------------------------------ the other models


@pytest.fixture
def video_vae() -> AutoencoderKLVideo:
    """Directed temporal attention after the mid block and in every up block, random temporal weights."""
    model = AutoencoderKLVideo.from_vae2d(
        tiny_vae(), temporal_attention="directed", temporal_attention_up_blocks=True, temporal_attention_head_dim=8
    )
    return _perturb(model, scale=0.1)


def _videos(shape, count: int = 3, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g) for _ in range(count)]


@torch.no_grad()
def test_video_vae_encode_compiles_to_one_graph_that_equals_eager(video_vae):
    encode, counter = compiled(lambda x: video_vae.encode(x).latent_dist.parameters)
    with no_recompilation():
        for video in _videos((1, 3, 3, 8, 8)):  # (B, C, F, H, W)
            close(encode(video), video_vae.encode(video).latent_dist.parameters)
    assert counter.frame_count == 1 and counter.op_count > 10


@pytest.mark.parametrize("decode_chunk_size", [None, 2])
@torch.no_grad()
def test_video_vae_decode_compiles_to_one_graph_that_equals_eager(video_vae, decode_chunk_size):
    """`vae.decode = torch.compile(vae.decode)`, as diffusers users compile decoders; whole-clip and chunked."""
    video_vae.decode = torch.compile(
        video_vae.decode, fullgraph=True, backend=(counter := CompileCounterWithBackend("eager"))
    )
    eager = type(video_vae).decode.__get__(video_vae)
    with no_recompilation():
        for z in _videos((1, 4, 3, 4, 4)):
            actual = video_vae.decode(z, decode_chunk_size=decode_chunk_size).sample
            close(actual, eager(z, decode_chunk_size=decode_chunk_size).sample)
            assert actual.shape == (1, 3, 3, 8, 8)
    assert counter.frame_count == 1 and counter.op_count > 10


@torch.no_grad()
def test_flow_temporal_upsampler_compiles_to_one_graph_that_equals_eager():
    torch.manual_seed(0)
    model = _perturb(FlowTemporalUpsampler(in_channels=4, block_out_channels=(8, 16), refine_channels=8), scale=0.1)
    upsampler, counter = compiled(model)
    with no_recompilation():
        for video in _videos((1, 4, 3, 8, 8)):
            actual, expected = upsampler(video, return_dict=False), model(video, return_dict=False)
            for a, e in zip(actual, expected):  # sample, middle, flows, mask, residual
                close(a, e)
            assert expected[2].abs().max() > 1e-3  # the estimated flows are not zero: warping is in the graph
    assert counter.frame_count == 1 and counter.op_count > 10


@torch.no_grad()
def test_i2vgen_xl_content_encoder_compiles_to_one_graph_that_equals_eager():
    torch.manual_seed(0)
    model = _perturb(
        I2VGenXLContentEncoder(
            latent_channels=4,
            conditioning_channels=4,
            cross_attention_dim=16,
            image_embed_dim=8,
            num_image_tokens=2,
            hidden_dim=16,
            latent_token_grid=4,
            temporal_encoder_heads=2,
        )  # fmt: skip
    )
    encoder, counter = compiled(model)
    g = torch.Generator().manual_seed(0)
    with no_recompilation():
        for _ in range(3):  # new images and texts, as one pipeline call after another
            inputs = (torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 8, generator=g), 3)
            text = torch.randn(2, 5, 16, generator=g)
            actual, expected = encoder(*inputs, text, return_dict=False), model(*inputs, text, return_dict=False)
            close(actual[0], expected[0])  # image latents (B, C, F, h, w)
            close(actual[1], expected[1])  # context [text | latent tokens | image tokens]
            assert actual[1].shape == (2, 5 + model.num_latent_tokens + 2, 16)
    assert counter.frame_count == 1 and counter.op_count > 10


# ------------------------------------------------------------------------------------------------------ a pipeline


@torch.no_grad()
def test_a_pipeline_with_a_compiled_unet_makes_the_same_frames_without_recompiling():
    from test_magicvideo import make_pipe

    pipe = make_pipe(interpolation=False, super_resolution=False)  # keyframes: parallel layout, conv adaptors, fps

    def generate():
        return pipe(
            prompt="a red circle", num_keyframes=3, num_inference_steps=3, guidance_scale=4.0, output_type="np",
            generator=torch.Generator().manual_seed(0),
        ).frames  # fmt: skip

    expected = generate()  # eager
    original = pipe.unet
    pipe.unet = torch.compile(pipe.unet, fullgraph=True, backend=(counter := CompileCounterWithBackend("eager")))
    assert pipe.unet is not original  # the pipeline calls the compiled module
    with no_recompilation():
        frames = generate()
    assert counter.frame_count == 1  # three guided steps, one graph
    assert frames.shape == expected.shape == (1, 3, 8, 8, 3)
    # eager runs short temporal attention as explicit matmuls, compiled code as SDPA: equal to float32 rounding
    torch.testing.assert_close(frames, expected, rtol=0, atol=1e-5)
    assert frames.std() > 1e-3  # real frames, not a constant
