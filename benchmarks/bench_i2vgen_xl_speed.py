"""I2VGen-XL's pipelines against diffusers' on converted weights: time per video and peak memory, on equal work.

Two parts, each measuring its two peers in fresh subprocesses (clean peak memory, no allocator state shared):

- `--part base`: a random diffusers `I2VGenXLPipeline` (an `I2VGenXLUNet`, a small `AutoencoderKL`, a small random
  CLIP text model and CLIP vision model) is saved to a temporary folder and converted with
  `diffusers-video convert i2vgen-xl`; then `I2VGenXLPipeline.from_pretrained(source)` and
  `I2VGenXLCascadePipeline.from_pretrained(converted)` (no refiner: the base stage alone) animate the same image with
  the same prompt, arguments and seed. Under transformers 5 diffusers' pipeline reads `text_encoder.text_model`, which
  `CLIPTextModel` no longer has: the peer's worker patches it to the model itself (as `tests/test_i2vgen_xl.py`
  does). diffusers draws the image's VAE posterior from the global torch generator and ours from `generator`: both
  are seeded alike before each call, and the initial noise is given (`latents`), so that the draws line up.
- `--part refiner`: a random diffusers `VideoToVideoSDPipeline` (ModelScope's `UNet3DConditionModel`, v-prediction,
  zero terminal SNR, trailing timesteps) converted with `diffusers-video convert video-refiner`, against
  `VideoRefinerPipeline`, refining the same input video (same prompt, strength, steps, guidance and seed).

Each part prints the largest difference of the two pipelines' frames, the median wall time of a call (after a
warm-up call), the peak memory of a call, and the ratios ours / peer against the targets of issue 28 (time <= 0.8x,
memory <= 1.0x).

    python benchmarks/bench_i2vgen_xl_speed.py --part base --threads 1
    python benchmarks/bench_i2vgen_xl_speed.py --part refiner --threads 1
    python benchmarks/bench_i2vgen_xl_speed.py --part base --preset tiny   # seconds: what the test runs

Peak memory on CPU is the process's peak resident set during the call (VmHWM, reset just before it) minus the resident
set before it, with `MALLOC_MMAP_THRESHOLD_` fixed so that the resident set follows live memory (see
`benchmarks/_measure.py`), taken on a worker's first call (whose frames are the ones compared); times are medians of
`--repeats` calls after a warm-up call, in their own workers, alternating peer and ours for `--rounds` rounds and
keeping each one's best. On a CPU shared with other jobs, `--threads 1` compares the computation rather than thread
scheduling. `--steps` overrides the preset's denoising steps: the time of a call is nearly proportional to them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _measure import (  # benchmarks/ is on sys.path when this runs as a script
    compare_in_workers,
    measure_pipeline_call,
    ratio_line,
)

PROMPT = "a red circle moving right"
PARTS = ("base", "refiner")
NAMES = {
    "base": {"peer": "I2VGenXLPipeline (diffusers)", "ours": "I2VGenXLCascadePipeline (converted)"},
    "refiner": {"peer": "VideoToVideoSDPipeline (diffusers)", "ours": "VideoRefinerPipeline (converted)"},
}
# the folders of a part inside the temporary folder: the peer's (saved by diffusers) and ours (converted from it)
FOLDERS = {
    "base": {"peer": "i2vgen-xl", "ours": "i2vgen-xl-cascade"},
    "refiner": {"peer": "video-to-video", "ours": "video-refiner"},
}
CONVERTERS = {"base": "i2vgen-xl", "refiner": "video-refiner"}

_SMALL_UNET = dict(
    block_out_channels=(64, 128, 256, 256), layers_per_block=2, attention_head_dim=32, text_dim=128, text_layers=2,
    vae_channels=(16, 32, 64, 64), frames=16, size=256,
)  # fmt: skip
_TINY_UNET = dict(
    block_out_channels=(32, 64), layers_per_block=1, attention_head_dim=8, text_dim=32, text_layers=2,
    vae_channels=(8, 16), frames=3, size=16,
)  # fmt: skip
PRESETS = {
    # Small but not trivial: a latent video UNet of 4 blocks, 16 frames of 256x256 pixels (32x32 latents).
    "small": dict(
        base=dict(**_SMALL_UNET, vision_dim=64, vision_layers=2, vision_size=224, vision_patch=32, steps=3,
                  guidance=9.0),
        refiner=dict(**_SMALL_UNET, steps=5, strength=0.6, guidance=15.0),
    ),
    # Seconds on two CPU cores, for the tests: the same code paths at toy sizes.
    "tiny": dict(
        base=dict(**_TINY_UNET, vision_dim=16, vision_layers=1, vision_size=16, vision_patch=8, steps=2,
                  guidance=9.0),
        refiner=dict(**_TINY_UNET, steps=3, strength=0.7, guidance=15.0),
    ),
}  # fmt: skip


# ------------------------------------------------------------------------------------------------ the peers' folders


def _latent_size(preset: dict) -> int:
    return preset["size"] // 2 ** (len(preset["vae_channels"]) - 1)


def _text_models(preset: dict):
    """A character-level CLIP tokenizer and a random CLIP text encoder of `text_layers` layers (clip_skip=1 skips the
    last one: with more than one, every call still runs a layer)."""
    import torch
    from transformers import CLIPTextModel

    from diffusers_video.testing_utils import tiny_clip_text_models

    tokenizer, tiny = tiny_clip_text_models(preset["text_dim"])
    config = tiny.config
    config.num_hidden_layers, config.intermediate_size = preset["text_layers"], 4 * preset["text_dim"]
    torch.manual_seed(0)
    return tokenizer, CLIPTextModel(config).eval()


def _vae(preset: dict):
    from diffusers import AutoencoderKL

    m = len(preset["vae_channels"])
    return AutoencoderKL(
        block_out_channels=preset["vae_channels"], down_block_types=("DownEncoderBlock2D",) * m,
        up_block_types=("UpDecoderBlock2D",) * m, latent_channels=4, layers_per_block=1, norm_num_groups=8,
        sample_size=preset["size"],
    ).eval()  # fmt: skip


def _unet_config(preset: dict) -> dict:
    n = len(preset["block_out_channels"])
    return dict(
        sample_size=_latent_size(preset),
        down_block_types=("CrossAttnDownBlock3D",) * (n - 1) + ("DownBlock3D",),
        up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * (n - 1),
        block_out_channels=preset["block_out_channels"],
        layers_per_block=preset["layers_per_block"],
        cross_attention_dim=preset["text_dim"],
        attention_head_dim=preset["attention_head_dim"],
        norm_num_groups=min(32, preset["block_out_channels"][0] // 4),
    )


def _randomise_zero_weights(model):
    """Seeded random values in every all-zero weight (temporal outputs, biases), so that every layer counts."""
    import torch

    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if not param.any():
                param.copy_(0.02 * torch.randn(param.shape, generator=generator))
    return model.eval()


def save_i2vgen_xl_pipeline(preset: dict, folder: Path) -> None:
    """A diffusers `I2VGenXLPipeline` with seeded random weights (zero-initialised ones included), saved to `folder`."""
    import torch
    from diffusers import DDIMScheduler, I2VGenXLPipeline, I2VGenXLUNet
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    tokenizer, text_encoder = _text_models(preset)
    torch.manual_seed(0)
    vision = CLIPVisionConfig(
        hidden_size=preset["vision_dim"], projection_dim=preset["text_dim"], num_hidden_layers=preset["vision_layers"],
        num_attention_heads=2, intermediate_size=4 * preset["vision_dim"], image_size=preset["vision_size"],
        patch_size=preset["vision_patch"],
    )  # fmt: skip
    image_encoder = CLIPVisionModelWithProjection(vision).eval()
    feature_extractor = CLIPImageProcessor(crop_size=preset["vision_size"], size=preset["vision_size"])
    torch.manual_seed(0)
    unet = _randomise_zero_weights(I2VGenXLUNet(**_unet_config(preset)))
    torch.manual_seed(0)
    vae = _vae(preset)
    scheduler = DDIMScheduler(
        beta_schedule="squaredcos_cap_v2", rescale_betas_zero_snr=True, set_alpha_to_one=True, clip_sample=False,
        steps_offset=1, timestep_spacing="leading", prediction_type="v_prediction",
    )  # fmt: skip
    I2VGenXLPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, image_encoder=image_encoder,
        feature_extractor=feature_extractor, unet=unet, scheduler=scheduler,
    ).save_pretrained(folder)  # fmt: skip


def save_video_to_video_pipeline(preset: dict, folder: Path) -> None:
    """A diffusers `VideoToVideoSDPipeline` with seeded random weights (temporal outputs included), saved to `folder`:
    a zeroscope-like refiner (v-prediction, zero terminal SNR, trailing timesteps)."""
    import torch
    from diffusers import DDIMScheduler, UNet3DConditionModel, VideoToVideoSDPipeline

    tokenizer, text_encoder = _text_models(preset)
    torch.manual_seed(0)
    unet = _randomise_zero_weights(UNet3DConditionModel(**_unet_config(preset)))
    torch.manual_seed(0)
    vae = _vae(preset)
    scheduler = DDIMScheduler(
        beta_schedule="squaredcos_cap_v2", rescale_betas_zero_snr=True, prediction_type="v_prediction",
        timestep_spacing="trailing", clip_sample=False,
    )  # fmt: skip
    VideoToVideoSDPipeline(vae, text_encoder, tokenizer, unet, scheduler).save_pretrained(folder)


def build_and_convert(part: str, preset: dict, folder: Path) -> None:
    """Save the part's diffusers pipeline to `folder / FOLDERS[part]["peer"]` and convert it with the command line into
    `folder / FOLDERS[part]["ours"]`."""
    from diffusers_video.cli import main as cli_main

    source, target = folder / FOLDERS[part]["peer"], folder / FOLDERS[part]["ours"]
    (save_i2vgen_xl_pipeline if part == "base" else save_video_to_video_pipeline)(preset, source)
    argv = ["convert", CONVERTERS[part], "--checkpoint", str(source), "--output_dir", str(target)]
    if cli_main(argv) != 0:
        raise RuntimeError(f"`diffusers-video {' '.join(argv)}` failed (its message is above)")


# ---------------------------------------------------------------------------------------------------- the inputs


def an_image(preset: dict):
    """A seeded random RGB image a quarter wider than the video (both pipelines centre-crop it)."""
    import numpy as np
    import PIL.Image

    size = preset["size"]
    pixels = np.random.RandomState(0).rand(size, size * 5 // 4, 3)
    return PIL.Image.fromarray((pixels * 255).astype(np.uint8))


def a_video(preset: dict) -> list:
    """A seeded random video: `frames` arrays `(size, size, 3)` in [0, 1], as `VideoToVideoSDPipeline` takes them."""
    import numpy as np

    size = preset["size"]
    return list(np.random.RandomState(0).rand(preset["frames"], size, size, 3).astype(np.float32))


def make_call(part: str, kind: str, folder: Path, preset: dict, decode_chunk_size: int | None):
    """The pipeline of `part` and `kind` loaded from `folder`, and a function that generates one video with it."""
    import torch

    if part == "base":
        if kind == "ours":
            from diffusers_video import I2VGenXLCascadePipeline as cls
        else:
            from diffusers import I2VGenXLPipeline as cls
            from transformers import CLIPTextModel

            # diffusers reads `text_encoder.text_model.final_layer_norm`; transformers 5's CLIPTextModel is flat
            CLIPTextModel.text_model = property(lambda self: self)
        pipe = cls.from_pretrained(folder)
        latent = _latent_size(preset)
        noise = torch.randn(1, 4, preset["frames"], latent, latent, generator=torch.Generator().manual_seed(1))
        arguments = dict(
            image=an_image(preset), latents=noise, height=preset["size"], width=preset["size"], num_frames=preset["frames"],
            num_inference_steps=preset["steps"], guidance_scale=preset["guidance"],
            decode_chunk_size=decode_chunk_size, output_type="np",
        )  # fmt: skip
        if kind == "ours":
            arguments["refine"] = False  # the converted folder has no refiner: the base stage alone, either way
    else:
        if kind == "ours":
            from diffusers_video import VideoRefinerPipeline as cls
        else:
            from diffusers import VideoToVideoSDPipeline as cls
        pipe = cls.from_pretrained(folder)
        arguments = dict(
            video=a_video(preset), strength=preset["strength"], num_inference_steps=preset["steps"],
            guidance_scale=preset["guidance"], output_type="np",
        )  # fmt: skip
        if kind == "ours":
            arguments["decode_chunk_size"] = decode_chunk_size  # diffusers' pipeline decodes all frames at once
    pipe.set_progress_bar_config(disable=True)

    def call():
        # diffusers' I2VGenXLPipeline draws the image's posterior from the global generator, ours from `generator`: both
        # seeded alike, the draws are the same (the initial noise is given, so that no other draw comes between)
        torch.manual_seed(0)
        return pipe(PROMPT, generator=torch.Generator().manual_seed(0), **arguments).frames

    return call


# ------------------------------------------------------------------------------------------------------------ workers


def measure(args: argparse.Namespace) -> dict:
    """Runs in a subprocess: one peer's peak memory over its first call (`--_what memory`, which also saves the frames
    to `--_frames`) or its median time after a warm-up call (`--_what time`)."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    preset = _preset(args)
    folder = Path(args._folder) / FOLDERS[args.part][args._worker]
    call = make_call(args.part, args._worker, folder, preset, args.decode_chunk_size)
    return measure_pipeline_call(call, args._what, args.device, args.repeats, args._frames)


def _preset(args: argparse.Namespace) -> dict:
    """The settings of `--part` in `--preset`, with `--steps` applied."""
    preset = dict(PRESETS[args.preset][args.part])
    if args.steps is not None:
        preset["steps"] = args.steps
    return preset


def run_part(args: argparse.Namespace, argv: list[str]) -> dict:
    """Build, save and convert the peer, then measure both pipelines in their own workers and print the comparison."""
    import numpy as np

    preset = _preset(args)
    with tempfile.TemporaryDirectory() as tmp:
        build_and_convert(args.part, preset, Path(tmp))
        results = compare_in_workers(__file__, [*argv, "--_folder", tmp], tmp, args.rounds)

    frames = {kind: results[kind].pop("frames") for kind in ("peer", "ours")}
    max_diff = float(np.abs(frames["ours"] - frames["peer"]).max())
    latent = _latent_size(preset)
    line = (
        f"part={args.part} preset={args.preset} device={args.device} threads={args.threads or 'default'} "
        f"frames={preset['frames']} pixels={preset['size']}x{preset['size']} latents={latent}x{latent} "
        f"unet={preset['block_out_channels']} layers={preset['layers_per_block']} "
        f"head_dim={preset['attention_head_dim']} text_dim={preset['text_dim']} text_layers={preset['text_layers']} "
        f"vae={preset['vae_channels']} "
    )
    if args.part == "base":
        line += f"vision={preset['vision_dim']}x{preset['vision_layers']} at {preset['vision_size']} px "
    else:
        line += f"strength={preset['strength']} "
    print(
        line + f"steps={preset['steps']} guidance={preset['guidance']} seed=0 repeats={args.repeats} "
        f"rounds={args.rounds}"
    )
    if args.part == "base":
        print(
            f"settings: both decode_chunk_size={args.decode_chunk_size}, clip_skip=1, target_fps=16, the same "
            "initial noise (latents, seed 1); ours without a refiner (refine=False); the global torch generator "
            "seeded (0) before each call (diffusers draws the image's posterior from it, ours from `generator`); "
            "the peer's CLIPTextModel.text_model patched to the model itself (transformers 5 has no such attribute; "
            "diffusers' clip_skip reads it)"
        )
    else:
        print(
            "settings: peer VideoToVideoSDPipeline (decodes all frames at once); ours VideoRefinerPipeline "
            f"(decode_chunk_size={args.decode_chunk_size}, noise_mode='fresh', guidance_rescale=0)"
        )
    print(f"frames {tuple(frames['peer'].shape)}; max |ours - peer| over the frames: {max_diff:.2e}")
    print(f"{'pipeline':<48}{'median call (s)':>16}{'peak (MiB)':>12}")
    for kind in ("peer", "ours"):
        print(f"{NAMES[args.part][kind]:<48}{results[kind]['seconds']:>16.3f}{results[kind]['peak_mb']:>12.1f}")
    time_ratio = results["ours"]["seconds"] / results["peer"]["seconds"]
    memory_ratio = results["ours"]["peak_mb"] / results["peer"]["peak_mb"]
    print(ratio_line("ours/peer time", time_ratio, 0.8))
    print(ratio_line("ours/peer peak memory", memory_ratio, 1.0))
    return {
        "part": args.part,
        "preset": args.preset,
        "settings": preset,
        "results": results,
        "max_abs_diff": max_diff,
        "time_ratio": time_ratio,
        "memory_ratio": memory_ratio,
    }


def main(argv: list[str] | None = None) -> dict | None:
    """Run one part of the benchmark (or, with `--_worker`, one measurement of it); returns the part's results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=PARTS, default="base")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--device", default="cpu", help="only the CPU is measured so far")
    parser.add_argument(
        "--decode_chunk_size",
        type=int,
        default=4,
        help="frames per VAE call: of both pipelines (part base), of ours (part refiner; diffusers' decodes all)",
    )
    parser.add_argument("--steps", type=int, help="denoising steps (default: the preset's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per worker, after a warm-up call")
    parser.add_argument("--rounds", type=int, default=1, help="alternations of the timing workers")
    parser.add_argument("--threads", type=int, help="torch threads of the workers (default: torch's default)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    parser.add_argument("--_what", help=argparse.SUPPRESS)
    parser.add_argument("--_folder", help=argparse.SUPPRESS)
    parser.add_argument("--_frames", help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.device != "cpu":
        parser.error(f"`--device` must be cpu for now but is {args.device!r}.")
    if args.rounds < 1 or args.repeats < 1:
        parser.error("`--rounds` and `--repeats` must be >= 1.")

    if args._worker:
        print(json.dumps(measure(args)))
        return None
    report = run_part(args, argv)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
