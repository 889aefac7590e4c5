"""Model cards of saved pipeline and model folders.

[`make_model_card`] writes the card of a saved folder: YAML metadata (`library_name`, `pipeline_tag`, `base_model`,
tags), the paper, how the model was trained and distilled (`training_config.json`, `distillation.json`), its
moving-shapes scores (`quality.json`, from `diffusers-video bench quality`), a sample GIF and a usage snippet.

Why `library_name: diffusers` and not "diffusers-video": the Hub only knows the libraries listed in huggingface.js; for
"diffusers" it reads `model_index.json`, counts downloads, shows the pipeline class and offers a "Use this model"
snippet, while an unknown library name gets none of that. The repos are diffusers repos (loadable with diffusers and
`trust_remote_code=True`), and the "diffusers-video" tag makes them findable.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import models as video_models
from ..data.quality import ACCURACY_METRICS, MEAN_METRICS
from ..folders import (
    DISTILLATION_NAME,
    INDEX_NAME,
    SAMPLE_NAME,
    SCORES_NAMES,
    TRAINING_CONFIG_NAME,
    class_name_of,
    components_of,
    read_json,
)
from ..pipelines.loading import is_repo_id
from ..pipelines.pipeline_utils import VideoDiffusionPipeline

__all__ = [
    "LIBRARY_NAME",
    "LIBRARY_TAG",
    "PAPERS",
    "Paper",
    "folder_kind",
    "load_scores",
    "make_model_card",
    "pipeline_tag_for",
    "usage_snippet",
]

LIBRARY_NAME = "diffusers"
LIBRARY_TAG = "diffusers-video"
EXAMPLE_PROMPT = "a red circle moving right"


@dataclass(frozen=True)
class Paper:
    """A paper a pipeline implements: its arXiv id and title."""

    arxiv: str
    title: str

    @property
    def url(self) -> str:
        return f"https://arxiv.org/abs/{self.arxiv}"


PAPERS = {
    "VideoFusionPipeline": Paper(
        "2303.08320", "VideoFusion: Decomposed Diffusion Models for High-Quality Video Generation"
    ),
    "ImagenVideoPipeline": Paper("2210.02303", "Imagen Video: High Definition Video Generation with Diffusion Models"),
    "MagicVideoPipeline": Paper("2211.11018", "MagicVideo: Efficient Video Generation With Latent Diffusion Models"),
    "I2VGenXLPipeline": Paper(
        "2311.04145", "I2VGen-XL: High-Quality Image-to-Video Synthesis via Cascaded Diffusion Models"
    ),
    "VideoGenPipeline": Paper(
        "2309.00398",
        "VideoGen: A Reference-Guided Latent Diffusion Approach for High Definition Text-to-Video Generation",
    ),
}


def pipeline_tag_for(pipeline_class: type) -> str:
    """The Hub task of a pipeline class: "image-to-video" if its `__call__` takes an `image`, else "text-to-video"."""
    return "image-to-video" if "image" in inspect.signature(pipeline_class.__call__).parameters else "text-to-video"


def _is_hub_model_id(value: Any) -> bool:
    """A base model worth naming in the card's metadata: a "namespace/name" repo id, not a folder on this machine."""
    return isinstance(value, str) and value.count("/") == 1 and is_repo_id(value) and not Path(value).exists()


def _num_parameters(folder: Path) -> int | None:
    """Parameters stored in the safetensors files of a component folder, from their headers."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                shape = f.get_slice(key).get_shape()
                count = 1
                for size in shape:
                    count *= size
                total += count
    return total


def load_scores(path: str | Path) -> dict[str, Any]:
    """A moving-shapes quality result (`diffusers-video bench quality --output FILE`), checked.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is not such a result; the message names the file and what is missing.
    """
    path = Path(path)
    result = read_json(path, missing_ok=True)
    if result is None:
        raise FileNotFoundError(f"The scores file '{path}' does not exist.")
    scores = result.get("scores")
    if not isinstance(scores, dict) or not isinstance(scores.get("all_correct"), dict):
        raise ValueError(
            f"'{path}' is not a moving-shapes quality result (written by `diffusers-video bench quality --output`): "
            "it has no `scores.all_correct`."
        )
    return result


def _scores_section(result: dict[str, Any]) -> str:
    scores = result["scores"]
    setup = ", ".join(
        text
        for text in (
            f"{result['num_samples']} videos" if "num_samples" in result else None,
            f"{result['height']}x{result['width']} x {result['num_frames']} frames"
            if all(k in result for k in ("height", "width", "num_frames"))
            else None,
            f"{result['num_inference_steps']} steps" if "num_inference_steps" in result else None,
            f"guidance {result['guidance_scale']}" if result.get("guidance_scale") is not None else None,
            f"seed {result['seed']}" if "seed" in result else None,
        )
        if text
    )
    truth = result.get("ground_truth") or {}  # the world's own renders of the same scenes: each measure's floor

    def floor(key: str, field: str, digits: int) -> str:
        entry = truth.get(key)
        return f"{entry[field]:.{digits}f}" if isinstance(entry, dict) and entry.get(field) is not None else ""

    rows = ["| metric | value | 95% interval | ground truth |", "|---|---|---|---|"]
    for key, label in ACCURACY_METRICS:
        entry = scores.get(key)
        if isinstance(entry, dict) and entry.get("accuracy") is not None:
            rows.append(
                f"| {label} | {entry['accuracy']:.3f} | {entry['ci_low']:.3f}-{entry['ci_high']:.3f} |"
                f" {floor(key, 'accuracy', 3)} |"
            )
    for key, label in MEAN_METRICS:  # 4 decimals: path deviations are fractions of the frame near 1e-3
        entry = scores.get(key)
        if isinstance(entry, dict) and entry.get("mean") is not None:
            rows.append(
                f"| {label} | {entry['mean']:.4f} | {entry['ci_low']:.4f}-{entry['ci_high']:.4f} | {floor(key, 'mean', 4)} |"
            )
    if result.get("fsd") is not None:
        rows.append(
            f"| FSD against {result.get('num_real', '?')} real clips (lower is better) | {result['fsd']:.3f} | | |"
        )
    if result.get("seconds_per_video") is not None:
        device = f" ({result['device']})" if result.get("device") else ""
        rows.append(f"| seconds per video{device} | {result['seconds_per_video']:.3f} | | |")
    return (
        "## Evaluation: the moving-shapes world\n\n"
        "Scored by diffusers-video's `ShapesScorer` on held-out captions (attribute combinations never seen in "
        f"training){': ' + setup if setup else ''}. Reproduce with `diffusers-video bench quality`.\n\n"
        + "\n".join(rows)
        + "\n"
    )


def _training_section(training: dict[str, Any] | None, distillation: dict[str, Any] | None) -> str:
    if training is None and distillation is None:
        return ""
    lines = ["## Training", ""]
    if training is not None:
        data, model = training.get("data") or {}, training.get("model") or {}
        source = model.get("pretrained_model_name_or_path")
        where = (
            "the moving-shapes world (procedural captioned clips)" if data.get("path") is None else f"`{data['path']}`"
        )
        lines.append(f"- Data: {where}, {data.get('height')}x{data.get('width')} x {data.get('num_frames')} frames.")
        if source:
            lines.append(f"- Initialised from `{source}` ({model.get('unet_class', 'UNet3DModel')}).")
        optim = f"{training.get('max_train_steps')} steps, batch {training.get('train_batch_size')}"
        optim += f", AdamW learning rate {training.get('learning_rate')} ({training.get('lr_scheduler', 'constant')})"
        lines.append(f"- Optimisation: {optim}; mixed precision {training.get('mixed_precision', 'no')}.")
        details = [f"prediction type {training.get('prediction_type')}"]
        if training.get("ema_decay") is not None:
            details.append(f"EMA {training['ema_decay']}")
        if training.get("snr_gamma") is not None:
            details.append(f"min-SNR gamma {training['snr_gamma']}")
        if training.get("condition_dropout"):
            details.append(f"caption dropout {training['condition_dropout']}")
        if training.get("image_fraction"):
            details.append(f"joint image-video training ({training['image_fraction']} still images)")
        if training.get("freeze_spatial"):
            details.append("spatial layers frozen")
        lines.append(f"- Objective: {', '.join(details)}.")
        videofusion = training.get("videofusion")
        if isinstance(videofusion, dict):
            base = videofusion.get("base_model")
            lines.append(
                f"- VideoFusion: base noise ratio {videofusion.get('base_noise_ratio')}; base generator "
                + (
                    f"`{base}` ({'trained jointly' if videofusion.get('train_base', True) else 'frozen'})"
                    if base
                    else "none"
                )
                + "."
            )
        lines.append(f"- Seed {training.get('seed')}; the full config is `{TRAINING_CONFIG_NAME}` in this repo.")
    if distillation is not None:
        steps, teacher = distillation.get("num_inference_steps"), distillation.get("teacher_steps")
        text = (
            f"- Progressive distillation (Salimans & Ho 2022): round {distillation.get('round')} of "
            f"{distillation.get('num_rounds')}, a {steps}-step student of a {teacher}-step teacher"
        )
        if distillation.get("guidance_scale_range") is not None:
            low, high = distillation["guidance_scale_range"]
            text += f", classifier-free guidance distilled in for weights {low} to {high}"
        lines.append(text + f". Sample it with {steps} steps (`{DISTILLATION_NAME}`).")
    return "\n".join(lines) + "\n"


def usage_snippet(pipeline_class: str, repo_id: str, call: dict[str, Any], image: bool = False) -> str:
    """Python code that loads `repo_id` with `pipeline_class` and writes one video to video.gif."""
    arguments = "".join(f", {key}={value!r}" for key, value in call.items())
    lines = [
        "import torch",
        "from diffusers.utils import export_to_gif",
        "",
        f"from diffusers_video import {pipeline_class}",
        "",
        f'pipe = {pipeline_class}.from_pretrained("{repo_id}")',
        "generator = torch.Generator().manual_seed(0)",
    ]
    if image:
        size = (call.get("width") or 256, call.get("height") or 256)
        lines += ["from PIL import Image", f"image = Image.new('RGB', {size}, (220, 40, 40))  # your first frame"]
        call_start = f"pipe({EXAMPLE_PROMPT!r}, image=image"
    else:
        call_start = f"pipe({EXAMPLE_PROMPT!r}"
    lines += [
        f'frames = {call_start}{arguments}, output_type="pil", generator=generator).frames[0]',
        'export_to_gif(frames, "video.gif")',
    ]
    return "\n".join(lines) + "\n"


def _model_snippet(model_class: str, repo_id: str, config: dict[str, Any]) -> str:
    lines = ["import torch", "", f"from diffusers_video import {model_class}", ""]
    lines.append(f'model = {model_class}.from_pretrained("{repo_id}")')
    size, channels, text_dim = config.get("sample_size"), config.get("in_channels"), config.get("cross_attention_dim")
    if isinstance(size, int) and isinstance(channels, int) and isinstance(text_dim, int):
        lines += [
            f"latents = torch.randn(1, {channels}, 8, {size}, {size})  # (batch, channels, frames, height, width)",
            f"text = torch.randn(1, 7, {text_dim})  # text embeddings shared by all frames",
            "with torch.no_grad():",
            "    prediction = model(latents, 500, encoder_hidden_states=text).sample",
        ]
    return "\n".join(lines) + "\n"


def folder_kind(folder: Path) -> tuple[str, dict[str, Any], type]:
    """("pipeline" or "model", its model_index.json or config.json, its class); the errors name the folder."""
    if not folder.is_dir():
        raise FileNotFoundError(f"'{folder}' does not exist or is not a folder.")
    index = read_json(folder / INDEX_NAME, missing_ok=True)
    if index is not None:
        name = class_name_of(index, folder / INDEX_NAME)
        cls = VideoDiffusionPipeline.pipeline_class(name)
        if cls is None:
            raise ValueError(
                f"'{folder / INDEX_NAME}' names the pipeline class {name!r}, which is not a diffusers-video pipeline "
                f"(those are {sorted(VideoDiffusionPipeline.pipeline_classes())})."
            )
        return "pipeline", index, cls
    config = read_json(folder / "config.json", missing_ok=True)
    name = config.get("_class_name") if config is not None else None
    cls = getattr(video_models, name, None) if isinstance(name, str) else None
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise FileNotFoundError(
            f"'{folder}' has no {INDEX_NAME} and no config.json of a diffusers-video model: pass a folder written by "
            "`save_pretrained`."
        )
    return "model", config, cls


def make_model_card(
    folder: str | Path,
    repo_id: str,
    *,
    base_model: str | list[str] | None = None,
    scores: str | Path | dict[str, Any] | None = None,
    sample: str | Path | None = None,
    license: str | None = None,
):
    """The model card (`README.md`) of a saved pipeline or model folder.

    Args:
        folder (`str` or `Path`): A folder written by `save_pretrained` (a pipeline's or a model's).
        repo_id (`str`): The repo the card is for (used by the usage snippet and the title).
        base_model (`str` or `list[str]`, *optional*): Hub id(s) of the model(s) this one was made from (e.g.
            "stabilityai/stable-diffusion-2-1" when inflated from it). Defaults to the Hub ids among the training
            config's `model.pretrained_model_name_or_path` and `videofusion.base_model` (local folders are named in the
            text, not in the metadata, which only takes Hub ids).
        scores (`str`, `Path` or `dict`, *optional*): A moving-shapes quality result; defaults to `quality.json` or
            `bench_quality.json` in the folder.
        sample (`str` or `Path`, *optional*): A GIF shown on the card; it is uploaded as `sample.gif`. Defaults to
            `sample.gif` in the folder.
        license (`str`, *optional*): A Hub license id.

    Returns:
        `huggingface_hub.ModelCard`: The card; `card.save(path)` writes it.
    """
    from huggingface_hub import ModelCard, ModelCardData

    folder = Path(folder)
    kind, config, cls = folder_kind(folder)
    training = read_json(folder / TRAINING_CONFIG_NAME, missing_ok=True)
    distillation = read_json(folder / DISTILLATION_NAME, missing_ok=True)
    if isinstance(scores, (str, Path)):
        scores = load_scores(scores)
    elif scores is None:
        found = next((folder / name for name in SCORES_NAMES if (folder / name).is_file()), None)
        scores = load_scores(found) if found is not None else None
    has_sample = sample is not None or (folder / SAMPLE_NAME).is_file()

    if base_model is None:
        candidates = []
        if training is not None:
            candidates.append((training.get("model") or {}).get("pretrained_model_name_or_path"))
            candidates.append((training.get("videofusion") or {}).get("base_model"))
        hub_ids = list(dict.fromkeys(c for c in candidates if _is_hub_model_id(c)))
        base_model = hub_ids[0] if len(hub_ids) == 1 else (hub_ids or None)

    name = cls.__name__
    paper = PAPERS.get(name)
    tags = [LIBRARY_TAG, name]
    if kind == "pipeline":
        pipeline_tag = pipeline_tag_for(cls)
        tags += [pipeline_tag, "video-generation"]
    else:
        pipeline_tag = None
        tags.append("video-generation")
    if paper is not None:
        tags.append(f"arxiv:{paper.arxiv}")
    data = ModelCardData(
        library_name=LIBRARY_NAME, pipeline_tag=pipeline_tag, base_model=base_model, tags=tags, license=license
    )

    title = repo_id.split("/")[-1]
    parts = [f"# {title}\n"]
    if kind == "pipeline":
        task = pipeline_tag.replace("-", " ")
        intro = f"A [diffusers-video](https://pypi.org/project/diffusers-video/) `{name}` for {task} generation"
    else:
        intro = f"A [diffusers-video](https://pypi.org/project/diffusers-video/) `{name}`"
    if paper is not None:
        intro += f", after [{paper.title}]({paper.url}) (arXiv {paper.arxiv})"
    if base_model:
        bases = base_model if isinstance(base_model, list) else [base_model]
        intro += f", made from {', '.join(f'[{b}](https://huggingface.co/{b})' for b in bases)}"
    parts.append(intro + ".\n")
    if has_sample:
        parts.append(f"![A video generated by this pipeline]({SAMPLE_NAME})\n")

    parts.append("## Usage\n")
    if kind == "pipeline":
        call = {}
        data_config = (training or {}).get("data") or {}
        for key in ("height", "width", "num_frames"):
            if isinstance(data_config.get(key), int) and key in inspect.signature(cls.__call__).parameters:
                call[key] = data_config[key]
        steps = (distillation or {}).get("num_inference_steps")
        call["num_inference_steps"] = steps if isinstance(steps, int) else 25
        snippet = usage_snippet(name, repo_id, call, image=pipeline_tag == "image-to-video")
        parts.append(
            "```bash\npip install diffusers-video\n```\n\n```python\n" + snippet + "```\n\n"
            "From the command line: "
            f'`diffusers-video generate --pipeline {repo_id} --prompt "{EXAMPLE_PROMPT}" --output video.mp4`. '
            "With diffusers' own loader (diffusers-video must be installed): "
            f'`DiffusionPipeline.from_pretrained("{repo_id}", trust_remote_code=True)`; the repo\'s `.py` files only '
            "import the classes from `diffusers_video`.\n"
        )
        rows = ["| component | class | parameters |", "|---|---|---|"]
        for component, (library, component_class) in components_of(config).items():
            if library is None:
                continue
            count = _num_parameters(folder / component)
            rows.append(f"| `{component}` | `{component_class}` ({library}) | {f'{count:,}' if count else ''} |")
        parts.append("## Components\n\n" + "\n".join(rows) + "\n")
    else:
        parts.append("```python\n" + _model_snippet(name, repo_id, config) + "```\n")
        count = _num_parameters(folder)
        if count:
            parts.append(f"{count:,} parameters.\n")

    training_text = _training_section(training, distillation)
    if training_text:
        parts.append(training_text)
    if scores is not None:
        parts.append(_scores_section(scores))
    if paper is not None:
        parts.append(f"## Paper\n\n[{paper.title}]({paper.url}), arXiv:{paper.arxiv}.\n")
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(parts))
