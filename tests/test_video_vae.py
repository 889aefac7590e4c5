"""AutoencoderKLVideo: identity at init against AutoencoderKL, temporal mixing, exact chunked decoding, SVD's decoder
converted, saving, checkpointing, low precision, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import load_script, tiny_vae
from diffusers import AutoencoderKL, AutoencoderKLTemporalDecoder, DiffusionPipeline
from safetensors.torch import load_file, save_file
from test_pipeline_videofusion import make_pipe as make_videofusion_pipe
from test_pipeline_videofusion import run as run_videofusion

from diffusers_video import VideoFusionPipeline
from diffusers_video.cli import main as cli_main
from diffusers_video.conversion.svd_decoder import (
    convert_svd_decoder,
    rename_svd_decoder_key,
    svd_decoder_state_dict_to_video_vae,
)
from diffusers_video.models.video_vae import AutoencoderKLVideo, temporal_parameter_names

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "conversion_scripts" / "convert_svd_decoder_to_video_vae.py"
VAE_CONFIG = dict(
    down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    block_out_channels=(32, 64), layers_per_block=1, latent_channels=4, norm_num_groups=32, sample_size=16,
)  # fmt: skip
FRAMES = 5
# (temporal_attention, temporal_attention_up_blocks)
OPTIONS = [(None, False), ("bidirectional", True), ("directed", False), ("directed", True)]


def _perturb(parameters, scale: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in parameters:
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)


def _perturb_temporal(model: AutoencoderKLVideo, scale: float = 0.3, seed: int = 1, only: str = "") -> None:
    """Random temporal weights (mix factors included); `only`: just those whose name contains it."""
    named = dict(model.named_parameters())
    _perturb([named[name] for name in temporal_parameter_names(model) if only in name], scale, seed)


def _frame_by_frame(vae: AutoencoderKL, z: torch.Tensor) -> torch.Tensor:
    """`vae.decode` of every frame of `z` `(B, C, F, h, w)`, as a video `(B, 3, F, H, W)`."""
    frames = vae.decode(z.transpose(1, 2).flatten(0, 1)).sample  # (B*F, 3, H, W)
    return frames.unflatten(0, (z.shape[0], z.shape[2])).transpose(1, 2)


def _latents(batch: int = 2, frames: int = FRAMES, size: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 4, frames, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def vae2d() -> AutoencoderKL:
    torch.manual_seed(0)
    vae = AutoencoderKL(**VAE_CONFIG).eval()
    _perturb(vae.parameters(), 0.02, seed=0)  # every weight non-default, so a wrong copy would show
    return vae


@pytest.fixture(scope="module")
def perturbed(vae2d) -> dict:
    """One model per temporal option, with random temporal weights."""
    models = {}
    for option in OPTIONS:
        model = AutoencoderKLVideo.from_vae2d(
            vae2d, temporal_attention=option[0], temporal_attention_up_blocks=option[1]
        ).eval()
        _perturb_temporal(model)
        models[option] = model
    return models


@pytest.fixture(scope="module")
def svd() -> AutoencoderKLTemporalDecoder:
    torch.manual_seed(0)
    model = AutoencoderKLTemporalDecoder(
        down_block_types=("DownEncoderBlock2D",) * 2, block_out_channels=(32, 64), layers_per_block=2, sample_size=16
    ).eval()
    _perturb(model.parameters(), 0.2, seed=3)  # every weight, the mix factors included
    return model


# ------------------------------------------------------------------ inflation


@pytest.mark.parametrize("option", OPTIONS)
@torch.no_grad()
def test_inflated_vae_decodes_as_the_image_vae_frame_by_frame(vae2d, option):
    model = AutoencoderKLVideo.from_vae2d(vae2d, temporal_attention=option[0], temporal_attention_up_blocks=option[1])
    z = _latents()
    expected = _frame_by_frame(vae2d, z)
    assert (model.decode(z).sample - expected).abs().max() <= 1e-5
    frames = model.decode(z.transpose(1, 2).flatten(0, 1), num_frames=FRAMES).sample  # the (B*F, C, h, w) layout
    assert (frames.unflatten(0, (2, FRAMES)).transpose(1, 2) - expected).abs().max() <= 1e-5


@torch.no_grad()
def test_inflation_with_other_group_counts_and_from_a_folder(vae2d, tmp_path):
    small = tiny_vae()  # the project's tiny VAE: channels (8, 16), 4 groups (diffusers' temporal blocks build 32)
    model = AutoencoderKLVideo.from_vae2d(small, temporal_attention="directed", temporal_attention_up_blocks=True)
    assert model.decoder.mid_block_temporal[0].temporal_res_block.norm1.num_groups == 4
    z = _latents(size=3)
    assert (model.decode(z).sample - _frame_by_frame(small, z)).abs().max() <= 1e-5

    vae2d.save_pretrained(tmp_path / "pipeline" / "vae")
    loaded = AutoencoderKLVideo.from_pretrained_2d(tmp_path / "pipeline", subfolder="vae", temporal_attention=None)
    assert loaded.config.temporal_attention is None
    assert (loaded.decode(z).sample - _frame_by_frame(vae2d, z)).abs().max() <= 1e-5


def test_spatial_weights_keep_the_image_vae_names(vae2d, perturbed):
    model = perturbed[("directed", True)]
    ours, theirs = set(model.state_dict()), set(vae2d.state_dict())
    assert theirs <= ours
    assert ours - theirs == set(temporal_parameter_names(model))
    fresh = AutoencoderKLVideo(
        **{**VAE_CONFIG, "temporal_attention": "directed", "temporal_attention_up_blocks": True}
    )
    result = fresh.load_state_dict(vae2d.state_dict(), strict=False)
    assert result.unexpected_keys == [] and set(result.missing_keys) == ours - theirs
    prefixes = {name.split(".")[1] for name in ours - theirs}
    assert prefixes == {
        "mid_block_temporal", "mid_block_temporal_attention", "up_blocks_temporal", "up_blocks_temporal_attention",
        "time_conv_out",
    }  # fmt: skip


@torch.no_grad()
def test_encode_is_the_image_encoder_frame_by_frame(vae2d, perturbed):
    model = perturbed[("bidirectional", True)]
    video = torch.rand(2, 3, 3, 8, 8, generator=torch.Generator().manual_seed(5)) * 2 - 1
    images = video.transpose(1, 2).flatten(0, 1)  # (B*F, 3, H, W)
    expected = vae2d.encode(images).latent_dist
    posterior = model.encode(video).latent_dist
    assert posterior.mean.shape == (2, 4, 3, 4, 4)
    assert torch.equal(posterior.mean, expected.mean.unflatten(0, (2, 3)).transpose(1, 2))
    assert torch.equal(posterior.logvar, expected.logvar.unflatten(0, (2, 3)).transpose(1, 2))
    assert torch.equal(model.encode(images).latent_dist.mean, expected.mean)
    assert model(video).sample.shape == video.shape


# ------------------------------------------------------------------ the temporal layers


def _changed_frames(model: AutoencoderKLVideo, frame: int, tolerance: float = 1e-6) -> list[int]:
    """The decoded frames that change when the latent of `frame` alone changes."""
    z = _latents(batch=1, frames=6)
    edited = z.clone()
    edited[:, :, frame] += torch.randn(edited[:, :, frame].shape, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        difference = (model.decode(edited).sample - model.decode(z).sample).abs().amax(dim=(0, 1, 3, 4))
    return [i for i, value in enumerate(difference.tolist()) if value > tolerance]


def test_time_conv_out_mixes_exactly_the_neighbouring_frames(vae2d):
    model = AutoencoderKLVideo.from_vae2d(vae2d, temporal_attention=None)
    assert _changed_frames(model, 3) == [3]  # identity at init: frame by frame
    _perturb_temporal(model, only="time_conv_out")  # a centred (3, 1, 1) convolution
    assert _changed_frames(model, 3) == [2, 3, 4]


def test_temporal_resnet_blocks_mix_frames_both_ways(vae2d):
    model = AutoencoderKLVideo.from_vae2d(vae2d, temporal_attention=None)
    _perturb_temporal(model, only="temporal_res_block")
    # Centred convolutions read the next frame as well as the previous one, and their GroupNorms pool all frames.
    assert _changed_frames(model, 3) == list(range(6))


def test_directed_attention_reaches_only_later_frames(vae2d):
    directed = AutoencoderKLVideo.from_vae2d(vae2d, temporal_attention="directed", temporal_attention_up_blocks=True)
    bidirectional = AutoencoderKLVideo.from_vae2d(vae2d, temporal_attention="bidirectional")
    for model in (directed, bidirectional):
        _perturb_temporal(model, only="attention")  # attention only: the convolutions stay the identity
    assert _changed_frames(directed, 3) == [3, 4, 5]
    assert _changed_frames(bidirectional, 3) == list(range(6))
    # The whole decoder is causal only while the centred convolutions are the identity.
    _perturb_temporal(directed, only="time_conv_out")
    assert _changed_frames(directed, 3) == [2, 3, 4, 5]


@pytest.mark.parametrize("option", OPTIONS)
@torch.no_grad()
def test_chunked_decode_equals_the_whole_clip(perturbed, option):
    model = perturbed[option]
    z = _latents(frames=7)
    whole = model.decode(z).sample
    for chunk in (1, 2, 3, 7, 9):
        assert (model.decode(z, decode_chunk_size=chunk).sample - whole).abs().max() <= 1e-4, chunk


@torch.no_grad()
def test_both_layouts_slicing_and_tiling(vae2d, perturbed):
    model = perturbed[("directed", True)]
    z = _latents(size=6)
    video = model.decode(z).sample  # (B, 3, F, H, W)
    frames = model.decode(z.transpose(1, 2).flatten(0, 1), num_frames=FRAMES).sample  # (B*F, 3, H, W)
    assert torch.allclose(frames.unflatten(0, (2, FRAMES)).transpose(1, 2), video, atol=1e-6)
    model.enable_slicing()
    try:
        assert (model.decode(z).sample - video).abs().max() <= 1e-5
    finally:
        model.disable_slicing()

    # Tiles of 4x4 latents: at init, our tiled decode is AutoencoderKL's tiled decode frame by frame.
    inflated = AutoencoderKLVideo.from_vae2d(
        vae2d, temporal_attention="bidirectional", temporal_attention_up_blocks=True
    )
    for vae in (vae2d, inflated):
        vae.enable_tiling()
        vae.tile_sample_min_size, vae.tile_latent_min_size = 8, 4
    try:
        tiled = inflated.decode(z).sample
        assert (tiled - _frame_by_frame(vae2d, z)).abs().max() <= 1e-5
        vae2d.disable_tiling()
        assert (tiled - _frame_by_frame(vae2d, z)).abs().max() > 1e-3  # tiling really happened
    finally:
        vae2d.disable_tiling()
        vae2d.tile_sample_min_size, vae2d.tile_latent_min_size = 16, 8


def test_save_and_load_round_trip(perturbed, tmp_path):
    model = perturbed[("directed", True)]
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = AutoencoderKLVideo.from_pretrained(tmp_path).eval()
    settings = lambda config: {key: value for key, value in config.items() if not key.startswith("_")}  # noqa: E731
    assert settings(loaded.config) == settings(model.config)
    z = _latents()
    with torch.no_grad():
        assert torch.equal(loaded.decode(z).sample, model.decode(z).sample)

    # Loading is strict: a weight too many or too few is an error that names it (diffusers would only warn).
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    weights = load_file(path)
    save_file({**weights, "decoder.stray.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=r"unexpected keys `decoder\.stray\.weight`"):
        AutoencoderKLVideo.from_pretrained(tmp_path)
    save_file({key: value for key, value in weights.items() if key != "decoder.time_conv_out.bias"}, path)
    with pytest.raises(ValueError, match=r"missing keys `decoder\.time_conv_out\.bias`"):
        AutoencoderKLVideo.from_pretrained(tmp_path)


def test_gradient_checkpointing_gives_the_same_gradients(vae2d):
    model = AutoencoderKLVideo.from_vae2d(vae2d, temporal_attention="directed", temporal_attention_up_blocks=True)
    _perturb_temporal(model)
    z = _latents(frames=3)

    def gradients(chunk: int | None = None) -> dict[str, torch.Tensor]:
        model.zero_grad()
        model.decode(z, decode_chunk_size=chunk).sample.square().mean().backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    plain = gradients()
    assert len(plain) == len(list(model.decoder.parameters())) + 2  # and post_quant_conv
    model.enable_gradient_checkpointing()
    assert model.decoder.gradient_checkpointing
    # Checkpointed, and checkpointed with chunks (which then write to new tensors, not over their inputs).
    for checkpointed in (gradients(), gradients(chunk=2)):
        assert plain.keys() == checkpointed.keys()
        for name, grad in plain.items():
            assert torch.allclose(checkpointed[name], grad, rtol=1e-4, atol=1e-7), name
    model.disable_gradient_checkpointing()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@torch.no_grad()
def test_low_precision_decode_has_no_nan(perturbed, dtype):
    reference = perturbed[("directed", True)]
    model = AutoencoderKLVideo.from_config(reference.config).eval()
    model.load_state_dict(reference.state_dict())
    model = torch.nn.Module.to(model, dtype)
    z = _latents()
    expected = reference.decode(z).sample
    for chunk in (None, 2):
        frames = model.decode(z.to(dtype), decode_chunk_size=chunk).sample
        assert frames.dtype == dtype and torch.isfinite(frames).all()
        assert (frames.float() - expected).abs().max() < 0.1


# ------------------------------------------------------------------ SVD's decoder


@torch.no_grad()
def test_converted_svd_decoder_decodes_the_same_frames(svd):
    config, state_dict = svd_decoder_state_dict_to_video_vae(svd.state_dict(), svd.config)
    assert config["temporal_attention"] is None
    model = AutoencoderKLVideo(**config).eval()
    model.load_state_dict(state_dict, strict=True)
    assert torch.equal(model.post_quant_conv.weight[:, :, 0, 0], torch.eye(4))
    assert model.decoder.mid_block_temporal[1].time_mixer.mix_factor.item() != 0.0  # perturbed, so mapped

    frames = _latents(frames=6).transpose(1, 2).flatten(0, 1)  # (B*F, 4, h, w), SVD's layout
    expected = svd.decode(frames, num_frames=6).sample
    assert (model.decode(frames, num_frames=6).sample - expected).abs().max() <= 1e-4
    for chunk in (1, 4):
        chunked = model.decode(frames, num_frames=6, decode_chunk_size=chunk).sample
        assert (chunked - expected).abs().max() <= 1e-4, chunk
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    assert torch.equal(model.encode(images).latent_dist.mean, svd.encode(images).latent_dist.mean)


def test_svd_conversion_is_strict(svd):
    assert rename_svd_decoder_key("decoder.up_blocks.1.resnets.2.time_mixer.mix_factor") == (
        "decoder.up_blocks_temporal.1.2.time_mixer.mix_factor"
    )
    state_dict = dict(svd.state_dict())
    with pytest.raises(ValueError, match=r"decoder\.extra\.weight"):
        svd_decoder_state_dict_to_video_vae({**state_dict, "decoder.extra.weight": torch.zeros(1)}, svd.config)
    incomplete = {key: value for key, value in state_dict.items() if key != "decoder.time_conv_out.bias"}
    with pytest.raises(ValueError, match=r"decoder\.time_conv_out\.bias"):
        svd_decoder_state_dict_to_video_vae(incomplete, svd.config)
    wrong_shape = {**state_dict, "quant_conv.bias": torch.zeros(3)}
    with pytest.raises(ValueError, match=r"quant_conv\.bias"):
        svd_decoder_state_dict_to_video_vae(wrong_shape, svd.config)
    with pytest.raises(ValueError, match="layers_per_block=1"):
        svd_decoder_state_dict_to_video_vae(state_dict, {**svd.config, "layers_per_block": 1})
    with pytest.raises(ValueError, match="AutoencoderKL'"):
        svd_decoder_state_dict_to_video_vae(state_dict, {**svd.config, "_class_name": "AutoencoderKL"})


def test_svd_folder_conversion_and_script(svd, tmp_path, capsys):
    svd.save_pretrained(tmp_path / "svd" / "vae")
    summary = convert_svd_decoder(tmp_path / "svd", tmp_path / "out")
    loaded = AutoencoderKLVideo.from_pretrained(tmp_path / "out").eval()
    assert summary.converted_tensors == len(svd.state_dict())
    frames = _latents(frames=3).transpose(1, 2).flatten(0, 1)
    with torch.no_grad():
        expected = svd.decode(frames, num_frames=3).sample
        assert (loaded.decode(frames, num_frames=3).sample - expected).abs().max() <= 1e-4

    script = load_script(SCRIPT)
    assert script.main(["--checkpoint", str(tmp_path / "svd" / "vae"), "--output_dir", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "config.json").is_file()
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["_class_name"] == "AutoencoderKLVideo"
    # the same through the installed command line
    command = ["convert", "svd-decoder", "--checkpoint", str(tmp_path / "svd"), "--output_dir", str(tmp_path / "cmd")]
    assert cli_main(command) == 0
    torch.testing.assert_close(
        AutoencoderKLVideo.from_pretrained(tmp_path / "cmd").state_dict(), loaded.state_dict(), rtol=0, atol=0
    )

    # A folder with an unexpected key: refused, naming it, on one line, and nothing written.
    weights = tmp_path / "svd" / "vae" / "diffusion_pytorch_model.safetensors"
    save_file({**load_file(weights), "decoder.surprise": torch.zeros(2)}, weights)
    capsys.readouterr()
    assert script.main(["--checkpoint", str(tmp_path / "svd"), "--output_dir", str(tmp_path / "bad")]) == 1
    error = capsys.readouterr().err
    assert "decoder.surprise" in error and error.count("\n") == 1
    assert not (tmp_path / "bad").exists()
    assert script.main(["--checkpoint", str(tmp_path / "nowhere"), "--output_dir", str(tmp_path / "bad")]) == 1


# ------------------------------------------------------------------ bad input


@torch.no_grad()
def test_bad_input_is_refused_naming_the_value(vae2d, perturbed):
    model = perturbed[(None, False)]
    z = _latents()
    for shape in ((2, 4, 4), (1, 2, 4, 5, 4, 4)):  # wrong rank
        with pytest.raises(ValueError, match=f"but have shape {tuple(shape)}".replace("(", r"\(").replace(")", r"\)")):
            model.decode(torch.zeros(shape))
    with pytest.raises(ValueError, match=r"\(2, 3, 5, 4, 4\)"):
        model.decode(z[:, :3])
    with pytest.raises(ValueError, match=r"`num_frames` \(3\) must divide the batch of latent frames, 10"):
        model.decode(z.transpose(1, 2).flatten(0, 1), num_frames=3)
    with pytest.raises(ValueError, match="`num_frames` is 4"):
        model.decode(z, num_frames=4)
    for chunk in (0, -2):
        with pytest.raises(ValueError, match=f"`decode_chunk_size` must be None or at least 1 but is {chunk}"):
            model.decode(z, decode_chunk_size=chunk)
    with pytest.raises(ValueError, match=r"\(2, 4, 5, 8, 8\)"):
        model.encode(torch.zeros(2, 4, 5, 8, 8))

    attention_up = AutoencoderKL(**{**VAE_CONFIG, "up_block_types": ("AttnUpDecoderBlock2D",) * 2})
    with pytest.raises(ValueError, match="AttnUpDecoderBlock2D"):
        AutoencoderKLVideo.from_vae2d(attention_up)
    with pytest.raises(ValueError, match="'sideways'"):
        AutoencoderKLVideo.from_vae2d(vae2d, temporal_attention="sideways")
    with pytest.raises(ValueError, match="`temporal_attention_head_dim` must be at least 1 but is 0"):
        AutoencoderKLVideo.from_vae2d(vae2d, temporal_attention_head_dim=0)
    with pytest.raises(TypeError, match="temporal_conv"):
        AutoencoderKLVideo.from_vae2d(vae2d, temporal_conv=False)


# ------------------------------------------------------------------ in a pipeline


def test_videofusion_takes_the_video_vae_and_saves_and_loads_it(tmp_path):
    """At init the video VAE decodes as the image VAE does; a folder saved with it loads with it."""
    pipe = make_videofusion_pipe()
    image_frames = run_videofusion(pipe, output_type="pt")
    pipe.vae = AutoencoderKLVideo.from_vae2d(pipe.vae)
    torch.testing.assert_close(run_videofusion(pipe, output_type="pt"), image_frames, atol=1e-5, rtol=0)
    with torch.no_grad():
        for p in pipe.vae.decoder.time_conv_out.parameters():
            p.add_(0.1)
    trained = run_videofusion(pipe, output_type="pt")
    assert (trained - image_frames).abs().max() > 1e-3
    pipe.save_pretrained(tmp_path / "pipe")
    for loaded in (
        VideoFusionPipeline.from_pretrained(tmp_path / "pipe"),
        DiffusionPipeline.from_pretrained(tmp_path / "pipe", trust_remote_code=True),  # diffusers' own loader
    ):
        assert type(loaded) is VideoFusionPipeline and isinstance(loaded.vae, AutoencoderKLVideo)
        loaded.set_progress_bar_config(disable=True)
        torch.testing.assert_close(run_videofusion(loaded, output_type="pt"), trained, atol=1e-6, rtol=0)
