"""The text side of the stand-ins: word-level tokenizers and small text encoders built in memory, and their
contrastive training against moving-shapes clips.

- `build_tokenizer` / `build_text_encoder`: a `CLIPTokenizer` over the caption vocabulary and a small
  `CLIPTextModel`, Stable Diffusion 2.1's text side (`training.stand_in`).
- `build_t5_tokenizer` / `build_t5_text_encoder`: a `T5Tokenizer` and a small `T5EncoderModel`, Imagen Video's frozen
  T5 (`training.imagen_video.write_text_encoder_folder`).
- `train_text_encoder` trains either as CLIP trains its text tower, so that its features are semantic; its parts
  (`ShapesVideoEncoder`, `contrastive_loss`, `pooled_text_features`) and the measures of what the features hold
  (`attribute_share`, `direction_share`) are here too.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data import shapes_captions
from ..data.shapes import ShapesWorld, video_to_tensor
from .components import caption_token_ids, encode_token_ids

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
# The pre-tokenizer of `CLIPTokenizer` keeps runs of letters together and splits punctuation off.
_WORD_PATTERN = re.compile(r"[a-z]+|[^\sa-z0-9]+")


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
