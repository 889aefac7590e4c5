"""UNet3DModel's ModelScope temporal layout and `conversion_scripts/convert_modelscope_to_videofusion.py`.

A converted `UNet3DConditionModel` (diffusers' ModelScope text-to-video UNet) must compute what the original computes,
on videos and on single frames, in inference and in backward, with its own attention processors and LoRA adapters;
its weights keep their names. Tiny models are built in memory; every weight is random, the zero-initialised temporal
outputs included, so that a misplaced weight or a skipped layer changes the output.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import diffusers
import pytest
import torch
from conftest import load_script, tiny_clip_text_models, tiny_sd21_unet2d_config
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    PNDMScheduler,
    TextToVideoSDPipeline,
    UNet2DConditionModel,
    UNet3DConditionModel,
)
from diffusers.models.attention_processor import AttnProcessor
from safetensors.torch import load_file, save_file

import diffusers_video
from diffusers_video import DecomposedNoiseScheduler, UNet3DModel
from diffusers_video.cli import main as cli_main
from diffusers_video.models.temporal import ModelScopeTemporalTransformer, TemporalAttnProcessor2_0

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "conversion_scripts" / "convert_modelscope_to_videofusion.py"


converter = load_script(SCRIPT)

TINY_MODELSCOPE = dict(
    sample_size=8,
    block_out_channels=(32, 64),
    layers_per_block=1,
    norm_num_groups=8,
    cross_attention_dim=32,
    attention_head_dim=8,  # heads of 8 channels: 4 and 8 heads; transformer_in: 8 heads of 8 on 32 channels
    down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
    up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: one thread is as fast, and avoids spinning thread pools on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_modelscope_unet(seed: int = 0) -> UNet3DConditionModel:
    torch.manual_seed(seed)
    unet = UNet3DConditionModel(**TINY_MODELSCOPE)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if ".conv4." in name:  # TemporalConvLayer's zero-initialised output
                param.normal_(0, 0.1)
            else:
                param.add_(0.05 * torch.randn_like(param))
    return unet.eval()


@pytest.fixture(scope="module")
def modelscope_unet() -> UNet3DConditionModel:
    return make_modelscope_unet()


def convert_in_memory(unet: UNet3DConditionModel) -> UNet3DModel:
    model = UNet3DModel(**converter.unet3d_condition_config_to_unet3d(dict(unet.config)))
    model.load_state_dict(converter.convert_unet3d_condition_state_dict(unet.state_dict()), strict=True)
    return model.eval()


def _inputs(frames: int, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, 4, frames, 8, 8, generator=g)
    text = torch.randn(batch, 5, 32, generator=g)
    return sample, torch.tensor([10, 700][:batch]), text


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# ------------------------------------------------------------------------------------------------------------ parity


@pytest.mark.parametrize("frames", [4, 1])
def test_converted_unet_equals_unet3d_condition_model(modelscope_unet, frames):
    ours = convert_in_memory(modelscope_unet)
    sample, timestep, text = _inputs(frames)
    with torch.no_grad():
        expected = modelscope_unet(sample, timestep, text).sample
        out = ours(sample, timestep, text).sample
        # diffusers runs the temporal layers on a single frame too, and so must we: without them the output differs
        no_temporal = convert_in_memory(modelscope_unet)
        for name, param in no_temporal.named_parameters():  # zero every temporal layer's output
            temporal_transformer = name.startswith("transformer_in.") or ".temp_attentions." in name
            if ".conv4.3." in name or (temporal_transformer and ".proj_out." in name):
                param.zero_()
        without = no_temporal(sample, timestep, text).sample
    assert out.shape == (2, 4, frames, 8, 8)
    assert _max_diff(out, expected) <= 1e-5
    assert _max_diff(without, expected) > 1e-3


def test_repeated_videos_go_through_the_input_layers_once(modelscope_unet):
    """Classifier-free guidance passes the same noisy video twice, with different text: the input layers, which read
    the sample alone, run on each distinct video once, and the output is still diffusers' (order kept)."""
    ours = convert_in_memory(modelscope_unet)
    g = torch.Generator().manual_seed(1)
    video, other = torch.randn(2, 1, 4, 4, 8, 8, generator=g)
    sample = torch.cat([video, other, video, video])  # (4, C, F, H, W): videos 0, 2 and 3 are the same
    text = torch.randn(4, 5, 32, generator=g)
    timestep = torch.tensor([10, 10, 10, 700])
    seen = []
    hook = ours.transformer_in.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    with torch.no_grad():
        expected = modelscope_unet(sample, timestep, text).sample
        out = ours(sample, timestep, text).sample
    assert seen == [2 * 4]  # two distinct videos of 4 frames, not four
    assert _max_diff(out, expected) <= 1e-5
    assert diffusers_video.models.unet_3d.repeated_videos(sample) == ([0, 1], [0, 1, 0, 0])
    assert diffusers_video.models.unet_3d.repeated_videos(sample[:2]) is None
    # in training every video goes through (the gradient of each copy is its own)
    seen.clear()
    ours(sample, timestep, text).sample.sum().backward()
    hook.remove()
    assert seen == [4 * 4]


def test_parameter_names_are_diffusers_and_unet2d_names(modelscope_unet):
    ours = convert_in_memory(modelscope_unet).state_dict()
    theirs = modelscope_unet.state_dict()
    assert ours.keys() == theirs.keys()  # the key map is the identity
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs)
    # The spatial layers are UNet2DConditionModel's, names and shapes: heads of 8 channels = (4, 8) heads.
    unet2d = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 64),
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=32,
        attention_head_dim=(4, 8),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        use_linear_projection=True,
    ).state_dict()
    assert all(ours[key].shape == value.shape for key, value in unet2d.items())
    temporal = set(ours) - set(unet2d)
    assert temporal and all(
        key.startswith("transformer_in.") or ".temp_convs." in key or ".temp_attentions." in key for key in temporal
    )


def test_attention_processors_keep_their_names_and_results(modelscope_unet):
    ours = convert_in_memory(modelscope_unet)
    assert set(ours.attn_processors) == set(modelscope_unet.attn_processors)
    temporal = [name for name in ours.attn_processors if "temp_attentions" in name or "transformer_in" in name]
    assert temporal and all(isinstance(ours.attn_processors[name], TemporalAttnProcessor2_0) for name in temporal)
    sample, timestep, text = _inputs(3)
    with torch.no_grad():
        expected = modelscope_unet(sample, timestep, text).sample
        ours.set_attn_processor(AttnProcessor())  # diffusers' classic processor everywhere, temporal layers included
        generic = ours(sample, timestep, text).sample
        ours.set_default_attn_processor()
        default = ours(sample, timestep, text).sample
    assert isinstance(ours.attn_processors[temporal[0]], TemporalAttnProcessor2_0)
    assert _max_diff(generic, expected) <= 1e-5 and _max_diff(default, expected) <= 1e-5


def test_folded_projections_of_a_wide_temporal_transformer_equal_the_plain_computation():
    """In inference `transformer_in` (32 channels widened to 64) computes its first queries, keys and values from the
    32-channel input, and merges its feed-forward's last layer with `proj_out`; training takes the plain path."""
    torch.manual_seed(0)
    layer = ModelScopeTemporalTransformer(32, num_heads=8, head_dim=8, norm_num_groups=8).eval()
    with torch.no_grad():
        for param in layer.parameters():
            param.add_(0.1 * torch.randn_like(param))
        x = torch.randn(6, 32, 4, 4)  # 2 videos of 3 frames
        fast = layer(x, num_frames=3)
        block = layer.transformer_blocks[0]
        assert block._first_attention_from(torch.zeros(1, 3, 64), torch.zeros(1, 3, 32), layer.proj_in) is not None
        assert block._merged_output_projection(layer.proj_out, torch.float32) is not None
    with torch.enable_grad():
        plain = layer(x, num_frames=3).detach()
    assert _max_diff(fast, plain) <= 1e-5 and _max_diff(fast, x) > 1e-2


# ------------------------------------------------------------------------------------------------ training, adapters


def test_gradient_checkpointing_gives_the_gradients_of_diffusers(modelscope_unet):
    """In train mode (dropout 0.1 in the temporal convolutions) with and without checkpointing, and against diffusers
    in eval mode (no dropout): the same gradients for every parameter."""
    ours = convert_in_memory(modelscope_unet)
    sample, timestep, text = _inputs(3)

    def grads(model, seed=0):
        model.zero_grad()
        torch.manual_seed(seed)
        model(sample, timestep, text).sample.square().mean().backward()
        return {name: param.grad.clone() for name, param in model.named_parameters()}

    ours.train()
    reference = grads(ours)
    ours.enable_gradient_checkpointing()
    assert ours.gradient_checkpointing and all(block.gradient_checkpointing for block in ours.down_blocks)
    checkpointed = grads(ours)
    assert all(torch.allclose(reference[name], checkpointed[name], atol=1e-6) for name in reference)
    assert reference["transformer_in.transformer_blocks.0.attn1.to_q.weight"].abs().max() > 0

    ours.eval()
    peer = make_modelscope_unet()  # fresh copy: backward leaves grads on the module-scoped fixture otherwise
    ours_eval, theirs = grads(ours), grads(peer)
    for name, grad in theirs.items():
        assert torch.allclose(ours_eval[name], grad, atol=1e-5, rtol=1e-4), name


def test_lora_adapters_on_temporal_and_spatial_attention_match_diffusers_with_the_same_adapters(modelscope_unet):
    from peft import LoraConfig, inject_adapter_in_model

    targets = ["to_q", "to_k", "to_v", "to_out.0"]
    ours = convert_in_memory(modelscope_unet)
    sample, timestep, text = _inputs(3)
    with torch.no_grad():
        base = ours(sample, timestep, text).sample
    ours.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=targets))
    lora = {name: param for name, param in ours.named_parameters() if "lora_" in name}
    assert any(name.startswith("transformer_in.") for name in lora)
    assert any(".temp_attentions." in name for name in lora) and any(".attentions." in name for name in lora)
    torch.manual_seed(1)
    with torch.no_grad():
        # LoRA B starts at zero (float32 noise only: wrapped projections take the plain path, not the folded one)
        assert _max_diff(ours(sample, timestep, text).sample, base) <= 1e-5
        for name, param in lora.items():
            if "lora_B" in name:
                param.normal_(0, 0.1)
        with_lora = ours(sample, timestep, text).sample

    peer = make_modelscope_unet()
    peer = inject_adapter_in_model(LoraConfig(r=4, lora_alpha=4, target_modules=targets), peer)
    peer_lora = {name: param for name, param in peer.named_parameters() if "lora_" in name}
    assert peer_lora.keys() == lora.keys()
    with torch.no_grad():
        for name, param in peer_lora.items():
            param.copy_(lora[name])
        expected = peer.eval()(sample, timestep, text).sample
    assert _max_diff(with_lora, base) > 1e-3
    assert _max_diff(with_lora, expected) <= 1e-5


def test_inflating_an_image_unet_into_the_modelscope_layout_starts_as_the_image_unet(unet2d):
    unet3d = UNet3DModel.from_unet2d(
        unet2d, temporal_layout="modelscope", frame_position_encoding=None, temporal_attention_head_dim=8
    ).eval()
    assert unet3d.transformer_in is not None
    g = torch.Generator().manual_seed(0)
    sample, text, timestep = torch.randn(2, 4, 3, 16, 16, generator=g), torch.randn(2, 7, 24, generator=g), 500
    with torch.no_grad():
        flat = sample.permute(0, 2, 1, 3, 4).reshape(6, 4, 16, 16)
        expected = unet2d(flat, timestep, text.repeat_interleave(3, 0)).sample
        expected = expected.reshape(2, 3, 4, 16, 16).permute(0, 2, 1, 3, 4)
        assert _max_diff(unet3d(sample, timestep, text).sample, expected) <= 1e-5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"temporal_layout": "zeroscope"},
            "`temporal_layout` must be one of ('default', 'modelscope', 'parallel') but is 'zeroscope'.",
        ),
        ({"temporal_layout": "modelscope"}, "`frame_position_encoding` must be None"),
        (
            {"temporal_layout": "modelscope", "frame_position_encoding": None},
            "`temporal_attention_head_dim` must be between 1 and the smallest of `block_out_channels` (16)",
        ),
        (
            {"temporal_layout": "modelscope", "frame_position_encoding": None, "temporal_attention_head_dim": 8,
             "temporal_attention": "directed"},
            "`temporal_attention` must be 'bidirectional' or None with `temporal_layout='modelscope'`",
        ),
    ],
)  # fmt: skip
def test_bad_layout_config_is_a_clear_value_error(kwargs, message):
    with pytest.raises(ValueError) as error:
        UNet3DModel(**tiny_sd21_unet2d_config(), **kwargs)
    assert message in str(error.value)


# ---------------------------------------------------------------------------------------------- the pure conversion


def test_strict_state_dict_conversion_names_the_bad_key(modelscope_unet):
    state = modelscope_unet.state_dict()
    config = dict(modelscope_unet.config)
    extra = {**state, "down_blocks.0.temp_convs.0.conv5.weight": torch.zeros(1)}
    missing = {key: value for key, value in state.items() if key != "mid_block.temp_attentions.0.proj_in.bias"}
    reshaped = {**state, "transformer_in.proj_out.weight": torch.zeros(3, 3)}
    for cfg in (config, None):  # with the config, and with the architecture read from the weights
        with pytest.raises(ValueError, match=r"Unexpected key `down_blocks\.0\.temp_convs\.0\.conv5\.weight`"):
            converter.convert_unet3d_condition_state_dict(extra, cfg)
        with pytest.raises(ValueError, match=r"Missing key `mid_block\.temp_attentions\.0\.proj_in\.bias`"):
            converter.convert_unet3d_condition_state_dict(missing, cfg)
        with pytest.raises(ValueError, match=r"Shape mismatch for `transformer_in\.proj_out\.weight`"):
            converter.convert_unet3d_condition_state_dict(reshaped, cfg)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"act_fn": "gelu"}, "`act_fn='gelu'` cannot be converted"),
        ({"attention_head_dim": (8, 8)}, "`attention_head_dim=(8, 8)` cannot be converted"),
        ({"attention_head_dim": 12}, "it does not divide the block width 32"),
        ({"norm_num_groups": None}, "`norm_num_groups=None` cannot be converted"),
        ({"down_block_types": ("CrossAttnDownBlockMotion", "DownBlock3D")}, "not 'CrossAttnDownBlockMotion'"),
        ({"use_linear_projection": False}, "Unknown UNet3DConditionModel config key `use_linear_projection`"),
        ({"_class_name": "UNetMotionModel"}, "describes a UNetMotionModel"),
    ],
)
def test_unconvertible_configs_are_refused_by_name(overrides, message):
    with pytest.raises(ValueError) as error:
        converter.unet3d_condition_config_to_unet3d({**TINY_MODELSCOPE, **overrides})
    assert message in str(error.value)


def test_ddim_becomes_a_decomposed_scheduler_that_steps_identically():
    ddim = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
        steps_offset=1,
    )  # fmt: skip
    saved = {"_class_name": "DDIMScheduler", **ddim.config, "skip_prk_steps": True}  # as in ModelScope's file
    config, ignored = converter.ddim_config_to_decomposed(saved)
    assert ignored == ["skip_prk_steps"]
    decomposed = DecomposedNoiseScheduler(**config)
    assert decomposed.config.base_noise_ratio == 0 and decomposed.config.timestep_spacing == "leading"
    assert_steps_like_ddim(decomposed, ddim)
    with pytest.raises(ValueError, match="A PNDMScheduler cannot be converted exactly"):
        converter.ddim_config_to_decomposed({"_class_name": "PNDMScheduler", **PNDMScheduler().config})
    with pytest.raises(ValueError, match="names no scheduler class"):
        converter.ddim_config_to_decomposed(dict(ddim.config))


def assert_steps_like_ddim(decomposed: DecomposedNoiseScheduler, ddim: DDIMScheduler) -> None:
    ddim.set_timesteps(6)
    decomposed.set_timesteps(6)
    assert torch.equal(ddim.timesteps, decomposed.timesteps)
    g = torch.Generator().manual_seed(0)
    ours = theirs = torch.randn(1, 4, 3, 8, 8, generator=g)
    for t in ddim.timesteps:
        eps = torch.randn(1, 4, 3, 8, 8, generator=g)
        theirs = ddim.step(eps, t, theirs).prev_sample
        ours = decomposed.step(eps, t, ours).prev_sample
    assert _max_diff(ours, theirs) <= 1e-5


# ------------------------------------------------------------------------------------------------------------ the CLI


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = converter.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _compare_folder_unet(folder: Path, unet: UNet3DConditionModel) -> None:
    loaded = UNet3DModel.from_pretrained(folder).eval()
    assert loaded.config.temporal_layout == "modelscope"
    sample, timestep, text = _inputs(4)
    with torch.no_grad():
        assert _max_diff(loaded(sample, timestep, text).sample, unet(sample, timestep, text).sample) <= 1e-5


def test_cli_converts_a_unet_folder(modelscope_unet, tmp_path, capsys):
    modelscope_unet.save_pretrained(tmp_path / "ms_unet")
    code, out, err = _run(["--checkpoint", str(tmp_path / "ms_unet"), "--output_dir", str(tmp_path / "out")], capsys)
    assert code == 0, err
    assert "every name kept" in out
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["config.json", "diffusion_pytorch_model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ms_unet", "out"]  # no temporary folder left behind
    _compare_folder_unet(tmp_path / "out", modelscope_unet)


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory, modelscope_unet) -> Path:
    tokenizer, text_encoder = tiny_clip_text_models(text_dim=32)
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8, sample_size=16,
    )  # fmt: skip
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
        steps_offset=1,
    )  # fmt: skip
    pipe = TextToVideoSDPipeline(vae, text_encoder, tokenizer, modelscope_unet, scheduler)
    folder = tmp_path_factory.mktemp("t2v") / "text-to-video"
    pipe.save_pretrained(folder)
    return folder


def test_cli_converts_a_text_to_video_pipeline_folder(pipeline_folder, modelscope_unet, tmp_path, capsys):
    out_dir = tmp_path / "videofusion"
    code, out, err = _run(["--checkpoint", str(pipeline_folder), "--output_dir", str(out_dir)], capsys)
    assert code == 0, err
    assert "DDIMScheduler -> DecomposedNoiseScheduler(base_noise_ratio=0)" in out
    index = json.loads((out_dir / "model_index.json").read_text())
    assert index == {
        "_class_name": "VideoFusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "base_prediction_type": "epsilon",
        "base_unet": [None, None],
        # Module paths, as `DiffusionPipeline.save_pretrained` writes them: diffusers resolves a class of a library
        # it does not know through the module that defines it (a bare "diffusers_video" does not load).
        "residual_unet": ["diffusers_video.models.unet_3d", "UNet3DModel"],
        "scheduler": ["diffusers_video.schedulers.scheduling_decomposed", "DecomposedNoiseScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "model_index.json", "residual_unet", "scheduler", "text_encoder", "tokenizer", "vae",
    ]  # fmt: skip
    for name in ("vae", "text_encoder", "tokenizer"):  # copied byte for byte
        source = sorted(p.relative_to(pipeline_folder / name) for p in (pipeline_folder / name).rglob("*"))
        assert source == sorted(p.relative_to(out_dir / name) for p in (out_dir / name).rglob("*"))
        for path in source:
            if (pipeline_folder / name / path).is_file():
                assert (pipeline_folder / name / path).read_bytes() == (out_dir / name / path).read_bytes()
    _compare_folder_unet(out_dir / "residual_unet", modelscope_unet)
    scheduler = DecomposedNoiseScheduler.from_pretrained(out_dir / "scheduler")
    assert_steps_like_ddim(scheduler, DDIMScheduler.from_pretrained(pipeline_folder / "scheduler"))


def test_the_converted_pipeline_generates_what_text_to_video_sd_generates(pipeline_folder, tmp_path, capsys):
    assert _run(["--checkpoint", str(pipeline_folder), "--output_dir", str(tmp_path / "vf")], capsys)[0] == 0
    ours = diffusers_video.VideoFusionPipeline.from_pretrained(tmp_path / "vf")
    assert isinstance(ours.residual_unet, UNet3DModel) and ours.base_unet is None
    theirs = TextToVideoSDPipeline.from_pretrained(pipeline_folder)
    call = dict(num_frames=3, height=16, width=16, num_inference_steps=3, guidance_scale=7.5, output_type="np")
    for pipe in (ours, theirs):
        pipe.set_progress_bar_config(disable=True)
    expected = theirs("a red circle", generator=torch.Generator().manual_seed(0), **call).frames
    frames = ours("a red circle", generator=torch.Generator().manual_seed(0), **call).frames
    assert frames.shape == expected.shape == (1, 3, 16, 16, 3)
    assert abs(frames - expected).max() <= 1e-5


def test_cli_through_diffusers_video_convert(modelscope_unet, tmp_path, capsys):
    modelscope_unet.save_pretrained(tmp_path / "ms_unet")
    argv = ["convert", "modelscope", "--checkpoint", str(tmp_path / "ms_unet"), "--output_dir", str(tmp_path / "o")]
    assert cli_main(argv) == 0
    assert (tmp_path / "o" / "config.json").is_file()
    assert cli_main(["convert", "sd", "--checkpoint", str(tmp_path / "nowhere"), "--output_dir", str(tmp_path)]) == 1
    assert "nowhere` does not exist" in capsys.readouterr().err


def _one_line_error(capsys, argv: list[str]) -> str:
    code, _, err = _run(argv, capsys)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("convert_modelscope_to_videofusion.py: error: ")
    return err


def test_cli_bad_inputs_are_one_line_errors_and_leave_no_output(pipeline_folder, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert "`/nowhere` does not exist" in _one_line_error(capsys, ["--checkpoint", "/nowhere", "--output_dir", out])
    err = _one_line_error(capsys, ["--checkpoint", str(pipeline_folder / "vae"), "--output_dir", out])
    assert "describes a AutoencoderKL, not a UNet3DConditionModel" in err
    err = _one_line_error(capsys, ["--checkpoint", str(tmp_path), "--output_dir", out])
    assert "is neither a TextToVideoSDPipeline folder (model_index.json) nor a UNet3DConditionModel folder" in err
    err = _one_line_error(capsys, ["--checkpoint", str(pipeline_folder), "--output_dir", str(pipeline_folder)])
    assert "already exists and is not an empty folder" in err

    # A pipeline whose UNet lacks a weight fails after writing has begun: nothing may be left behind.
    broken = tmp_path / "broken"
    for name in ("vae", "text_encoder", "tokenizer", "unet", "scheduler"):
        shutil.copytree(pipeline_folder / name, broken / name)
    (broken / "model_index.json").write_text((pipeline_folder / "model_index.json").read_text())
    weights = broken / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    del state["up_blocks.1.temp_convs.0.conv3.3.bias"]
    save_file(state, weights)
    err = _one_line_error(capsys, ["--checkpoint", str(broken), "--output_dir", out])
    assert "Missing key `up_blocks.1.temp_convs.0.conv3.3.bias`" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]

    scheduler_config = broken / "scheduler" / "scheduler_config.json"
    pndm = {**json.loads(scheduler_config.read_text()), "_class_name": "PNDMScheduler"}
    scheduler_config.write_text(json.dumps(pndm))
    err = _one_line_error(capsys, ["--checkpoint", str(broken), "--output_dir", out])
    assert "A PNDMScheduler cannot be converted exactly" in err


def test_script_exit_code_in_a_subprocess(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--checkpoint", str(tmp_path / "none"), "--output_dir", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"convert_modelscope_to_videofusion.py: error: --checkpoint `{tmp_path / 'none'}` does not exist."
    ]


def test_a_permuted_non_contiguous_input_gives_the_contiguous_result():
    # a channels-last video permuted to (B, C, F, H, W) makes conv_in give channels-last frames; the temporal
    # transformer's group norm kernel needs contiguous memory
    torch.manual_seed(0)
    unet = UNet3DModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=4, cross_attention_dim=8, attention_head_dim=2, temporal_layout="modelscope",
        temporal_attention_head_dim=4, frame_position_encoding=None,
    ).eval()  # fmt: skip
    frames = torch.randn(1, 3, 8, 8, 4)  # (B, F, H, W, C): channels last in memory, as an image batch may be
    permuted = frames.permute(0, 4, 1, 2, 3)  # (B, C, F, H, W)
    assert not permuted.is_contiguous()
    text = torch.randn(1, 3, 8)
    with torch.no_grad():
        expected = unet(permuted.contiguous(), 5, encoder_hidden_states=text).sample
        torch.testing.assert_close(unet(permuted, 5, encoder_hidden_states=text).sample, expected)
