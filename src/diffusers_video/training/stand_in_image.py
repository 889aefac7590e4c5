"""The stand-in's CLIP image tower: a small `CLIPVisionModelWithProjection` trained contrastively against the stand-in's
frozen text tower on (frame, caption) pairs of the moving-shapes world.

I2VGen-XL reads its input image through a frozen CLIP image encoder (OpenCLIP ViT-H, whose text tower is Stable
Diffusion 2.1's text encoder). The stand-in for SD 2.1 (`pipelines/shapes_sd`) has only the text side, so its image
side is trained here the way CLIP trains, with the text side locked (as in LiT, Zhai et al. 2022, with the roles
swapped): the image tower's `image_embeds` are pulled towards the pooled features (`pooled_text_features`: the
end-of-text token) of the still caption of the same scene and away from the other captions of the batch (CLIP's
symmetric InfoNCE loss, `contrastive_loss`). The embedding is therefore in the text tower's own space, as CLIP's image
and text embeddings share one.

The pairs are the first frame of a clip (what I2VGen-XL is given) and the scene's still caption (colour, shape and
background; a single frame shows no motion). `retrieval_accuracy` measures what the tower learned on pairs it never
saw: each image retrieves the closest of the held-out captions, and is right when that caption names its colour and
shape (chance: the share of captions that do).

Command line (`commands/stand_in_image.py`)::

    diffusers-video stand-in-image --text_folder pipelines/shapes_sd --output_dir runs/shapes_sd_image
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.shapes import ShapesWorld, image_to_tensor
from ..data.shapes_captions import parse_prompt
from .components import caption_token_ids, load_text_encoder
from .stand_in_text import contrastive_loss, pooled_text_features

__all__ = [
    "build_image_encoder",
    "clip_image_inputs",
    "first_frame_pairs",
    "retrieval_accuracy",
    "train_image_encoder",
    "write_image_encoder_folder",
]

PAIR_STREAM = 11
"""Second key of the scene seeds `(seed, PAIR_STREAM, i)` of the training pairs (held-out pairs use `seed + 1`)."""


def build_image_encoder(
    projection_dim: int,
    image_size: int = 32,
    patch_size: int = 4,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,
    seed: int = 0,
):
    """A small random `CLIPVisionModelWithProjection` and its `CLIPImageProcessor`.

    Args:
        projection_dim (`int`): Width of `image_embeds`: the text tower's width, so that both share one space.
        image_size (`int`, defaults to 32): Input size (the processor's crop size); the frames of the stand-in.
        patch_size (`int`, defaults to 4): ViT patch size (64 patches at 32 x 32).
        hidden_size (`int`, defaults to 64), num_layers (`int`, defaults to 2), num_heads (`int`, defaults to 2):
            transformer size.
        seed (`int`, defaults to 0): Seeds the weights.

    Returns:
        `(CLIPVisionModelWithProjection, CLIPImageProcessor)`.
    """
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    for name, value in (("projection_dim", projection_dim), ("image_size", image_size), ("patch_size", patch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer but is {value!r}.")
    if image_size % patch_size:
        raise ValueError(f"`image_size` ({image_size}) must be a multiple of `patch_size` ({patch_size}).")
    config = CLIPVisionConfig(
        hidden_size=hidden_size, intermediate_size=4 * hidden_size, projection_dim=projection_dim,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, image_size=image_size, patch_size=patch_size,
    )  # fmt: skip
    torch.manual_seed(seed)
    processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    return CLIPVisionModelWithProjection(config).eval(), processor


def clip_image_inputs(images: torch.Tensor, feature_extractor) -> torch.Tensor:
    """What `I2VGenXLCascadePipeline` gives its CLIP image encoder, from `(B, 3, H, W)` images in [-1, 1]: a centred
    square crop, rounded to 8 bits (the pipeline goes through PIL), resized (bilinear) to the processor's crop size
    and normalised with its mean and std. `(B, 3, size, size)`."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"`images` must be (B, 3, H, W) but has shape {tuple(images.shape)}.")
    height, width = images.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    x = images[:, :, top : top + side, left : left + side].float()
    x = torch.round(((x + 1) / 2).clamp(0, 1) * 255) / 255  # (B, 3, s, s) in [0, 1], 8-bit levels
    crop = feature_extractor.crop_size
    size = (crop["height"], crop["width"])
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    mean = torch.tensor(feature_extractor.image_mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(feature_extractor.image_std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def first_frame_pairs(
    num_pairs: int, seed: int, height: int = 32, width: int = 32, split: str = "all"
) -> tuple[torch.Tensor, list[str]]:
    """`num_pairs` (first frame, still caption) pairs: `(N, 3, H, W)` in [-1, 1] and the captions; scene `i` has seed
    `(seed, PAIR_STREAM, i)`."""
    world = ShapesWorld(height=height, width=width, num_frames=2, split=split)
    samples = [world.sample((seed, PAIR_STREAM, i)) for i in range(num_pairs)]
    return torch.stack([image_to_tensor(s.first_frame) for s in samples]), [s.still_caption for s in samples]


@torch.no_grad()
def _text_features(text_encoder, tokenizer, captions: list[str], batch_size: int = 512) -> torch.Tensor:
    ids = caption_token_ids(tokenizer, text_encoder, captions)
    return torch.cat(
        [pooled_text_features(text_encoder, ids[i : i + batch_size]) for i in range(0, len(ids), batch_size)]
    )


def train_image_encoder(
    image_encoder,
    feature_extractor,
    text_encoder,
    tokenizer,
    steps: int = 1500,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    num_pairs: int = 8000,
    height: int = 32,
    width: int = 32,
    seed: int = 0,
    log_every: int = 100,
) -> list[float]:
    """Train `image_encoder` in place against the frozen `text_encoder` (CLIP's loss, text side locked).

    Deterministic for a given seed (pairs, batches and the learned temperature's start, `log(10)`).

    Args:
        image_encoder (`CLIPVisionModelWithProjection`): trained in place, left in eval mode; its `projection_dim`
            must be the text encoder's width.
        feature_extractor (`CLIPImageProcessor`): its processor (crop size, normalisation).
        text_encoder (`CLIPTextModel`), tokenizer (`CLIPTokenizer`): the frozen text tower.
        steps (`int`, defaults to 1500), batch_size (`int`, defaults to 128), learning_rate (`float`, defaults to
            1e-3): AdamW (weight decay 0.01), cosine decay to 10%.
        num_pairs (`int`, defaults to 8000): training pairs (scenes of all combinations).
        height (`int`, defaults to 32), width (`int`, defaults to 32): frame size.
        seed (`int`, defaults to 0): seeds everything.
        log_every (`int`, defaults to 100): print the running loss every this many steps (0: never).

    Returns:
        `list[float]`: the loss of every step (`log(batch_size)` at chance).
    """
    for name, value in (("steps", steps), ("batch_size", batch_size), ("num_pairs", num_pairs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer but is {value!r}.")
    if batch_size < 2:
        raise ValueError(f"`batch_size` must be >= 2 for a contrastive loss but is {batch_size}.")
    text_dim = text_encoder.config.hidden_size
    if image_encoder.config.projection_dim != text_dim:
        raise ValueError(
            f"The image encoder's `projection_dim` ({image_encoder.config.projection_dim}) must equal the text "
            f"encoder's width ({text_dim}): the image embeddings live in the text tower's space."
        )
    images, captions = first_frame_pairs(num_pairs, seed, height, width)
    pixels = clip_image_inputs(images, feature_extractor)
    text_encoder.requires_grad_(False).eval()
    text_features = _text_features(text_encoder, tokenizer, captions)  # (N, D), frozen: computed once
    torch.manual_seed(seed)
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(10.0)))
    optimizer = torch.optim.AdamW([*image_encoder.parameters(), logit_scale], lr=learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step / steps, 1.0)))
    )
    generator = torch.Generator().manual_seed(seed)
    image_encoder.train()
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(steps):
        index = torch.randperm(num_pairs, generator=generator)[:batch_size]
        embeds = image_encoder(pixel_values=pixels[index]).image_embeds  # (B, D)
        loss = contrastive_loss(embeds, text_features[index], logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            recent = float(np.mean(losses[-log_every:]))
            print(f"image step {step + 1}/{steps}: contrastive {recent:.4f} ({time.perf_counter() - start:.0f} s)")
    image_encoder.eval()
    return losses


def _colour_shape(caption: str) -> tuple:
    return tuple((spec.color, spec.shape) for spec in parse_prompt(caption).objects)


@torch.no_grad()
def retrieval_accuracy(
    image_encoder,
    feature_extractor,
    text_encoder,
    tokenizer,
    num_pairs: int = 256,
    seed: int = 1,
    height: int = 32,
    width: int = 32,
) -> dict[str, float]:
    """Held-out image-to-caption retrieval: each of `num_pairs` first frames (scenes `(seed, PAIR_STREAM, i)`, not the
    training seed) takes the caption of highest cosine similarity among the `num_pairs` captions.

    Returns:
        `dict`: `accuracy` (the retrieved caption names the image's colour and shape), `chance` (the mean share of
        captions that do: what a random choice scores), `exact` (the image's own caption retrieved) and `exact_chance`.
    """
    images, captions = first_frame_pairs(num_pairs, seed, height, width)
    embeds = F.normalize(image_encoder(pixel_values=clip_image_inputs(images, feature_extractor)).image_embeds, dim=-1)
    texts = F.normalize(_text_features(text_encoder, tokenizer, captions), dim=-1)
    chosen = (embeds @ texts.T).argmax(dim=1).tolist()  # (N,)
    labels = [_colour_shape(c) for c in captions]
    same = np.array([[a == b for b in labels] for a in labels])  # (N, N)
    return {
        "accuracy": float(np.mean([same[i, j] for i, j in enumerate(chosen)])),
        "chance": float(same.mean()),
        "exact": float(np.mean([captions[i] == captions[j] for i, j in enumerate(chosen)])),
        "exact_chance": float(np.mean([[a == b for b in captions] for a in captions])),
    }


def write_image_encoder_folder(
    output_dir: str | Path,
    text_folder: str | Path = "pipelines/shapes_sd",
    steps: int = 1500,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    num_pairs: int = 8000,
    seed: int = 0,
    **model_options,
) -> dict:
    """Train the image tower against the text tower of `text_folder` and write `image_encoder/` and
    `feature_extractor/` into `output_dir` (what `i2vgen_xl.image_encoder` of a training config points at), with
    `image_encoder_summary.json` (losses, held-out retrieval accuracy, wall time).

    Args:
        output_dir (`str | Path`): the folder to write into (created; existing files of the two components replaced).
        text_folder (`str | Path`, defaults to "pipelines/shapes_sd"): a folder with `text_encoder/`, `tokenizer/`.
        steps, batch_size, learning_rate, num_pairs, seed: see [`train_image_encoder`].
        **model_options: [`build_image_encoder`] options (`image_size`, `patch_size`, `hidden_size`, ...).
    """
    from transformers import AutoTokenizer

    start = time.perf_counter()
    text_folder, output_dir = Path(text_folder), Path(output_dir)
    for sub in ("text_encoder", "tokenizer"):
        if not (text_folder / sub).is_dir():
            raise FileNotFoundError(f"`text_folder` '{text_folder}' has no `{sub}/` sub-folder.")
    text_encoder = load_text_encoder(text_folder / "text_encoder")
    tokenizer = AutoTokenizer.from_pretrained(text_folder / "tokenizer")
    image_encoder, processor = build_image_encoder(text_encoder.config.hidden_size, seed=seed, **model_options)
    size = processor.crop_size["height"]
    before = retrieval_accuracy(image_encoder, processor, text_encoder, tokenizer, height=size, width=size)
    losses = train_image_encoder(
        image_encoder, processor, text_encoder, tokenizer, steps=steps, batch_size=batch_size,
        learning_rate=learning_rate, num_pairs=num_pairs, height=size, width=size, seed=seed,
    )  # fmt: skip
    after = retrieval_accuracy(image_encoder, processor, text_encoder, tokenizer, height=size, width=size)
    image_encoder.save_pretrained(output_dir / "image_encoder")
    processor.save_pretrained(output_dir / "feature_extractor")
    summary = {
        "text_folder": str(text_folder),
        "steps": steps,
        "batch_size": batch_size,
        "first_loss": float(np.mean(losses[:20])),
        "final_loss": float(np.mean(losses[-50:])),
        "heldout_before": before,
        "heldout_after": after,
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    (output_dir / "image_encoder_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
