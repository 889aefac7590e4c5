"""The components of a MagicVideo pipeline, checked together before anything runs."""

from __future__ import annotations

from typing import Any

from ..imagen_video.cascade import NOISE_AUG_CONDITION

__all__ = [
    "FPS_CONDITION",
    "SUPER_RESOLUTION_SPACES",
    "check_components",
    "reads_text",
    "super_resolution_channels",
]

FPS_CONDITION = "fps"
"""Name of the `UNet3DModel` scalar condition through which a stage is told the frame rate of the frames it makes."""

SUPER_RESOLUTION_SPACES = ("latent", "pixel")
"""Where the super-resolution stage runs: on the VAE latents (before decoding) or on the decoded frames."""


def reads_text(unet: Any) -> bool:
    """Whether a UNet has text cross-attention (a fully convolutional super-resolution UNet does not)."""
    config = unet.config
    blocks = [*config.down_block_types, *config.up_block_types, config.mid_block_type or ""]
    return any("CrossAttn" in block for block in blocks)


def super_resolution_channels(latent_channels: int, space: str) -> int:
    """Channels of the super-resolution stage's sample: the VAE's latent channels, or 3 (RGB) in pixel space."""
    return latent_channels if space == "latent" else 3


def _check_scalar_conditions(unet: Any, name: str, allowed: tuple[str, ...]) -> None:
    extra = sorted(set(getattr(unet.config, "scalar_conditions", ()) or ()) - set(allowed))
    if extra:
        raise ValueError(
            f"`{name}` has scalar conditions {extra} that the pipeline cannot give (it gives {list(allowed)} to this "
            "stage)."
        )


def check_components(
    vae, text_encoder, unet, interpolation_unet, super_resolution_unet, super_resolution_factor, super_resolution_space
) -> None:
    """Raises a `ValueError` naming the component and both values when the components of a [`MagicVideoPipeline`]
    cannot work together: latent channels, the channels of each stage's conditioning, text widths, scalar conditions,
    the super-resolution factor and space."""
    if super_resolution_space not in SUPER_RESOLUTION_SPACES:
        raise ValueError(
            f"`super_resolution_space` must be one of {SUPER_RESOLUTION_SPACES} but is {super_resolution_space!r}."
        )
    if isinstance(super_resolution_factor, bool) or not isinstance(super_resolution_factor, int):
        raise ValueError(f"`super_resolution_factor` must be an integer >= 2 but is {super_resolution_factor!r}.")
    if super_resolution_factor < 2:
        raise ValueError(f"`super_resolution_factor` must be an integer >= 2 but is {super_resolution_factor!r}.")
    if unet is None:
        return
    channels = unet.config.in_channels
    if unet.config.out_channels != channels:
        raise ValueError(
            f"`unet` (the keyframe model) must predict as many channels as it reads but has in_channels={channels} "
            f"and out_channels={unet.config.out_channels}."
        )
    if vae is not None and vae.config.latent_channels != channels:
        raise ValueError(
            f"`vae` has {vae.config.latent_channels} latent channels but `unet` has in_channels={channels}."
        )
    text_dim = unet.config.cross_attention_dim
    if text_encoder is not None and reads_text(unet) and text_encoder.config.hidden_size != text_dim:
        raise ValueError(
            f"`text_encoder` has hidden_size={text_encoder.config.hidden_size} but `unet` has "
            f"cross_attention_dim={text_dim}."
        )
    _check_scalar_conditions(unet, "unet", (FPS_CONDITION,))

    if interpolation_unet is not None:
        config = interpolation_unet.config
        expected = 2 * channels + 1
        if config.in_channels != expected or config.out_channels != channels:
            raise ValueError(
                f"`interpolation_unet` reads the noisy frames ({channels} channels), the neighbouring keyframes placed "
                f"at their indices ({channels}) and their mask (1), so it needs in_channels={expected} and "
                f"out_channels={channels}, but has in_channels={config.in_channels} and "
                f"out_channels={config.out_channels}."
            )
        if reads_text(interpolation_unet) and config.cross_attention_dim != text_dim:
            raise ValueError(
                f"`interpolation_unet` has cross_attention_dim={config.cross_attention_dim} but `unet` has "
                f"cross_attention_dim={text_dim}: both read the same text embeddings."
            )
        _check_scalar_conditions(interpolation_unet, "interpolation_unet", (FPS_CONDITION,))

    if super_resolution_unet is not None:
        config = super_resolution_unet.config
        sample = super_resolution_channels(channels, super_resolution_space)
        if config.in_channels != 2 * sample or config.out_channels != sample:
            raise ValueError(
                f"`super_resolution_unet` runs in {super_resolution_space} space (`super_resolution_space`), where it "
                f"reads the noisy sample ({sample} channels) and the upsampled video ({sample}), so it needs "
                f"in_channels={2 * sample} and out_channels={sample}, but has in_channels={config.in_channels} and "
                f"out_channels={config.out_channels}."
            )
        if reads_text(super_resolution_unet) and config.cross_attention_dim != text_dim:
            raise ValueError(
                f"`super_resolution_unet` has cross_attention_dim={config.cross_attention_dim} but `unet` has "
                f"cross_attention_dim={text_dim}: both read the same text embeddings."
            )
        _check_scalar_conditions(super_resolution_unet, "super_resolution_unet", (FPS_CONDITION, NOISE_AUG_CONDITION))
