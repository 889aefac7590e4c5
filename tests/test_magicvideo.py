"""MagicVideo: per-convolution frame adaptors, the parallel layout, causality through the whole UNet, and the pipeline.

The model tests compare with independent references: diffusers' own `ResnetBlock2D.forward` with forward hooks for the
adaptors, a written-out directed temporal attention for the parallel layout, the image UNet frame by frame for the
identity at init. Causality is exact: changing input frame k leaves every output frame before k bit for bit equal.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import tiny_sd21_unet2d_config
from diffusers.models.resnet import ResnetBlock2D

from diffusers_video import UNet3DModel
from diffusers_video.models.frame_adaptors import AdaptedResnetBlock2D, ConvFrameAdaptors
from diffusers_video.models.unet_3d import temporal_parameter_names

pytestmark = pytest.mark.usefixtures("one_thread")

B, F, H, W = 2, 5, 16, 16
MAGICVIDEO = dict(frame_adaptor="conv", temporal_attention="directed", temporal_conv_padding="causal")


def _inputs(frames=F, batch=B, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, 4, frames, H, W, generator=g),
        torch.tensor([10, 700][:batch]),
        torch.randn(batch, 7, 24, generator=g),
    )


def _frame_by_frame(unet2d, sample, timestep, text):
    batch, channels, frames, height, width = sample.shape
    flat = sample.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)
    out = unet2d(flat, timestep.repeat_interleave(frames), text.repeat_interleave(frames, 0)).sample
    return out.reshape(batch, frames, -1, height, width).permute(0, 2, 1, 3, 4)


def _randomize_temporal(model, scale=0.2, seed=1):
    g = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in temporal_parameter_names(model):
            params[name].add_(torch.randn(params[name].shape, generator=g) * scale)


# ---------------------------------------------------------------------------------------------- frame adaptors


@pytest.mark.parametrize("layout", ["default", "parallel"])
def test_inflated_magicvideo_unet_equals_the_image_unet_frame_by_frame(unet2d, layout):
    unet3d = UNet3DModel.from_unet2d(unet2d, temporal_layout=layout, temporal_conv=True, **MAGICVIDEO).eval()
    sample, timestep, text = _inputs()
    with torch.no_grad():
        expected = _frame_by_frame(unet2d, sample, timestep, text)
        out = unet3d(sample, timestep, text).sample
    assert (out - expected).abs().max().item() <= 1e-5
    # the spatial weights load by name: every image weight is in the video UNet, unchanged
    state3d = unet3d.state_dict()
    assert all(torch.equal(value, state3d[key]) for key, value in unet2d.state_dict().items())


def test_stable_diffusion_weights_load_by_name_into_a_magicvideo_unet(unet2d, tmp_path):
    from diffusers_video.conversion import sd

    unet2d.save_pretrained(tmp_path / "sd" / "unet")
    options = dict(temporal_layout="parallel", temporal_conv=False, scalar_conditions=("fps",), **MAGICVIDEO)
    summary = sd.convert(tmp_path / "sd", tmp_path / "converted", temporal_config=options)
    converted = UNet3DModel.from_pretrained(tmp_path / "converted").eval()
    inflated = UNet3DModel.from_pretrained_2d(str(tmp_path / "sd"), **options).eval()
    assert summary.temporal_parameters == sum(p.numel() for n, p in converted.named_parameters() if "frame_ad" in n
                                              or "temp_att" in n or "scalar_emb" in n)  # fmt: skip
    sample, timestep, text = _inputs()
    conds = {"fps": torch.tensor([8.0, 24.0])}
    with torch.no_grad():
        expected = _frame_by_frame(unet2d, sample, timestep, text)
        for model in (converted, inflated):
            assert (model(sample, timestep, text, scalar_conds=conds).sample - expected).abs().max() <= 1e-5


def test_conv_adaptors_sit_after_each_resnet_convolution_and_are_the_identity_at_init(unet2d):
    unet3d = UNet3DModel.from_unet2d(unet2d, frame_adaptor="conv").eval()
    blocks = [*unet3d.down_blocks, unet3d.mid_block, *unet3d.up_blocks]
    resnets = [resnet for block in blocks for resnet in block.resnets]
    adaptors = [resnet.frame_adaptors for resnet in resnets]
    assert all(isinstance(r, AdaptedResnetBlock2D) for r in resnets) and not any(
        hasattr(b, "frame_adaptors") for b in blocks
    )
    # one pair per resnet: 4 x 2 down + 2 mid + 4 x 3 up = 22 resnets, 44 adaptors, one per 2D convolution
    assert len(resnets) == len(adaptors) == 22
    assert sum(isinstance(m, ConvFrameAdaptors) for m in unet3d.modules()) == 22
    for resnet, adaptor in zip(resnets, adaptors):
        assert adaptor.conv1.scale.shape == (unet3d.config.max_frames, resnet.conv1.out_channels)
        assert adaptor.conv2.scale.shape == (unet3d.config.max_frames, resnet.conv2.out_channels)
    # 2 * max_frames * channels parameters per convolution: scale and shift
    expected = sum(2 * 2 * unet3d.config.max_frames * r.conv1.out_channels for r in resnets)
    assert sum(p.numel() for a in adaptors for p in a.parameters()) == expected

    resnet = unet3d.down_blocks[1].resnets[0]  # 16 -> 32 channels: it has a shortcut convolution
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B * F, resnet.in_channels, 8, 8, generator=g)
    temb = torch.randn(B * F, resnet.time_emb_proj.in_features, generator=g)
    with torch.no_grad():
        plain = ResnetBlock2D.forward(resnet, x, temb)  # diffusers' own forward
        assert torch.equal(resnet(x, temb, F), plain)  # identity at init, bit for bit
        assert torch.equal(resnet(x, temb), plain)  # without frames: exactly ResnetBlock2D


def test_conv_adaptors_modulate_each_convolution_output_per_frame(unet2d):
    """Against diffusers' own `ResnetBlock2D.forward`, with the modulation put on `conv1` and `conv2` by hooks."""
    unet3d = UNet3DModel.from_unet2d(unet2d, frame_adaptor="conv").eval()
    _randomize_temporal(unet3d, scale=0.5)
    resnet = unet3d.down_blocks[1].resnets[0]
    adaptor = resnet.frame_adaptors

    def modulate(layer):
        def hook(module, args, output):  # output (B*F, C, H, W); frame f of video b is row b * F + f
            frames = torch.arange(output.shape[0]) % F
            scale, shift = layer.scale[frames, :, None, None], layer.shift[frames, :, None, None]
            return output * (1 + scale) + shift

        return hook

    g = torch.Generator().manual_seed(0)
    x = torch.randn(B * F, resnet.in_channels, 8, 8, generator=g)
    temb = torch.randn(B * F, resnet.time_emb_proj.in_features, generator=g)
    handles = [resnet.conv1.register_forward_hook(modulate(adaptor.conv1))]
    handles.append(resnet.conv2.register_forward_hook(modulate(adaptor.conv2)))
    with torch.no_grad():
        expected = resnet(x, temb)
        for handle in handles:
            handle.remove()
        plain = resnet(x, temb)
        out = resnet(x, temb, F)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert (out - plain).abs().max() > 1e-2  # the adaptors do change the resnet


@pytest.mark.parametrize("frame_adaptor", ["conv", True])
def test_text_modulated_adaptors_start_as_the_identity_and_scale_by_text_times_frame_position(unet2d, frame_adaptor):
    """`frame_adaptor_text_modulation`: the inflated UNet still equals the image UNet; once the projection is set, each
    adaptor's scale and shift of frame f are its own plus the projection of the pooled text combined with the frame
    basis (checked against a written-out formula), different texts then give different outputs, and at init the
    projection already has a gradient (the text-times-position path is open at first order)."""
    from diffusers_video.models.frame_adaptors import FrameAdaptor, frame_basis

    options = dict(frame_adaptor=frame_adaptor, temporal_conv=False, temporal_layout="parallel")
    unet3d = UNet3DModel.from_unet2d(unet2d, frame_adaptor_text_modulation=True, **options).eval()
    sample, timestep, text = _inputs()
    with torch.no_grad():
        assert (
            unet3d(sample, timestep, text).sample - _frame_by_frame(unet2d, sample, timestep, text)
        ).abs().max() <= 1e-5
    adaptors = [m for m in unet3d.modules() if isinstance(m, FrameAdaptor)]
    assert adaptors and all(a.cond_proj is not None for a in adaptors)

    unet3d.train()
    unet3d(sample, timestep, text).sample.square().mean().backward()
    assert all(a.cond_proj.weight.grad.abs().max() > 0 for a in adaptors)

    adaptor = adaptors[0]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in adaptor.parameters():
            param.copy_(torch.randn(param.shape, generator=g) * 0.3)
        channels, frames = adaptor.scale.shape[1], F
        x, cond = torch.randn(B * F, channels, 4, 4, generator=g), torch.randn(B, 24, generator=g)
        coefficients = (cond @ adaptor.cond_proj.weight.T + adaptor.cond_proj.bias).reshape(B, 2 * channels, 3)
        modulation = torch.einsum("bcp,fp->bfc", coefficients, frame_basis(frames))  # (B, F, 2C)
        scale = adaptor.scale[:frames] + modulation[:, :, :channels]
        shift = adaptor.shift[:frames] + modulation[:, :, channels:]
        expected = x.reshape(B, F, channels, 16) * (1 + scale[..., None]) + shift[..., None]
        torch.testing.assert_close(adaptor(x, F, cond), expected.reshape(x.shape), rtol=0, atol=1e-5)
        other = adaptor(x, F, torch.randn(B, 24, generator=g))
        assert (other - adaptor(x, F, cond)).abs().max() > 1e-2
    with pytest.raises(ValueError, match=r"text-modulated: `cond` must be `\(batch=2, 24\)`"):
        adaptor(x, F)
    with pytest.raises(ValueError, match="`frame_adaptor_text_modulation=True` needs frame adaptors"):
        UNet3DModel.from_unet2d(unet2d, frame_adaptor_text_modulation=True)


def test_old_frame_adaptor_values_and_configs_still_load(unet2d, tmp_path):
    per_resnet = UNet3DModel.from_unet2d(unet2d, frame_adaptor=True)
    assert not any(isinstance(m, ConvFrameAdaptors) for m in per_resnet.modules())
    per_resnet.save_pretrained(tmp_path)
    config_file = tmp_path / "config.json"
    config = json.loads(config_file.read_text())
    del config["temporal_conv_padding"]  # a folder saved before the key existed
    config_file.write_text(json.dumps(config))
    loaded = UNet3DModel.from_pretrained(tmp_path)
    assert loaded.config.temporal_conv_padding == "same" and loaded.config.frame_adaptor is True
    with pytest.raises(ValueError, match="`frame_adaptor` must be one of \\(False, True, 'conv'\\) but is 'resnet'"):
        UNet3DModel(**tiny_sd21_unet2d_config(), frame_adaptor="resnet")
    with pytest.raises(
        ValueError, match="`temporal_conv_padding` must be one of \\('same', 'causal'\\) but is 'left'"
    ):
        UNet3DModel(**tiny_sd21_unet2d_config(), temporal_conv_padding="left")
    with pytest.raises(ValueError, match="`temporal_conv_padding` must be 'same' with `temporal_layout='modelscope'`"):
        UNet3DModel(
            **tiny_sd21_unet2d_config(), temporal_layout="modelscope", frame_position_encoding=None,
            temporal_attention_head_dim=8, temporal_conv_padding="causal",
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------- the parallel layout


def _directed_temporal_attention_by_hand(layer, z, num_frames):
    """`TemporalAttention(z) - z` for a directed layer, written out: every pixel's frames attend to earlier ones."""
    bf, c, h, w = z.shape
    attn, heads = layer.attn, layer.attn.heads
    d = c // heads
    tokens = z.reshape(bf // num_frames, num_frames, c, h * w).permute(0, 3, 1, 2)  # (B, HW, F, C)
    x = torch.nn.functional.layer_norm(tokens, (c,), layer.norm.weight, layer.norm.bias, layer.norm.eps)
    x = x + layer.frame_encoding(num_frames, z.device, z.dtype)
    q, k, v = attn.to_q(x), attn.to_k(x), attn.to_v(x)
    out = torch.zeros_like(q)
    for p in range(num_frames):  # frame p sees frames 0..p
        for head in range(heads):
            part = slice(head * d, (head + 1) * d)
            weights = torch.softmax(q[..., p : p + 1, part] @ k[..., : p + 1, part].transpose(-1, -2) / d**0.5, -1)
            out[..., p : p + 1, part] = weights @ v[..., : p + 1, part]
    out = attn.to_out[0](out)  # (B, HW, F, C)
    return out.permute(0, 2, 3, 1).reshape(bf, c, h, w)


def test_parallel_layout_sums_spatial_and_temporal_attention_of_the_same_input(unet2d):
    config = dict(temporal_attention="directed", temporal_conv=False)
    parallel = UNet3DModel.from_unet2d(unet2d, temporal_layout="parallel", **config).eval()
    _randomize_temporal(parallel)
    sequential = UNet3DModel.from_unet2d(unet2d, **config).eval()
    sequential.load_state_dict(parallel.state_dict())  # same weights, other layout
    block = parallel.down_blocks[1]
    g = torch.Generator().manual_seed(0)
    z = torch.randn(B * F, 32, 8, 8, generator=g)
    text = torch.randn(B * F, 7, 24, generator=g)
    with torch.no_grad():
        spatial = block.attentions[0](z, encoder_hidden_states=text, return_dict=False)[0]  # z + S(z)
        temporal = _directed_temporal_attention_by_hand(block.temp_attentions[0], z, F)  # T(z)
        out = block._attention(0, z, text, F, None, None, None)
        out_sequential = sequential.down_blocks[1]._attention(0, z, text, F, None, None, None)
        temporal_of_spatial = _directed_temporal_attention_by_hand(block.temp_attentions[0], spatial, F)
    torch.testing.assert_close(out, spatial + temporal, rtol=0, atol=1e-5)  # z + S(z) + T(z)
    torch.testing.assert_close(out_sequential, spatial + temporal_of_spatial, rtol=0, atol=1e-5)  # T(z + S(z))
    assert (out - out_sequential).abs().max() > 1e-2


# ---------------------------------------------------------------------------------------------- causality


@pytest.mark.parametrize("layout", ["default", "parallel"])
def test_a_directed_unet_with_causal_temporal_convolutions_is_causal_end_to_end(unet2d, layout):
    unet3d = UNet3DModel.from_unet2d(
        unet2d, temporal_layout=layout, temporal_cross_attention=True, temporal_text_modulation=True,
        scalar_conditions=("fps",), **MAGICVIDEO,
    ).eval()  # fmt: skip
    _randomize_temporal(unet3d)
    sample, timestep, text = _inputs()
    conds = {"fps": torch.tensor([8.0, 4.0])}
    k = 2
    changed = sample.clone()
    changed[:, :, k] += 1.0
    with torch.no_grad():
        out = unet3d(sample, timestep, text, scalar_conds=conds).sample
        out_changed = unet3d(changed, timestep, text, scalar_conds=conds).sample
    assert torch.equal(out[:, :, :k], out_changed[:, :, :k])
    assert all((out_changed[:, :, f] - out[:, :, f]).abs().max() > 1e-4 for f in range(k, F))

    # centred temporal convolutions look one frame ahead: the same weights then leak frame k into frame k - 1
    leaky = UNet3DModel.from_unet2d(
        unet2d, temporal_layout=layout, temporal_cross_attention=True, temporal_text_modulation=True,
        scalar_conditions=("fps",), **{**MAGICVIDEO, "temporal_conv_padding": "same"},
    ).eval()  # fmt: skip
    leaky.load_state_dict(unet3d.state_dict())
    with torch.no_grad():
        leak = leaky(changed, timestep, text, scalar_conds=conds).sample
        leak = leak - leaky(sample, timestep, text, scalar_conds=conds).sample
    assert leak[:, :, k - 1].abs().max() > 1e-4


@pytest.mark.slow  # about 15 s of tracing on one CPU thread
def test_magicvideo_options_compile_with_fullgraph():
    config = dict(
        sample_size=8, block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1, attention_head_dim=2,
        cross_attention_dim=8, norm_num_groups=4, temporal_attention_head_dim=4, temporal_layout="parallel",
        scalar_conditions=("fps",), **MAGICVIDEO,
    )  # fmt: skip
    torch.manual_seed(0)
    model = UNet3DModel(**config).eval()
    _randomize_temporal(model)
    sample, timestep, text = torch.randn(1, 4, 3, 8, 8), torch.tensor([10]), torch.randn(1, 5, 8)
    conds = {"fps": torch.tensor([8.0])}
    compiled = torch.compile(model, fullgraph=True, backend="eager")  # fullgraph: any graph break is an error
    with torch.no_grad():
        torch.testing.assert_close(
            compiled(sample, timestep, text, scalar_conds=conds).sample,
            model(sample, timestep, text, scalar_conds=conds).sample,
            rtol=0,
            atol=1e-6,
        )


# ---------------------------------------------------------------------------------------------- the pipeline

TEXT_DIM = 16
PROMPT = "a red circle"


def _perturb(model, seed, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


def tiny_unet(in_channels=4, out_channels=4, text=True, seed=0, **temporal):
    """A two-block `UNet3DModel` on 4x4 latents (8x8 pixels through the tiny VAE), random weights everywhere."""
    torch.manual_seed(seed)
    config = dict(
        sample_size=4, in_channels=in_channels, out_channels=out_channels, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D" if text else "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D" if text else "UpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn" if text else None, layers_per_block=1, attention_head_dim=2,
        cross_attention_dim=TEXT_DIM, norm_num_groups=4, temporal_attention_head_dim=4,
    )  # fmt: skip
    config.update(temporal)
    return _perturb(UNet3DModel(**config), seed + 1)


def make_pipe(interpolation=True, super_resolution=True, space="latent", vae=None):
    from conftest import tiny_clip_text_models, tiny_vae
    from diffusers import DDIMScheduler

    from diffusers_video import MagicVideoPipeline

    tokenizer, text_encoder = tiny_clip_text_models(TEXT_DIM, 16)
    keyframe_unet = tiny_unet(
        temporal_layout="parallel", temporal_conv=False, scalar_conditions=("fps",), **MAGICVIDEO
    )
    sr_channels = 4 if space == "latent" else 3
    pipe = MagicVideoPipeline(
        vae=vae or tiny_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=keyframe_unet,
        scheduler=DDIMScheduler(),
        interpolation_unet=tiny_unet(9, 4, seed=10, scalar_conditions=("fps",)) if interpolation else None,
        super_resolution_unet=tiny_unet(
            2 * sr_channels,
            sr_channels,
            text=False,
            seed=20,
            temporal_attention=None,
            scalar_conditions=("noise_aug_level", "fps"),
        )
        if super_resolution
        else None,  # fmt: skip
        super_resolution_space=space,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe():
    return make_pipe()


def run(pipe, seed=0, **kwargs):
    arguments = dict(prompt=PROMPT, num_keyframes=3, num_inference_steps=2, guidance_scale=4.0, output_type="latent")
    arguments["generator"] = torch.Generator().manual_seed(seed)
    arguments.update(kwargs)
    return pipe(**arguments).frames


def _inputs_of(unet):
    """Records the positional and keyword inputs of every call of `unet`; returns (records, handle)."""
    records = []
    handle = unet.register_forward_pre_hook(lambda m, args, kwargs: records.append((args, kwargs)), with_kwargs=True)
    return records, handle


def test_each_stage_makes_its_frames_and_sizes(pipe):
    assert run(pipe, stages=["keyframes"]).shape == (1, 4, 3, 4, 4)  # 3 keyframes of 4x4 latents (8x8 pixels)
    assert run(pipe, stages=["keyframes", "interpolation"]).shape == (1, 4, 5, 4, 4)  # (3 - 1) * 2 + 1
    assert run(pipe, stages=["keyframes", "interpolation"], interpolation_factors=4).shape == (1, 4, 9, 4, 4)
    assert run(pipe, stages=["keyframes", "interpolation"], interpolation_factors=[2, 2]).shape == (1, 4, 9, 4, 4)
    assert run(pipe, num_frames=9, interpolation_factors=4).shape == (1, 4, 9, 8, 8)  # all stages: SR x2
    frames = run(pipe, output_type="np", num_videos_per_prompt=2)
    assert frames.shape == (2, 5, 16, 16, 3) and 0 <= frames.min() and frames.max() <= 1  # 8x8 px -> 16x16 px


def test_the_default_size_is_the_output_of_the_cascade_and_the_benchmarks_ask_for_it(pipe):
    from diffusers_video.data.quality import infer_video_settings

    # 8 keyframes by default, one x2 round: 15 frames; 4x4 latents, VAE 2x, SR 2x: 16x16. `bench quality` asks for
    # that, not for the keyframe size (which would run the keyframe stage at half its size)
    assert pipe.default_size() == (15, 16, 16)
    assert infer_video_settings(pipe) == {"num_frames": 15, "height": 16, "width": 16}
    assert run(pipe, num_keyframes=None, num_inference_steps=1, output_type="np").shape == (1, 15, 16, 16, 3)
    keyframes_only = make_pipe(interpolation=False, super_resolution=False)
    assert infer_video_settings(keyframes_only) == {"num_frames": 8, "height": 8, "width": 8}


def test_interpolation_places_the_keyframes_at_their_indices_and_keeps_them(pipe):
    g = torch.Generator().manual_seed(3)
    keyframes = torch.randn(2, 4, 3, 4, 4, generator=g)
    records, handle = _inputs_of(pipe.interpolation_unet)
    try:
        out = run(pipe, prompt=[PROMPT, "a blue square"], keyframes=keyframes, stages=["interpolation"],
                  interpolation_factors=4)  # fmt: skip
    finally:
        handle.remove()
    assert out.shape == (2, 4, 9, 4, 4)
    assert torch.equal(out[:, :, ::4], keyframes)  # the given frames, unchanged, at indices 0, 4, 8
    sample = records[0][0][0]  # (B * (n - 1) segments, 2 C + 1, f + 1, h, w); no guidance: one pass per step
    assert sample.shape == (4, 9, 5, 4, 4)
    context, mask = sample[:, 4:8], sample[:, 8:]
    for video in range(2):
        for segment in range(2):
            row = video * 2 + segment
            assert torch.equal(context[row, :, 0], keyframes[video, :, segment])  # left neighbour at index 0
            assert torch.equal(context[row, :, 4], keyframes[video, :, segment + 1])  # right neighbour at index f
    assert torch.equal(context[:, :, 1:4], torch.zeros_like(context[:, :, 1:4]))
    assert torch.equal(mask[:, 0, [0, 4]], torch.ones_like(mask[:, 0, [0, 4]]))
    assert torch.equal(mask[:, 0, 1:4], torch.zeros_like(mask[:, 0, 1:4]))
    # the segments are the neighbours' only conditioning: the last keyframe changes only the second segment
    changed = keyframes.clone()
    changed[:, :, 2] += 1.0
    out_changed = run(pipe, prompt=[PROMPT, "a blue square"], keyframes=changed, stages=["interpolation"],
                      interpolation_factors=4)  # fmt: skip
    assert torch.equal(out_changed[:, :, :4], out[:, :, :4])
    assert (out_changed[:, :, 5:8] - out[:, :, 5:8]).abs().amax(dim=(0, 1, 3, 4)).min() > 1e-3


def test_super_resolution_reads_the_upsampled_video_and_the_augmentation_level(pipe):
    g = torch.Generator().manual_seed(4)
    keyframes = torch.randn(1, 4, 3, 4, 4, generator=g)
    records, handle = _inputs_of(pipe.super_resolution_unet)
    try:
        out = run(pipe, keyframes=keyframes, stages=["super_resolution"], noise_aug_level=0.0, fps=6.0)
    finally:
        handle.remove()
    assert out.shape == (1, 4, 3, 8, 8)
    sample, kwargs = records[0][0][0], records[0][1]
    # level 0: the conditioning is the bilinear upsampling itself (Imagen Video's SSR conditioning)
    upsampled = torch.nn.functional.interpolate(keyframes[0].transpose(0, 1), scale_factor=2, mode="bilinear")
    torch.testing.assert_close(sample[0, 4:], upsampled.transpose(0, 1), rtol=0, atol=1e-6)
    assert kwargs["scalar_conds"] == {"noise_aug_level": 0.0, "fps": 6.0}
    assert kwargs["encoder_hidden_states"] is None  # a fully convolutional SR UNet reads no text
    other = run(pipe, keyframes=keyframes + 1.0, stages=["super_resolution"], noise_aug_level=0.0, fps=6.0)
    assert (other - out).abs().max() > 1e-3


def test_every_stage_is_told_the_frame_rate_of_the_frames_it_makes(pipe):
    hooks = {name: _inputs_of(pipe.stage_unet(name)) for name in ("keyframes", "interpolation", "super_resolution")}
    try:
        run(pipe, fps=4.0, interpolation_factors=[2, 4], guidance_scale=1.0)
    finally:
        for _, handle in hooks.values():
            handle.remove()
    rates = {
        name: sorted({kwargs["scalar_conds"]["fps"] for _, kwargs in records}) for name, (records, _) in hooks.items()
    }
    assert rates == {"keyframes": [4.0], "interpolation": [8.0, 32.0], "super_resolution": [32.0]}


def test_one_denoising_step_of_the_keyframe_model_is_causal(pipe):
    g = torch.Generator().manual_seed(5)
    latents = torch.randn(1, 4, 5, 4, 4, generator=g)
    changed = latents.clone()
    changed[:, :, 3] += 1.0
    arguments = dict(stages=["keyframes"], num_keyframes=5, num_inference_steps=1, guidance_scale=4.0)
    out, out_changed = run(pipe, latents=latents, **arguments), run(pipe, latents=changed, **arguments)
    assert torch.equal(out[:, :, :3], out_changed[:, :, :3])
    assert (out[:, :, 3:] - out_changed[:, :, 3:]).abs().amax(dim=(0, 1, 3, 4)).min() > 0


def test_a_seed_gives_the_same_video_and_one_generator_per_video_gives_each_its_own(pipe):
    first, again, other = run(pipe, seed=0, output_type="np"), run(pipe, seed=0, output_type="np"), run(pipe, seed=1)
    assert np.array_equal(first, again) and not np.array_equal(run(pipe, seed=0), other)
    generators = [torch.Generator().manual_seed(s) for s in (0, 1)]
    both = pipe(prompt=[PROMPT, PROMPT], num_keyframes=3, num_inference_steps=2, guidance_scale=4.0, eta=0.5,
                output_type="latent", generator=generators).frames  # fmt: skip
    alone = pipe(prompt=PROMPT, num_keyframes=3, num_inference_steps=2, guidance_scale=4.0, eta=0.5,
                 output_type="latent", generator=torch.Generator().manual_seed(1)).frames  # fmt: skip
    torch.testing.assert_close(both[1:], alone, rtol=0, atol=1e-4 * alone.abs().max().item())


def test_one_generator_per_video_through_interpolation_with_a_scheduler_that_draws_its_own_noise():
    """DDPM draws its step noise itself (no `variance_noise`): the interpolation stage, whose batch is videos x
    segments, gives it one generator per row (the video's), so a list of one per video works and a video's frames
    depend on its own generator alone."""
    from diffusers import DDPMScheduler

    pipe = make_pipe(super_resolution=False)
    pipe.scheduler = DDPMScheduler()  # every stage's scheduler is a copy of its config
    kwargs = dict(num_keyframes=3, interpolation_factors=[2, 2], num_inference_steps=2, output_type="latent")
    generators = [torch.Generator().manual_seed(s) for s in (0, 1)]
    both = pipe(prompt=[PROMPT, PROMPT], generator=generators, **kwargs).frames
    alone = pipe(prompt=PROMPT, generator=torch.Generator().manual_seed(1), **kwargs).frames
    assert both.shape == (2, 4, 9, 4, 4)
    torch.testing.assert_close(both[1:], alone, rtol=0, atol=1e-4 * alone.abs().max().item())
    assert not torch.allclose(both[0], both[1])


def test_embeddings_and_decode_chunks_give_the_same_frames(pipe):
    expected = run(pipe, output_type="pt", negative_prompt="a blue square")
    embeds, negative = pipe.encode_prompt(PROMPT, torch.device("cpu"), 1, True, "a blue square")
    from_embeds = run(pipe, prompt=None, prompt_embeds=embeds, negative_prompt_embeds=negative, output_type="pt")
    assert torch.equal(from_embeds, expected)
    chunked = run(pipe, output_type="pt", negative_prompt="a blue square", decode_chunk_size=2)
    torch.testing.assert_close(chunked, expected, rtol=0, atol=1e-6)


def test_callbacks_see_every_stage_and_offloading_keeps_the_result(pipe):
    seen = []

    def callback(p, i, t, kwargs):
        seen.append((p.stage, i, tuple(kwargs["latents"].shape)))
        return {}

    expected = run(pipe, callback_on_step_end=callback)
    assert seen == [
        ("keyframes", 0, (1, 4, 3, 4, 4)), ("keyframes", 1, (1, 4, 3, 4, 4)),
        ("interpolation", 0, (2, 4, 3, 4, 4)), ("interpolation", 1, (2, 4, 3, 4, 4)),
        ("super_resolution", 0, (1, 4, 5, 8, 8)), ("super_resolution", 1, (1, 4, 5, 8, 8)),
    ]  # fmt: skip
    offloaded = make_pipe()
    offloaded.enable_model_cpu_offload(device="cpu")
    hooked = {name for name, model in offloaded.components.items() if hasattr(model, "_hf_hook")}
    assert hooked == {"text_encoder", "unet", "interpolation_unet", "super_resolution_unet", "vae"}
    assert torch.equal(run(offloaded), expected)


def test_save_and_load_round_trip_and_pixel_super_resolution_with_the_video_vae(tmp_path):
    from conftest import tiny_vae

    from diffusers_video import AutoencoderKLVideo, MagicVideoPipeline

    pipe = make_pipe(interpolation=False, space="pixel", vae=AutoencoderKLVideo.from_vae2d(tiny_vae()).eval())
    expected = run(pipe, output_type="pt")
    assert expected.shape == (1, 3, 3, 16, 16)  # 3 keyframes, decoded to 8x8, upsampled in pixels to 16x16
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["interpolation_unet"] == [None, None] and index["super_resolution_space"] == "pixel"
    loaded = MagicVideoPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.interpolation_unet is None and isinstance(loaded.vae, AutoencoderKLVideo)
    torch.testing.assert_close(run(loaded, output_type="pt"), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"interpolation_factors": 3}, ValueError, "`interpolation_factors` must each be one of (2, 4) but are [3]"),
        ({"num_frames": 8}, ValueError, "`num_frames`=8 does not fit `interpolation_factors` [2]"),
        ({"num_keyframes": 40}, ValueError, "`num_keyframes` is 40 but the keyframe model `unet` makes at most"),
        ({"num_keyframes": 1}, ValueError, "`num_keyframes` must be at least 2 to interpolate"),
        ({"height": 20, "width": 16}, ValueError, "`height` and `width` have to be positive multiples of 8"),
        ({"fps": 0}, ValueError, "`fps` (frames per second of the keyframes) must be a number > 0 but is 0"),
        ({"fps": -2.0}, ValueError, "must be a number > 0 but is -2.0"),
        ({"noise_aug_level": 1.5}, ValueError, "`noise_aug_level` must lie in [0, 1] but is 1.5"),
        ({"stages": ["keyframes", "deblurring"]}, ValueError, "`stages` must be a list of names from"),
        ({"stages": ["interpolation"]}, ValueError, "without the keyframe stage, pass the `keyframes` latents"),
        ({"stages": ["keyframes"], "interpolation_factors": 2}, ValueError, "the interpolation stage does not run"),
        ({"interpolation_num_inference_steps": 0}, ValueError, "`interpolation_num_inference_steps` must be in"),
        ({"super_resolution_guidance_scale": -1.0}, ValueError, "`super_resolution_guidance_scale` must be >= 0"),
        ({"latents": torch.zeros(1, 4, 2, 4, 4)}, ValueError, "`latents` must have shape (1, 4, 3, 4, 4)"),
        (
            {"keyframes": torch.zeros(1, 4, 3, 2, 2), "height": 16, "width": 16},
            ValueError,
            "an output of 16x16 needs (4, 4)",
        ),
        ({"output_type": "gif"}, ValueError, "`output_type` must be one of"),
        ({"prompt": None}, ValueError, "Pass either `prompt` or `prompt_embeds`"),
        ({"generator": [torch.Generator()] * 3}, ValueError, "`generator` is a list of 3 generators"),
        ({"eta": 2.0}, ValueError, "`eta` must be at most 1"),
    ],
)
def test_bad_input_is_refused_before_any_model_runs(pipe, kwargs, error, message):
    records = [_inputs_of(module) for module in (pipe.text_encoder, pipe.unet, pipe.interpolation_unet)]
    try:
        with pytest.raises(error) as raised:
            run(pipe, **kwargs)
    finally:
        for _, handle in records:
            handle.remove()
    assert message in str(raised.value)
    assert not any(calls for calls, _ in records)


def test_components_whose_channels_do_not_fit_their_conditioning_are_refused(pipe):
    from diffusers_video import MagicVideoPipeline

    components = {name: getattr(pipe, name) for name in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
    with pytest.raises(ValueError, match="so it needs in_channels=9 and out_channels=4, but has in_channels=8"):
        MagicVideoPipeline(**components, interpolation_unet=tiny_unet(8, 4))
    with pytest.raises(ValueError, match="in latent space .* needs in_channels=8 and out_channels=4, but has in_ch"):
        MagicVideoPipeline(**components, super_resolution_unet=tiny_unet(9, 4, text=False, temporal_attention=None))
    with pytest.raises(ValueError, match="`super_resolution_factor` must be an integer >= 2 but is 1"):
        MagicVideoPipeline(**components, super_resolution_factor=1)
    with pytest.raises(ValueError, match="`interpolation_unet` has scalar conditions \\['noise_aug_level'\\]"):
        MagicVideoPipeline(**components, interpolation_unet=tiny_unet(9, 4, scalar_conditions=("noise_aug_level",)))


@pytest.mark.usefixtures("one_thread_and_fresh_accelerate")
def test_the_keyframe_recipe_trains_a_magicvideo_pipeline_folder(tmp_path):
    from pathlib import Path

    from diffusers_video import MagicVideoPipeline
    from diffusers_video.training import TrainingConfig, train

    root = Path(__file__).resolve().parents[1]
    config = TrainingConfig.from_json_file(root / "pipelines" / "magicvideo" / "train_keyframes.json")
    config = config.with_overrides({
        "output_dir": str(tmp_path), "max_train_steps": 2, "train_batch_size": 2, "data.num_samples": 4,
        "model.pretrained_model_name_or_path": str(root / "pipelines" / "shapes_sd"),
    })  # fmt: skip
    train(config)
    pipe = MagicVideoPipeline.from_pretrained(tmp_path / "final")
    assert pipe.unet.config.frame_adaptor == "conv" and pipe.unet.config.temporal_layout == "parallel"
    pipe.set_progress_bar_config(disable=True)
    assert pipe("a red circle moving right", num_keyframes=4, num_inference_steps=2).frames.shape == (1, 4, 32, 32, 3)


@pytest.mark.usefixtures("one_thread_and_fresh_accelerate")
def test_the_interpolation_recipe_trains_on_masked_end_frames_and_plugs_into_the_pipeline(tmp_path, pipe):
    from pathlib import Path

    from diffusers_video import MagicVideoPipeline
    from diffusers_video.training import TrainingConfig
    from diffusers_video.training.magicvideo import MagicVideoInterpolationTrainer

    root = Path(__file__).resolve().parents[1]
    config = TrainingConfig.from_json_file(root / "pipelines" / "magicvideo" / "train_interpolation.json")
    config = config.with_overrides({
        "output_dir": str(tmp_path), "max_train_steps": 2, "train_batch_size": 4, "data.num_samples": 4,
        "model.pretrained_model_name_or_path": str(root / "pipelines" / "shapes_sd"),
    })  # fmt: skip
    trainer = MagicVideoInterpolationTrainer(config, context_dropout=0.5)
    clean = torch.randn(16, 4, 3, 8, 8)
    condition = trainer.conditioning({"positions": torch.arange(16)}, clean)  # (B, C + 1, 3, h, w)
    kept = condition.flatten(1).abs().amax(1) > 0
    assert 0 < int(kept.sum()) < 16  # context dropout 0.5: some samples keep their end frames, others not
    for sample in range(16):
        if kept[sample]:
            assert torch.equal(condition[sample, :4, 0], clean[sample, :, 0])  # end frames at their indices
            assert torch.equal(condition[sample, :4, 2], clean[sample, :, 2])
            assert torch.equal(condition[sample, 4, :, 0, 0], torch.tensor([1.0, 0.0, 1.0]))  # the mask
            assert not condition[sample, :4, 1].any()
    final = trainer.train()

    interpolation_unet = UNet3DModel.from_pretrained(final / "unet")
    assert interpolation_unet.config.in_channels == 9
    stand_in = trainer.components  # the Stable Diffusion stand-in's text encoder, tokenizer and VAE
    trained = MagicVideoPipeline(
        vae=stand_in.vae, text_encoder=stand_in.text_encoder, tokenizer=stand_in.tokenizer,
        unet=UNet3DModel.from_pretrained_2d(str(root / "pipelines" / "shapes_sd"), **MAGICVIDEO),
        scheduler=pipe.scheduler, interpolation_unet=interpolation_unet,
    )  # fmt: skip
    trained.set_progress_bar_config(disable=True)
    keyframes = torch.randn(1, 4, 3, 8, 8)
    out = run(trained, keyframes=keyframes, stages=["interpolation"], fps=8.0)  # the model was trained at fps 16
    assert out.shape == (1, 4, 5, 8, 8) and torch.equal(out[:, :, ::2], keyframes)


def test_the_demo_step_generates_the_demo_prompts_at_the_trained_length_and_scores_them(tmp_path, capsys):
    """`make demo`'s step 7 on a tiny keyframe-only folder: the clip length the folder was trained on (its
    `training_config.json`), the three demo prompts scored, the GIFs written; a bad `--magicvideo` folder is refused in
    one line."""
    from diffusers_video.cli import main as cli_main
    from diffusers_video.commands.demo import DEMO_PROMPTS
    from diffusers_video.commands.demo import _magicvideo as magicvideo_demo

    make_pipe(interpolation=False, super_resolution=False).save_pretrained(tmp_path / "small")
    (tmp_path / "small" / "training_config.json").write_text(json.dumps({"data": {"num_frames": 3}}))
    magicvideo_demo(tmp_path, tmp_path / "small", 0)
    out = capsys.readouterr().out
    assert "3 latent keyframes of 8x8" in out and out.count("scorer sees: ") == len(DEMO_PROMPTS)
    strip = tmp_path / "magicvideo.gif"
    assert strip.stat().st_size > 200 and (tmp_path / "magicvideo_a_red_circle_moving_right.gif").is_file()
    import PIL.Image

    assert PIL.Image.open(strip).n_frames == 3
    assert cli_main(["demo", "--output_dir", str(tmp_path), "--magicvideo", str(tmp_path / "none_here")]) == 1
    assert "none_here' is not a pipeline folder" in capsys.readouterr().err
    # a whole cascade: the keyframes interpolated x2 and super-resolved
    make_pipe().save_pretrained(tmp_path / "cascade")
    (tmp_path / "cascade" / "training_config.json").write_text(json.dumps({"data": {"num_frames": 3}}))
    magicvideo_demo(tmp_path, tmp_path / "cascade", 0)
    out = capsys.readouterr().out
    assert "4 latent keyframes of 8x8" in out and "interpolated x2 x2 to 13 frames, super-resolved to 16x16" in out
    assert out.count("scorer sees: ") == len(DEMO_PROMPTS)
    assert PIL.Image.open(strip).n_frames == 13 and PIL.Image.open(strip).size[1] == 16 * 4  # enlarged 4 times


def test_the_bidirectional_keyframe_recipe_differs_from_the_keyframe_recipe_only_by_the_attention():
    """`bench_magicvideo.py directed --directed DIR --bidirectional DIR` compares the two at the same budget."""
    from pathlib import Path

    from diffusers_video.training import TrainingConfig

    recipes = Path(__file__).resolve().parents[1] / "pipelines" / "magicvideo"
    directed = TrainingConfig.from_json_file(recipes / "train_keyframes.json").to_dict()
    bidirectional = TrainingConfig.from_json_file(recipes / "train_keyframes_bidirectional.json").to_dict()
    assert directed["model"]["temporal"]["temporal_attention"] == "directed"
    assert bidirectional["model"]["temporal"]["temporal_attention"] == "bidirectional"
    for config in (directed, bidirectional):
        config.pop("output_dir")
        config["model"]["temporal"].pop("temporal_attention")
    assert directed == bidirectional


def test_the_comparison_recipes_differ_from_the_keyframe_recipe_only_where_they_say():
    """`bench_magicvideo.py adaptors` (temporal convolutions in place of the text-modulated adaptors, text-modulated
    too) and `pretraining` (the baseline: the same recipe on the captioned tenth of the clips) at the same budget."""
    from pathlib import Path

    from diffusers_video.training import TrainingConfig

    recipes = Path(__file__).resolve().parents[1] / "pipelines" / "magicvideo"
    keyframes = TrainingConfig.from_json_file(recipes / "train_keyframes.json").to_dict()
    convs = TrainingConfig.from_json_file(recipes / "train_keyframes_temporal_conv.json").to_dict()
    adaptor_keys = {"frame_adaptor": "conv", "frame_adaptor_text_modulation": True, "temporal_conv": False}
    conv_keys = {"frame_adaptor": False, "temporal_conv": True, "temporal_conv_padding": "causal",
                 "temporal_text_modulation": True}  # fmt: skip
    for config, keys in ((keyframes, adaptor_keys), (convs, conv_keys)):
        temporal = config["model"]["temporal"]
        assert {key: temporal.pop(key) for key in keys} == keys
        assert not {"frame_adaptor", "temporal_conv", "temporal_text_modulation"} & temporal.keys()
        config.pop("output_dir")
    assert keyframes == convs
    captions_only = TrainingConfig.from_json_file(recipes / "train_keyframes_captions_only.json").to_dict()
    finetune = TrainingConfig.from_json_file(recipes / "finetune_keyframes.json").to_dict()
    pretrain = TrainingConfig.from_json_file(recipes / "pretrain_keyframes.json").to_dict()
    assert captions_only["data"]["num_samples"] == finetune["data"]["num_samples"] == 1000  # the same captioned clips
    assert captions_only["max_train_steps"] == pretrain["max_train_steps"] + finetune["max_train_steps"]
    captions_only["data"]["num_samples"] = 10000
    keyframes = TrainingConfig.from_json_file(recipes / "train_keyframes.json").to_dict()
    for config in (keyframes, captions_only):
        config.pop("output_dir")
    assert keyframes == captions_only


def test_assemble_puts_the_separately_trained_stages_behind_the_keyframe_folder(tmp_path, capsys):
    """`diffusers-video magicvideo assemble`: an interpolation run and a latent super-resolution run (VideoGen's
    recipe) behind a keyframe folder, a video decoder swapped in, UNets saved in float16; the wrong folders refused
    before anything is written."""
    from diffusers import DDPMScheduler

    from diffusers_video import AutoencoderKLVideo, MagicVideoPipeline
    from diffusers_video.cli import main as cli_main

    keyframes = make_pipe(interpolation=False, super_resolution=False)
    keyframes.save_pretrained(tmp_path / "keyframes")
    runs = {
        "interpolation": (tiny_unet(9, 4, seed=10, scalar_conditions=("fps",)), {"magicvideo": {"stage": "interpolation"}}),
        "super_resolution": (
            tiny_unet(8, 4, text=False, seed=20, temporal_attention=None, scalar_conditions=("noise_aug_level",)),
            {"videogen": {"stage": "super_resolution", "super_resolution_factor": 2}},
        ),
    }  # fmt: skip
    for name, (unet, config) in runs.items():
        unet.save_pretrained(tmp_path / name / "unet")
        DDPMScheduler(num_train_timesteps=500).save_pretrained(tmp_path / name / "scheduler")
        keyframes.vae.save_pretrained(tmp_path / name / "vae")
        keyframes.text_encoder.save_pretrained(tmp_path / name / "text_encoder")
        (tmp_path / name / "training_config.json").write_text(json.dumps(config))
    (tmp_path / "keyframes" / "training_config.json").write_text(json.dumps({"data": {"num_frames": 3}}))
    video_vae = AutoencoderKLVideo.from_vae2d(keyframes.vae)
    with torch.no_grad():
        video_vae.decoder.conv_out.weight.add_(0.01)
    video_vae.save_pretrained(tmp_path / "video_vae")

    out = tmp_path / "cascade"
    argv = ["magicvideo", "assemble", "--keyframes", str(tmp_path / "keyframes"), "--output_dir", str(out),
            "--interpolation", str(tmp_path / "interpolation"), "--super_resolution", str(tmp_path / "super_resolution"),
            "--vae", str(tmp_path / "video_vae"), "--fp16"]  # fmt: skip
    assert cli_main(argv) == 0
    pipe = MagicVideoPipeline.from_pretrained(out)
    for mine, theirs in ((pipe.unet, keyframes.unet), (pipe.interpolation_unet, runs["interpolation"][0]),
                         (pipe.super_resolution_unet, runs["super_resolution"][0])):  # fmt: skip
        a, b = mine.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k].half().float()) for k in a)
    assert isinstance(pipe.vae, AutoencoderKLVideo)
    assert torch.equal(pipe.vae.decoder.conv_out.weight, video_vae.decoder.conv_out.weight)
    assert pipe.interpolation_scheduler.config.num_train_timesteps == 500  # each run's own scheduler
    assert pipe.super_resolution_scheduler.config.num_train_timesteps == 500
    assert (pipe.config.super_resolution_factor, pipe.config.super_resolution_space) == (2, "latent")
    assert json.loads((out / "training_config.json").read_text()) == {"data": {"num_frames": 3}}
    pipe.set_progress_bar_config(disable=True)
    assert pipe.default_size() == (15, 16, 16)  # 8 keyframes x2, 8x8 pixels x2
    assert run(pipe, interpolation_factors=[2, 2], output_type="np").shape == (1, 9, 16, 16, 3)

    # the wrong folders: refused, the folder already there kept, nothing new written
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    wrong = {
        "--interpolation": (
            str(tmp_path / "super_resolution"),
            "is not a MagicVideo interpolation run's final folder",
        ),
        "--super_resolution": (str(tmp_path / "interpolation"), "is not a latent super-resolution run's final folder"),
        "--keyframes": (str(tmp_path / "interpolation"), "is not a pipeline folder"),
    }
    for option, (folder, message) in wrong.items():
        bad = list(argv)
        bad[bad.index(option) + 1] = folder
        assert cli_main(bad) == 1
        assert message in capsys.readouterr().err
    other = make_pipe(interpolation=False, super_resolution=False)
    with torch.no_grad():
        other.text_encoder.get_input_embeddings().weight.add_(0.01)
    other.text_encoder.save_pretrained(tmp_path / "interpolation" / "text_encoder")
    assert cli_main(argv) == 1
    assert "text_encoder' differ: every stage shares it" in capsys.readouterr().err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_generate_and_bench_quality_pass_pipeline_kwargs_to_the_call(tmp_path):
    """`--pipeline_kwargs` reaches `__call__`: MagicVideo's interpolation rounds, which no option of `generate` or
    `bench quality` sets, change the frame count (3 keyframes: x2 makes 5 frames, x2 x2 makes 9)."""
    from PIL import Image

    from diffusers_video.cli import main as cli_main

    make_pipe(super_resolution=False).save_pretrained(tmp_path / "pipe")
    common = ["generate", "--pipeline", str(tmp_path / "pipe"), "a red circle", "--steps", "1", "--no_progress"]
    for kwargs, frames in (('{"num_keyframes": 3}', 5), ('{"num_keyframes": 3, "interpolation_factors": [2, 2]}', 9)):
        output = tmp_path / f"{frames}.gif"
        assert cli_main([*common, "--pipeline_kwargs", kwargs, "--output", str(output)]) == 0
        assert Image.open(output).n_frames == frames
    argv = ["bench", "quality", str(tmp_path / "pipe"), "--num-samples", "1", "--steps", "1", "--num-frames", "9",
            "--num-real", "2", "--no-progress", "--output", str(tmp_path / "q.json"),
            "--pipeline-kwargs", '{"interpolation_factors": [2, 2]}']  # fmt: skip
    assert cli_main(argv) == 0
    result = json.loads((tmp_path / "q.json").read_text())
    assert result["pipeline_kwargs"] == {"interpolation_factors": [2, 2]} and result["num_frames"] == 9
    assert np.load(tmp_path / "q_videos" / "00000.npy").shape == (9, 8, 8, 3)  # 3 keyframes, x2 x2
    assert cli_main([*argv[:-1], '{"interpolation_factors": [4]}']) == 1  # other settings: refused, not mixed in
