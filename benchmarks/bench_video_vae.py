"""The temporal-aware VAE decoder (`AutoencoderKLVideo`) against the image decoder of the same VAE.

Three parts, in one run (`--parts` picks some):

- `recon`: held-out clips of the moving-shapes world (`ShapesWorld(split="heldout")`, `--num-clips` of
  `--num-frames` frames at `--size` pixels) are encoded by the (shared, frozen) encoder, posterior mode, and decoded
  by the image decoder frame by frame (`AutoencoderKL.decode`) and by the video decoder; per-frame PSNR (pixels in
  [0, 1]) and the temporal-difference error `mean |(x_hat_t - x_hat_{t-1}) - (x_t - x_{t-1})|` (pixels in [-1, 1],
  the training loss's term) of each. Targets: PSNR within 0.5 dB of the image decoder's or better, temporal error no
  higher.
- `demo`: the VideoFusion demo (`--pipeline`) generates `--num-videos` held-out captions as `evaluate_pipeline` does
  (the same captions and seeds; `output_type="latent"`), and both VAEs decode the same latents
  (`pipeline_utils.decode_latents`); the moving-shapes scorer reads each video. Targets: background flicker at least
  30% lower with the video decoder, all-correct accuracy unchanged within its 95% interval.
- `speed`: wall time (median of `--repeats` calls after a warm-up) and peak memory of decoding the same latent frames
  (`--time-videos` videos of `--time-frames` frames at `--time-size` pixels) with `AutoencoderKL.decode` (all frames
  in one call) and with `AutoencoderKLVideo.decode`, each VAE in its own fresh process (see `benchmarks/_measure.py`).

    python benchmarks/bench_video_vae.py --threads 1                     # the figures (pipelines/shapes_sd/README.md)
    python benchmarks/bench_video_vae.py --num-clips 2 --num-videos 1 --steps 1 --time-size 16 --repeats 1  # seconds
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from _measure import median_seconds, peak_bytes, run_worker  # benchmarks/ is on sys.path when this runs as a script
from diffusers import AutoencoderKL

from diffusers_video import AutoencoderKLVideo, VideoFusionPipeline
from diffusers_video.data import ShapesScorer, ShapesWorld
from diffusers_video.data.shapes import video_to_tensor
from diffusers_video.pipelines.pipeline_utils import decode_latents

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("recon", "demo", "speed")


def load_vaes(args: argparse.Namespace, device: str) -> dict[str, torch.nn.Module]:
    """`{"image": AutoencoderKL, "video": AutoencoderKLVideo}`, float32, eval mode, on `device`."""
    image = AutoencoderKL.from_pretrained(args.image_vae).to(device).eval()
    video = AutoencoderKLVideo.from_pretrained(args.video_vae).to(device).eval()
    return {"image": image, "video": video}


# ------------------------------------------------------------------------------------------------------ part "recon"


def psnr_per_frame(decoded: torch.Tensor, clips: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of every frame of `(B, C, F, H, W)` videos in [-1, 1], read as [0, 1] pixels: `(B, F)`."""
    error = ((decoded.clamp(-1, 1) - clips) / 2).pow(2).mean(dim=(1, 3, 4))
    return -10 * torch.log10(error.clamp_min(1e-10))


def temporal_error(decoded: torch.Tensor, clips: torch.Tensor) -> float:
    """`mean |diff(x_hat) - diff(x)|` over frames of `(B, C, F, H, W)` videos in [-1, 1]."""
    return (decoded.diff(dim=2) - clips.diff(dim=2)).abs().mean().item()


@torch.no_grad()
def run_recon(args: argparse.Namespace, vaes: dict, device: str) -> dict:
    world = ShapesWorld(height=args.size, width=args.size, num_frames=args.num_frames, split="heldout")
    videos, _ = world.videos(args.num_clips, seed=args.seed)
    clips = torch.stack([video_to_tensor(v) for v in videos]).to(device)  # (B, 3, F, H, W) in [-1, 1]
    latents = vaes["video"].encode(clips).latent_dist.mode()  # (B, L, F, h, w): the image VAE's own encoder
    scaled = latents * vaes["image"].config.scaling_factor
    result = {"num_clips": args.num_clips, "num_frames": args.num_frames, "size": args.size}
    for kind, vae in vaes.items():
        decoded = decode_latents(vae, scaled)
        psnr = psnr_per_frame(decoded, clips)
        result[kind] = {"psnr_db": psnr.mean().item(), "temporal_error": temporal_error(decoded, clips)}
    result["psnr_gain_db"] = result["video"]["psnr_db"] - result["image"]["psnr_db"]
    result["temporal_error_ratio"] = result["video"]["temporal_error"] / result["image"]["temporal_error"]
    result["meets_targets"] = result["psnr_gain_db"] >= -0.5 and result["temporal_error_ratio"] <= 1.0
    return result


# ------------------------------------------------------------------------------------------------------- part "demo"


@torch.no_grad()
def run_demo(args: argparse.Namespace, vaes: dict, device: str) -> dict:
    pipeline = VideoFusionPipeline.from_pretrained(args.pipeline).to(device)
    pipeline.set_progress_bar_config(disable=True)
    # the captions and seeds of `evaluate_pipeline` (held-out scenes `(seed, 0, i)`, generator `seed + i`)
    world = ShapesWorld(height=args.size, width=args.size, num_frames=args.num_frames, split="heldout")
    prompts = [world.scene((args.seed, 0, i)).caption for i in range(args.num_videos)]
    scorer = ShapesScorer()
    scores = {"image": [], "video": []}
    for i, prompt in enumerate(prompts):
        generator = torch.Generator(device).manual_seed(args.seed + i)
        latents = pipeline(
            prompt, num_frames=args.num_frames, height=args.size, width=args.size, generator=generator,
            num_inference_steps=args.steps, guidance_scale=args.guidance_scale, output_type="latent",
        ).frames  # fmt: skip
        for kind, vae in vaes.items():
            video = (decode_latents(vae, latents) / 2 + 0.5).clamp(0, 1)  # (1, 3, F, H, W) in [0, 1]
            scores[kind].append(scorer.score(video[0].permute(1, 2, 3, 0).cpu().numpy(), prompt))
    result = {"num_videos": args.num_videos, "steps": args.steps, "guidance_scale": args.guidance_scale}
    for kind, kind_scores in scores.items():
        aggregate = ShapesScorer.aggregate(kind_scores)
        result[kind] = {key: aggregate[key] for key in ("all_correct", "background_flicker", "temporal_consistency")}
    image_flicker = result["image"]["background_flicker"]["mean"]
    video_flicker = result["video"]["background_flicker"]["mean"]
    result["flicker_reduction"] = 1 - video_flicker / image_flicker if image_flicker > 0 else math.nan
    accuracy = result["video"]["all_correct"]["accuracy"]
    low, high = result["image"]["all_correct"]["ci_low"], result["image"]["all_correct"]["ci_high"]
    result["accuracy_within_interval"] = accuracy is not None and low <= accuracy <= high
    result["meets_targets"] = result["flicker_reduction"] >= 0.3 and result["accuracy_within_interval"]
    return result


# ------------------------------------------------------------------------------------------------------ part "speed"


def _speed_worker(args: argparse.Namespace, kind: str) -> dict:
    """In a fresh process: peak memory of the first decode of `kind`'s VAE, then the median time."""
    device = args.device
    vae = load_vaes(args, device)[kind]
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    generator = torch.Generator().manual_seed(0)
    shape = (args.time_videos, vae.config.latent_channels, args.time_frames, args.time_size // scale)
    latents = torch.randn(*shape, args.time_size // scale, generator=generator).to(device)  # (B, L, F, h, w)
    frames = latents.transpose(1, 2).flatten(0, 1)  # (B*F, L, h, w)

    @torch.no_grad()
    def call():
        if kind == "image":
            return vae.decode(frames).sample  # every frame in one call
        return vae.decode(latents).sample

    memory = peak_bytes(call, device)
    call()  # warm-up
    return {"seconds": median_seconds(call, args.repeats, device), "peak_bytes": memory}


def run_speed(args: argparse.Namespace, argv: list[str]) -> dict:
    result = {"videos": args.time_videos, "frames": args.time_frames, "size": args.time_size, "device": args.device}
    for kind in ("image", "video"):
        result[kind] = run_worker(__file__, kind, "speed", argv)
    result["time_ratio"] = result["video"]["seconds"] / result["image"]["seconds"]
    result["memory_ratio"] = result["video"]["peak_bytes"] / max(result["image"]["peak_bytes"], 1)
    return result


# ----------------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video-vae", default=str(ROOT / "pipelines" / "shapes_sd" / "video_vae"))
    parser.add_argument("--image-vae", default=str(ROOT / "pipelines" / "shapes_sd" / "vae"))
    parser.add_argument("--pipeline", default=str(ROOT / "pipelines" / "videofusion" / "demo"))
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated, of " + ", ".join(PARTS))
    parser.add_argument("--num-clips", type=int, default=64)
    parser.add_argument("--num-videos", type=int, default=64)
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance-scale", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-videos", type=int, default=1)
    parser.add_argument("--time-frames", type=int, default=16)
    parser.add_argument("--time-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None, help="also write the result to this file")
    parser.add_argument("--_worker", choices=("image", "video"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_what", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.parts.split(",")) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {list(PARTS)}")
    return args


def main(argv: list[str] | None = None) -> dict | None:
    """Run the benchmark; prints one JSON object (and returns it), or a worker's line."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args._worker is not None:
        print(json.dumps(_speed_worker(args, args._worker)))
        return None
    parts = args.parts.split(",")
    result: dict = {}
    vaes = load_vaes(args, args.device) if {"recon", "demo"} & set(parts) else {}
    if "recon" in parts:
        result["recon"] = run_recon(args, vaes, args.device)
    if "demo" in parts:
        result["demo"] = run_demo(args, vaes, args.device)
    if "speed" in parts:
        result["speed"] = run_speed(args, argv)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
