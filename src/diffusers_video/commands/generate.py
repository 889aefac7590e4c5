"""`diffusers-video generate`: videos from any diffusers-video pipeline, from a folder or a Hub repo id.

    diffusers-video generate --pipeline PATH_OR_REPO_ID --prompt "a red circle moving right" --output video.mp4
    diffusers-video generate --pipeline imagen_video "a red circle moving right" --steps 8 --guidance_scale 4,4,1,1
    diffusers-video generate --pipeline PATH_OR_REPO_ID --prompts prompts.txt --output_dir videos/
    accelerate launch --num_processes 2 -m diffusers_video.cli generate --pipeline ... --prompts prompts.jsonl ...

Loads the pipeline class named in the folder's model_index.json (downloading a repo id into the Hub cache first;
`--local_files_only` reads the cache only), generates one video with a progress bar, and writes it as MP4 (needs
imageio-ffmpeg: `pip install "diffusers-video[video]"`) or GIF, chosen by the extension of `--output`. Options the
pipeline does not take are refused (e.g. `--image` for a text-to-video pipeline); options left out take the
pipeline's defaults.

`--pipeline` also takes the name of a committed demo pipeline, a folder relative to the repository root (run from
there): `videofusion`, `imagen_video`, `i2vgen_xl`, `magicvideo` or `videogen` (pipelines/NAME/demo). The prompt can be
given as `--prompt` or as the last argument. A cascade (ImagenVideoPipeline) takes `--steps` and `--guidance_scale`
per stage, comma-separated, base first (one number is used for every stage). `--lora PATH_OR_REPO_ID` loads a
LoRA (`pytorch_lora_weights.safetensors`, see `diffusers_video.pipelines.lora`) first, at `--lora_scale`. Any other
argument of the pipeline's `__call__` goes in `--pipeline_kwargs` as a JSON object, e.g. `'{"interpolation_factors":
[2, 2], "num_keyframes": 4}'` for MagicVideo; a key the pipeline does not take, or one an option above already sets, is
refused.

Many prompts: `--prompts FILE` (a text file, one prompt per line, blank lines and lines starting with # skipped; or a
`.jsonl` file, one object per line with "prompt" and optionally "seed", "negative_prompt", "num_frames", "height",
"width", "steps", "guidance_scale", "image") writes one video per prompt into `--output_dir` as `<index>.mp4` (or `.gif`,
or `.npy` by `--format`: the frames as a float32 array `(frames, height, width, 3)` in [0, 1], exactly as the pipeline
made them, which is what `bench quality` scores), prompt `i` (from 0) seeded `--seed + i` unless its line gives a seed, and `index.jsonl` there, one line
per video: index, prompt, seed, file and the options of its line. A video already in the folder is skipped, so a rerun
resumes an interrupted batch. Under `accelerate launch` the prompts are split between the processes
(`PartialState.split_between_processes`; on CPU, `accelerate launch --multi_gpu --num_processes N` or torchrun starts
them and they use gloo); every video depends only on its own line and seed, so the files are those of one process.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..folders import INDEX_NAME, check_writable
from ..pipelines.loading import is_repo_id
from ..pipelines.pipeline_utils import VideoDiffusionPipeline

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_FORMATS = (".mp4", ".gif")
INDEX_FILE = "index.jsonl"
# The keys a `--prompts` JSONL line may have besides "prompt" and "seed", and the option each one stands for.
LINE_OPTIONS = {
    "negative_prompt": "negative_prompt",
    "num_frames": "num_frames",
    "height": "height",
    "width": "width",
    "steps": "steps",
    "guidance_scale": "guidance_scale",
    "image": "image",
}

# The arguments of a pipeline's call that the command's own options set (`--pipeline_kwargs` may not).
OPTION_ARGUMENTS = (
    "prompt", "negative_prompt", "image", "num_frames", "height", "width", "num_inference_steps", "guidance_scale",
)  # fmt: skip

# The committed demo pipelines that `--pipeline NAME` loads, relative to the repository root (where commands run).
DEMO_PIPELINES = {
    name: Path("pipelines") / name / "demo"
    for name in ("videofusion", "imagen_video", "i2vgen_xl", "magicvideo", "videogen")
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate a video with a pipeline from a folder or the Hub",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--pipeline",
        required=True,
        metavar="NAME_PATH_OR_REPO_ID",
        help=f"a demo pipeline ({', '.join(DEMO_PIPELINES)}), a pipeline folder (save_pretrained) or a Hub repo id",
    )
    parser.add_argument("prompt_argument", nargs="?", default=None, metavar="PROMPT", help="what the video shows")
    parser.add_argument("--prompt", default=None, help="what the video shows (or give it as PROMPT)")
    parser.add_argument("--negative_prompt", "--negative-prompt", default=None, help="what it must not show")
    parser.add_argument(
        "--image", default=None, metavar="FILE", help="the first frame (image-to-video pipelines only)"
    )
    parser.add_argument("--num_frames", "--num-frames", type=int, default=None, help="default: the pipeline's")
    parser.add_argument("--height", type=int, default=None, help="frame height in pixels (default: the pipeline's)")
    parser.add_argument("--width", type=int, default=None, help="frame width in pixels (default: the pipeline's)")
    parser.add_argument(
        "--steps",
        default=None,
        help="denoising steps; per stage for a cascade, e.g. 64,32,32 (default: the pipeline's)",
    )
    parser.add_argument(
        "--guidance_scale",
        "--guidance-scale",
        default=None,
        help="classifier-free guidance weight; per stage for a cascade, e.g. 4,4,1,1",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--fps", type=int, default=8, help="frames per second of the file (default: 8)")
    parser.add_argument("--output", default=None, help="the file to write, .mp4 or .gif (default: video.mp4)")
    parser.add_argument(
        "--prompts", default=None, metavar="FILE", help="many prompts: a text file (one per line) or a .jsonl file"
    )
    parser.add_argument("--output_dir", "--output-dir", default=None, help="where `--prompts` videos go")
    parser.add_argument(
        "--format", choices=("mp4", "gif", "npy"), default="mp4", help="file type of `--prompts` videos (npy: exact)"
    )
    parser.add_argument(
        "--pipeline_kwargs",
        "--pipeline-kwargs",
        default=None,
        metavar="JSON",
        help="other arguments of the pipeline's call, as a JSON object",
    )
    parser.add_argument("--lora", default=None, metavar="PATH_OR_REPO_ID", help="load this LoRA into the pipeline")
    parser.add_argument("--lora_scale", "--lora-scale", type=float, default=1.0, help="its weight (default: 1)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--dtype", choices=sorted(_DTYPES), default="float32", help="weights dtype (default: float32)")
    parser.add_argument("--revision", default=None, help="branch, tag or commit of a Hub repo (default: main)")
    parser.add_argument(
        "--local_files_only", "--local-files-only", action="store_true", help="read a repo from the Hub cache only"
    )
    parser.add_argument("--no_progress", "--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def resolve_pipeline(value: str) -> str:
    """`--pipeline`: a demo name becomes its folder (`DEMO_PIPELINES`); a folder or repo id stays as it is.

    Raises:
        ValueError: the name of a demo is also a folder here (which one is meant is unclear).
        FileNotFoundError: the demo's folder does not exist (yet), e.g. outside the repository root.
    """
    folder = DEMO_PIPELINES.get(value)
    if folder is None:
        return value
    if Path(value).exists():
        raise ValueError(
            f"`--pipeline {value}` names the demo folder '{folder}' and a folder '{value}' here: pass './{value}' "
            f"for the folder or '{folder}' for the demo."
        )
    if not (folder / INDEX_NAME).is_file():
        raise FileNotFoundError(
            f"`--pipeline {value}` loads the demo folder '{folder}', which does not exist (yet) here: run from the "
            "repository root once the demo is committed, or pass a pipeline folder."
        )
    return str(folder)


def _numbers(text: str, option: str, kind: type, per_stage: bool, name: str) -> int | float | list:
    """`"8"` -> 8, and for a pipeline with per-stage arguments `"64,32,32"` -> [64, 32, 32]."""
    parts = text.split(",")
    if len(parts) > 1 and not per_stage:
        raise ValueError(f"`{option}` takes one number for {name} (it has no stages), but is {text!r}.")
    try:
        values = [kind(part) for part in parts]
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ValueError(
            f"`{option}` must be {what}, or one per stage separated by commas for a cascade, but is {text!r}."
        ) from None
    return values if len(parts) > 1 else values[0]


def pipeline_kwargs(text: str | dict | None, parameters, name: str) -> dict:
    """The JSON object of `--pipeline_kwargs` (or the dict already parsed), each key an argument of the pipeline's
    `__call__` (`parameters`) that no option of the command sets (`OPTION_ARGUMENTS`, nor the generator and output
    type); a `ValueError` naming the key otherwise."""
    if text is None:
        return {}
    if isinstance(text, str):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"`--pipeline_kwargs` must be a JSON object but is {text!r}: {error}.") from error
    else:
        values = text
    if not isinstance(values, dict):
        raise ValueError(f"`--pipeline_kwargs` must be a JSON object but is {text!r}.")
    for key in values:
        if key in OPTION_ARGUMENTS or key in ("generator", "output_type", "return_dict"):
            raise ValueError(
                f"`--pipeline_kwargs` sets {key!r}, which the command sets itself (or an option of its own does)."
            )
        if key not in parameters:
            raise ValueError(f"`--pipeline_kwargs` has {key!r}, which is not an argument of {name}.")
    return dict(values)


def call_arguments(pipeline, args: argparse.Namespace) -> dict:
    """The keyword arguments for `pipeline(...)`: the options given, each checked against what `__call__` takes.

    `--steps` and `--guidance_scale` are one number, or for a pipeline with per-stage arguments (a cascade such as
    `ImagenVideoPipeline`, which has `num_stages`) comma-separated numbers, one per stage.
    """
    parameters = inspect.signature(pipeline.__call__).parameters
    name = type(pipeline).__name__
    per_stage = getattr(pipeline, "num_stages", None) is not None
    prompt = getattr(args, "prompt", None)
    prompt_argument = getattr(args, "prompt_argument", None)
    if prompt is not None and prompt_argument is not None:
        raise ValueError(
            f"Give the prompt once, as PROMPT or as `--prompt`, but both were given: {prompt_argument!r} and "
            f"{prompt!r}."
        )
    prompt = prompt if prompt is not None else prompt_argument
    steps, scale = args.steps, args.guidance_scale
    if isinstance(steps, str):
        steps = _numbers(steps, "--steps", int, per_stage, name)
    if isinstance(scale, str):
        scale = _numbers(scale, "--guidance_scale", float, per_stage, name)
    if "image" in parameters and args.image is None:
        raise ValueError(f"`--image` is required: {name} generates a video from an image (its first frame).")
    given = {
        "prompt": ("--prompt", prompt),
        "negative_prompt": ("--negative_prompt", args.negative_prompt),
        "image": ("--image", args.image),
        "num_frames": ("--num_frames", args.num_frames),
        "height": ("--height", args.height),
        "width": ("--width", args.width),
        "num_inference_steps": ("--steps", steps),
        "guidance_scale": ("--guidance_scale", scale),
    }
    kwargs = {}
    for parameter, (option, value) in given.items():
        if value is None:
            continue
        if parameter not in parameters:
            kind = " (it is not an image-to-video pipeline)" if parameter == "image" else ""
            raise ValueError(f"`{option}` is not an option of {name}{kind}, but is {value!r}.")
        kwargs[parameter] = value
    kwargs.update(pipeline_kwargs(getattr(args, "pipeline_kwargs", None), parameters, name))
    if "image" in kwargs:
        from diffusers.utils import load_image

        if not Path(args.image).is_file():
            raise FileNotFoundError(f"`--image` {args.image!r} does not exist.")
        kwargs["image"] = load_image(args.image)
    if "prompt" in parameters and "prompt" not in kwargs and "image" not in parameters:
        raise ValueError(f"`--prompt` is required: {name} generates a video from text.")
    generator = torch.Generator("cpu").manual_seed(args.seed)  # on the CPU: the same video on every device
    if "generator" in parameters:
        kwargs["generator"] = generator
    if "output_type" in parameters:
        kwargs["output_type"] = "np"
    return kwargs


def write_video(frames: np.ndarray, output: Path, fps: int) -> None:
    """Writes `(frames, height, width, 3)` floats in [0, 1] as MP4 (imageio-ffmpeg), GIF (PIL) or NPY (the float32
    array itself, lossless)."""
    from diffusers.utils import export_to_gif, export_to_video
    from PIL import Image

    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".npy":
        np.save(output, np.asarray(frames, dtype=np.float32), allow_pickle=False)
        return
    if output.suffix.lower() == ".gif":
        images = [Image.fromarray((np.clip(f, 0, 1) * 255).round().astype(np.uint8)) for f in frames]
        export_to_gif(images, str(output), fps=fps)
        return
    try:
        import imageio_ffmpeg  # noqa: F401  (diffusers' export_to_video writes MP4 through it)
    except ImportError as error:
        raise ValueError(
            f"writing '{output}' needs imageio-ffmpeg: `pip install \"diffusers-video[video]\"`, or write a .gif."
        ) from error
    export_to_video(list(np.clip(frames, 0, 1)), str(output), fps=fps)


def _first_video(frames) -> np.ndarray:
    """The first video of a pipeline's `frames` as `(frames, height, width, 3)` floats in [0, 1]."""
    video = frames[0]
    if isinstance(video, torch.Tensor):  # "pt": (frames, 3, height, width)
        return video.float().cpu().permute(0, 2, 3, 1).numpy()
    if isinstance(video, (list, tuple)):  # "pil"
        return np.stack([np.asarray(image, dtype=np.float32) / 255 for image in video])
    return np.asarray(video, dtype=np.float32)


def _device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"`--device` must be a torch device such as cpu or cuda:0 but is {name!r}.") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"`--device` is {name!r}, but this machine has no CUDA device torch can use.")
    return device


@dataclass
class PromptJob:
    """One video of a `--prompts` batch: its position in the file, prompt, seed and the options of its line."""

    index: int
    prompt: str
    seed: int
    options: dict = field(default_factory=dict)

    def file_name(self, extension: str) -> str:
        return f"{self.index:05d}.{extension}"


def read_prompts(path: str | os.PathLike, seed: int = 0) -> list[PromptJob]:
    """The jobs of a `--prompts` file: a text file, one prompt per line (blank lines and `#` comments skipped), or a
    `.jsonl` file of objects with "prompt" and optionally "seed" and the keys of `LINE_OPTIONS`.

    Prompt `i` (counting prompts, from 0) is seeded `seed + i` unless its line gives a "seed".

    Raises:
        FileNotFoundError: no such file.
        ValueError: no prompt, or a line that is not a JSON object with a string "prompt", an integer "seed" >= 0 and
            known keys (the message names the line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`--prompts` {str(path)!r} does not exist.")
    jobs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or (path.suffix != ".jsonl" and line.lstrip().startswith("#")):
            continue
        where = f"line {number} of '{path}'"
        if path.suffix != ".jsonl":
            jobs.append(PromptJob(len(jobs), line.strip(), seed + len(jobs)))
            continue
        try:
            values = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where} is not valid JSON ({error.msg}): {line[:80]!r}.") from None
        if not isinstance(values, dict) or not isinstance(values.get("prompt"), str) or not values["prompt"].strip():
            raise ValueError(f'{where} must be a JSON object with a non-empty "prompt" string but is {line[:80]!r}.')
        unknown = sorted(set(values) - {"prompt", "seed", *LINE_OPTIONS})
        if unknown:
            raise ValueError(
                f"{where} has unknown keys {unknown}; known are {sorted({'prompt', 'seed', *LINE_OPTIONS})}."
            )
        own_seed = values.get("seed", seed + len(jobs))
        if isinstance(own_seed, bool) or not isinstance(own_seed, int) or own_seed < 0:
            raise ValueError(f'{where}: "seed" must be an integer >= 0 but is {own_seed!r}.')
        options = {key: values[key] for key in LINE_OPTIONS if key in values}
        if "image" in options:  # a file name, relative to the prompts file
            if not isinstance(options["image"], str) or not options["image"]:
                raise ValueError(f'{where}: "image" must be the name of an image file but is {options["image"]!r}.')
            options["image"] = str(path.parent / options["image"])
        jobs.append(PromptJob(len(jobs), values["prompt"].strip(), own_seed, options))
    if not jobs:
        raise ValueError(f"`--prompts` '{path}' holds no prompt.")
    return jobs


def job_arguments(args: argparse.Namespace, job: PromptJob) -> argparse.Namespace:
    """The command line of one job: `args` with the job's prompt, seed and line options."""
    job_args = copy.copy(args)
    job_args.prompt, job_args.prompt_argument, job_args.seed = job.prompt, None, job.seed
    for key, value in job.options.items():
        if key in ("steps", "guidance_scale") and isinstance(value, list):
            value = ",".join(str(v) for v in value)  # per stage, as on the command line
        setattr(job_args, LINE_OPTIONS[key], str(value) if key in ("steps", "guidance_scale") else value)
    return job_args


def write_index(output_dir: Path, jobs: list[PromptJob], extension: str) -> Path:
    """Write `index.jsonl`: one line per video of `jobs` that exists in `output_dir`, in prompt order."""
    lines = []
    for job in jobs:
        name = job.file_name(extension)
        if (output_dir / name).is_file():
            line = {"index": job.index, "prompt": job.prompt, "seed": job.seed, "file": name, **job.options}
            lines.append(json.dumps(line))
    temporary = output_dir / f".{INDEX_FILE}.partial"
    temporary.write_text("".join(line + "\n" for line in lines))
    os.replace(temporary, output_dir / INDEX_FILE)
    return output_dir / INDEX_FILE


def load_pipeline(args: argparse.Namespace) -> VideoDiffusionPipeline:
    """The pipeline of `--pipeline` (with `--lora` loaded), in `--dtype`; a load failure as one-line ValueError."""
    if args.no_progress:  # also the loading bars of diffusers and transformers
        import diffusers.utils.logging
        import transformers.utils.logging

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
    source = resolve_pipeline(args.pipeline)
    try:
        pipeline = VideoDiffusionPipeline.from_pretrained(
            source,
            dtype=_DTYPES[args.dtype],
            revision=args.revision,
            local_files_only=args.local_files_only or None,
        )
    except OSError as error:  # missing or unreadable files, Hub errors: one line, no traceback
        first_line = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        shown = repr(args.pipeline) if source == args.pipeline else f"{args.pipeline!r} ('{source}')"
        raise ValueError(f"cannot load `--pipeline` {shown}: {first_line}") from error
    if getattr(args, "lora", None):
        if not os.path.exists(args.lora) and not is_repo_id(args.lora):
            raise FileNotFoundError(f"`--lora` {args.lora!r} is neither an existing file or folder nor a Hub repo id.")
        try:
            pipeline.load_lora_weights(args.lora, adapter_name="lora", local_files_only=args.local_files_only or None)
        except OSError as error:
            raise ValueError(f"cannot load `--lora` {args.lora!r}: {str(error).splitlines()[0]}") from error
        pipeline.set_adapters("lora", args.lora_scale)
    return pipeline


def run(args: argparse.Namespace) -> int:
    """Run `generate` from parsed arguments; returns the exit code."""
    if getattr(args, "prompts", None) is not None:
        return run_batch(args)
    if getattr(args, "output_dir", None) is not None:
        raise ValueError(f"`--output_dir` ({args.output_dir!r}) goes with `--prompts`; one video takes `--output`.")
    args.output = args.output if args.output is not None else "video.mp4"
    output = Path(args.output)
    if output.suffix.lower() not in _FORMATS:
        raise ValueError(f"`--output` must end in .mp4 or .gif but is {args.output!r}.")
    if args.fps < 1:
        raise ValueError(f"`--fps` must be at least 1 but is {args.fps}.")
    check_writable(output.absolute().parent)  # before the pipeline is loaded
    device = _device(args.device)
    pipeline = load_pipeline(args)
    kwargs = call_arguments(pipeline, args)
    pipeline = pipeline.to(device)
    pipeline.set_progress_bar_config(disable=args.no_progress)
    video = _first_video(pipeline(**kwargs).frames)
    write_video(video, output, args.fps)
    print(f"wrote {output} ({len(video)} frames of {video.shape[1]}x{video.shape[2]}, seed {args.seed})")
    return 0


def run_batch(args: argparse.Namespace) -> int:
    """`generate --prompts FILE --output_dir DIR`: one video per prompt, split between the processes of `accelerate
    launch`, skipping videos that exist; then `index.jsonl`. Returns the exit code."""
    generate_batch(args)
    return 0


@dataclass
class BatchResult:
    """What `generate_batch` did: every job of the prompts file, how many videos this process made, and the seconds
    it spent in the pipeline calls (loading excluded)."""

    jobs: list[PromptJob]
    generated: int
    seconds: float


def generate_batch(args: argparse.Namespace, pipeline=None) -> BatchResult:
    """The batch of `generate --prompts`: checks every line, then writes the videos not already in `--output_dir`
    (each through a partial file, so a video there is always complete) and the index.

    Args:
        args: the parsed `generate` options (`prompts`, `output_dir`, `format`, `fps`, `seed`, ...).
        pipeline (*optional*): a loaded pipeline to use instead of loading `--pipeline` (what `bench quality` passes).
    """
    from accelerate import PartialState
    from tqdm.auto import tqdm

    given = [name for name in ("prompt", "prompt_argument", "output") if getattr(args, name, None) is not None]
    if given:
        option = "PROMPT" if given[0] == "prompt_argument" else f"--{given[0]}"
        raise ValueError(f"`--prompts` writes one video per line into `--output_dir`: leave out `{option}`.")
    if args.output_dir is None:
        raise ValueError("`--prompts` needs `--output_dir`, the folder the videos go into.")
    if args.fps < 1:
        raise ValueError(f"`--fps` must be at least 1 but is {args.fps}.")
    jobs = read_prompts(args.prompts, args.seed)
    output_dir = Path(args.output_dir)
    # on a machine without CUDA (or with `--device cpu`) the processes of `accelerate launch` / torchrun talk over gloo
    on_cpu = not torch.cuda.is_available() or (args.device is not None and torch.device(args.device).type == "cpu")
    state = PartialState(cpu=on_cpu)
    if state.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        check_writable(output_dir.absolute())
    state.wait_for_everyone()
    todo = [job for job in jobs if not (output_dir / job.file_name(args.format)).is_file()]
    generated, seconds = 0, 0.0
    if todo:
        pipeline = load_pipeline(args) if pipeline is None else pipeline
        job_kwargs = [call_arguments(pipeline, job_arguments(args, job)) for job in todo]  # every line checked first
        device = _device(args.device) if args.device is not None else state.device
        pipeline = pipeline.to(device)
        pipeline.set_progress_bar_config(disable=True)  # one bar per process, over its videos
        with state.split_between_processes(list(zip(todo, job_kwargs))) as mine:
            if state.num_processes > 1:
                print(f"process {state.process_index + 1}/{state.num_processes}: {len(mine)} of {len(todo)} videos")
            bar = tqdm(
                mine, desc=f"generate [{state.process_index + 1}/{state.num_processes}]", unit="video",
                position=state.process_index, disable=args.no_progress,
            )  # fmt: skip
            for job, kwargs in bar:
                target = output_dir / job.file_name(args.format)
                partial = target.with_name(f".{target.stem}.partial{target.suffix}")
                started = time.perf_counter()
                frames = _first_video(pipeline(**kwargs).frames)
                seconds += time.perf_counter() - started
                write_video(frames, partial, args.fps)
                os.replace(partial, target)  # a video in the folder is always complete
                generated += 1
    state.wait_for_everyone()
    if state.is_main_process:
        write_index(output_dir, jobs, args.format)
        skipped = len(jobs) - len(todo)
        print(f"wrote {len(todo)} videos to {output_dir} ({skipped} already there), index in {INDEX_FILE}")
    return BatchResult(jobs, generated, seconds)
