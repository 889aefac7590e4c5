"""`AutoencoderKLVideo`: Stable Diffusion's VAE with a temporal-aware decoder, against flicker.

Where the idea comes from, and what is ours:

- MagicVideo's VideoVAE ("to ameliorate the pixel dithering") and VideoGen's "enhanced video decoder trained on
  unlabeled video" state the idea: keep the image VAE's encoder, so latents stay those of every Stable Diffusion
  model, and give the decoder layers that see neighbouring frames. Neither paper's layers were available.
- The layers are SVD's (diffusers' `AutoencoderKLTemporalDecoder`): after every decoder resnet a `TemporalResnetBlock`
  (GroupNorm -> SiLU -> Conv3d (3, 1, 1), twice, residual; its GroupNorms normalise over all frames of the video)
  blended with the resnet's output by a learned `AlphaBlender`, and a Conv3d (3, 1, 1) `time_conv_out` on the output
  frames. diffusers' classes are reused, so SVD's decoder converts exactly (`diffusers_video.conversion.svd_decoder`).
- Ours: temporal attention (`TemporalAttention`, bidirectional or MagicVideo's directed) after the mid block and,
  optionally, after the resnets of each up block; the spatial layers kept under the names of `AutoencoderKL`'s, with
  its `post_quant_conv` (SVD has none), so an SD VAE loads unrenamed and the temporal layers are the only new keys;
  the identity initialisation (second temporal convolution zero, attention output zero, `time_conv_out` the identity
  convolution), so `from_vae2d(vae)` decodes exactly what `vae` decodes frame by frame; and the exact chunked decode.

Causality: directed attention lets frame i attend to frames <= i only, but the temporal convolutions are centred
(frame i also reads frame i + 1) and the temporal GroupNorms pool all frames, so the decoder as a whole is not causal
unless those layers are at their identity initialisation.

Chunked decoding (`decode_chunk_size`): the decoder runs layer by layer over the whole clip, each layer
`decode_chunk_size` frames at a time, and every chunk sees the neighbours the whole-clip pass sees (one frame beyond
the chunk per temporal convolution, whole-clip GroupNorm statistics, all frames of a band of pixels for attention);
see `VideoDecoder.forward`. The result equals the whole-clip decode up to float rounding, for every temporal option.
Overlapping chunks of latents could not do that: the temporal GroupNorms make every output frame depend on every
frame, and the temporal convolutions alone reach 2 frames per resnet plus one (29 frames on each side for SD's
decoder), more than most clips. Without gradients each chunked layer writes its result over its input, so the
decode holds one whole-clip feature tensor at a time (two around an upsampler) plus one chunk's intermediates; the
price is a pass over the chunks for each GroupNorm's statistics (the first temporal convolution runs twice).

Training the temporal layers on video (MagicVideo and VideoGen give no losses; see the trainers) is not part of
this module: `temporal_parameter_names` lists the parameters `from_vae2d` adds.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from diffusers import AutoencoderKL
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import AttentionMixin
from diffusers.models.autoencoders.vae import AutoencoderMixin, DecoderOutput, DiagonalGaussianDistribution, Encoder
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import logging
from diffusers.utils.accelerate_utils import apply_forward_hook
from torch import nn

from .saving import SafeFolderMixin
from .video_vae_blocks import VideoDecoder

# `from_vae2d` accepts these; everything else comes from the image VAE's config.
TEMPORAL_CONFIG_KEYS = (
    "temporal_attention",
    "temporal_attention_up_blocks",
    "temporal_attention_head_dim",
    "frame_position_encoding",
    "max_frames",
)
# Loaders of other VAE classes' folders, by class name (`register_foreign_loader`).
_FOREIGN_LOADERS: dict[str, Callable[..., AutoencoderKLVideo]] = {}
logger = logging.get_logger(__name__)
# Parameter-name prefixes of the layers that `from_vae2d` adds.
TEMPORAL_PREFIXES = (
    "decoder.mid_block_temporal.",
    "decoder.mid_block_temporal_attention.",
    "decoder.up_blocks_temporal.",
    "decoder.up_blocks_temporal_attention.",
    "decoder.time_conv_out.",
)


class AutoencoderKLVideo(SafeFolderMixin, ModelMixin, AttentionMixin, AutoencoderMixin, ConfigMixin):
    r"""Stable Diffusion's VAE whose decoder has temporal layers (see the module docstring).

    `encode` is `AutoencoderKL`'s encoder frame by frame; `decode` takes latents `(batch, channels, frames, h, w)`
    (or `(batch * frames, channels, h, w)` with `num_frames`, as SVD's decoder) and returns frames in the same layout.

    Spatial arguments are those of `AutoencoderKL`, with the same meaning and parameter names; `up_block_types` must
    be "UpDecoderBlock2D". The temporal GroupNorms have `norm_num_groups` groups (32 in SD's and SVD's VAEs).

    Temporal arguments:
        temporal_attention (`str | None`, defaults to "bidirectional"): Temporal self-attention after the mid
            block: "bidirectional", "directed" (frame i attends to frames <= i; MagicVideo) or None (SVD's decoder).
        temporal_attention_up_blocks (`bool`, defaults to False): Also after the resnets of each up block.
        temporal_attention_head_dim (`int`, defaults to 64): Channels per attention head.
        frame_position_encoding (`str | None`, defaults to "sinusoidal"): "sinusoidal", "learned" or None.
        max_frames (`int`, defaults to 32): Frames a learned position encoding supports.
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["ResnetBlock2D", "TemporalResnetMix", "TemporalAttention"]

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",),
        up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",),
        block_out_channels: tuple[int, ...] = (64,),
        layers_per_block: int = 1,
        act_fn: str = "silu",
        latent_channels: int = 4,
        norm_num_groups: int = 32,
        sample_size: int = 32,
        scaling_factor: float = 0.18215,
        shift_factor: float | None = None,
        latents_mean: tuple[float, ...] | None = None,
        latents_std: tuple[float, ...] | None = None,
        force_upcast: bool = True,
        use_quant_conv: bool = True,
        use_post_quant_conv: bool = True,
        mid_block_add_attention: bool = True,
        temporal_attention: str | None = "bidirectional",
        temporal_attention_up_blocks: bool = False,
        temporal_attention_head_dim: int = 64,
        frame_position_encoding: str | None = "sinusoidal",
        max_frames: int = 32,
    ):
        super().__init__()
        _check_config(up_block_types, block_out_channels, norm_num_groups, temporal_attention_head_dim, max_frames)
        self.encoder = Encoder(
            in_channels=in_channels,
            out_channels=latent_channels,
            down_block_types=down_block_types,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            act_fn=act_fn,
            norm_num_groups=norm_num_groups,
            double_z=True,
            mid_block_add_attention=mid_block_add_attention,
        )
        self.decoder = VideoDecoder(
            in_channels=latent_channels,
            out_channels=out_channels,
            up_block_types=up_block_types,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups,
            act_fn=act_fn,
            mid_block_add_attention=mid_block_add_attention,
            temporal_attention=temporal_attention,
            temporal_attention_up_blocks=temporal_attention_up_blocks,
            temporal_attention_head_dim=temporal_attention_head_dim,
            frame_position_encoding=frame_position_encoding,
            max_frames=max_frames,
        )
        self.quant_conv = nn.Conv2d(2 * latent_channels, 2 * latent_channels, 1) if use_quant_conv else None
        self.post_quant_conv = nn.Conv2d(latent_channels, latent_channels, 1) if use_post_quant_conv else None

        # Slicing and tiling as in AutoencoderKL (same attributes, same defaults).
        self.use_slicing = False
        self.use_tiling = False
        self.tile_sample_min_size = sample_size
        size = sample_size[0] if isinstance(sample_size, (list, tuple)) else sample_size
        self.tile_latent_min_size = int(size / (2 ** (len(block_out_channels) - 1)))
        self.tile_overlap_factor = 0.25

    # AutoencoderKL's own image encoding (tiling included) and tile blending, reused as they are: they only read the
    # attributes set above.
    _encode = AutoencoderKL._encode
    _tiled_encode = AutoencoderKL._tiled_encode
    blend_v = AutoencoderKL.blend_v
    blend_h = AutoencoderKL.blend_h

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """diffusers' `ModelMixin.from_pretrained`, but strict: a missing or unexpected weight is a `ValueError` that
        names it (diffusers only warns, and would leave a missing temporal layer at its initial value).

        A folder or repo of another model class with a registered loader is converted in memory, with one line logged:
        Stable Video Diffusion's `AutoencoderKLTemporalDecoder` (a VAE folder, or an SVD repo with `subfolder="vae"`;
        `diffusers_video.conversion.svd_decoder`, strict key map). `subfolder`, `variant`, `dtype`/`torch_dtype`, `revision`,
        `cache_dir`, `local_files_only` and `token` mean what they mean in diffusers. Any other class is refused with a
        `ValueError` naming it.
        """
        found = _saved_class_name(pretrained_model_name_or_path, kwargs)
        if found is not None and found != cls.__name__:
            load = _FOREIGN_LOADERS.get(found)
            if load is None:
                raise ValueError(
                    f"`{pretrained_model_name_or_path}` holds a {found}, not an {cls.__name__}: load it with "
                    f"`{found}.from_pretrained` (AutoencoderKLVideo converts {sorted(_FOREIGN_LOADERS)} folders)."
                )
            names = ("subfolder", "variant", "revision", "cache_dir", "local_files_only", "token", "force_download")
            options = {key: kwargs[key] for key in names if key in kwargs}
            dtype = kwargs.get("dtype") if kwargs.get("dtype") is not None else kwargs.get("torch_dtype")
            model = load(pretrained_model_name_or_path, torch_dtype=dtype, **options)
            logger.warning(
                f"Converted {pretrained_model_name_or_path}"
                + (f" ({kwargs['subfolder']})" if kwargs.get("subfolder") else "")
                + f" ({found}) -> {cls.__name__} in memory; save_pretrained writes it in {cls.__name__}'s format."
            )
            return (model, {}) if kwargs.get("output_loading_info") else model
        output_loading_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, output_loading_info=True, **kwargs)
        for kind in ("unexpected_keys", "missing_keys"):
            keys = sorted(info.get(kind) or [])
            if keys:
                more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
                raise ValueError(
                    f"`{pretrained_model_name_or_path}` does not hold the weights of its AutoencoderKLVideo config: "
                    f"{kind.replace('_', ' ')} `{keys[0]}`{more}."
                )
        return (model, info) if output_loading_info else model

    @classmethod
    def register_foreign_loader(cls, class_name: str, load: Callable[..., AutoencoderKLVideo]) -> None:
        """Lets `from_pretrained` load folders of the model class `class_name` with `load(path_or_repo_id, *,
        torch_dtype, subfolder, variant, revision, cache_dir, local_files_only, token, force_download)`. The
        conversions register themselves (a layer above this one); registering a name again replaces its loader."""
        _FOREIGN_LOADERS[class_name] = load

    # ------------------------------------------------------------------ inflation

    @classmethod
    def from_vae2d(cls, vae: AutoencoderKL, **temporal_config: Any) -> AutoencoderKLVideo:
        """Copy an image VAE's weights and add identity-initialised temporal layers to its decoder.

        Args:
            vae (`AutoencoderKL`): The image VAE, e.g. Stable Diffusion 2.1's.
            **temporal_config: Any of the temporal arguments of the class (`TEMPORAL_CONFIG_KEYS`).

        Returns:
            `AutoencoderKLVideo` on the VAE's device and dtype, whose `decode` equals `vae.decode` frame by frame.
        """
        if not isinstance(vae, AutoencoderKL):
            raise TypeError(f"`vae` must be an `AutoencoderKL` but is a {type(vae).__name__}.")
        unknown = sorted(set(temporal_config) - set(TEMPORAL_CONFIG_KEYS))
        if unknown:
            raise TypeError(f"`from_vae2d` got unknown arguments {unknown}; allowed are {list(TEMPORAL_CONFIG_KEYS)}.")
        model = cls(**cls._config_from_vae2d(vae.config), **temporal_config)
        state = model.state_dict()
        for key, value in vae.state_dict().items():
            if key not in state:
                raise ValueError(f"The image VAE's weight `{key}` has no place in AutoencoderKLVideo.")
            if state[key].shape != value.shape:
                raise ValueError(f"Shape mismatch for `{key}`: {tuple(value.shape)} vs {tuple(state[key].shape)}.")
            state[key] = value
        model.load_state_dict(state, strict=True)
        if vae.dtype != model.dtype or vae.device != model.device:
            # torch's own cast: diffusers' `ModelMixin.to` warns about float32-only modules, which this has none of.
            model = nn.Module.to(model, device=vae.device, dtype=vae.dtype)
        return model

    @classmethod
    def from_pretrained_2d(
        cls,
        pretrained_model_name_or_path: str,
        subfolder: str | None = None,
        torch_dtype: torch.dtype | None = None,
        **temporal_config: Any,
    ) -> AutoencoderKLVideo:
        """Load an image VAE (a diffusers folder or Hub repo) and inflate it with `from_vae2d`.

        Args:
            pretrained_model_name_or_path (`str`): VAE folder, or pipeline folder with `subfolder="vae"`.
            subfolder (`str | None`, defaults to None): The VAE's folder inside it.
            torch_dtype (`torch.dtype | None`): dtype to load the weights in.
            **temporal_config: As in `from_vae2d`; `allow_pickle=True` also loads pickle-only weights.
        """
        vae, temporal_config = cls._load_2d(
            AutoencoderKL, pretrained_model_name_or_path, subfolder, torch_dtype, **temporal_config
        )
        return cls.from_vae2d(vae, **temporal_config)

    @classmethod
    def _config_from_vae2d(cls, config2d) -> dict[str, Any]:
        """The spatial config from an `AutoencoderKL` config; a setting we do not have, unless at its default, is an
        error that names it (those we have but cannot build are refused by `__init__`)."""
        ours = set(inspect.signature(cls.__init__).parameters) - {"self", *TEMPORAL_CONFIG_KEYS}
        defaults2d = {name: p.default for name, p in inspect.signature(AutoencoderKL.__init__).parameters.items()}
        config = {}
        for key, value in config2d.items():
            if key.startswith("_"):
                continue
            if key in ours:
                config[key] = list(value) if isinstance(value, tuple) else value
            elif key in defaults2d and value != defaults2d[key]:
                raise ValueError(f"An AutoencoderKL with `{key}={value!r}` cannot be inflated to AutoencoderKLVideo.")
        return config

    # ------------------------------------------------------------------ encoding

    @apply_forward_hook
    def encode(self, x: torch.Tensor, return_dict: bool = True) -> AutoencoderKLOutput | tuple:
        """Encode videos `(batch, channels, frames, H, W)` (or images `(N, channels, H, W)`) frame by frame.

        Args:
            x (`torch.Tensor`): Videos or images in [-1, 1].
            return_dict (`bool`, defaults to True): Return an `AutoencoderKLOutput` rather than a tuple.

        Returns:
            `AutoencoderKLOutput` whose `latent_dist` has the layout of `x`: `(batch, 2 * latent, frames, h, w)`
            parameters for videos (its `sample` and `mode` are per element; diffusers' `kl` sums over dimensions 1-3
            only, so take it of images).
        """
        if x.ndim not in (4, 5) or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"`x` must be videos (batch, {self.config.in_channels}, frames, height, width) or images (batch, "
                f"{self.config.in_channels}, height, width) but has shape {tuple(x.shape)}."
            )
        images = x if x.ndim == 4 else x.transpose(1, 2).flatten(0, 1)  # (B*F, C, H, W)
        if self.use_slicing and images.shape[0] > 1:
            moments = torch.cat([self._encode(image) for image in images.split(1)])
        else:
            moments = self._encode(images)  # (B*F, 2L, h, w)
        if x.ndim == 5:
            moments = moments.unflatten(0, (x.shape[0], x.shape[2])).transpose(1, 2)  # (B, 2L, F, h, w)
        posterior = DiagonalGaussianDistribution(moments)
        if not return_dict:
            return (posterior,)
        return AutoencoderKLOutput(latent_dist=posterior)

    # ------------------------------------------------------------------ decoding

    @apply_forward_hook
    def decode(
        self,
        z: torch.Tensor,
        num_frames: int | None = None,
        decode_chunk_size: int | None = None,
        return_dict: bool = True,
        generator: torch.Generator | None = None,
    ) -> DecoderOutput | tuple:
        """Decode latent videos.

        Args:
            z (`torch.Tensor`): `(batch, latent_channels, frames, h, w)`, or `(batch * frames, latent_channels, h, w)`
                with `num_frames` (without it, each latent is a one-frame video).
            num_frames (`int | None`): Frames per video of a 4D `z`; for a 5D `z`, None or its frame count.
            decode_chunk_size (`int | None`, defaults to None): Frames each layer computes at a time (see the module
                docstring); the result is the same, the memory of each layer's intermediates smaller.
            return_dict (`bool`, defaults to True): Return a `DecoderOutput` rather than a tuple.
            generator (`torch.Generator | None`): Unused; accepted as `AutoencoderKL.decode` accepts it.

        Returns:
            `DecoderOutput` with frames in the layout of `z`: `(batch, out_channels, frames, H, W)` for a 5D `z`.
        """
        latents, num_frames = self._latent_frames(z, num_frames)  # (B*F, L, h, w)
        if decode_chunk_size is not None and (isinstance(decode_chunk_size, bool) or decode_chunk_size < 1):
            raise ValueError(f"`decode_chunk_size` must be None or at least 1 but is {decode_chunk_size!r}.")
        batch = latents.shape[0] // num_frames
        if self.use_slicing and batch > 1:
            videos = latents.split(num_frames)  # B x (F, L, h, w)
            frames = torch.cat([self._decode(video, num_frames, decode_chunk_size) for video in videos])
        else:
            frames = self._decode(latents, num_frames, decode_chunk_size)  # (B*F, C, H, W)
        if z.ndim == 5:
            frames = frames.unflatten(0, (batch, num_frames)).transpose(1, 2).contiguous()  # (B, C, F, H, W)
        if not return_dict:
            return (frames,)
        return DecoderOutput(sample=frames)

    def _latent_frames(self, z: torch.Tensor, num_frames: int | None) -> tuple[torch.Tensor, int]:
        """`z` as `(B*F, L, h, w)` latent frames, and `F`; refuses what `decode` cannot take."""
        channels = self.config.latent_channels
        if z.ndim not in (4, 5) or z.shape[1] != channels:
            raise ValueError(
                f"Latents must be (batch, {channels}, frames, height, width), or (batch * frames, {channels}, height, "
                f"width) with `num_frames`, but have shape {tuple(z.shape)}."
            )
        if z.ndim == 5:
            if num_frames is not None and num_frames != z.shape[2]:
                raise ValueError(
                    f"`num_frames` is {num_frames} but the latents of shape {tuple(z.shape)} have {z.shape[2]} frames."
                )
            return z.transpose(1, 2).flatten(0, 1), z.shape[2]  # (B*F, L, h, w)
        num_frames = 1 if num_frames is None else num_frames
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"`num_frames` must be a positive integer but is {num_frames!r}.")
        if z.shape[0] % num_frames:
            raise ValueError(
                f"`num_frames` ({num_frames}) must divide the batch of latent frames, {z.shape[0]} "
                f"(shape {tuple(z.shape)})."
            )
        return z, num_frames

    def _decode(self, z: torch.Tensor, num_frames: int, chunk_size: int | None) -> torch.Tensor:
        """`(B*F, L, h, w)` -> `(B*F, C, H, W)`."""
        if self.use_tiling and (z.shape[-1] > self.tile_latent_min_size or z.shape[-2] > self.tile_latent_min_size):
            return self._tiled_decode(z, num_frames, chunk_size)
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z, num_frames, chunk_size)

    # Adapted from diffusers.models.autoencoders.autoencoder_kl.AutoencoderKL.tiled_decode: each tile is decoded as
    # a video (all its frames together, so the temporal layers see them); tiles are blended as there.
    def _tiled_decode(self, z: torch.Tensor, num_frames: int, chunk_size: int | None) -> torch.Tensor:
        """Decode `(B*F, L, h, w)` in overlapping spatial tiles, blended at the seams (approximate, as there)."""
        overlap_size = int(self.tile_latent_min_size * (1 - self.tile_overlap_factor))
        blend_extent = int(self.tile_sample_min_size * self.tile_overlap_factor)
        row_limit = self.tile_sample_min_size - blend_extent

        rows = []
        for i in range(0, z.shape[2], overlap_size):
            row = []
            for j in range(0, z.shape[3], overlap_size):
                tile = z[:, :, i : i + self.tile_latent_min_size, j : j + self.tile_latent_min_size]
                if self.post_quant_conv is not None:
                    tile = self.post_quant_conv(tile)
                row.append(self.decoder(tile, num_frames, chunk_size))  # (B*F, C, tile, tile)
            rows.append(row)
        result_rows = []
        for i, row in enumerate(rows):
            result_row = []
            for j, tile in enumerate(row):
                if i > 0:
                    tile = self.blend_v(rows[i - 1][j], tile, blend_extent)
                if j > 0:
                    tile = self.blend_h(row[j - 1], tile, blend_extent)
                result_row.append(tile[:, :, :row_limit, :row_limit])
            result_rows.append(torch.cat(result_row, dim=3))
        return torch.cat(result_rows, dim=2)  # (B*F, C, H, W)

    def forward(
        self,
        sample: torch.Tensor,
        sample_posterior: bool = False,
        return_dict: bool = True,
        generator: torch.Generator | None = None,
        num_frames: int | None = None,
        decode_chunk_size: int | None = None,
    ) -> DecoderOutput | tuple:
        """Encode and decode videos `(batch, channels, frames, H, W)` (or frames with `num_frames`)."""
        posterior = self.encode(sample).latent_dist
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        decoded = self.decode(z, num_frames=num_frames, decode_chunk_size=decode_chunk_size).sample
        if not return_dict:
            return (decoded,)
        return DecoderOutput(sample=decoded)


def _check_config(up_block_types, block_out_channels, norm_num_groups, temporal_attention_head_dim, max_frames):
    if len(up_block_types) != len(block_out_channels):
        raise ValueError(
            f"`up_block_types` ({list(up_block_types)}) must have one entry per `block_out_channels` "
            f"({list(block_out_channels)})."
        )
    if any(block != "UpDecoderBlock2D" for block in up_block_types):
        raise ValueError(
            f"`up_block_types` must all be 'UpDecoderBlock2D' (the decoder blocks that get temporal layers) but are "
            f"{list(up_block_types)}."
        )
    bad = [channels for channels in block_out_channels if channels % norm_num_groups]
    if bad:
        raise ValueError(
            f"`block_out_channels` ({list(block_out_channels)}) must be divisible by `norm_num_groups` "
            f"({norm_num_groups}), which the temporal GroupNorms also use; {bad} are not."
        )
    if isinstance(temporal_attention_head_dim, bool) or temporal_attention_head_dim < 1:
        raise ValueError(f"`temporal_attention_head_dim` must be at least 1 but is {temporal_attention_head_dim!r}.")
    if isinstance(max_frames, bool) or max_frames < 1:
        raise ValueError(f"`max_frames` must be at least 1 but is {max_frames!r}.")


def temporal_parameter_names(model: AutoencoderKLVideo) -> list[str]:
    """Names of the parameters that `from_vae2d` adds (the decoder's temporal layers)."""
    return [name for name, _ in model.named_parameters() if name.startswith(TEMPORAL_PREFIXES)]


def _saved_class_name(pretrained_model_name_or_path, kwargs: dict) -> str | None:
    """`_class_name` of the model config that `from_pretrained` would read (fetched into the Hub cache for a repo id);
    None when there is none to read, which `ModelMixin.from_pretrained` then reports in its own words."""
    names = ("subfolder", "revision", "cache_dir", "local_files_only", "token", "force_download")
    try:
        config = AutoencoderKLVideo.load_config(
            pretrained_model_name_or_path, **{key: kwargs[key] for key in names if key in kwargs}
        )
    except (OSError, ValueError):
        return None
    name = config.get("_class_name") if isinstance(config, dict) else None
    return name if isinstance(name, str) else None
