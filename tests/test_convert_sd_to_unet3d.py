"""`conversion_scripts/convert_sd_to_unet3d.py`: Stable Diffusion UNet -> `UNet3DModel`, offline, on tiny models.

Every conversion must give a `UNet3DModel` folder that equals the source 2D UNet frame by frame. Original (LDM)
single files are made here from diffusers UNets by `to_ldm_state_dict`, the inverse of diffusers'
`convert_ldm_unet_checkpoint`; a sockets guard fails any test that tries to reach the network.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from accelerate import init_empty_weights
from conftest import load_script
from diffusers import UNet2DConditionModel
from safetensors import safe_open
from safetensors.torch import save_file

from diffusers_video import UNet3DModel

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "conversion_scripts" / "convert_sd_to_unet3d.py"
LDM_PREFIX = "model.diffusion_model."


converter = load_script(SCRIPT)

# Stable Diffusion 2.1's UNet options at a tiny size: linear projections, upcast attention, per-block heads, a last
# block without attention; norm_num_groups=8 breaks SD's rules, so the single file needs --config.
TINY_SD21 = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(32, 32, 64),
    layers_per_block=2,
    norm_num_groups=8,
    cross_attention_dim=24,
    attention_head_dim=(2, 2, 4),
    use_linear_projection=True,
    upcast_attention=True,
)
# Tiny UNets that follow SD's rules (norm_num_groups=32; 2.x: 64-channel heads; 1.x: 8 heads), so that their
# config can be inferred from the tensor shapes.
TINY_SD2_RULES = dict(
    TINY_SD21, block_out_channels=(64, 64, 128), norm_num_groups=32, attention_head_dim=(1, 1, 2), sample_size=96
)
TINY_SD1_RULES = dict(
    TINY_SD2_RULES, attention_head_dim=8, use_linear_projection=False, upcast_attention=False, sample_size=64
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: one thread is as fast, and avoids spinning thread pools on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail the test if anything tries to open a connection (the Hub included), even if the error is swallowed."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access is not allowed in this test")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield
    assert not attempts, f"network access attempted: {attempts}"


def make_unet(config: dict, seed: int = 0) -> UNet2DConditionModel:
    """A tiny UNet whose every weight (norms and biases too) is random, so a misplaced weight changes the output."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**config)
    with torch.no_grad():
        for param in unet.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return unet.eval()


_RESNET_TO_LDM = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_TOP_TO_LDM = {
    "conv_in": "input_blocks.0.0",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


def to_ldm_state_dict(unet: UNet2DConditionModel, prefix: str = LDM_PREFIX) -> dict[str, torch.Tensor]:
    """The UNet's weights under original Stable Diffusion (LDM) names: the inverse of `convert_ldm_unet_checkpoint`."""
    per_block = unet.config.layers_per_block + 1  # LDM rows per block: the resnets, then the down/upsampler
    ldm = {}
    for key, value in unet.state_dict().items():
        parts = key.split(".")
        if parts[0] in ("down_blocks", "up_blocks"):
            block, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if parts[0] == "down_blocks":
                row = 1 + block * per_block + index
                if kind == "resnets":
                    new = f"input_blocks.{row}.0.{_resnet_to_ldm(rest)}"
                elif kind == "attentions":
                    new = f"input_blocks.{row}.1.{rest}"
                else:  # downsamplers.0.conv.{weight,bias}
                    new = f"input_blocks.{1 + block * per_block + per_block - 1}.0.op.{parts[-1]}"
            else:
                row = block * per_block + index
                if kind == "resnets":
                    new = f"output_blocks.{row}.0.{_resnet_to_ldm(rest)}"
                elif kind == "attentions":
                    new = f"output_blocks.{row}.1.{rest}"
                else:  # upsamplers.0.conv.*: after the row's transformer if the block has one
                    position = 2 if hasattr(unet.up_blocks[block], "attentions") else 1
                    new = f"output_blocks.{block * per_block + per_block - 1}.{position}.{rest}"
        elif parts[0] == "mid_block":
            kind, index, rest = parts[1], int(parts[2]), ".".join(parts[3:])
            if kind == "resnets":
                new = f"middle_block.{2 * index}.{_resnet_to_ldm(rest)}"
            else:
                new = f"middle_block.1.{rest}"
        else:
            module, param = key.rsplit(".", 1)
            new = f"{_TOP_TO_LDM[module]}.{param}"
        ldm[prefix + new] = value.clone()
    return ldm


def _resnet_to_ldm(rest: str) -> str:
    layer, param = rest.split(".", 1)
    return f"{_RESNET_TO_LDM[layer]}.{param}"


def full_sd_checkpoint(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """An original full checkpoint: the UNet plus stand-ins for the VAE, the text encoder and schedule buffers."""
    checkpoint = to_ldm_state_dict(unet)
    checkpoint["first_stage_model.decoder.conv_in.weight"] = torch.randn(8, 4, 3, 3)
    checkpoint["first_stage_model.decoder.conv_in.bias"] = torch.randn(8)
    checkpoint["cond_stage_model.model.ln_final.weight"] = torch.randn(8)
    checkpoint["alphas_cumprod"] = torch.rand(10)
    return checkpoint


def assert_equals_frame_by_frame(
    unet3d: UNet3DModel, unet2d: UNet2DConditionModel, extra_channels: int = 0, scalar_conds: dict | None = None
) -> None:
    """Same spatial weights, and the video model on (batch, channels, frames, h, w) = the image model on each frame."""
    state3d = unet3d.state_dict()
    for key, value in unet2d.state_dict().items():
        if key != "conv_in.weight" or not extra_channels:
            assert torch.equal(state3d[key], value), key
    batch, frames, size = 2, 3, 8
    channels = unet2d.config.in_channels
    generator = torch.Generator().manual_seed(1)
    sample = torch.randn(batch, channels + extra_channels, frames, size, size, generator=generator)
    text = torch.randn(batch, 5, unet2d.config.cross_attention_dim, generator=generator)
    timestep = torch.tensor([10, 700])
    with torch.no_grad():
        video = unet3d(sample, timestep, text, scalar_conds=scalar_conds).sample  # (B, C, F, H, W)
        frames_2d = sample[:, :channels].permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, size, size)
        images = unet2d(
            frames_2d, timestep.repeat_interleave(frames), text.repeat_interleave(frames, dim=0)
        ).sample  # (B*F, C, H, W)
    video = video.permute(0, 2, 1, 3, 4).reshape(batch * frames, -1, size, size)
    assert video.shape == images.shape
    assert (video - images).abs().max().item() <= 1e-5


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = converter.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def sd21_unet() -> UNet2DConditionModel:
    return make_unet(TINY_SD21)


@pytest.fixture(scope="module")
def sd21_files(sd21_unet, tmp_path_factory) -> dict[str, Path]:
    """The tiny SD-2.1-shaped UNet as a pipeline folder, a UNet folder, a config-only folder and an original file."""
    root = tmp_path_factory.mktemp("sd21")
    sd21_unet.save_pretrained(root / "pipeline" / "unet")
    (root / "pipeline" / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    sd21_unet.save_pretrained(root / "unet")
    sd21_unet.save_config(root / "config_only")
    save_file(full_sd_checkpoint(sd21_unet), root / "sd21.safetensors")
    return {
        "pipeline": root / "pipeline",
        "unet": root / "unet",
        "config_only": root / "config_only",
        "single_file": root / "sd21.safetensors",
    }


# ------------------------------------------------------------------------------------------------- successful ones


@pytest.mark.parametrize("layout", ["pipeline", "unet"])
def test_diffusers_folder_converts_to_unet3d_equal_frame_by_frame(layout, sd21_unet, sd21_files, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = run(["--checkpoint", sd21_files[layout], "--output_dir", out], capsys)
    assert code == 0, stderr
    assert "copied" in stdout and "temporal parameters" in stdout
    assert json.loads((out / "config.json").read_text())["_class_name"] == "UNet3DModel"
    assert (out / "diffusion_pytorch_model.safetensors").is_file()

    unet3d = UNet3DModel.from_pretrained(out).eval()
    assert unet3d.config.use_linear_projection and unet3d.config.upcast_attention
    assert list(unet3d.config.attention_head_dim) == [2, 2, 4]
    assert any(".temp_attentions." in name for name, _ in unet3d.named_parameters())
    assert_equals_frame_by_frame(unet3d, sd21_unet)


def test_original_single_file_with_config_dir(sd21_unet, sd21_files, tmp_path):
    out = tmp_path / "out"
    summary = converter.convert(sd21_files["single_file"], out, config=sd21_files["config_only"])
    assert summary.ignored_keys == {"first_stage_model": 2, "cond_stage_model": 1, "alphas_cumprod": 1}
    assert summary.copied_parameters == sum(param.numel() for param in sd21_unet.parameters())
    assert summary.temporal_parameters > 0
    assert_equals_frame_by_frame(UNet3DModel.from_pretrained(out).eval(), sd21_unet)


@pytest.mark.parametrize("rules", ["sd2", "sd1"])
def test_original_single_file_with_config_inferred_from_shapes(rules, tmp_path, capsys):
    """SD 2.x rules from a prefixed .safetensors file; SD 1.x rules from a bare-keyed, nested .ckpt pickle."""
    config = TINY_SD2_RULES if rules == "sd2" else TINY_SD1_RULES
    unet = make_unet(config, seed=1)
    if rules == "sd2":
        path = tmp_path / "model.safetensors"
        save_file(full_sd_checkpoint(unet), path)
        argv = []
    else:
        path = tmp_path / "model.ckpt"
        torch.save({"state_dict": to_ldm_state_dict(unet, prefix=""), "global_step": 7}, path)
        argv = ["--allow_pickle"]
    out = tmp_path / "out"
    code, stdout, stderr = run(["--checkpoint", path, "--output_dir", out, *argv], capsys)
    assert code == 0, stderr
    assert "inferred from the tensor shapes" in stdout

    unet3d = UNet3DModel.from_pretrained(out).eval()
    for key, value in config.items():
        expected = list(value) if isinstance(value, tuple) else value
        got = unet3d.config[key]
        assert (list(got) if isinstance(got, (list, tuple)) else got) == expected, key
    assert_equals_frame_by_frame(unet3d, unet)


@pytest.mark.parametrize("version", ["2.1", "1.5"])
def test_full_size_stable_diffusion_layout_is_inferred_and_maps_strictly(version):
    """At the real SD 2.1 / 1.5 sizes, on the meta device: the inferred config is the published one, every key maps."""
    published = dict(  # the fields of stabilityai/stable-diffusion-2-1's unet/config.json that shapes decide
        block_out_channels=[320, 640, 1280, 1280],
        layers_per_block=2,
        down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        cross_attention_dim=1024,
        attention_head_dim=[5, 10, 20, 20],
        use_linear_projection=True,
        upcast_attention=True,
        sample_size=96,
        in_channels=4,
        out_channels=4,
        norm_num_groups=32,
    )
    if version == "1.5":
        published.update(
            cross_attention_dim=768, attention_head_dim=8, use_linear_projection=False, upcast_attention=False
        )
        published["sample_size"] = 64
    with init_empty_weights():
        unet = UNet2DConditionModel(**published)
    ldm = to_ldm_state_dict(unet)
    config = converter.infer_unet_config({key[len(LDM_PREFIX) :]: tuple(v.shape) for key, v in ldm.items()})
    assert {key: config[key] for key in published} == published
    empty = converter.empty_unet2d(config, "inferred")
    weights, origin = converter.convert_ldm_state_dict(ldm, empty.config, "sd.safetensors")
    converter.load_weights_strictly(empty, weights, "sd.safetensors", "inferred", origin)
    assert sum(param.numel() for param in empty.parameters()) == sum(param.numel() for param in unet.parameters())


def test_original_single_file_with_original_yaml(tmp_path):
    unet = make_unet(TINY_SD2_RULES, seed=2)
    path = tmp_path / "model.safetensors"
    save_file(to_ldm_state_dict(unet), path)
    original = {
        "model": {
            "params": {
                "parameterization": "v",
                "unet_config": {
                    "params": {
                        "in_channels": 4,
                        "out_channels": 4,
                        "model_channels": 64,
                        "attention_resolutions": [1, 2],
                        "num_res_blocks": 2,
                        "channel_mult": [1, 1, 2],
                        "num_head_channels": 64,
                        "use_linear_in_transformer": True,
                        "transformer_depth": 1,
                        "context_dim": TINY_SD2_RULES["cross_attention_dim"],
                    }
                },
                "first_stage_config": {"params": {"ddconfig": {"ch_mult": [1, 2, 4, 4]}}},
            }
        }
    }
    yaml_path = tmp_path / "v2-inference-v.yaml"
    yaml_path.write_text(yaml.safe_dump(original))
    summary = converter.convert(path, tmp_path / "out", original_config=yaml_path)
    assert summary.config["upcast_attention"] is True
    assert_equals_frame_by_frame(UNet3DModel.from_pretrained(tmp_path / "out").eval(), unet)


def test_temporal_options_reach_the_config_and_keep_the_2d_model(sd21_unet, sd21_files, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--checkpoint", sd21_files["unet"], "--output_dir", out, "--in_channels", 6, "--no_temporal_conv"]
    argv += ["--temporal_attention", "directed", "--frame_position_encoding", "learned", "--max_frames", 8]
    argv += ["--frame_adaptor", "--scalar_conditions", "fps", "noise_aug", "--temporal_attention_head_dim", 16]
    code, _, stderr = run(argv, capsys)
    assert code == 0, stderr
    unet3d = UNet3DModel.from_pretrained(out).eval()
    config = unet3d.config
    assert (config.in_channels, config.temporal_conv, config.temporal_attention) == (6, False, "directed")
    assert (config.frame_position_encoding, config.max_frames, config.frame_adaptor) == ("learned", 8, True)
    assert (list(config.scalar_conditions), config.temporal_attention_head_dim) == (["fps", "noise_aug"], 16)
    assert torch.equal(unet3d.conv_in.weight[:, 4:], torch.zeros_like(unet3d.conv_in.weight[:, 4:]))
    conds = {"fps": torch.tensor([8.0, 24.0]), "noise_aug": torch.tensor([0.0, 300.0])}
    assert_equals_frame_by_frame(unet3d, sd21_unet, extra_channels=2, scalar_conds=conds)


@pytest.mark.parametrize(
    "options, expected",
    [
        (  # MagicVideo's keyframe model: adaptors after each convolution, directed attention beside spatial attention
            ["--frame_adaptor", "conv", "--temporal_layout", "parallel", "--temporal_conv_padding", "causal",
             "--temporal_attention", "directed"],
            {"frame_adaptor": "conv", "temporal_layout": "parallel", "temporal_conv_padding": "causal",
             "temporal_attention": "directed"},
        ),
        (["--frame_adaptor", "resnet"], {"frame_adaptor": True, "temporal_layout": "default"}),
        (["--frame_adaptor", "none"], {"frame_adaptor": False}),
        (
            ["--temporal_layout", "modelscope", "--frame_position_encoding", "none", "--temporal_attention_head_dim", 8],
            {"temporal_layout": "modelscope", "frame_adaptor": False, "temporal_conv_padding": "same"},
        ),
    ],
)  # fmt: skip
def test_frame_adaptor_layout_and_padding_reach_the_config_and_keep_the_2d_model(
    options, expected, sd21_unet, sd21_files, tmp_path, capsys
):
    out = tmp_path / "out"
    code, stdout, stderr = run(["--checkpoint", sd21_files["unet"], "--output_dir", out, *options], capsys)
    assert code == 0, stderr
    saved = json.loads((out / "config.json").read_text())
    assert {key: saved[key] for key in expected} == expected
    for key, value in expected.items():
        assert f"{key}={value}" in stdout  # the summary shows them
    unet3d = UNet3DModel.from_pretrained(out).eval()
    adaptors = [name for name, _ in unet3d.named_parameters() if "adaptor" in name]
    if expected.get("frame_adaptor") == "conv":  # two per resnet (after conv1 and conv2), none outside the resnets
        resnets = [name for name, _ in unet3d.named_modules() if name.split(".")[-2:-1] == ["resnets"]]
        assert len(adaptors) == 2 * 2 * len(resnets) and all(".resnets." in name for name in adaptors)
    elif expected.get("frame_adaptor") is True:  # one per resnet, beside it in the block
        resnets = [name for name, _ in unet3d.named_modules() if name.split(".")[-2:-1] == ["resnets"]]
        assert len(adaptors) == 2 * len(resnets) and not any(".resnets." in name for name in adaptors)
    else:
        assert not adaptors
    assert_equals_frame_by_frame(unet3d, sd21_unet)


def test_no_temporal_attention_and_dtype(sd21_files, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--checkpoint", sd21_files["pipeline"], "--output_dir", out, "--temporal_attention", "none"]
    code, stdout, stderr = run([*argv, "--frame_position_encoding", "none", "--dtype", "bfloat16"], capsys)
    assert code == 0, stderr
    assert "bfloat16" in stdout
    with safe_open(str(out / "diffusion_pytorch_model.safetensors"), framework="pt") as file:
        assert {file.get_tensor(key).dtype for key in file.keys()} == {torch.bfloat16}
    unet3d = UNet3DModel.from_pretrained(out)
    assert unet3d.config.temporal_attention is None
    assert not any(".temp_attentions." in name for name, _ in unet3d.named_parameters())


# ------------------------------------------------------------------------------------------------------ bad input


def _write(path: Path, content: bytes = b"not weights") -> Path:
    path.write_bytes(content)
    return path


def _config_variant(tmp_path: Path, name: str, **changes) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**TINY_SD21, **changes}))
    return folder


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "extension",
        "pickle",
        "no_config",
        "layers_mismatch",
        "shape_mismatch",
        "unsupported_inferred",
        "unsupported_config",
        "diffusers_names_without_config",
        "temporal_option",
        "output_is_source",
        "not_safetensors",
    ],
)
def test_bad_input_is_one_line_naming_the_problem(case, sd21_files, sd21_unet, tmp_path, capsys):
    out = tmp_path / "out"
    checkpoint, extra = sd21_files["single_file"], []
    if case == "missing":
        checkpoint, expected = tmp_path / "nope.safetensors", [str(tmp_path / "nope.safetensors"), "does not exist"]
    elif case == "extension":
        checkpoint = _write(tmp_path / "model.onnx")
        expected = [str(checkpoint), "unknown extension"]
    elif case == "pickle":
        checkpoint = tmp_path / "model.ckpt"
        torch.save({"state_dict": {}}, checkpoint)
        expected = [str(checkpoint), "--allow_pickle"]
    elif case == "no_config":
        checkpoint = tmp_path / "empty_folder"
        checkpoint.mkdir()
        expected = [str(checkpoint), "config.json"]
    elif case == "layers_mismatch":
        extra = ["--config", _config_variant(tmp_path, "lpb1", layers_per_block=1)]
        expected = [
            str(sd21_files["single_file"]),
            "unexpected key `down_blocks.0.",
            "(from `" + LDM_PREFIX + "input_blocks.",
        ]
    elif case == "shape_mismatch":
        extra = ["--config", _config_variant(tmp_path, "wide", cross_attention_dim=32)]
        expected = [str(sd21_files["single_file"]), "shape mismatch", "attn2.to_k.weight", "(32, 24)"]
    elif case == "unsupported_inferred":
        checkpoint = tmp_path / "sdxl_like.safetensors"
        weights = to_ldm_state_dict(make_unet(TINY_SD2_RULES))
        weights[LDM_PREFIX + "label_emb.0.0.weight"] = torch.randn(4, 4)
        save_file(weights, checkpoint)
        expected = [str(checkpoint), "Unsupported UNet", LDM_PREFIX + "label_emb.0.0.weight"]
    elif case == "unsupported_config":
        checkpoint = _config_variant(tmp_path, "class_embed", class_embed_type="timestep")
        expected = [str(checkpoint), "Unsupported UNet", "class_embed_type"]
    elif case == "diffusers_names_without_config":
        checkpoint = tmp_path / "unet_weights.safetensors"
        save_file(sd21_unet.state_dict(), checkpoint)
        expected = [str(checkpoint), "--config"]
    elif case == "temporal_option":
        checkpoint, extra = sd21_files["unet"], ["--max_frames", "0"]
        expected = ["Bad temporal option", "max_frames"]
    elif case == "output_is_source":
        checkpoint = out = sd21_files["unet"]
        expected = [str(out), "would be overwritten"]
    else:
        checkpoint = _write(tmp_path / "lfs_pointer.safetensors", b"version https://git-lfs.github.com/spec/v1\n")
        expected = [str(checkpoint), "not a readable safetensors file"]

    before = sorted(path.name for path in Path(out).iterdir()) if Path(out).exists() else None
    code, stdout, stderr = run(["--checkpoint", checkpoint, "--output_dir", out, *extra], capsys)
    assert code == 1
    assert stdout == ""
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    for fragment in expected:
        assert fragment in stderr, (fragment, stderr)
    after = sorted(path.name for path in Path(out).iterdir()) if Path(out).exists() else None
    assert after == before  # nothing written


def test_cli_subprocess_reports_a_pickle_without_traceback(tmp_path):
    checkpoint = tmp_path / "v1-5.ckpt"
    torch.save({"state_dict": {}}, checkpoint)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--checkpoint", str(checkpoint), "--output_dir", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    assert result.returncode == 1
    assert str(checkpoint) in result.stderr and "--allow_pickle" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
