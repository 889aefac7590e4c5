"""Scoring the stand-in: single frames sampled with diffusers' `StableDiffusionPipeline`, read for colour and shape
by `ShapesScorer` (`diffusers-video stand-in eval`, and step 2 of `diffusers-video demo`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..data.metrics import wilson_interval
from ..data.shapes import ShapesWorld
from ..data.shapes_scorer import ShapesScorer


def score_single_frames(images: Sequence[np.ndarray] | np.ndarray, prompts: Sequence[str], scorer=None) -> dict:
    """Score still images against their prompts for colour and shape.

    `ShapesScorer.score` needs at least 2 frames (it also measures motion), so each image is repeated as a
    2-frame still clip and only `color_ok` and `shape_ok` are read.

    Args:
        images (`Sequence[np.ndarray] | np.ndarray`): `(H, W, 3)` floats in [0, 1], one per prompt.
        prompts (`Sequence[str]`): captions of the moving-shapes world.
        scorer (`ShapesScorer`, *optional*): defaults to `ShapesScorer()`.

    Returns:
        `dict`: `n`, `color`, `shape`, `both` (accuracies) and `*_ci` (95% Wilson intervals).
    """
    if len(images) != len(prompts):
        raise ValueError(f"Got {len(images)} images for {len(prompts)} prompts.")
    scorer = scorer or ShapesScorer()
    color = shape = both = 0
    for image, prompt in zip(images, prompts):
        image = np.asarray(image, dtype=np.float32)
        score = scorer.score(np.stack([image, image]), prompt)
        color += bool(score.color_ok)
        shape += bool(score.shape_ok)
        both += bool(score.color_ok) and bool(score.shape_ok)
    n = len(prompts)
    result: dict = {"n": n}
    for name, k in (("color", color), ("shape", shape), ("both", both)):
        result[name] = k / n if n else float("nan")
        result[f"{name}_ci"] = tuple(round(v, 3) for v in wilson_interval(k, n)) if n else (0.0, 1.0)
    return result


def evaluation_prompts(num_samples: int, split: str = "all", seed: int = 1234) -> list[str]:
    """`num_samples` still-image captions (no motion words) of the moving-shapes world."""
    world = ShapesWorld(split=split, num_frames=2)
    return [world.sample((seed, i)).still_caption for i in range(num_samples)]


@torch.no_grad()
def evaluate_pipeline(
    folder_or_pipeline,
    num_samples: int = 64,
    split: str = "all",
    guidance_scale: float = 4.0,
    num_inference_steps: int = 25,
    batch_size: int = 64,
    seed: int = 0,
    dtype: torch.dtype | None = None,
) -> dict:
    """Sample single frames with diffusers' `StableDiffusionPipeline` and score colour and shape.

    Sampling uses DDIM (trailing timesteps, `clip_sample=False`) from the saved scheduler's config.

    Args:
        folder_or_pipeline (`str | Path | StableDiffusionPipeline`): a stand-in folder or a loaded pipeline.
        num_samples (`int`, defaults to 64): samples (one per caption).
        split (`str`, defaults to "all"): caption combinations ("all", "train", "heldout").
        guidance_scale (`float`, defaults to 4.0): classifier-free guidance.
        num_inference_steps (`int`, defaults to 25): DDIM steps.
        batch_size (`int`, defaults to 64): prompts per pipeline call.
        seed (`int`, defaults to 0): sampling seed.
        dtype (`torch.dtype`, *optional*): load the pipeline in this dtype (e.g. to check fp16 weights in fp32).

    Returns:
        `dict`: as `score_single_frames`, plus the sampling settings and wall time.
    """
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    start = time.perf_counter()
    if isinstance(folder_or_pipeline, (str, Path)):
        kwargs = {"dtype": dtype} if dtype is not None else {}
        pipe = StableDiffusionPipeline.from_pretrained(
            folder_or_pipeline, safety_checker=None, requires_safety_checker=False, **kwargs
        )
    else:
        pipe = folder_or_pipeline
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=False, timestep_spacing="trailing")
    pipe.set_progress_bar_config(disable=True)
    height = width = pipe.vae.config.sample_size
    prompts = evaluation_prompts(num_samples, split)
    images = []
    generator = torch.Generator().manual_seed(seed)
    for i in range(0, num_samples, batch_size):
        out = pipe(
            prompts[i : i + batch_size],
            height=height,
            width=width,
            guidance_scale=guidance_scale,
            num_inference_steps=num_inference_steps,
            generator=generator,
            output_type="np",
        )
        images.extend(np.clip(out.images.astype(np.float32), 0, 1))
    result = score_single_frames(images, prompts)
    result.update(
        split=split,
        guidance_scale=guidance_scale,
        steps=num_inference_steps,
        seconds=round(time.perf_counter() - start, 1),
    )
    return result


def format_result(result: dict) -> str:
    """One line: accuracies with their 95% Wilson intervals."""
    parts = [f"n={result['n']}"]
    for name in ("color", "shape", "both"):
        low, high = result[f"{name}_ci"]
        parts.append(f"{name} {result[name]:.3f} [{low:.3f}, {high:.3f}]")
    return "  ".join(parts)
