"""How fast does a video UNet learn to read the direction of motion from its caption at high noise?

    python benchmarks/bench_direction_learning.py --steps 600 --unet-options '{"temporal_text_modulation": true}'

At the noisiest timesteps a model can only predict the mean clip of its caption, and there the direction word is
worth little: the shape's start is random, so "moving right" only shifts where the shape tends to be in the first
and the last frame. This script measures that worth and how much of it a training recipe captures:

1. the **ideal gap**: from the training clips, the mean latent clip of each caption group (direction, or direction
   and speed); the relative loss increase `E|x0 - mean(swapped)|^2 / E|x0 - mean(own)|^2 - 1` when each clip is
   scored against the mean of the opposite direction. A model that used the direction word perfectly at zero SNR
   would lose that much more with the word swapped;
2. the **learned gap**: the stand-in (`pipelines/shapes_sd`) inflated to a `UNet3DModel` with `--unet-options`,
   trained on the noisiest timesteps (`t >= --t-min` of a zero-terminal-SNR v-prediction schedule, AdamW), and,
   every `--eval-every` steps, its v-prediction loss on held-out clips with the correct caption and with the
   direction words swapped ("left" <-> "right", "up" <-> "down", synonyms included), as the same relative gap.

`--captions` picks the caption writer's full templates and synonyms, one canonical template, the direction alone
("moving left"), or "mixed": half the training clips captioned with the direction alone and half in full, the gap
measured on full captions. The learned gap is noisy at the level of +-0.005 with 64 evaluation clips.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch

from diffusers_video.data.shapes import ShapesWorld, video_to_tensor
from diffusers_video.training.components import caption_token_ids, encode_token_ids
from diffusers_video.training.data import encode_frames

ROOT = Path(__file__).resolve().parents[1]
STAND_IN = ROOT / "pipelines" / "shapes_sd"
CAPTION_STYLES = ("full", "canonical", "direction", "mixed")
EVAL_TIMESTEPS = (999, 950, 900, 800)
_SWAP = {
    "left": "right", "right": "left", "up": "down", "down": "up", "leftward": "rightward", "rightward": "leftward",
    "upward": "downward", "downward": "upward", "upwards": "downwards", "downwards": "upwards",
}  # fmt: skip
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


def swap_direction(caption: str) -> str:
    """The caption with every direction word replaced by the opposite one."""
    return re.sub(r"[a-z]+", lambda match: _SWAP.get(match.group(0), match.group(0)), caption)


def write_caption(sample, style: str, index: int = 0) -> str:
    """The caption of a one-shape sample in `style` ("full": the world's own; "mixed": the direction alone for even
    `index`, the world's own for odd)."""
    if style == "mixed":
        style = "direction" if index % 2 == 0 else "full"
    if style == "full":
        return sample.caption
    spec = sample.scene.objects[0].spec
    if style == "direction":
        return f"moving {spec.direction}"
    return f"a {spec.color} {spec.shape} moving {spec.direction} {'quickly' if spec.speed == 'fast' else 'slowly'}"


def ideal_gap(latents: torch.Tensor, keys: list[tuple], swapped_keys: list[tuple]) -> float:
    """Relative increase of the squared error of the group means when each item is scored against the mean of its
    swapped group instead of its own; items whose swapped group is empty are left out.

    Args:
        latents (`torch.Tensor`): `(N, ...)` clips.
        keys (`list[tuple]`): each clip's group.
        swapped_keys (`list[tuple]`): each clip's group with the direction swapped.
    """
    if len(keys) != latents.shape[0] or len(swapped_keys) != len(keys):
        raise ValueError(f"`keys` and `swapped_keys` need one entry per clip ({latents.shape[0]}).")
    groups: dict[tuple, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    means = {key: latents[indices].mean(0) for key, indices in groups.items()}
    rows = [i for i, key in enumerate(swapped_keys) if key in means]
    if not rows:
        raise ValueError("No clip has a swapped group with clips in it.")
    own = torch.stack([((latents[i] - means[keys[i]]) ** 2).mean() for i in rows]).mean()
    swapped = torch.stack([((latents[i] - means[swapped_keys[i]]) ** 2).mean() for i in rows]).mean()
    return float(swapped / own - 1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600, help="training steps (default: 600)")
    parser.add_argument(
        "--stand-in", default=str(STAND_IN), help="image pipeline folder to inflate (default: %(default)s)"
    )
    parser.add_argument("--unet-options", default="{}", help="JSON of UNet3DModel.from_pretrained_2d options")
    parser.add_argument("--captions", choices=CAPTION_STYLES, default="full", help="caption style (default: full)")
    parser.add_argument("--t-min", type=int, default=900, help="train on timesteps >= this (default: 900)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="AdamW learning rate (default: 1e-3)")
    parser.add_argument("--batch-size", type=int, default=16, help="default: 16")
    parser.add_argument("--num-clips", type=int, default=3000, help="training clips (default: 3000)")
    parser.add_argument("--eval-clips", type=int, default=64, help="held-out clips for the gap (default: 64)")
    parser.add_argument("--eval-every", type=int, default=100, help="steps between evaluations (default: 100)")
    parser.add_argument("--seed", type=int, default=0, help="default: 0")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--output", default=None, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    counts = {"--steps": args.steps, "--batch-size": args.batch_size, "--num-clips": args.num_clips,
              "--eval-clips": args.eval_clips, "--eval-every": args.eval_every}  # fmt: skip
    bad = {name: value for name, value in counts.items() if value < 1}
    if bad:
        raise ValueError(f"These must be >= 1: {bad}.")
    if not 0 <= args.t_min <= 999:
        raise ValueError(f"`--t-min` must be in [0, 999] but is {args.t_min}.")
    options = json.loads(args.unet_options)
    if not isinstance(options, dict):
        raise ValueError(f"`--unet-options` must be a JSON object but is {args.unet_options!r}.")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    from diffusers import AutoencoderKL, DDPMScheduler
    from transformers import CLIPTextModel, CLIPTokenizer

    from diffusers_video import UNet3DModel

    stand_in = Path(args.stand_in)
    if not (stand_in / "unet").is_dir():
        raise ValueError(f"`--stand-in` {args.stand_in!r} is not an image pipeline folder with a `unet/`.")
    vae = AutoencoderKL.from_pretrained(stand_in / "vae", torch_dtype=torch.float32).eval()
    tokenizer = CLIPTokenizer.from_pretrained(stand_in / "tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(stand_in / "text_encoder").eval()
    scheduler = DDPMScheduler.from_pretrained(
        stand_in / "scheduler", rescale_betas_zero_snr=True, prediction_type="v_prediction"
    )
    unet = UNet3DModel.from_pretrained_2d(stand_in, subfolder="unet", **options)

    @torch.no_grad()
    def encode_text(captions: list[str]) -> torch.Tensor:
        return encode_token_ids(text_encoder, caption_token_ids(tokenizer, text_encoder, captions))[0]

    @torch.no_grad()
    def encode_clips(samples) -> torch.Tensor:
        chunks = [samples[i : i + 100] for i in range(0, len(samples), 100)]
        return torch.cat([encode_frames(vae, torch.stack([video_to_tensor(s.video) for s in c])) for c in chunks])

    world = ShapesWorld(height=32, width=32, num_frames=8, split="train")
    train = [world.sample((args.seed + 7, i)) for i in range(args.num_clips)]
    x_train = encode_clips(train)
    captions = [write_caption(s, args.captions, i) for i, s in enumerate(train)]
    text_train = torch.cat([encode_text(captions[i : i + 500]) for i in range(0, len(captions), 500)])
    empty = encode_text([""])[0]
    specs = [s.scene.objects[0].spec for s in train]
    ideal = {
        "direction": ideal_gap(x_train, [(s.direction,) for s in specs], [(OPPOSITE[s.direction],) for s in specs]),
        "direction_and_speed": ideal_gap(
            x_train, [(s.direction, s.speed) for s in specs], [(OPPOSITE[s.direction], s.speed) for s in specs]
        ),
    }
    held_out = [
        ShapesWorld(height=32, width=32, num_frames=8).sample((args.seed + 99, i)) for i in range(args.eval_clips)
    ]
    x_eval = encode_clips(held_out)
    eval_style = "full" if args.captions == "mixed" else args.captions  # mixed training is judged on full captions
    eval_captions = [write_caption(s, eval_style) for s in held_out]
    text_eval, text_swapped = encode_text(eval_captions), encode_text([swap_direction(c) for c in eval_captions])
    noise_generator = torch.Generator().manual_seed(args.seed + 1)
    eval_noise = {t: torch.randn(x_eval.shape, generator=noise_generator) for t in EVAL_TIMESTEPS}

    @torch.no_grad()
    def learned_gaps() -> dict[int, float]:
        unet.eval()
        gaps = {}
        for t, noise in eval_noise.items():
            timesteps = torch.full((x_eval.shape[0],), t)
            noisy, target = (
                scheduler.add_noise(x_eval, noise, timesteps),
                scheduler.get_velocity(x_eval, noise, timesteps),
            )
            correct = ((unet(noisy, timesteps, text_eval).sample - target) ** 2).mean()
            swapped = ((unet(noisy, timesteps, text_swapped).sample - target) ** 2).mean()
            gaps[t] = float(swapped / correct - 1.0)
        unet.train()
        return gaps

    print(f"captions {args.captions!r}, e.g. {captions[0]!r}; UNet options {options}")
    print(f"ideal gap at zero SNR: direction {ideal['direction']:.4f}, direction and speed "
          f"{ideal['direction_and_speed']:.4f}")  # fmt: skip
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(args.seed)
    history = [{"step": 0, "gaps": learned_gaps()}]
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        index = torch.randint(0, x_train.shape[0], (args.batch_size,), generator=generator)
        clean, text = x_train[index], text_train[index].clone()
        text[torch.rand(args.batch_size, generator=generator) < 0.1] = empty  # caption dropout, as in training
        timesteps = torch.randint(args.t_min, 1000, (args.batch_size,), generator=generator)
        noise = torch.randn(clean.shape, generator=generator)
        prediction = unet(scheduler.add_noise(clean, noise, timesteps), timesteps, text).sample
        loss = ((prediction - scheduler.get_velocity(clean, noise, timesteps)) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        if step % args.eval_every == 0 or step == args.steps:
            history.append({"step": step, "loss": loss.item(), "gaps": learned_gaps()})
            row = " ".join(f"t={t} {gap:+.4f}" for t, gap in history[-1]["gaps"].items())
            print(f"step {step} ({time.perf_counter() - start:.0f} s) loss {loss.item():.4f} learned gap: {row}")
    if args.output:
        result = {"captions": args.captions, "unet_options": options, "t_min": args.t_min, "steps": args.steps,
                  "learning_rate": args.learning_rate, "ideal_gap": ideal, "history": history}  # fmt: skip
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
