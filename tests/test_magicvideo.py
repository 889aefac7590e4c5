"""MagicVideo: per-convolution frame adaptors, the parallel layout, causality through the whole UNet, and the pipeline.

The model tests compare with independent references: diffusers' own `ResnetBlock2D.forward` with forward hooks for the
adaptors, a written-out directed temporal attention for the parallel layout, the image UNet frame by frame for the
identity at init. Causality is exact: changing input frame k leaves every output frame before k bit for bit equal.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_sd21_unet2d_config

from diffusers_video import UNet3DModel
from diffusers_video.models.frame_adaptors import ConvFrameAdaptors
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


def test_conv_adaptors_sit_after_each_resnet_convolution_and_are_the_identity_at_init(unet2d):
    unet3d = UNet3DModel.from_unet2d(unet2d, frame_adaptor="conv").eval()
    blocks = [*unet3d.down_blocks, unet3d.mid_block, *unet3d.up_blocks]
    resnets = [resnet for block in blocks for resnet in block.resnets]
    adaptors = [adaptor for block in blocks for adaptor in block.frame_adaptors]
    # one pair per resnet: 4 x 2 down + 2 mid + 4 x 3 up = 22 resnets, 44 adaptors, one per 2D convolution
    assert len(resnets) == len(adaptors) == 22
    assert sum(isinstance(m, ConvFrameAdaptors) for m in unet3d.modules()) == 22
    for resnet, adaptor in zip(resnets, adaptors):
        assert adaptor.conv1.scale.shape == (unet3d.config.max_frames, resnet.conv1.out_channels)
        assert adaptor.conv2.scale.shape == (unet3d.config.max_frames, resnet.conv2.out_channels)
    # 2 * max_frames * channels parameters per convolution: scale and shift
    expected = sum(2 * 2 * unet3d.config.max_frames * r.conv1.out_channels for r in resnets)
    assert sum(p.numel() for a in adaptors for p in a.parameters()) == expected

    resnet, adaptor = unet3d.down_blocks[1].resnets[0], unet3d.down_blocks[1].frame_adaptors[0]  # has a shortcut
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B * F, resnet.in_channels, 8, 8, generator=g)
    temb = torch.randn(B * F, resnet.time_emb_proj.in_features, generator=g)
    with torch.no_grad():
        assert torch.equal(adaptor(resnet, x, temb, F), resnet(x, temb))  # identity at init, bit for bit


def test_conv_adaptors_modulate_each_convolution_output_per_frame(unet2d):
    """Against diffusers' own `ResnetBlock2D.forward`, with the modulation put on `conv1` and `conv2` by hooks."""
    unet3d = UNet3DModel.from_unet2d(unet2d, frame_adaptor="conv").eval()
    _randomize_temporal(unet3d, scale=0.5)
    resnet, adaptor = unet3d.down_blocks[1].resnets[0], unet3d.down_blocks[1].frame_adaptors[0]

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
        out = adaptor(resnet, x, temb, F)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert (out - plain).abs().max() > 1e-2  # the adaptors do change the resnet


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
