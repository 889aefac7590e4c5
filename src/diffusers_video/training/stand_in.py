"""The tiny stand-in for Stable Diffusion 2.1: tokenizer, text encoder and VAE of the moving-shapes world.

The stand-in is an ordinary diffusers `StableDiffusionPipeline` folder, built in three steps:

1. `build_base_folder` writes everything but the UNet: a word-level `CLIPTokenizer` built in memory from the
   caption vocabulary (`build_tokenizer`), a small `CLIPTextModel` trained as CLIP's text tower, contrastively
   against a small video encoder on moving-shapes clips (`train_text_encoder`; frozen afterwards), a small `AutoencoderKL` trained here on moving-shapes frames (`train_vae`) with its
   `scaling_factor` set from the latents' standard deviation, and a v-prediction `DDPMScheduler`.
2. `diffusers-video train` trains the `UNet2DConditionModel` (SD 2.1 block structure, scaled down) on still
   frames in that VAE's latent space (`data.num_frames: 1`), from the folder of step 1.
3. `evaluate_pipeline` samples single frames with diffusers' `StableDiffusionPipeline` and scores colour and shape
   with `ShapesScorer`.

The recipe (configs and exact commands) is in `pipelines/shapes_sd/README.md`. Command line::

    python -m diffusers_video.training.stand_in base --output_dir runs/shapes_sd_base
    python -m diffusers_video.training.stand_in eval runs/shapes_sd/checkpoint-2000 --num_samples 64
    python -m diffusers_video.training.stand_in export runs/shapes_sd/final --output_dir pipelines/shapes_sd
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data import shapes_captions
from ..data.metrics import wilson_interval
from ..data.shapes import ShapesWorld, video_to_tensor
from ..data.shapes_scorer import ShapesScorer
from .components import caption_token_ids, encode_token_ids

logger = logging.getLogger(__name__)

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
# The pre-tokenizer of `CLIPTokenizer` keeps runs of letters together and splits punctuation off.
_WORD_PATTERN = re.compile(r"[a-z]+|[^\sa-z0-9]+")

DEFAULT_VAE_CONFIG: dict = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3,
    "block_out_channels": (32, 64, 64),  # 3 levels: 4x downsampling
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 32,
}


# ------------------------------------------------------------------------------------------------------ tokenizer


def vocabulary_words() -> list[str]:
    """Every word (and punctuation mark) that the caption writer of the moving-shapes world can produce.

    Collected from the caption module's templates, phrases and word lists (the parser's vocabulary, which is a
    superset of what the writer uses), sorted.
    """
    texts: list[str] = [*shapes_captions._VIDEO_TEMPLATES, *shapes_captions._IMAGE_TEMPLATES]
    for phrases in (
        shapes_captions._DIRECTION_PHRASES,
        shapes_captions._SPEED_ADVERBS,
        shapes_captions._SPEED_ADJECTIVES,
        shapes_captions._BACKGROUND_PHRASES,
    ):
        texts.extend(phrase for options in phrases.values() for phrase in options)
    texts.extend(shapes_captions._WORD_TO_ATTRIBUTE)
    texts.extend(shapes_captions._FILLER_WORDS)
    texts.extend(("and", ","))
    words = set()
    for text in texts:
        words.update(_WORD_PATTERN.findall(re.sub(r"\{[a-z_]+\}", " ", text.lower())))
    return sorted(words)


def _learn_merges(words: Sequence[str]) -> tuple[list[tuple[str, str]], set[str]]:
    """Byte-pair merges that turn every word of `words` into one token (a deterministic BPE fit, ties by order)."""
    pieces = {word: [*word[:-1], word[-1] + "</w>"] for word in words}
    merges: list[tuple[str, str]] = []
    tokens: set[str] = {piece for split in pieces.values() for piece in split}
    while True:
        counts: dict[tuple[str, str], int] = {}
        for split in pieces.values():
            for pair in zip(split, split[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            return merges, tokens
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        tokens.add(best[0] + best[1])
        for word, split in pieces.items():
            merged, i = [], 0
            while i < len(split):
                if i + 1 < len(split) and (split[i], split[i + 1]) == best:
                    merged.append(best[0] + best[1])
                    i += 2
                else:
                    merged.append(split[i])
                    i += 1
            pieces[word] = merged


def build_tokenizer(model_max_length: int = 32):
    """A word-level `CLIPTokenizer` built in memory from the moving-shapes caption vocabulary.

    `CLIPTokenizer` is byte-pair encoding; the merges here are fitted so that every caption word becomes exactly
    one token (`<word></w>`). The vocabulary also holds the characters and partial words the merges pass through, so
    an unknown word still tokenizes (into pieces) rather than failing.

    Args:
        model_max_length (`int`, defaults to 32): padded prompt length (the captions have at most ~20 words).

    Returns:
        `transformers.CLIPTokenizer`.

    Raises:
        RuntimeError: if a vocabulary word does not come out as one token (a bug in the merge fit).
    """
    from transformers import CLIPTokenizer

    words = vocabulary_words()
    merges, tokens = _learn_merges(words)
    vocab = {BOS_TOKEN: 0, EOS_TOKEN: 1}
    for token in sorted(tokens, key=lambda t: (len(t), t)):
        vocab.setdefault(token, len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=list(merges), model_max_length=model_max_length)
    broken = [word for word in words if tokenizer.tokenize(word) != [word + "</w>"]]
    if broken:
        raise RuntimeError(f"These words do not tokenize to one token: {broken}.")
    return tokenizer


def build_text_encoder(
    vocab_size: int, hidden_size: int = 64, num_layers: int = 2, max_length: int = 32, seed: int = 0
):
    """A small random `CLIPTextModel` (kept frozen: the UNet's cross-attention learns to read its features).

    Args:
        vocab_size (`int`): the tokenizer's vocabulary size.
        hidden_size (`int`, defaults to 64): width; also the UNet's `cross_attention_dim`.
        num_layers (`int`, defaults to 2): transformer layers.
        max_length (`int`, defaults to 32): positions (the tokenizer's `model_max_length`).
        seed (`int`, defaults to 0): seeds the weights.
    """
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=max(1, hidden_size // 32),
        max_position_embeddings=max_length,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    torch.manual_seed(seed)
    return CLIPTextModel(config).eval()


T5_WORD_START = "\u2581"
"""SentencePiece's word-start marker, which begins every whole-word piece of `build_t5_tokenizer`."""

T5_PIECE_SCORE = -1.0
"""Log-probability of a whole-word piece of `build_t5_tokenizer` (single characters get -10, so words win)."""


def build_t5_tokenizer(model_max_length: int = 32):
    """A word-level `T5Tokenizer` (SentencePiece unigram) built in memory from the moving-shapes caption vocabulary.

    The vocabulary is T5's three special tokens (`<pad>` 0, `</s>` 1, `<unk>` 2), one piece `T5_WORD_START + word` per caption
    word, the punctuation marks without the word-start marker (so that "circle," splits into the pieces of "circle" and ","),
    and the word-start marker and lowercase letters with a low score, so that an unknown word still tokenizes (into
    letters) rather than becoming `<unk>`. No sentinel tokens (`extra_ids=0`).

    Args:
        model_max_length (`int`, defaults to 32): padded prompt length.

    Returns:
        `transformers.T5Tokenizer`.

    Raises:
        RuntimeError: if a vocabulary word does not come out as one token.
    """
    from transformers import T5Tokenizer

    words = vocabulary_words()
    vocab: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(T5_WORD_START + word, T5_PIECE_SCORE) for word in words]
    vocab += [(word, T5_PIECE_SCORE) for word in words if not word.isalpha()]
    seen = {piece for piece, _ in vocab}
    vocab += [(char, -10.0) for char in [T5_WORD_START, *"abcdefghijklmnopqrstuvwxyz"] if char not in seen]
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=model_max_length)
    broken = [word for word in words if tokenizer.tokenize(word) != [T5_WORD_START + word]]
    if broken:
        raise RuntimeError(f"These words do not tokenize to one token: {broken}.")
    return tokenizer


def build_t5_text_encoder(
    vocab_size: int,
    d_model: int = 64,
    num_layers: int = 2,
    num_heads: int | None = None,
    d_ff: int | None = None,
    seed: int = 0,
):
    """A small random `T5EncoderModel`: the frozen text encoder of the Imagen Video stand-in (T5-XXL in the paper).

    Args:
        vocab_size (`int`): the tokenizer's vocabulary size (`len(build_t5_tokenizer())`).
        d_model (`int`, defaults to 64): width; also the UNets' `cross_attention_dim`.
        num_layers (`int`, defaults to 2): encoder blocks.
        num_heads (`int`, *optional*): attention heads; defaults to `max(1, d_model // 32)`.
        d_ff (`int`, *optional*): feed-forward width; defaults to `4 * d_model`.
        seed (`int`, defaults to 0): seeds the weights.
    """
    from transformers import T5Config, T5EncoderModel

    num_heads = num_heads or max(1, d_model // 32)
    config = T5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=d_model // num_heads,
        d_ff=d_ff or 4 * d_model,
        num_layers=num_layers,
        num_heads=num_heads,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    torch.manual_seed(seed)
    return T5EncoderModel(config).eval()


# ---------------------------------------------------------------------------------------- contrastive text encoder


class ShapesVideoEncoder(torch.nn.Module):
    """The video tower of the text encoder's contrastive training: four 3D convolutions (SiLU), a mean over time and
    space, and a linear projection.

    Args:
        projection_dim (`int`, defaults to 64): width of the joint embedding.
        channels (`tuple[int, ...]`, defaults to `(32, 64, 96, 128)`): widths of the convolutions; the first three
            halve height and width, the third also the frames.
    """

    def __init__(self, projection_dim: int = 64, channels: tuple[int, ...] = (32, 64, 96, 128)):
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"`channels` must hold 4 widths, but is {channels!r}.")
        c1, c2, c3, c4 = channels
        nn = torch.nn
        self.net = nn.Sequential(
            nn.Conv3d(3, c1, (3, 4, 4), stride=(1, 2, 2), padding=1),
            nn.SiLU(),
            nn.Conv3d(c1, c2, (3, 4, 4), stride=(1, 2, 2), padding=1),
            nn.SiLU(),
            nn.Conv3d(c2, c3, (3, 4, 4), stride=2, padding=1),
            nn.SiLU(),
            nn.Conv3d(c3, c4, 3, padding=1),
            nn.SiLU(),
        )
        self.proj = nn.Linear(c4, projection_dim)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """`(B, 3, F, H, W)` videos in [-1, 1] -> `(B, projection_dim)` features (not normalised)."""
        return self.proj(self.net(video).mean(dim=(2, 3, 4)))


def contrastive_loss(video_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor):
    """CLIP's symmetric InfoNCE loss: the mean of the cross-entropies of the cosine-similarity logits (times
    `exp(logit_scale)`, at most 100) over texts for each video and over videos for each text; pair `i` is positive.

    Args:
        video_features (`torch.Tensor`): `(B, D)`.
        text_features (`torch.Tensor`): `(B, D)`.
        logit_scale (`torch.Tensor`): the log of the inverse temperature (a scalar).
    """
    if video_features.ndim != 2 or video_features.shape != text_features.shape:
        raise ValueError(
            f"`video_features` and `text_features` must both be (B, D), but have shapes "
            f"{tuple(video_features.shape)} and {tuple(text_features.shape)}."
        )
    video_features = F.normalize(video_features, dim=-1)
    text_features = F.normalize(text_features, dim=-1)
    logits = logit_scale.exp().clamp(max=100.0) * video_features @ text_features.T  # (B videos, B texts)
    labels = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def pooled_text_features(text_encoder, input_ids: torch.Tensor) -> torch.Tensor:
    """One feature vector per caption `(N, hidden)`: CLIP's pooled output (the end-of-text token) for a
    `CLIPTextModel`, or for an encoder without a pooler (`T5EncoderModel`) the mean of its token features over the
    non-padding tokens, as Sentence-T5 pools T5. The tokens are encoded as the pipelines encode them
    (`components.encode_token_ids`: T5 with its attention mask)."""
    output = encode_token_ids(text_encoder, input_ids)
    pooled = getattr(output, "pooler_output", None)
    if pooled is not None:
        return pooled
    mask = (input_ids != text_encoder.config.pad_token_id).to(output.last_hidden_state.dtype).unsqueeze(-1)
    return (output.last_hidden_state * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def train_text_encoder(
    text_encoder,
    tokenizer,
    steps: int = 600,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    num_clips: int = 8000,
    height: int = 32,
    width: int = 32,
    num_frames: int = 8,
    seed: int = 0,
    log_every: int = 50,
) -> list[float]:
    """Train `text_encoder` in place as CLIP trains its text tower: contrastively against a `ShapesVideoEncoder` on
    moving-shapes clips and their captions, so that its features are semantic (the caption writer's synonyms of a
    direction, a speed or a layout end up close, as they are in OpenCLIP's features for SD 2.1) rather than random.

    The pooled output (`pooled_text_features`: CLIP's end-of-text token, or T5's mean over the caption's tokens) is
    projected linearly into the joint space; the video tower and the projection are discarded afterwards.
    Deterministic for a given seed.

    Args:
        text_encoder (`CLIPTextModel` or `T5EncoderModel`): trained in place, left in eval mode.
        tokenizer (`CLIPTokenizer` or `T5Tokenizer`): its tokenizer.
        steps (`int`, defaults to 600), batch_size (`int`, defaults to 256),
            learning_rate (`float`, defaults to 1e-3): AdamW (weight decay 0.01) on both towers.
        num_clips (`int`, defaults to 8000): training clips (one per scene of the "train" split).
        height (`int`, defaults to 32), width (`int`, defaults to 32), num_frames (`int`, defaults to 8): clip size.
        seed (`int`, defaults to 0): seeds the clips, the video tower and the batches.
        log_every (`int`, defaults to 50): print the running loss every this many steps (0: never).

    Returns:
        `list[float]`: the contrastive loss of every step (`log(batch_size)` at chance).
    """
    for name, value in (("steps", steps), ("batch_size", batch_size), ("num_clips", num_clips)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, but is {value!r}.")
    if batch_size < 2:
        raise ValueError(f"`batch_size` must be >= 2 for a contrastive loss, but is {batch_size}.")
    world = ShapesWorld(height=height, width=width, num_frames=num_frames, split="train")
    samples = [world.sample((seed, 7, i)) for i in range(num_clips)]
    videos = torch.stack([video_to_tensor(sample.video) for sample in samples])  # (N, 3, F, H, W)
    input_ids = caption_token_ids(tokenizer, text_encoder, [sample.caption for sample in samples])
    torch.manual_seed(seed)
    hidden = text_encoder.config.hidden_size
    video_encoder = ShapesVideoEncoder(projection_dim=hidden)
    text_projection = torch.nn.Linear(hidden, hidden, bias=False)
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(10.0)))
    parameters = [*text_encoder.parameters(), *video_encoder.parameters(), *text_projection.parameters(), logit_scale]
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    text_encoder.train()
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(steps):
        index = torch.randint(0, num_clips, (batch_size,), generator=generator)
        text_features = text_projection(pooled_text_features(text_encoder, input_ids[index]))
        loss = contrastive_loss(video_encoder(videos[index]), text_features, logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            recent = float(np.mean(losses[-log_every:]))
            print(
                f"text step {step + 1}/{steps}: contrastive {recent:.4f} ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    text_encoder.eval()
    return losses


@torch.no_grad()
def attribute_share(features: torch.Tensor, labels: Sequence) -> float:
    """The share of the variance of `features` `(N, D)` explained by `labels` (one per row): the squared norm of the
    centred group means over that of the centred features, both averaged over rows (1: the features are a function
    of the label; 0: every group has the same mean)."""
    if features.ndim != 2 or len(labels) != features.shape[0]:
        raise ValueError(f"`features` must be (N, D) with one label per row, but has shape {tuple(features.shape)} "
                         f"for {len(labels)} labels.")  # fmt: skip
    centred = features.double() - features.double().mean(dim=0)
    means = torch.zeros_like(centred)
    for label in set(labels):
        rows = [i for i, other in enumerate(labels) if other == label]
        means[rows] = centred[rows].mean(dim=0)
    total = centred.pow(2).sum(dim=1).mean()
    return float(means.pow(2).sum(dim=1).mean() / total) if total > 0 else 0.0


@torch.no_grad()
def direction_share(text_encoder, tokenizer, num_captions: int = 1500, seed: int = 1) -> float:
    """`attribute_share` of the one-shape captions' direction in the text encoder's features averaged over all token
    positions (what `UNet3DModel(temporal_text_modulation=True)` reads): 1 for captions of the direction alone; 0.04
    for the caption writer's full captions through a random text encoder."""
    world = ShapesWorld(height=16, width=16, num_frames=2, split="train", two_shape_prob=0.0)
    scenes = [world.scene((seed, i)) for i in range(num_captions)]
    input_ids = caption_token_ids(tokenizer, text_encoder, [scene.caption for scene in scenes])
    features = encode_token_ids(text_encoder, input_ids)[0].mean(dim=1)
    return attribute_share(features, [scene.objects[0].spec.direction for scene in scenes])


# ------------------------------------------------------------------------------------------------------------ VAE


def build_vae(seed: int = 0, **overrides):
    """A small `AutoencoderKL` (`DEFAULT_VAE_CONFIG`, 4x downsampling, 4 latent channels) with seeded weights."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(**{**DEFAULT_VAE_CONFIG, **overrides})


def shapes_frames(
    num_frames: int, height: int = 32, width: int = 32, seed: int = 0, split: str = "all"
) -> torch.Tensor:
    """`num_frames` still frames `(N, 3, H, W)` in [-1, 1] of the moving-shapes world (one frame per scene)."""
    world = ShapesWorld(height=height, width=width, num_frames=2, split=split)
    images = [world.sample((seed, i)).image for i in range(num_frames)]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() * 2 - 1


def train_vae(
    vae,
    frames: torch.Tensor,
    steps: int = 1000,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    kl_weight: float = 1e-6,
    seed: int = 0,
    log_every: int = 50,
) -> list[float]:
    """Train `vae` in place on `frames` with an L1 + L2 reconstruction loss and a small KL term.

    Deterministic for a given seed: batches are drawn with a seeded generator and the posterior is sampled with it.
    The learning rate decays with a cosine to 10% over `steps`.

    Args:
        vae (`AutoencoderKL`): the autoencoder (trained in place, left in eval mode).
        frames (`torch.Tensor`): `(N, 3, H, W)` in [-1, 1].
        steps (`int`, defaults to 1000): optimizer steps.
        batch_size (`int`, defaults to 32): frames per step.
        learning_rate (`float`, defaults to 1e-3): AdamW peak learning rate.
        kl_weight (`float`, defaults to 1e-6): weight of the KL term (per element mean).
        seed (`int`, defaults to 0): seeds batches and posterior samples.
        log_every (`int`, defaults to 50): log the running loss every this many steps (0: never).

    Returns:
        `list[float]`: the reconstruction loss (L1 + L2) of every step.
    """
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"`frames` must be (N, 3, H, W), but has shape {tuple(frames.shape)}.")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"`steps` and `batch_size` must be >= 1, but are {steps} and {batch_size}.")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
    )
    vae.train()
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(steps):
        index = torch.randint(0, frames.shape[0], (batch_size,), generator=generator)
        x = frames[index]
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
        recon = vae.decode(z).sample
        reconstruction = F.l1_loss(recon, x) + F.mse_loss(recon, x)
        kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).mean()
        loss = reconstruction + kl_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(reconstruction.item())
        if log_every and (step + 1) % log_every == 0:
            recent = float(np.mean(losses[-log_every:]))
            logger.info(f"vae step {step + 1}/{steps}: recon {recent:.4f} ({time.perf_counter() - start:.0f} s)")
            print(f"vae step {step + 1}/{steps}: recon {recent:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
    vae.eval()
    return losses


@torch.no_grad()
def set_scaling_factor(vae, frames: torch.Tensor, batch_size: int = 256) -> float:
    """Set `vae.config.scaling_factor` to 1 / std of the posterior-mode latents of `frames` (as SD did); returns it."""
    latents = torch.cat(
        [vae.encode(frames[i : i + batch_size]).latent_dist.mode() for i in range(0, len(frames), batch_size)]
    )
    factor = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=factor)
    return factor


@torch.no_grad()
def reconstruction_error(vae, frames: torch.Tensor, batch_size: int = 256) -> float:
    """Mean absolute error (in [0, 1] intensity units) of `vae` reconstructing `frames` through the posterior mode."""
    errors = []
    for i in range(0, len(frames), batch_size):
        x = frames[i : i + batch_size]
        recon = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
        errors.append((recon - x).abs().mean(dim=(1, 2, 3)) / 2)
    return float(torch.cat(errors).mean())


# -------------------------------------------------------------------------------------------------- base folder


def build_scheduler():
    """The stand-in's noise scheduler: SD 2.1's (scaled-linear betas, v-prediction), without x0 clipping."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="v_prediction",
        clip_sample=False,
        steps_offset=1,
        timestep_spacing="trailing",
    )


def build_base_folder(
    output_dir: str | Path,
    height: int = 32,
    width: int = 32,
    text_hidden_size: int = 64,
    text_layers: int = 2,
    vae_steps: int = 1000,
    vae_batch_size: int = 32,
    vae_learning_rate: float = 1e-3,
    vae_num_frames: int = 4096,
    vae_config: dict | None = None,
    text_steps: int = 600,
    text_num_clips: int = 8000,
    seed: int = 0,
) -> dict:
    """Write the stand-in's components other than the UNet (`tokenizer/`, `text_encoder/`, `vae/`, `scheduler/`).

    The folder is what the UNet recipe's `model.pretrained_model_name_or_path` points at.

    Args:
        output_dir (`str | Path`): the folder to write.
        height (`int`, defaults to 32), width (`int`, defaults to 32): frame size the VAE is trained on.
        text_hidden_size (`int`, defaults to 64), text_layers (`int`, defaults to 2): text encoder size.
        vae_steps (`int`, defaults to 1000), vae_batch_size (`int`, defaults to 32),
            vae_learning_rate (`float`, defaults to 1e-3): VAE training.
        vae_num_frames (`int`, defaults to 4096): training frames (one per scene); 512 more are held out.
        vae_config (`dict | None`): overrides of `DEFAULT_VAE_CONFIG`.
        text_steps (`int`, defaults to 600), text_num_clips (`int`, defaults to 8000): contrastive training of the
            text encoder (`train_text_encoder`); 0 steps keep it random.
        seed (`int`, defaults to 0): seeds everything.

    Returns:
        `dict`: a summary (VAE losses, held-out reconstruction error, scaling factor, wall time).
    """
    start = time.perf_counter()
    output_dir = Path(output_dir)
    tokenizer = build_tokenizer()
    text_encoder = build_text_encoder(
        len(tokenizer), text_hidden_size, text_layers, tokenizer.model_max_length, seed=seed
    )
    summary: dict = {"text_direction_share_random": direction_share(text_encoder, tokenizer)}
    if text_steps:
        text_losses = train_text_encoder(
            text_encoder, tokenizer, steps=text_steps, num_clips=text_num_clips, height=height, width=width, seed=seed
        )
        summary["text_steps"] = text_steps
        summary["text_final_loss"] = float(np.mean(text_losses[-50:]))
        summary["text_direction_share"] = direction_share(text_encoder, tokenizer)
    frames = shapes_frames(vae_num_frames, height, width, seed=seed)
    held_out = shapes_frames(512, height, width, seed=seed + 1)
    vae = build_vae(seed=seed, sample_size=max(height, width), **(vae_config or {}))
    losses = train_vae(vae, frames, vae_steps, vae_batch_size, vae_learning_rate, seed=seed)
    factor = set_scaling_factor(vae, frames)
    summary |= {
        "vae_steps": vae_steps,
        "vae_final_loss": float(np.mean(losses[-50:])),
        "vae_heldout_l1": reconstruction_error(vae, held_out),
        "scaling_factor": factor,
        "wall_time_s": 0.0,
    }
    tokenizer.save_pretrained(output_dir / "tokenizer")
    text_encoder.save_pretrained(output_dir / "text_encoder")
    vae.save_pretrained(output_dir / "vae")
    build_scheduler().save_pretrained(output_dir / "scheduler")
    summary["wall_time_s"] = round(time.perf_counter() - start, 1)
    (output_dir / "base_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# --------------------------------------------------------------------------------------------------- evaluation


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


# ------------------------------------------------------------------------------------------ checkpoints, export


def pipeline_from_checkpoint(checkpoint: str | Path, base_folder: str | Path | None = None, use_ema: bool = True):
    """A `StableDiffusionPipeline` from a training checkpoint (`runs/.../checkpoint-<step>`), to evaluate mid-run.

    The UNet is built from the checkpoint's `training_config.json` (`model.unet_config`) and given the EMA weights
    (or the raw weights with `use_ema=False`); the other components come from the base folder.

    Args:
        checkpoint (`str | Path`): a `checkpoint-<step>` folder written by `diffusers-video train`.
        base_folder (`str | Path`, *optional*): the folder with `tokenizer/`, `text_encoder/`, `vae/`, `scheduler/`;
            defaults to the config's `model.pretrained_model_name_or_path`.
        use_ema (`bool`, defaults to `True`): load the EMA weights when the checkpoint has them.
    """
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, CLIPTextModel

    from .components import resolve_class, with_prediction_type

    checkpoint = Path(checkpoint)
    config_file = checkpoint / "training_config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"'{checkpoint}' is not a training checkpoint (no training_config.json).")
    config = json.loads(config_file.read_text())
    base = Path(base_folder or config["model"]["pretrained_model_name_or_path"])
    unet_config = {k: v for k, v in config["model"]["unet_config"].items() if not k.startswith("_")}
    unet = UNet2DConditionModel(**unet_config)
    weights = load_file(str(checkpoint / "model.safetensors"))
    unet.load_state_dict({key.removeprefix("unet."): value for key, value in weights.items()})
    ema_files = sorted(checkpoint.glob("custom_checkpoint_*.pkl"))
    if use_ema and config.get("ema_decay") is not None:
        for file in ema_files:
            state = torch.load(file, map_location="cpu", weights_only=False)
            if isinstance(state, dict) and "shadow_params" in state:
                with torch.no_grad():
                    for parameter, shadow in zip(unet.parameters(), state["shadow_params"], strict=True):
                        parameter.copy_(shadow)
                break
        else:
            raise FileNotFoundError(f"'{checkpoint}' holds no EMA state.")
    scheduler_config = json.loads((base / "scheduler" / "scheduler_config.json").read_text())
    scheduler = resolve_class(scheduler_config["_class_name"]).from_pretrained(base, subfolder="scheduler")
    return StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(base, subfolder="vae"),
        text_encoder=CLIPTextModel.from_pretrained(base / "text_encoder"),
        tokenizer=AutoTokenizer.from_pretrained(base / "tokenizer"),
        unet=unet.eval(),
        scheduler=with_prediction_type(scheduler, config.get("prediction_type", "v_prediction")),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def export_pipeline(source, output_dir: str | Path, fp16: bool = True) -> Path:
    """Save a stand-in pipeline for committing: safetensors, fp16 weights, a DDIM scheduler (`clip_sample=False`).

    Args:
        source (`str | Path | StableDiffusionPipeline`): a pipeline folder (e.g. `runs/shapes_sd/final`) or a
            loaded pipeline.
        output_dir (`str | Path`): where to write it (e.g. `pipelines/shapes_sd`); existing files are overwritten.
        fp16 (`bool`, defaults to `True`): store the UNet and VAE weights in float16 (the text encoder stays float32);
            `StableDiffusionPipeline.from_pretrained(folder)` loads everything back in float32.
    """
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = source
    if isinstance(source, (str, Path)):
        pipe = StableDiffusionPipeline.from_pretrained(source, safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(
        pipe.scheduler.config, clip_sample=False, set_alpha_to_one=False, steps_offset=1, timestep_spacing="trailing"
    )
    if fp16:
        # The UNet and the VAE only: diffusers loads them back in float32 by default, transformers 5 would load a
        # float16 text encoder in float16 (a mixed-dtype pipeline); the text encoder is small anyway.
        pipe.unet.to(torch.float16)
        pipe.vae.to(torch.float16)
    output_dir = Path(output_dir)
    pipe.save_pretrained(output_dir, safe_serialization=True)
    return output_dir


# ----------------------------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m diffusers_video.training.stand_in {base,eval} ...`."""
    parser = argparse.ArgumentParser(
        prog="python -m diffusers_video.training.stand_in", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    base = sub.add_parser("base", help="write tokenizer/, text_encoder/, vae/ (trained here) and scheduler/")
    base.add_argument("--output_dir", required=True)
    base.add_argument("--height", type=int, default=32)
    base.add_argument("--width", type=int, default=32)
    base.add_argument("--text_hidden_size", type=int, default=64)
    base.add_argument("--text_layers", type=int, default=2)
    base.add_argument("--text_steps", type=int, default=600, help="contrastive text-encoder steps (0: random)")
    base.add_argument("--text_num_clips", type=int, default=8000)
    base.add_argument("--vae_steps", type=int, default=1000)
    base.add_argument("--vae_batch_size", type=int, default=32)
    base.add_argument("--vae_learning_rate", type=float, default=1e-3)
    base.add_argument("--vae_num_frames", type=int, default=4096)
    base.add_argument("--seed", type=int, default=0)
    ev = sub.add_parser("eval", help="sample single frames with StableDiffusionPipeline and score colour and shape")
    ev.add_argument("folder")
    ev.add_argument("--num_samples", type=int, default=64)
    ev.add_argument("--split", default="all", choices=("all", "train", "heldout"))
    ev.add_argument("--guidance_scale", type=float, default=4.0)
    ev.add_argument("--steps", type=int, default=25)
    ev.add_argument("--seed", type=int, default=0)
    ex = sub.add_parser("export", help="save a trained pipeline for committing (fp16 safetensors, DDIM scheduler)")
    ex.add_argument("source", help="a pipeline folder (runs/shapes_sd/final) or a checkpoint-<step> folder")
    ex.add_argument("--output_dir", default="pipelines/shapes_sd")
    ex.add_argument("--fp32", action="store_true", help="keep float32 weights")
    args = parser.parse_args(argv)
    if args.command == "base":
        summary = build_base_folder(
            args.output_dir,
            height=args.height,
            width=args.width,
            text_hidden_size=args.text_hidden_size,
            text_layers=args.text_layers,
            vae_steps=args.vae_steps,
            vae_batch_size=args.vae_batch_size,
            vae_learning_rate=args.vae_learning_rate,
            vae_num_frames=args.vae_num_frames,
            text_steps=args.text_steps,
            text_num_clips=args.text_num_clips,
            seed=args.seed,
        )
        print(json.dumps(summary, indent=2))
        return 0
    if args.command == "export":
        source = Path(args.source)
        if (source / "training_config.json").is_file() and not (source / "model_index.json").is_file():
            source = pipeline_from_checkpoint(source)
        elif not (source / "model_index.json").is_file():
            parser.error(f"'{source}' is neither a pipeline folder nor a training checkpoint.")
        print(export_pipeline(source, args.output_dir, fp16=not args.fp32))
        return 0
    folder = Path(args.folder)
    if (folder / "model_index.json").is_file():
        target = folder
    elif (folder / "training_config.json").is_file():
        target = pipeline_from_checkpoint(folder)  # a checkpoint-<step> folder: its EMA weights
    else:
        parser.error(f"'{folder}' is neither a pipeline folder (model_index.json) nor a training checkpoint.")
    result = evaluate_pipeline(
        target, args.num_samples, args.split, args.guidance_scale, args.steps, seed=args.seed, dtype=torch.float32
    )
    print(format_result(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
