"""`I2VGenXLContentEncoder`: I2VGen-XL's image conditioning (arXiv 2311.04145, the "two hierarchical encoders").

I2VGen-XL conditions its video UNet on the input image in three ways. diffusers' `I2VGenXLUNet` computes all three
inside the UNet at every denoising step; none of them depends on the noisy sample or the timestep, so here they are a
model of their own that runs once per call, and the UNet is a plain `UNet3DModel` (ModelScope layout, an "fps" scalar
condition, `in_channels` = sample channels + `conditioning_channels`). Two gains: the UNet keeps everything
`UNet3DModel` has (LoRA through PEFT, gradient checkpointing, attention slicing, strict loading), and a sampling step
does not recompute the conditioning (diffusers runs it twice per step under guidance).

1. Concatenated image path ("content encoder", low-level details): the first frame's VAE latent, followed by a
   position mask for every later frame (frame `i` >= 1 is the constant map `i / (F - 1)`), goes through
   `image_latents_proj_in` (three 3x3 convolutions per frame) and `image_latents_temporal_encoder` (per pixel, over
   frames: LayerNorm, self-attention, residual; GELU feed-forward without norm, residual) and is concatenated with the
   noisy sample on channels.
2. Image-latent tokens: `image_latents_context_embedding` turns the first frame's latent into a grid of tokens (an
   adaptive pool to 32 x 32, then two stride-2 convolutions: 8 x 8 = 64 tokens of the cross-attention width).
3. CLIP image tokens (high-level semantics): `context_embedding` maps the frozen CLIP image embedding to
   `num_image_tokens` (4) tokens.

The UNet's cross-attention context is `[text | image-latent tokens | CLIP image tokens]` (77 + 64 + 4 = 145 tokens for
the public weights). Parameter names are those of diffusers' `I2VGenXLUNet`, so its weights load unrenamed (see
`diffusers_video.conversion.i2vgen_xl`); the attention and feed-forward layers are diffusers' own classes.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import Attention, FeedForward
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from .saving import SafeFolderMixin

__all__ = [
    "I2VGenXLContentEncoder",
    "I2VGenXLContentEncoderOutput",
    "I2VGenXLTemporalEncoder",
    "frame_position_latents",
]


@dataclass
class I2VGenXLContentEncoderOutput(BaseOutput):
    """Output of `I2VGenXLContentEncoder`.

    Args:
        image_latents (`torch.Tensor` of shape `(batch, conditioning_channels, frames, height, width)`): What is
            concatenated with the noisy sample on channels.
        context (`torch.Tensor` of shape `(batch, tokens, cross_attention_dim)`): The UNet's cross-attention context,
            `[text | image-latent tokens | CLIP image tokens]` (the image tokens alone without text).
    """

    image_latents: torch.Tensor
    context: torch.Tensor


def frame_position_latents(image_latent: torch.Tensor, num_frames: int) -> torch.Tensor:
    """The first frame's latent followed by a position mask for every later frame, as I2VGen-XL conditions on it.

    Frame `i` >= 1 is the constant map `i / (num_frames - 1)` (VGen's `mask_pos`, diffusers' `prepare_image_latents`).

    Args:
        image_latent (`torch.Tensor`): The image's latent `(batch, channels, height, width)`.
        num_frames (`int`): Frames of the video, at least 1.

    Returns:
        `torch.Tensor`: `(batch, channels, num_frames, height, width)`.
    """
    if num_frames < 1:
        raise ValueError(f"`num_frames` must be at least 1 but is {num_frames}.")
    frames = [image_latent]
    for i in range(1, num_frames):
        frames.append(torch.full_like(image_latent, i / (num_frames - 1)))
    return torch.stack(frames, dim=2)  # (B, C, F, h, w)


class I2VGenXLTemporalEncoder(nn.Module):
    """Per-pixel self-attention over frames, then a feed-forward, each residual (`image_latents_temporal_encoder`).

    Only the attention has a LayerNorm in front of it; the feed-forward reads the residual stream directly, as in
    VGen and diffusers' `I2VGenXLTransformerTemporalEncoder` (whose parameter names these are).

    Args:
        dim (`int`): Channels per frame.
        num_attention_heads (`int`): Heads.
        attention_head_dim (`int`): Channels per head.
        ff_inner_dim (`int`): Width of the GELU feed-forward.
    """

    def __init__(self, dim: int, num_attention_heads: int, attention_head_dim: int, ff_inner_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=True, eps=1e-5)
        self.attn1 = Attention(
            query_dim=dim, heads=num_attention_heads, dim_head=attention_head_dim, bias=False, out_bias=True
        )
        self.ff = FeedForward(dim, activation_fn="gelu", final_dropout=False, inner_dim=ff_inner_dim, bias=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """`(pixels, frames, dim)` -> the same shape."""
        tokens = tokens + self.attn1(self.norm1(tokens))
        return tokens + self.ff(tokens)


class I2VGenXLContentEncoder(SafeFolderMixin, ModelMixin, ConfigMixin):
    r"""I2VGen-XL's image conditioning: the concatenated latent path and the image tokens of the UNet's context.

    See the module docstring for what each part computes. The default config is that of the public I2VGen-XL weights
    (diffusers' `I2VGenXLUNet` with `in_channels=4`, `cross_attention_dim=1024`, `block_out_channels[0]=320`).

    Args:
        latent_channels (`int`, defaults to 4): Channels of the image's VAE latent.
        conditioning_channels (`int`, defaults to 4): Channels of the concatenated path (the UNet's `in_channels` is
            the sample's channels plus these); its hidden widths are 4x (`image_latents_proj_in`), 8x and 16x
            (`image_latents_context_embedding`) this, as in `I2VGenXLUNet`, where it is `in_channels`.
        cross_attention_dim (`int`, defaults to 1024): Width of the UNet's cross-attention context.
        image_embed_dim (`int`, defaults to 1024): Width of the CLIP image embedding (`image_embeds`).
        num_image_tokens (`int`, defaults to 4): Tokens made from the CLIP image embedding.
        hidden_dim (`int`, defaults to 1280): Hidden width of `context_embedding` (the UNet's time-embedding width).
        latent_token_grid (`int`, defaults to 32): The image latent is pooled to this size before two stride-2
            convolutions, which gives `ceil(latent_token_grid / 4) ** 2` tokens (64).
        temporal_encoder_heads (`int`, defaults to 2): Heads of `image_latents_temporal_encoder`, each of
            `conditioning_channels` channels.
    """

    _supports_gradient_checkpointing = False
    _skip_layerwise_casting_patterns = ["norm"]

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 4,
        conditioning_channels: int = 4,
        cross_attention_dim: int = 1024,
        image_embed_dim: int = 1024,
        num_image_tokens: int = 4,
        hidden_dim: int = 1280,
        latent_token_grid: int = 32,
        temporal_encoder_heads: int = 2,
    ):
        super().__init__()
        for name, value in (
            ("latent_channels", latent_channels), ("conditioning_channels", conditioning_channels),
            ("cross_attention_dim", cross_attention_dim), ("image_embed_dim", image_embed_dim),
            ("num_image_tokens", num_image_tokens), ("hidden_dim", hidden_dim),
            ("latent_token_grid", latent_token_grid), ("temporal_encoder_heads", temporal_encoder_heads),
        ):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1 but is {value!r}.")
        c = conditioning_channels
        # 1. concatenated path, per frame, then over frames per pixel
        self.image_latents_proj_in = nn.Sequential(
            nn.Conv2d(latent_channels, c * 4, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(c * 4, c * 4, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(c * 4, c, 3, padding=1),
        )
        self.image_latents_temporal_encoder = I2VGenXLTemporalEncoder(
            dim=c, num_attention_heads=temporal_encoder_heads, attention_head_dim=c, ff_inner_dim=c * 4
        )
        # 2. image-latent tokens of the first frame
        self.image_latents_context_embedding = nn.Sequential(
            nn.Conv2d(latent_channels, c * 8, 3, padding=1),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d((latent_token_grid, latent_token_grid)),
            nn.Conv2d(c * 8, c * 16, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(c * 16, cross_attention_dim, 3, stride=2, padding=1),
        )
        # 3. CLIP image tokens
        self.context_embedding = nn.Sequential(
            nn.Linear(image_embed_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, cross_attention_dim * num_image_tokens),
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> I2VGenXLContentEncoder:
        """`ModelMixin.from_pretrained`, strictly: a config key the class does not take (see `_dict_from_json_file`),
        or weights that are not exactly those of the config's model, are a `ValueError` naming them (diffusers only
        warns).

        Args:
            pretrained_model_name_or_path (`str` or `os.PathLike`): A folder or Hub repo id.
            kwargs: Those of `ModelMixin.from_pretrained` (`subfolder`, `torch_dtype`, `output_loading_info`, ...).
        """
        output_loading_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, output_loading_info=True, **kwargs)
        where = os.path.join(os.fspath(pretrained_model_name_or_path), kwargs.get("subfolder") or "")
        unexpected, missing = sorted(info["unexpected_keys"]), sorted(info["missing_keys"])
        if unexpected or missing:
            raise ValueError(
                f"The weights of {where} do not fit the I2VGenXLContentEncoder its config describes: unexpected "
                f"weights {unexpected[:4]} ({len(unexpected)}), missing weights {missing[:4]} ({len(missing)})."
            )
        return (model, info) if output_loading_info else model

    @classmethod
    def _dict_from_json_file(cls, json_file: str | os.PathLike) -> dict:
        config = super()._dict_from_json_file(json_file)
        expected = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(key for key in config if not key.startswith("_") and key not in expected)
        if unknown:
            raise ValueError(
                f"{', '.join(f'`{key}`' for key in unknown)} in {os.fspath(json_file)} "
                f"{'is not a config key' if len(unknown) == 1 else 'are not config keys'} of I2VGenXLContentEncoder."
            )
        return config

    @property
    def num_latent_tokens(self) -> int:
        """Tokens made from the image latent (64 for the public weights)."""
        side = (self.config.latent_token_grid + 1) // 2
        return ((side + 1) // 2) ** 2

    def encode_latents(self, image_latents: torch.Tensor) -> torch.Tensor:
        """The concatenated path: `(B, latent_channels, F, h, w)` -> `(B, conditioning_channels, F, h, w)`.

        `image_latents` are the first frame's latent and the position masks (see [`frame_position_latents`]).
        """
        batch, channels, num_frames, height, width = image_latents.shape
        x = image_latents.permute(0, 2, 1, 3, 4).reshape(batch * num_frames, channels, height, width)  # (B*F, C, h, w)
        x = self.image_latents_proj_in(x)  # (B*F, c, h, w)
        c = x.shape[1]
        x = x.reshape(batch, num_frames, c, height, width).permute(0, 3, 4, 1, 2)  # (B, h, w, F, c)
        x = self.image_latents_temporal_encoder(x.reshape(batch * height * width, num_frames, c))  # (B*h*w, F, c)
        return x.reshape(batch, height, width, num_frames, c).permute(0, 4, 3, 1, 2)  # (B, c, F, h, w)

    def latent_tokens(self, image_latent: torch.Tensor) -> torch.Tensor:
        """Tokens of the first frame's latent: `(B, latent_channels, h, w)` -> `(B, num_latent_tokens, dim)`."""
        tokens = self.image_latents_context_embedding(image_latent)  # (B, D, g, g)
        return tokens.flatten(2).transpose(1, 2)  # (B, g*g, D)

    def image_tokens(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """CLIP image tokens: `(B, image_embed_dim)` (or `(B, 1, image_embed_dim)`) -> `(B, num_image_tokens, dim)`."""
        tokens = self.context_embedding(image_embeds.reshape(image_embeds.shape[0], -1))
        return tokens.reshape(-1, self.config.num_image_tokens, self.config.cross_attention_dim)

    def forward(
        self,
        image_latent: torch.Tensor,
        image_embeds: torch.Tensor,
        num_frames: int,
        encoder_hidden_states: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> I2VGenXLContentEncoderOutput | tuple[torch.Tensor, torch.Tensor]:
        r"""The UNet's image conditioning for videos of `num_frames` frames.

        Args:
            image_latent (`torch.Tensor`): The first frame's (scaled) VAE latent `(batch, latent_channels, h, w)`.
            image_embeds (`torch.Tensor`): CLIP image embeddings `(batch, image_embed_dim)` or `(batch, 1, ...)`;
                zeros are the unconditional embedding under classifier-free guidance (VGen's `use_zero_infer`).
            num_frames (`int`): Frames of the video.
            encoder_hidden_states (`torch.Tensor`, *optional*): Text embeddings `(batch, tokens, cross_attention_dim)`,
                first in the context.
            return_dict (`bool`, defaults to True): Return an [`I2VGenXLContentEncoderOutput`] instead of a tuple.

        Returns:
            [`I2VGenXLContentEncoderOutput`] or `(image_latents, context)`.
        """
        if not isinstance(image_latent, torch.Tensor) or image_latent.ndim != 4:
            raise ValueError(
                "`image_latent` must be a (batch, channels, height, width) tensor but is "
                f"{tuple(image_latent.shape) if isinstance(image_latent, torch.Tensor) else type(image_latent)}."
            )
        if image_latent.shape[1] != self.config.latent_channels:
            raise ValueError(
                f"`image_latent` has {image_latent.shape[1]} channels but the encoder takes "
                f"`latent_channels`={self.config.latent_channels}."
            )
        batch = image_latent.shape[0]
        if image_embeds.shape[0] != batch or image_embeds[0].numel() != self.config.image_embed_dim:
            raise ValueError(
                f"`image_embeds` must be ({batch}, {self.config.image_embed_dim}) but has shape "
                f"{tuple(image_embeds.shape)}."
            )
        if encoder_hidden_states is not None and (
            encoder_hidden_states.ndim != 3
            or encoder_hidden_states.shape[0] != batch
            or encoder_hidden_states.shape[2] != self.config.cross_attention_dim
        ):
            raise ValueError(
                f"`encoder_hidden_states` must be ({batch}, tokens, {self.config.cross_attention_dim}) but has shape "
                f"{tuple(encoder_hidden_states.shape)}."
            )
        image_latents = self.encode_latents(frame_position_latents(image_latent, num_frames))
        parts = [self.latent_tokens(image_latent), self.image_tokens(image_embeds)]
        if encoder_hidden_states is not None:
            parts.insert(0, encoder_hidden_states)
        context = torch.cat(parts, dim=1)  # (B, T + 64 + 4, D)
        if not return_dict:
            return image_latents, context
        return I2VGenXLContentEncoderOutput(image_latents=image_latents, context=context)
