"""`benchmarks/bench_magicvideo.py`: the parts that need no training run at a tiny size, and their counts equal hand
counts (FLOPs of a toy UNet in pixel and latent space, one adaptor and one temporal convolution, the UNet passes of
keyframes + interpolation against every frame)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
bench = load_script(ROOT / "benchmarks" / "bench_magicvideo.py")

pytestmark = pytest.mark.usefixtures("one_thread")

# A UNet with one block of C channels, one resnet down and two up, no attention and no temporal layers: its FLOPs
# are those of its convolutions and time-embedding linear layers, which can be counted by hand.
C, TIME_DIM = 8, 32  # block width; time embedding width (4 * C)
TOY = dict(
    down_block_types=("DownBlock2D",), up_block_types=("UpBlock2D",), block_out_channels=(C,), layers_per_block=1,
    mid_block_type=None, norm_num_groups=4, cross_attention_dim=8, temporal_conv=False, temporal_attention=None,
)  # fmt: skip


def toy_flops_by_hand(channels: int, frames: int, size: int) -> int:
    """2 FLOPs per multiply-accumulate of every convolution and linear layer of `TOY` on one video."""
    positions = frames * size * size  # output positions of every convolution (no down- or up-sampling)
    conv3x3 = lambda c_in, c_out: 2 * c_in * c_out * 9 * positions  # noqa: E731
    flops = conv3x3(channels, C)  # conv_in
    flops += conv3x3(C, C) + conv3x3(C, C)  # the down resnet
    for _ in range(2):  # the up resnets read their input concatenated with a skip: 2C channels in
        flops += conv3x3(2 * C, C) + conv3x3(C, C) + 2 * 2 * C * C * positions  # conv1, conv2, 1x1 conv_shortcut
    flops += conv3x3(C, channels)  # conv_out
    # the time embedding (sinusoid of C channels -> TIME_DIM -> TIME_DIM) once per video, and each of the 3 resnets'
    # projections to C channels once per frame (the spatial layers run on the frames as a batch)
    flops += 2 * C * TIME_DIM + 2 * TIME_DIM * TIME_DIM + frames * 3 * 2 * TIME_DIM * C
    return flops


def test_unet_flops_in_pixel_and_latent_space_equal_the_hand_count():
    pixel = bench.unet_flops(TOY, channels=3, frames=4, size=32)
    latent = bench.unet_flops(TOY, channels=4, frames=4, size=4)  # an 8x VAE: 32x32 pixels -> 4x4 latents
    assert pixel["total"] == toy_flops_by_hand(3, 4, 32) and latent["total"] == toy_flops_by_hand(4, 4, 4)
    assert pixel["attention"] == latent["attention"] == 0
    ratio = pixel["total"] / latent["total"]
    assert ratio == toy_flops_by_hand(3, 4, 32) / toy_flops_by_hand(4, 4, 4)
    assert 55 < ratio < 64  # 64x the positions; conv_in and conv_out have 3 channels instead of 4 in pixel space


def test_one_adaptor_and_one_temporal_convolution_equal_the_hand_count():
    channels, frames, size = 16, 4, 8
    adaptor = bench.adaptor_layer(channels, frames, size)
    assert adaptor == {"parameters": 2 * frames * channels, "flops": 2 * channels * frames * size * size}
    conv = bench.temporal_conv_layer(channels, frames, size, kernel_size=3)
    assert conv["parameters"] == channels * channels * 3 + channels
    assert conv["flops"] == 2 * channels * channels * 3 * frames * size * size


def test_the_untrained_parts_run_at_a_tiny_size_and_count_the_unet_passes(tmp_path):
    frames, keyframes, steps = 9, 3, 2  # 3 keyframes -> x4 -> 9 frames
    out = tmp_path / "result.json"
    result = bench.main(
        ["--preset", "tiny", "--size", "16", "--frames", "4", "--steps", "3", "--speed-frames", str(frames),
         "--speed-keyframes", str(keyframes), "--factors", "4", "--speed-steps", str(steps), "--speed-size", "4",
         "--speed-widths", "8,16", "--interpolation-steps", "1", "--repeats", "1", "--json", str(out)]
    )  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))

    flops = result["flops"]
    assert flops["ratio"]["total"] == flops["pixel"]["total"] / flops["latent"]["total"] > 1
    assert flops["ratio"]["convolution"] == pytest.approx(4, rel=0.01)  # the tiny 2x VAE: 2x2 the positions
    per_video = flops["per_video"]
    assert per_video["latent"] == 3 * flops["latent"]["total"] + flops["vae_decode"]

    adaptor = result["adaptor"]
    assert [layer["channels"] for layer in adaptor["per_layer"]] == [32, 64]
    unet = adaptor["per_unet"]
    # an adaptor of 2 * frames * width parameters after both convolutions of every resnet: one per down block, two in
    # the mid block, two per up block
    widths = [32, 64] + [64, 64] + [64, 64, 32, 32]
    assert unet["adaptors"]["parameters"] == sum(2 * 2 * 4 * width for width in widths)
    assert unet["temporal_convs"]["parameters"] == sum(width * width * 3 + width for width in widths)
    assert unet["temporal_convs"]["flops"] > unet["adaptors"]["flops"] > 0

    speed = result["speed"]
    every, interpolated = speed["every_frame"]["unet_passes"], speed["keyframes_interpolation"]["unet_passes"]
    # classifier-free guidance (scale 9) doubles the keyframe batch; interpolation runs unguided (scale 1), one
    # segment of factor + 1 frames per pair of neighbouring keyframes, for its own number of steps (1)
    assert every == {
        "keyframes": {"calls": steps, "frames": steps * 2 * frames},
        "interpolation": {"calls": 0, "frames": 0},
    }
    assert interpolated == {
        "keyframes": {"calls": steps, "frames": steps * 2 * keyframes},
        "interpolation": {"calls": 1, "frames": (keyframes - 1) * 5},
    }
    assert speed["frame_pass_ratio"] == (steps * 2 * frames) / (steps * 2 * keyframes + (keyframes - 1) * 5)
    assert speed["every_frame"]["seconds_per_video"] > 0 and speed["time_ratio"] > 0


def test_the_trained_comparisons_score_both_sides_of_trained_folders(tmp_path):
    """Random tiny folders stand in for trained ones: each side is scored by `evaluate_pipeline`."""
    from diffusers_video import AutoencoderKLVideo, MagicVideoPipeline, UNet3DModel

    pipe = bench.tiny_pipeline((8, 16), max_frames=16)
    pipe.save_pretrained(tmp_path / "keyframes")
    pipe.interpolation_unet.save_pretrained(tmp_path / "interpolation" / "unet")
    AutoencoderKLVideo.from_vae2d(pipe.vae).save_pretrained(tmp_path / "video_vae")
    common = ["--num-samples", "1", "--steps", "1", "--device", "cpu", "--keyframes", str(tmp_path / "keyframes")]
    result = bench.main(
        ["interpolation", *common, "--interpolation", str(tmp_path / "interpolation"), "--num-frames", "5"]
    )
    assert (result["keyframes"], result["factors"]) == (2, [4])  # 2 keyframes x4 -> 5 frames
    for side in ("every_frame", "keyframes_interpolation"):
        assert result[side]["all_correct"]["n"] == 1 and result[side]["seconds_per_video"] > 0
    result = bench.main(["decoder", *common, "--video-vae", str(tmp_path / "video_vae")])
    # the identity inflation of the image VAE decodes the same latents as the image VAE
    flicker = [result[side]["background_flicker"]["mean"] for side in ("image_decoder", "video_vae")]
    assert flicker[0] == pytest.approx(flicker[1], abs=1e-4)
    assert (result["video_vae"]["num_frames"], result["video_vae"]["height"]) == (8, 16)  # the default keyframes
    # a whole cascade folder (keyframes, interpolation, super-resolution) is compared at its keyframe stage
    super_resolution = UNet3DModel(
        sample_size=8, in_channels=8, out_channels=4, block_out_channels=(8, 16), down_block_types=("DownBlock2D",) * 2,
        up_block_types=("UpBlock2D",) * 2, mid_block_type=None, layers_per_block=1, norm_num_groups=4,
        temporal_attention=None, scalar_conditions=("noise_aug_level",),
    )  # fmt: skip
    MagicVideoPipeline(**{**pipe.components, "super_resolution_unet": super_resolution}).save_pretrained(
        tmp_path / "cascade"
    )
    assert MagicVideoPipeline.from_pretrained(tmp_path / "cascade").default_size()[1] == 32  # the cascade makes 32x32
    folder = str(tmp_path / "cascade")
    result = bench.main(["adaptors", *common, "--adaptors", folder, "--temporal-convs", folder, "--num-frames", "5"])
    assert (result["adaptors"]["num_frames"], result["adaptors"]["height"]) == (5, 16)  # 5 keyframes of 16x16
    assert result["adaptors"] == result["temporal_convs"] | {
        "seconds_per_video": result["adaptors"]["seconds_per_video"]
    }


@pytest.mark.parametrize(
    "argv, message",
    [
        (["directed", "--directed", "a"], "give --bidirectional"),
        (["decoder"], "give --keyframes and --video-vae"),
        (["adaptors", "--temporal-convs", "a"], "give --adaptors"),
        (["--parts", "flops,nope"], "unknown parts"),
    ],
)
def test_trained_comparisons_need_their_folders(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert message in capsys.readouterr().err
