"""UNet3DModel: Stable Diffusion-compatible spatial layers, identity-initialised temporal layers, diffusers conventions."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import tiny_sd21_unet2d_config
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from diffusers_video import UNet3DModel
from diffusers_video.models import temporal_attention
from diffusers_video.models.temporal import TemporalAttnProcessor2_0
from diffusers_video.models.unet_3d import temporal_parameter_names

B, F, H, W = 2, 5, 16, 16


def _inputs(in_channels=4, frames=F, batch=B, seed=0):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, in_channels, frames, H, W, generator=g)
    text = torch.randn(batch, 7, 24, generator=g)
    timestep = torch.tensor([10, 700][:batch])
    return sample, timestep, text


def _frame_by_frame(unet2d, sample, timestep, text):
    batch, channels, frames, height, width = sample.shape
    flat = sample.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)
    out = unet2d(flat, timestep.repeat_interleave(frames), text.repeat_interleave(frames, 0)).sample
    return out.reshape(batch, frames, -1, height, width).permute(0, 2, 1, 3, 4)


def _randomize_temporal(model, scale=0.2, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name in temporal_parameter_names(model):
            params[name].add_(torch.randn(params[name].shape, generator=g) * scale)


def test_spatial_parameters_match_unet2d_names_and_shapes(unet2d):
    unet3d = UNet3DModel.from_unet2d(unet2d)
    state2d, state3d = unet2d.state_dict(), unet3d.state_dict()
    assert set(state2d) <= set(state3d)
    assert all(state2d[k].shape == state3d[k].shape for k in state2d)
    extra = set(state3d) - set(state2d)
    assert extra and extra == {n for n in temporal_parameter_names(unet3d)}
    for key, value in state2d.items():
        assert torch.equal(value, state3d[key]), key


@pytest.mark.parametrize(
    "temporal_config",
    [
        {},
        {"temporal_attention": "directed", "frame_position_encoding": "learned", "frame_adaptor": True},
        {"scalar_conditions": ("fps", "noise_aug_level"), "in_channels": 7},
        {"temporal_conv": False, "temporal_attention": None},
        {"temporal_cross_attention": True},
        {"temporal_text_modulation": True},
        {"frame_adaptor": "conv", "temporal_layout": "parallel", "temporal_conv_padding": "causal"},
    ],
)
def test_inflated_model_equals_unet2d_frame_by_frame(unet2d, temporal_config):
    unet3d = UNet3DModel.from_unet2d(unet2d, **temporal_config).eval()
    in_channels = temporal_config.get("in_channels", 4)
    sample, timestep, text = _inputs(in_channels)
    conds = {name: torch.tensor([3.0, 250.0]) for name in temporal_config.get("scalar_conditions", ())}
    with torch.no_grad():
        expected = _frame_by_frame(unet2d, sample[:, :4], timestep, text)
        out = unet3d(sample, timestep, text, scalar_conds=conds or None).sample
    assert out.shape == (B, 4, F, H, W)
    assert (out - expected).abs().max().item() <= 1e-5


def test_temporal_layers_mix_frames_once_trained(unet2d):
    unet3d = UNet3DModel.from_unet2d(unet2d).eval()
    _randomize_temporal(unet3d)
    sample, timestep, text = _inputs()
    changed = sample.clone()
    changed[:, :, 3] += 1.0
    with torch.no_grad():
        expected = _frame_by_frame(unet2d, sample, timestep, text)
        out = unet3d(sample, timestep, text).sample
        out_changed = unet3d(changed, timestep, text).sample
    assert (out - expected).abs().max() > 1e-2  # temporal layers now contribute
    # bidirectional: every frame, before and after frame 3, sees the change
    for frame in range(F):
        assert (out_changed[:, :, frame] - out[:, :, frame]).abs().max() > 1e-4


def test_directed_attention_is_causal(unet2d):
    unet3d = UNet3DModel.from_unet2d(unet2d, temporal_attention="directed", temporal_conv=False).eval()
    _randomize_temporal(unet3d)
    sample, timestep, text = _inputs()
    k = 2
    changed = sample.clone()
    changed[:, :, k] += 1.0
    with torch.no_grad():
        out = unet3d(sample, timestep, text).sample
        out_changed = unet3d(changed, timestep, text).sample
    assert torch.equal(out[:, :, :k], out_changed[:, :, :k])
    for frame in range(k, F):
        assert (out_changed[:, :, frame] - out[:, :, frame]).abs().max() > 1e-4


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("frames", [1, 5, 16, 33])
def test_temporal_sdpa_equals_torch_sdpa_on_strided_views(causal, frames, monkeypatch):
    """The short-sequence path (explicit attention over chunks of rows, CPU float32 inference) computes what SDPA
    does, over chunk boundaries (more rows than one chunk, and a partial last chunk) and on the strided views the
    processors pass; longer sequences and training go to SDPA itself."""
    monkeypatch.setattr(temporal_attention, "_SHORT_SEQUENCE_SCORES", 3 * 4 * frames * frames)  # chunks of 3 rows
    g = torch.Generator().manual_seed(frames)
    qkv = torch.randn(10, frames, 3 * 4 * 6, generator=g)  # (N, F, 3 * heads * d): heads of 6 channels
    query, key, value = (t.view(10, frames, 4, 6).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
    expected = torch.nn.functional.scaled_dot_product_attention(query, key, value, is_causal=causal, scale=0.3)
    calls = []
    monkeypatch.setattr(temporal_attention.F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1))
    with torch.no_grad():
        out = temporal_attention.temporal_sdpa(query, key, value, causal=causal, scale=0.3)
    if frames > temporal_attention.SHORT_SEQUENCE_FRAMES:
        assert calls and out is None  # handed to SDPA
        return
    assert not calls and out.shape == expected.shape
    assert (out - expected).abs().max() <= 1e-6
    calls.clear()
    temporal_attention.temporal_sdpa(query, key, value, causal=causal, scale=0.3)  # with autograd on: SDPA
    assert calls


def _reference_temporal_cross_attention(layer, hidden_states, num_frames, text):
    """The cross-attention part of `TemporalAttention`, written out with explicit loops over videos and heads."""
    batch_frames, channels, height, width = hidden_states.shape
    attn, heads = layer.cross_attn, layer.cross_attn.heads
    encoding = layer.frame_encoding(num_frames, hidden_states.device, hidden_states.dtype)
    out = torch.zeros_like(hidden_states)
    for video in range(batch_frames // num_frames):
        frames = hidden_states[video * num_frames : (video + 1) * num_frames]  # (F, C, H, W)
        tokens = frames.permute(0, 2, 3, 1).reshape(num_frames, height * width, channels)
        queries = (
            torch.nn.functional.layer_norm(
                tokens, (channels,), layer.norm_cross.weight, layer.norm_cross.bias, layer.norm_cross.eps
            )
            + encoding[:, None]
        )
        q = attn.to_q(queries.reshape(-1, channels))  # (F*HW, C)
        k, v = attn.to_k(text[video]), attn.to_v(text[video])  # (T, C)
        d = channels // heads
        mixed = torch.cat(
            [
                torch.softmax(q[:, h * d : (h + 1) * d] @ k[:, h * d : (h + 1) * d].T / d**0.5, dim=-1)
                @ v[:, h * d : (h + 1) * d]
                for h in range(heads)
            ],
            dim=-1,
        )
        delta = attn.to_out[0](mixed).reshape(num_frames, height, width, channels).permute(0, 3, 1, 2)
        out[video * num_frames : (video + 1) * num_frames] = delta
    return out


def test_temporal_cross_attention_matches_a_written_out_reference_and_reads_each_videos_own_text(unet2d):
    unet3d = UNet3DModel.from_unet2d(unet2d, temporal_cross_attention=True).eval()
    _randomize_temporal(unet3d, scale=0.5)
    layer = unet3d.down_blocks[0].temp_attentions[0]
    assert layer.cross_attention_dim == unet2d.config.cross_attention_dim
    channels = layer.norm.normalized_shape[0]
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(B * F, channels, 4, 4, generator=g)
    text = torch.randn(B, 7, unet2d.config.cross_attention_dim, generator=g)
    with torch.no_grad():
        layer.attn.to_out[0].weight.zero_()  # isolate the cross-attention: the self-attention adds nothing
        layer.attn.to_out[0].bias.zero_()
        out = layer(hidden, F, text)
        expected = hidden + _reference_temporal_cross_attention(layer, hidden, F, text)
    assert (out - expected).abs().max().item() <= 1e-5
    # Video 1's text changes video 1 only, and every frame of it.
    changed_text = text.clone()
    changed_text[1] += 1.0
    with torch.no_grad():
        changed = layer(hidden, F, changed_text)
    assert torch.equal(changed[:F], out[:F])
    assert all((changed[F + f] - out[F + f]).abs().max() > 1e-4 for f in range(F))
    with pytest.raises(ValueError, match=r"one per video, but is \(10, 7, 24\)"):
        layer(hidden, F, text.repeat_interleave(F, 0))


def test_temporal_cross_attention_makes_the_unet_follow_the_text_beyond_spatial_layers(unet2d):
    """With spatial cross-attention and temporal self-attention fixed, the text still changes the output."""
    plain = UNet3DModel.from_unet2d(unet2d).eval()
    crossed = UNet3DModel.from_unet2d(unet2d, temporal_cross_attention=True).eval()
    _randomize_temporal(crossed)
    missing, unexpected = plain.load_state_dict(crossed.state_dict(), strict=False)
    assert not missing and unexpected and all(".cross_attn." in k or ".norm_cross." in k for k in unexpected)
    sample, timestep, text = _inputs()
    with torch.no_grad():
        difference = crossed(sample, timestep, text).sample - plain(sample, timestep, text).sample
        single = crossed(sample[:, :, :1], timestep, text).sample - plain(sample[:, :, :1], timestep, text).sample
    assert difference.abs().max() > 1e-3
    assert single.abs().max() == 0  # one frame: temporal layers skipped, the image model is unchanged


def test_text_modulated_temporal_conv_matches_a_written_out_reference(unet2d):
    """`x + Conv_t(SiLU(GroupNorm(x) * (1 + scale(c, f)) + shift(c, f)))`, with `c` each video's own pooled text and
    `scale`, `shift` combining 1, `u` and `u**2 - 1/3` of the frame position `u` in [-1, 1]."""
    unet3d = UNet3DModel.from_unet2d(unet2d, temporal_text_modulation=True).eval()
    _randomize_temporal(unet3d, scale=0.5)
    layer = unet3d.down_blocks[0].temp_convs[0]
    channels = layer.norm.num_channels
    g = torch.Generator().manual_seed(4)
    hidden = torch.randn(B * F, channels, 3, 3, generator=g)
    cond = torch.randn(B, unet2d.config.cross_attention_dim, generator=g)
    with torch.no_grad():
        out = layer(hidden, F, cond)
        coefficients = layer.cond_proj(cond).reshape(B, 2, channels, 3)  # (video, scale/shift, channel, basis)
        expected = hidden.clone()
        weight, bias = layer.conv.weight[:, :, :, 0, 0], layer.conv.bias  # (C_out, C_in, 3)
        for video in range(B):
            frames = hidden[video * F : (video + 1) * F]
            normed = torch.nn.functional.group_norm(frames, layer.norm.num_groups, layer.norm.weight, layer.norm.bias)
            h = torch.empty_like(normed)
            for f in range(F):
                u = -1.0 + 2.0 * f / (F - 1)
                scale, shift = coefficients[video] @ torch.tensor([1.0, u, u * u - 1.0 / 3.0])  # (C,) each
                h[f] = torch.nn.functional.silu(normed[f] * (1 + scale[:, None, None]) + shift[:, None, None])
            for f in range(F):
                total = bias[:, None, None].clone()
                for tap in range(3):
                    source = f + tap - 1
                    if 0 <= source < F:
                        total = total + torch.einsum("oc,chw->ohw", weight[:, :, tap], h[source])
                expected[video * F + f] += total
    assert (out - expected).abs().max().item() <= 1e-5
    with pytest.raises(ValueError, match=r"`cond` must be `\(batch=2, 24\)`, one per video, but is None"):
        layer(hidden, F)


def test_text_modulation_pools_the_text_without_masked_tokens(unet2d):
    """The temporal convolutions read the text: changing it changes the output beyond the spatial layers, while
    tokens masked out by `encoder_attention_mask` change nothing (the pooling, like cross-attention, skips them)."""
    plain = UNet3DModel.from_unet2d(unet2d).eval()
    modulated = UNet3DModel.from_unet2d(unet2d, temporal_text_modulation=True).eval()
    _randomize_temporal(modulated)
    missing, unexpected = plain.load_state_dict(modulated.state_dict(), strict=False)
    assert not missing and unexpected and all(".cond_proj." in k for k in unexpected)
    sample, timestep, text = _inputs()
    mask = torch.ones(B, text.shape[1])
    mask[:, 4:] = 0
    masked_changed = text.clone()
    masked_changed[:, 4:] += 3.0
    with torch.no_grad():
        out = modulated(sample, timestep, text, encoder_attention_mask=mask).sample
        same = modulated(sample, timestep, masked_changed, encoder_attention_mask=mask).sample
        difference = out - plain(sample, timestep, text, encoder_attention_mask=mask).sample
        single = modulated(sample[:, :, :1], timestep, text).sample - plain(sample[:, :, :1], timestep, text).sample
    assert (out - same).abs().max().item() <= 1e-5
    assert difference.abs().max() > 1e-3
    assert single.abs().max() == 0  # one frame: temporal layers skipped
    with pytest.raises(ValueError, match="`encoder_hidden_states` must be given"):
        UNet3DModel._pool_text(None, None)


def test_generic_processors_give_the_same_result_as_temporal_processors(unet2d):
    """Causality survives `set_attn_processor` with diffusers' own processors (a materialised mask)."""
    unet3d = UNet3DModel.from_unet2d(unet2d, temporal_attention="directed").eval()
    _randomize_temporal(unet3d)
    sample, timestep, text = _inputs()
    processors = unet3d.attn_processors
    temporal = [n for n in processors if ".temp_attentions." in n]
    assert temporal and all(isinstance(processors[n], TemporalAttnProcessor2_0) for n in temporal)
    with torch.no_grad():
        reference = unet3d(sample, timestep, text).sample
        unet3d.set_attn_processor(AttnProcessor())
        classic = unet3d(sample, timestep, text).sample
        unet3d.set_attn_processor(AttnProcessor2_0())
        sdpa = unet3d(sample, timestep, text).sample
        unet3d.set_default_attn_processor()
        default = unet3d(sample, timestep, text).sample
    for other in (classic, sdpa, default):
        assert (other - reference).abs().max().item() < 1e-5


def test_single_frame_skips_temporal_layers(unet2d):
    unet3d = UNet3DModel.from_unet2d(unet2d, frame_adaptor=True).eval()
    _randomize_temporal(unet3d)
    sample, timestep, text = _inputs(frames=1)
    with torch.no_grad():
        expected = _frame_by_frame(unet2d, sample, timestep, text)
        out = unet3d(sample, timestep, text).sample
    assert (out - expected).abs().max().item() <= 1e-5


def test_scalar_conditions_change_the_output_once_trained(unet2d):
    unet3d = UNet3DModel.from_unet2d(unet2d, scalar_conditions=("fps",)).eval()
    _randomize_temporal(unet3d, scale=0.5)
    sample, timestep, text = _inputs()
    with torch.no_grad():
        a = unet3d(sample, timestep, text, scalar_conds={"fps": 4}).sample
        b = unet3d(sample, timestep, text, scalar_conds={"fps": torch.tensor([4.0, 4.0])}).sample
        c = unet3d(sample, timestep, text, scalar_conds={"fps": 24}).sample
    assert torch.allclose(a, b)
    assert (a - c).abs().max() > 1e-4


def test_return_dict_false_and_scalar_timestep(unet2d):
    unet3d = UNet3DModel.from_unet2d(unet2d).eval()
    sample, _, text = _inputs()
    with torch.no_grad():
        (out,) = unet3d(sample, 500, text, return_dict=False)
        ref = unet3d(sample, torch.tensor([500, 500]), text).sample
    assert torch.equal(out, ref)


@pytest.mark.parametrize("frame_adaptor", [True, "conv"])
def test_forward_chunking_and_gradient_checkpointing_do_not_change_results(unet2d, frame_adaptor):
    unet3d = UNet3DModel.from_unet2d(unet2d, temporal_attention="directed", frame_adaptor=frame_adaptor)
    _randomize_temporal(unet3d)
    sample, timestep, text = _inputs()
    with torch.no_grad():
        auto = unet3d(sample, timestep, text).sample  # automatic inference chunking (B*F = 10 rows -> chunks of 2)
        unet3d.disable_forward_chunking()
        plain = unet3d(sample, timestep, text).sample
        unet3d.enable_forward_chunking(chunk_size=5, dim=0)
        chunked = unet3d(sample, timestep, text).sample
    assert (auto - plain).abs().max() < 1e-5 and (chunked - plain).abs().max() < 1e-5

    unet3d.disable_forward_chunking()
    unet3d.train()

    def grads():
        unet3d.zero_grad()
        unet3d(sample, timestep, text).sample.square().mean().backward()
        return {n: p.grad.clone() for n, p in unet3d.named_parameters() if p.grad is not None}

    reference = grads()
    unet3d.enable_gradient_checkpointing()
    assert all(b.gradient_checkpointing for b in unet3d.down_blocks)
    checkpointed = grads()
    assert reference.keys() == checkpointed.keys()
    assert any("temp_attentions" in n for n in reference) and any("frame_adaptors" in n for n in reference)
    for name, grad in reference.items():
        assert torch.allclose(grad, checkpointed[name], atol=1e-6), name


def test_lora_through_peft(unet2d, tmp_path):
    from peft import LoraConfig

    torch.manual_seed(0)  # temporal q/k/v start random (only their output is zero): same seed, same model
    unet3d = UNet3DModel.from_unet2d(unet2d).eval()
    sample, timestep, text = _inputs()
    with torch.no_grad():
        base = unet3d(sample, timestep, text).sample
    unet3d.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    lora_names = [n for n, _ in unet3d.named_parameters() if "lora_" in n]
    assert any(".temp_attentions." in n for n in lora_names) and any(".attentions." in n for n in lora_names)
    with torch.no_grad():
        assert torch.allclose(unet3d(sample, timestep, text).sample, base, atol=1e-6)  # LoRA B starts at zero
        for name, p in unet3d.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
        with_lora = unet3d(sample, timestep, text).sample
    assert (with_lora - base).abs().max() > 1e-4
    unet3d.save_lora_adapter(tmp_path / "lora")

    torch.manual_seed(0)
    fresh = UNet3DModel.from_unet2d(unet2d).eval()
    fresh.load_lora_adapter(tmp_path / "lora", prefix=None, weight_name="pytorch_lora_weights.safetensors")
    with torch.no_grad():
        assert torch.allclose(fresh(sample, timestep, text).sample, with_lora, atol=1e-5)


def test_save_and_reload_in_a_fresh_process(unet2d, tmp_path):
    unet3d = UNet3DModel.from_unet2d(unet2d, temporal_attention="directed", scalar_conditions=("fps",)).eval()
    _randomize_temporal(unet3d)
    sample, timestep, text = _inputs()
    with torch.no_grad():
        expected = unet3d(sample, timestep, text, scalar_conds={"fps": 8}).sample
    unet3d.save_pretrained(tmp_path / "unet")
    state = {k: v.clone() for k, v in unet3d.state_dict().items()}
    io = {"sample": sample, "timestep": timestep, "text": text, "expected": expected, "state": state}
    torch.save(io, tmp_path / "io.pt")
    config = json.loads((tmp_path / "unet" / "config.json").read_text())
    assert config["_class_name"] == "UNet3DModel" and config["temporal_attention"] == "directed"
    assert (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").exists()

    script = f"""
import torch
import diffusers_video
from diffusers import ModelMixin
from diffusers_video import UNet3DModel
io = torch.load({str(tmp_path / "io.pt")!r})
model = UNet3DModel.from_pretrained({str(tmp_path / "unet")!r}).eval()
with torch.no_grad():
    out = model(io["sample"], io["timestep"], io["text"], scalar_conds={{"fps": 8}}).sample
loaded = model.state_dict()
assert loaded.keys() == io["state"].keys()
assert all(torch.equal(loaded[k], v) for k, v in io["state"].items())  # every weight, bit for bit
diff = (out - io["expected"]).abs().max().item()
print("maxdiff", diff)
assert diff <= 1e-5, diff  # the same computation up to float32 summation order
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "maxdiff" in result.stdout


def test_from_pretrained_2d_reads_a_pipeline_folder(unet2d, tmp_path):
    unet2d.save_pretrained(tmp_path / "sd" / "unet")
    unet3d = UNet3DModel.from_pretrained_2d(str(tmp_path / "sd"), temporal_attention="directed").eval()
    sample, timestep, text = _inputs()
    with torch.no_grad():
        diff = (unet3d(sample, timestep, text).sample - _frame_by_frame(unet2d, sample, timestep, text)).abs().max()
    assert diff <= 1e-5


def test_fully_convolutional_unet_runs_above_its_training_size():
    """Imagen Video's super-resolution stages: no attention anywhere, any size divisible by the downsampling."""
    model = UNet3DModel(
        in_channels=6,
        out_channels=3,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        mid_block_type="UNetMidBlock2D",
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        temporal_attention=None,
        sample_size=16,
    ).eval()
    assert not model.attn_processors  # no attention layer at all
    with torch.no_grad():
        small = model(torch.randn(1, 6, 3, 16, 16), 10).sample
        large = model(torch.randn(1, 6, 3, 40, 24), 10).sample
    assert small.shape == (1, 3, 3, 16, 16) and large.shape == (1, 3, 3, 40, 24)


# ---------------------------------------------------------------------------------------------- bad input


@pytest.fixture
def tiny3d(unet2d):
    return UNet3DModel.from_unet2d(unet2d, frame_position_encoding="learned", max_frames=8).eval()


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda s, t, e: (s[:, :, 0], t, e), "5D tensor"),
        (lambda s, t, e: (s[:, :3], t, e), "3 channels"),
        (lambda s, t, e: (s[..., :12, :], t, e), "divisible by 8 but are 12 and 16"),
        (lambda s, t, e: (s, t, e[..., :20]), "(batch, tokens, 24)"),
        (lambda s, t, e: (s, t, None), "`encoder_hidden_states` is required"),
        (lambda s, t, e: (s, t, e[:1]), "batch size 1"),
        (lambda s, t, e: (torch.cat([s, s], 2), t, e), "at most 8 frames"),
    ],
)
def test_bad_forward_input_is_a_clear_value_error(tiny3d, make_args, message):
    sample, timestep, text = _inputs()
    with pytest.raises(ValueError, match=None) as error:
        with torch.no_grad():
            tiny3d(*make_args(sample, timestep, text))
    assert message in str(error.value)


def test_missing_scalar_condition_is_a_value_error(unet2d):
    unet3d = UNet3DModel.from_unet2d(unet2d, scalar_conditions=("fps",))
    sample, timestep, text = _inputs()
    with pytest.raises(ValueError, match=r"\['fps'\] but gives \[\]"):
        unet3d(sample, timestep, text)


def test_frame_adaptor_frame_limit(unet2d):
    unet3d = UNet3DModel.from_unet2d(unet2d, frame_adaptor=True, max_frames=4)
    sample, timestep, text = _inputs()
    with pytest.raises(ValueError, match="frame adaptor has parameters for at most 4 frames"):
        with torch.no_grad():
            unet3d(sample, timestep, text)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"class_embed_type": "timestep"}, "`class_embed_type='timestep'` cannot be inflated"),
        (
            {
                "addition_embed_type": "text_time",
                "addition_time_embed_dim": 8,
                "projection_class_embeddings_input_dim": 64,
            },
            "cannot be inflated",
        ),
        (
            {"down_block_types": ("AttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")},
            "'AttnDownBlock2D'",
        ),
        ({"time_embedding_act_fn": "silu"}, "`time_embedding_act_fn='silu'` cannot be inflated"),
        ({"mid_block_type": "UNetMidBlock2DSimpleCrossAttn"}, "'UNetMidBlock2DSimpleCrossAttn'"),
    ],
)
def test_a_unet2d_that_cannot_be_inflated_is_refused(overrides, message):
    unet = UNet2DConditionModel(**tiny_sd21_unet2d_config(**overrides))
    with pytest.raises(ValueError) as error:
        UNet3DModel.from_unet2d(unet)
    assert message in str(error.value)


def test_from_unet2d_rejects_unknown_options_and_fewer_channels(unet2d):
    with pytest.raises(TypeError, match="temporal_atention"):
        UNet3DModel.from_unet2d(unet2d, temporal_atention="directed")
    with pytest.raises(ValueError, match=r"`in_channels` \(2\) cannot be smaller"):
        UNet3DModel.from_unet2d(unet2d, in_channels=2)
    with pytest.raises(TypeError, match="UNet2DConditionModel"):
        UNet3DModel.from_unet2d(torch.nn.Linear(2, 2))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temporal_attention": "causal"}, "`temporal_attention` must be one of"),
        ({"frame_position_encoding": "rotary"}, "`frame_position_encoding` must be one of"),
        ({"scalar_conditions": ("fps", "fps")}, "duplicate"),
        ({"scalar_conditions": ("noise-level",)}, "identifiers"),
        ({"temporal_conv_kernel_size": 2}, "positive odd number but is 2"),
        ({"max_frames": 0}, "`max_frames` must be at least 1 but is 0"),
        (
            {"temporal_cross_attention": True, "temporal_attention": None},
            "`temporal_cross_attention=True` needs temporal attention layers of the default or parallel layout, "
            "but "
            "`temporal_attention` is None",
        ),
        (
            {"temporal_cross_attention": True, "temporal_layout": "modelscope", "frame_position_encoding": None},
            "`temporal_layout` is 'modelscope'",
        ),
        (
            {"temporal_text_modulation": True, "temporal_conv": False},
            "`temporal_text_modulation=True` needs temporal convolutions of the default or parallel layout, but "
            "`temporal_conv` is False",
        ),
    ],
)
def test_bad_config_is_a_clear_value_error(kwargs, message):
    config = {k: v for k, v in tiny_sd21_unet2d_config().items()}
    with pytest.raises(ValueError) as error:
        UNet3DModel(**config, **kwargs)
    assert message in str(error.value)


# Stable Diffusion 2.1's UNet config (stabilityai/stable-diffusion-2-1, unet/config.json), written out so no download.
SD21_UNET_CONFIG = dict(
    sample_size=96,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    attention_head_dim=(5, 10, 20, 20),
    cross_attention_dim=1024,
    use_linear_projection=True,
    upcast_attention=True,
    norm_num_groups=32,
    act_fn="silu",
    flip_sin_to_cos=True,
    freq_shift=0,
    downsample_padding=1,
    mid_block_scale_factor=1,
    norm_eps=1e-5,
)


@pytest.mark.slow
def test_inflating_the_exact_stable_diffusion_21_unet():
    """Opt-in (`--runslow`): the real SD 2.1 UNet config, 865M parameters, random weights, ~8 GB of RAM."""
    torch.manual_seed(0)
    unet2d = UNet2DConditionModel(**SD21_UNET_CONFIG).eval()
    assert 860e6 < sum(p.numel() for p in unet2d.parameters()) < 870e6
    unet3d = UNet3DModel.from_unet2d(unet2d, temporal_attention="directed", frame_adaptor=True).eval()
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 3, 32, 32, generator=g)
    text = torch.randn(1, 77, 1024, generator=g)
    timestep = torch.tensor([999])
    with torch.no_grad():
        expected = _frame_by_frame(unet2d, sample, timestep, text)
        out = unet3d(sample, timestep, text).sample
    assert (out - expected).abs().max().item() <= 1e-5
