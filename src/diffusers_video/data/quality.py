"""Generation quality of a text-to-video pipeline, measured in the moving-shapes world.

`evaluate_pipeline` prompts a pipeline with held-out captions (attribute combinations never shown in training),
scores every video with `ShapesScorer`, and compares the generated clips with real ones by FSD. It is what
`diffusers-video bench quality` runs, and what the scripts in `benchmarks/` call to compare variants of a model.

Example:

```py
>>> from diffusers_video.data.quality import evaluate_pipeline, load_pipeline
>>> pipe = load_pipeline("path/to/pipeline")  # doctest: +SKIP
>>> result = evaluate_pipeline(pipe, num_samples=64, num_inference_steps=25)  # doctest: +SKIP
>>> result["scores"]["all_correct"]["accuracy"]  # doctest: +SKIP
```
"""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..folders import INDEX_NAME, class_name_of, read_json
from ..pipelines.pipeline_utils import VideoDiffusionPipeline
from .shapes import ShapesScorer, ShapesWorld, as_video_array
from .shapes_defects import DEFECT_FIELDS


def load_pipeline(path: str | Path, device: str | torch.device | None = None, torch_dtype: torch.dtype | None = None):
    """Load any saved pipeline folder: the class named in `model_index.json`, from `diffusers_video` or `diffusers`.

    Args:
        path (`str | Path`): a folder written by `save_pretrained`.
        device (`str | torch.device`, *optional*): move the pipeline there.
        torch_dtype (`torch.dtype`, *optional*): load the weights in this dtype.

    Returns:
        The pipeline.

    Raises:
        FileNotFoundError: the folder or its `model_index.json` is missing.
        ValueError: `model_index.json` is unreadable or names a class found in neither package.
    """
    import diffusers

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"Pipeline folder {str(path)!r} does not exist or is not a folder.")
    index = read_json(folder / INDEX_NAME, missing_ok=True)
    if index is None:
        raise FileNotFoundError(
            f"{str(path)!r} has no model_index.json; pass a pipeline folder written by `save_pretrained`."
        )
    class_name = class_name_of(index, folder / INDEX_NAME)  # "Class", or ["pipeline", "Class"] with remote-code shims
    pipeline_class = VideoDiffusionPipeline.pipeline_class(class_name) or getattr(diffusers, class_name, None)
    if pipeline_class is None or not hasattr(pipeline_class, "from_pretrained"):
        raise ValueError(
            f"model_index.json names the pipeline class {class_name!r}, which is neither in diffusers_video nor in "
            "diffusers."
        )
    kwargs = {} if torch_dtype is None else {"dtype": torch_dtype}
    pipeline = pipeline_class.from_pretrained(str(folder), **kwargs)
    if device is not None:
        pipeline = pipeline.to(device)
    return pipeline


def _call_parameters(pipeline) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(pipeline.__call__).parameters)


def infer_video_settings(pipeline) -> dict[str, int | None]:
    """The frame size and count a pipeline generates by default, where they can be read from it.

    Height and width come from the denoiser's (`unet`, VideoFusion's `residual_unet` or `transformer`) `sample_size` times the pipeline's `vae_scale_factor` (1 for
    pixel-space pipelines); the frame count from the denoiser's config (`num_frames` / `sample_frames`) or the
    default of `__call__`'s `num_frames`. A pipeline with a `default_size()` method giving the `(num_frames, height,
    width)` its call defaults to (a cascade such as `ImagenVideoPipeline`, whose last stage sets the size, or
    `VideoGenPipeline`, whose super-resolution stage does) is asked instead. Unknown values are `None`.

    Args:
        pipeline: a diffusers-style pipeline.

    Returns:
        `dict[str, int | None]`: `height`, `width`, `num_frames`.
    """
    settings: dict[str, int | None] = {"height": None, "width": None, "num_frames": None}
    default_size = getattr(pipeline, "default_size", None)
    if callable(default_size):  # a cascade: the size its last stage makes
        try:
            num_frames, height, width = default_size()
        except ValueError:  # e.g. no `sample_size` to start from: the caller has to give the size
            return settings
        return {"height": int(height), "width": int(width), "num_frames": int(num_frames)}
    denoiser = next(
        (
            getattr(pipeline, name)
            for name in ("unet", "residual_unet", "transformer")
            if getattr(pipeline, name, None)
        ),
        None,
    )
    config = getattr(denoiser, "config", None)
    sample_size = getattr(config, "sample_size", None)
    if sample_size is not None:
        scale = getattr(pipeline, "vae_scale_factor", None)
        if scale is None:
            scale = 1 if getattr(pipeline, "vae", None) is None else 8
        size = (sample_size, sample_size) if isinstance(sample_size, int) else tuple(sample_size)
        settings["height"], settings["width"] = int(size[0]) * int(scale), int(size[-1]) * int(scale)
    for key in ("num_frames", "sample_frames"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            settings["num_frames"] = value
            break
    else:
        parameter = _call_parameters(pipeline).get("num_frames")
        if parameter is not None and isinstance(parameter.default, int):
            settings["num_frames"] = parameter.default
    return settings


def _to_videos(frames) -> list[np.ndarray]:
    """Pipeline output `.frames` -> list of `(T, H, W, 3)` float arrays in [0, 1]."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().float().cpu().numpy()
    if isinstance(frames, np.ndarray):
        if frames.ndim == 4:  # a single video
            frames = frames[None]
        return [as_video_array(video) for video in frames]
    return [as_video_array([np.asarray(frame) for frame in video]) for video in frames]  # lists of PIL images


def _score_renders(world: ShapesWorld, scenes, height: int, width: int, num_frames: int, scorer: ShapesScorer) -> dict:
    """`ShapesScorer.aggregate` of the world's own renders of `scenes` at the given size."""
    return scorer.aggregate(
        [scorer.score(world.render(scene, height, width, num_frames), scene.caption) for scene in scenes]
    )


def score_ground_truth(
    num_samples: int = 64,
    height: int = 64,
    width: int = 64,
    num_frames: int = 16,
    seed: int = 0,
    scorer: ShapesScorer | None = None,
) -> dict:
    """The floor of every measure: the scores of the world's own renders of the held-out captions.

    These are the scenes `evaluate_pipeline` prompts with (held-out scenes `(seed, 0, i)`), drawn exactly as the
    world draws them, so every measure shows what a perfect generator gets: accuracies of 1, no path deviation or
    backward jump, no colour spread inside the shape, and the background grain of the world's own textures.

    Args:
        num_samples (`int`, defaults to 64): clips to score.
        height (`int`, defaults to 64): frame height.
        width (`int`, defaults to 64): frame width.
        num_frames (`int`, defaults to 16): frames per clip.
        seed (`int`, defaults to 0): as in `evaluate_pipeline`.
        scorer (`ShapesScorer`, *optional*): defaults to `ShapesScorer()`.

    Returns:
        `dict`: `ShapesScorer.aggregate` of the clips.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive integer, but is {num_samples!r}.")
    world = ShapesWorld(height=height, width=width, num_frames=num_frames, split="heldout")
    scenes = [world.scene((seed, 0, i)) for i in range(num_samples)]
    return _score_renders(world, scenes, height, width, num_frames, ShapesScorer() if scorer is None else scorer)


def evaluate_pipeline(
    pipeline,
    num_samples: int = 64,
    num_inference_steps: int = 25,
    seed: int = 0,
    height: int | None = None,
    width: int | None = None,
    num_frames: int | None = None,
    batch_size: int = 1,
    guidance_scale: float | None = None,
    num_real: int | None = None,
    progress: bool = True,
    scorer: ShapesScorer | None = None,
    call_kwargs: dict | None = None,
) -> dict:
    """Generate videos from held-out captions, score them and compare them with real clips.

    Args:
        pipeline: a text-to-video pipeline called as `pipeline(prompt=..., num_inference_steps=...,
            generator=..., output_type="np")` returning `.frames` `(batch, frames, height, width, 3)` in [0, 1].
            Image-to-video pipelines (whose `__call__` takes `image`) get the first frame of the real clip.
        num_samples (`int`, defaults to 64): videos to generate.
        num_inference_steps (`int`, defaults to 25): denoising steps.
        seed (`int`, defaults to 0): picks the captions and seeds each video's generator (`seed + index`).
        height (`int`, *optional*): frame height; defaults to the pipeline's (see `infer_video_settings`).
        width (`int`, *optional*): frame width; as `height`.
        num_frames (`int`, *optional*): frames per video; as `height`.
        batch_size (`int`, defaults to 1): videos per pipeline call.
        guidance_scale (`float`, *optional*): passed on when given; otherwise the pipeline's default.
        num_real (`int`, *optional*): real clips for FSD; defaults to `max(num_samples, 64)`.
        progress (`bool`, defaults to `True`): show a progress bar.
        scorer (`ShapesScorer`, *optional*): defaults to `ShapesScorer()`.
        call_kwargs (`dict`, *optional*): further keyword arguments of every pipeline call, each one `__call__`
            takes, e.g. the per-stage lists of an `ImagenVideoPipeline`: `{"num_inference_steps": [64, 32],
            "guidance_scale": [4.0, 1.0], "guidance": "oscillating"}`. Its `num_inference_steps` and
            `guidance_scale` replace the arguments of those names (and are what the result records); the prompt,
            generator, output type, image and size have their own arguments.

    Returns:
        `dict` (JSON-serialisable): `pipeline`, the settings used (`call_kwargs` as given, values JSON cannot hold
        as their `repr`), `scores` (`ShapesScorer.aggregate`: per attribute and all-correct accuracy with 95% Wilson
        intervals, temporal consistency, background flicker, the means of the defect measures of `shapes_defects`
        and where the worst frames fall), `ground_truth` (the same aggregate for the world's own renders of the same
        captions at the same size: the floor of every measure), `fsd` (`None` for fewer than 2 videos), `num_real`,
        `seconds_per_video`, `total_seconds`, and `samples` (per video: prompt, what the scorer saw, whether it
        matches, its defect measures and worst frame).
    """
    for name, value in (("num_samples", num_samples), ("num_inference_steps", num_inference_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, but is {value!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, but is {batch_size!r}.")
    scorer = ShapesScorer() if scorer is None else scorer
    parameters = _call_parameters(pipeline)
    call_kwargs = dict(call_kwargs or {})
    own = sorted(set(call_kwargs) & {"prompt", "generator", "output_type", "image", "height", "width", "num_frames"})
    if own:
        raise ValueError(f"`call_kwargs` must not set {own}: `evaluate_pipeline` sets them (or has an argument).")
    unknown = sorted(set(call_kwargs) - set(parameters))
    if unknown:
        raise ValueError(f"`call_kwargs` has {unknown}, which {type(pipeline).__name__}.__call__ does not take.")
    num_inference_steps = call_kwargs.pop("num_inference_steps", num_inference_steps)
    guidance_scale = call_kwargs.pop("guidance_scale", guidance_scale)
    sizes, call_settings = video_sizes(pipeline, height, width, num_frames)
    world, scenes = heldout_scenes(sizes, num_samples, seed)
    device = getattr(pipeline, "device", torch.device("cpu"))
    generator_device = "cpu" if device is None or torch.device(device).type == "mps" else device

    videos: list[np.ndarray] = []
    started = time.perf_counter()
    if hasattr(pipeline, "set_progress_bar_config"):
        pipeline.set_progress_bar_config(disable=True)  # one bar over videos, not one per call
    with tqdm(total=num_samples, desc="generating", unit="video", disable=not progress) as bar:
        for start in range(0, num_samples, batch_size):
            batch = scenes[start : start + batch_size]
            generators = [torch.Generator(generator_device).manual_seed(seed + start + j) for j in range(len(batch))]
            kwargs = dict(
                prompt=[scene.caption for scene in batch],
                num_inference_steps=num_inference_steps,
                generator=generators if len(batch) > 1 else generators[0],
                output_type="np",
                **call_settings,
                **call_kwargs,
            )
            if guidance_scale is not None:
                kwargs["guidance_scale"] = guidance_scale
            if "image" in parameters:
                images = [first_frame_image(world, scene) for scene in batch]
                kwargs["image"] = images if len(images) > 1 else images[0]
            output = pipeline(**kwargs)
            videos.extend(_to_videos(output.frames))
            bar.update(len(batch))
    total = time.perf_counter() - started
    settings = {
        "pipeline": type(pipeline).__name__,
        "num_samples": num_samples,
        "num_inference_steps": num_inference_steps,
        "seed": seed,
        "batch_size": batch_size,
        "guidance_scale": guidance_scale,
        "call_kwargs": json.loads(json.dumps(call_kwargs, default=repr)),
    }
    return score_videos(videos, scenes, world, settings, total, num_real=num_real, seed=seed, scorer=scorer)


def video_sizes(pipeline, height: int | None, width: int | None, num_frames: int | None) -> tuple[dict, dict]:
    """The size of the videos `evaluate_pipeline` asks `pipeline` for: the given values, else the pipeline's own
    (`infer_video_settings`). Returns `(sizes, call_settings)`: every value (`None` where unknown), and those to pass
    to `__call__`. A value given for an argument `__call__` does not take is a `ValueError`."""
    parameters = _call_parameters(pipeline)
    inferred = infer_video_settings(pipeline)
    requested = {"height": height, "width": width, "num_frames": num_frames}
    for name, value in requested.items():
        if value is not None and name not in parameters:
            raise ValueError(f"`{name}={value}` was given, but {type(pipeline).__name__}.__call__ has no `{name}`.")
    sizes = {k: (v if v is not None else inferred[k]) for k, v in requested.items()}
    return sizes, {k: v for k, v in sizes.items() if v is not None and k in parameters}


def heldout_scenes(sizes: dict, num_samples: int, seed: int) -> tuple[ShapesWorld, list]:
    """The world (at the videos' size, for image-to-video first frames) and the held-out scenes `(seed, 0, i)` whose
    captions prompt the pipeline: attribute combinations never shown in training."""
    world = ShapesWorld(
        height=max(sizes["height"] or 64, 8),
        width=max(sizes["width"] or 64, 8),
        num_frames=max(sizes["num_frames"] or 16, 2),
        split="heldout",
    )
    return world, [world.scene((seed, 0, i)) for i in range(num_samples)]


def first_frame_image(world: ShapesWorld, scene):
    """The first frame of `scene`'s real clip as the PIL image an image-to-video pipeline is given."""
    from PIL import Image

    return Image.fromarray((world.render(scene, num_frames=1)[0] * 255).round().astype(np.uint8))


def score_videos(
    videos: list[np.ndarray],
    scenes: list,
    world: ShapesWorld,
    settings: dict,
    total_seconds: float,
    num_real: int | None = None,
    seed: int = 0,
    scorer: ShapesScorer | None = None,
    timed_videos: int | None = None,
) -> dict:
    """Score generated videos of `scenes` (see `evaluate_pipeline`, whose result this returns): `settings` (the
    pipeline's name and call settings) first, then the scores, the ground truth, FSD and the per-video samples.
    `total_seconds` is the time spent generating `timed_videos` of them (default: all; 0 when every video was
    resumed from files, which leaves the time per video `None`)."""
    if len(videos) != len(scenes):
        raise ValueError(f"The pipeline returned {len(videos)} videos for {len(scenes)} prompts.")
    scorer = ShapesScorer() if scorer is None else scorer
    num_samples = len(scenes)
    timed = num_samples if timed_videos is None else timed_videos
    scores = [scorer.score(video, scene.caption) for video, scene in zip(videos, scenes)]
    frames_out, height_out, width_out = videos[0].shape[:3]
    num_real = max(num_samples, 64) if num_real is None else num_real
    fsd = None
    if num_samples >= 2 and num_real >= 2:
        real = [world.render(world.scene((seed, 1, j)), height_out, width_out, frames_out) for j in range(num_real)]
        fsd = float(scorer.fsd(videos, real))
    return {
        **settings,
        "height": int(height_out),
        "width": int(width_out),
        "num_frames": int(frames_out),
        "caption_split": "heldout",
        "scores": scorer.aggregate(scores),
        "ground_truth": _score_renders(world, scenes, height_out, width_out, frames_out, scorer),
        "fsd": fsd,
        "num_real": num_real if fsd is not None else 0,
        "seconds_per_video": total_seconds / timed if timed else None,
        "total_seconds": total_seconds,
        "samples": [
            {
                "prompt": s.prompt,
                "color": s.color,
                "shape": s.shape,
                "direction": s.direction,
                "speed": s.speed,
                "all_ok": s.all_ok,
                "temporal_consistency": s.temporal_consistency,
                **{key: getattr(s, key) for key in (*DEFECT_FIELDS, "worst_frame")},
            }
            for s in scores
        ],
    }


ACCURACY_METRICS = (
    ("color", "colour accuracy"),
    ("shape", "shape accuracy"),
    ("direction", "direction accuracy"),
    ("speed", "speed accuracy"),
    ("all_correct", "all correct"),
)
"""The accuracies of a quality result (`scores` key, label), in the order the tables show them."""

MEAN_METRICS = (
    ("temporal_consistency", "temporal consistency"),
    ("background_flicker", "background flicker"),
    ("path_deviation_max", "path deviation, worst frame"),
    ("path_deviation_mean", "path deviation, mean"),
    ("path_deviation_loo_max", "path jump (leave-one-out)"),
    ("backward_jump_max", "backward jump"),
    ("backward_steps", "steps back > 1 px"),
    ("shape_color_std", "colour spread in shape"),
    ("background_laplacian", "background grain"),
    ("worst_frame_is_middle", "worst frame is the middle"),
)
"""The mean measures of a quality result (`scores` key, label). The path, jump and spread measures are fractions
of the frame or [0, 1] intensities (see `shapes_defects`); `worst_frame_is_middle` is the share of videos whose
worst frame (of those that have one) is `num_frames // 2` (chance: `1 / num_frames`)."""


def _mean(entry: dict | None, width: int = 9) -> str:
    value = None if entry is None else entry.get("mean")
    return f"{'n/a':>{width}}" if value is None else f"{value:>{width}.4f}"


def format_quality_table(result: dict) -> str:
    """The result of `evaluate_pipeline` as a plain-text table, with the ground truth's value beside each measure."""
    scores, truth = result["scores"], result.get("ground_truth") or {}
    lines = [
        f"{result['pipeline']}: {result['num_samples']} videos of {result['height']}x{result['width']} x "
        f"{result['num_frames']} frames, {result['num_inference_steps']} steps, seed {result['seed']}, held-out "
        "captions",
        f"{'metric':<30}{'value':>9}   {'95% CI':<15}{'ground truth':>12}",
    ]
    for key, label in ACCURACY_METRICS:
        entry, floor = scores[key], truth.get(key) or {}
        value = "n/a" if entry["accuracy"] is None else f"{entry['accuracy']:.3f}"
        reference = "n/a" if floor.get("accuracy") is None else f"{floor['accuracy']:.3f}"
        lines.append(f"{label:<30}{value:>9}   {entry['ci_low']:.3f}-{entry['ci_high']:.3f}{reference:>16}")
    for key, label in MEAN_METRICS:
        entry = scores.get(key)
        if entry is None:  # a result written before the measure existed
            continue
        interval = "" if entry.get("mean") is None else f"{entry['ci_low']:.4f}-{entry['ci_high']:.4f}"
        lines.append(f"{label:<30}{_mean(entry)}   {interval:<15}{_mean(truth.get(key), 12)}")
    histogram = scores.get("worst_frame_histogram")
    if histogram:
        lines.append(f"{'worst frame, videos per index':<30}{' '.join(str(count) for count in histogram)}")
    fsd = "n/a" if result["fsd"] is None else f"{result['fsd']:.3f}"
    lines.append(f"{'FSD vs ' + str(result['num_real']) + ' real clips':<30}{fsd:>9}")
    seconds = result["seconds_per_video"]
    shown = f"{seconds:>9.3f}" if seconds is not None else "      n/a (every video was already made)"
    lines.append(f"{'seconds per video':<30}{shown}")
    return "\n".join(lines)
