"""Where a trained VideoFusion model takes the direction of motion from: the prompt, or a trace of data in its start.

    python benchmarks/bench_direction_leak.py pipelines/videofusion/demo [--num-videos 48]

A diffusion model learns from noisy samples `x_t = alpha_t x_0 + sigma_t eps`. With Stable Diffusion's noise schedule,
`alpha_t` at the last training timestep is 0.068 (SNR 0.0047), not 0: an 8-frame clip then still holds enough of its
data for a model to read which way the shape moves, and the model learns to read it there instead of taking it
from the caption. Sampling starts from pure noise, which holds no direction, so the direction comes out at chance.
Zero terminal SNR (Lin et al. 2024, https://huggingface.co/papers/2305.08891: `rescale_betas_zero_snr=True`, which
needs v-prediction) leaves nothing to read at the last timestep.

For held-out clips of one shape, the script samples from the prompt that names the *opposite* direction, twice: from
pure noise (the sampler's own start), and from a start that carries the clip as much as the model's training did at
its first sampling timestep, `alpha_T x_0 + sqrt(1 - alpha_T^2) eps`. It prints how often the generated motion
follows the prompt and how often it follows the clip. A model that reads direction from the text follows the prompt
in both; one that learned to read it from the data follows the clip as soon as the clip is there.
"""

from __future__ import annotations

import argparse
import json
import math

import torch

from diffusers_video.data.metrics import wilson_interval
from diffusers_video.data.shapes import ShapesScorer, ShapesWorld, video_to_tensor
from diffusers_video.data.shapes_captions import DIRECTIONS
from diffusers_video.training.data import encode_frames

OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
SPEED_WORD = {"slow": "slowly", "fast": "quickly"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pipeline_dir", help="a VideoFusionPipeline folder")
    parser.add_argument("--num-videos", type=int, default=48, help="clips (default: 48)")
    parser.add_argument("--steps", type=int, default=25, help="denoising steps (default: 25)")
    parser.add_argument("--guidance-scale", type=float, default=4.0, help="default: 4")
    parser.add_argument("--num-frames", type=int, default=8, help="default: 8")
    parser.add_argument("--size", type=int, default=32, help="frame height and width in pixels (default: 32)")
    parser.add_argument("--seed", type=int, default=0, help="picks clips and noise (default: 0)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--output", default=None, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.num_videos < 1 or args.steps < 1:
        raise ValueError(f"`--num-videos` and `--steps` must be >= 1 but are {args.num_videos} and {args.steps}.")
    if args.threads:
        torch.set_num_threads(args.threads)

    from diffusers_video import VideoFusionPipeline

    pipe = VideoFusionPipeline.from_pretrained(args.pipeline_dir, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler.set_timesteps(args.steps)
    first = int(pipe.scheduler.timesteps[0])
    alpha_t, _ = pipe.scheduler.alpha_sigma(torch.tensor(first))
    alpha_t = float(alpha_t)
    print(
        f"{args.pipeline_dir}: first sampling timestep {first}, alpha_t {alpha_t:.4f} (SNR {alpha_t**2 / (1 - alpha_t**2):.2g})"
    )

    world = ShapesWorld(
        height=args.size, width=args.size, num_frames=args.num_frames, split="heldout", two_shape_prob=0.0
    )
    scorer = ShapesScorer()
    counts = {start: {"prompt": 0, "clip": 0} for start in ("noise", "clip")}
    for index in range(args.num_videos):
        sample = world.sample((args.seed, index))
        spec = sample.scene.objects[0].spec
        prompt = f"a {spec.color} {spec.shape} moving {OPPOSITE[spec.direction]} {SPEED_WORD[spec.speed]}"
        with torch.no_grad():
            x0 = encode_frames(pipe.vae, video_to_tensor(sample.video)[None])  # (1, C, F, h, w)
        generator = torch.Generator().manual_seed(args.seed * 100003 + index)
        noise = pipe.prepare_latents(
            1, args.num_frames, args.size, args.size, pipe.frame_ratios(args.num_frames), torch.float32, "cpu",
            generator,
        )  # fmt: skip
        starts = {"noise": noise, "clip": alpha_t * x0 + math.sqrt(1 - alpha_t**2) * noise}
        for start, latents in starts.items():
            frames = pipe(
                prompt, num_frames=args.num_frames, height=args.size, width=args.size,
                num_inference_steps=args.steps, guidance_scale=args.guidance_scale, latents=latents,
                generator=torch.Generator().manual_seed(index),
            ).frames[0]  # fmt: skip
            score = scorer.score(frames, prompt)
            moved = score.objects[0].direction if score.objects else None
            counts[start]["prompt"] += moved == OPPOSITE[spec.direction]
            counts[start]["clip"] += moved == spec.direction

    n = args.num_videos
    result = {"pipeline_dir": args.pipeline_dir, "num_videos": n, "first_timestep": first, "alpha_t": alpha_t}
    print(f"\n{n} clips, each prompted with the opposite direction (chance: {1 / len(DIRECTIONS):.2f} each)")
    print(f"{'start':<40}{'follows the prompt':<26}follows the clip")
    for start, label in (("noise", "pure noise"), ("clip", f"alpha_T x_0 + noise (alpha_T {alpha_t:.3f})")):
        row = []
        for who in ("prompt", "clip"):
            k = counts[start][who]
            low, high = wilson_interval(k, n)
            row.append(f"{k / n:.2f} ({low:.2f}-{high:.2f})")
            result[f"{start}_follows_{who}"] = k / n
        print(f"{label:<40}{row[0]:<26}{row[1]}")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
