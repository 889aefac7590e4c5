"""The components of a VideoGen pipeline, checked together before anything runs; and the two-condition guidance."""

from __future__ import annotations

from typing import Any

import torch

from ...models.flow_upsampler import FlowTemporalUpsampler
from ..imagen_video.cascade import NOISE_AUG_CONDITION

__all__ = ["STAGES", "check_components", "reads_text", "reference_guidance"]

STAGES = ("reference", "base", "super_resolution", "temporal_upsampling")
"""The stages of a call, in order (`pipe.stage` names the one running, for callbacks)."""


def reads_text(unet: Any) -> bool:
    """Whether a UNet has text cross-attention (a fully convolutional super-resolution UNet does not)."""
    config = unet.config
    blocks = [*config.down_block_types, *config.up_block_types, config.mid_block_type or ""]
    return any("CrossAttn" in block for block in blocks)


def reference_guidance(
    uncond: torch.Tensor | None,
    reference: torch.Tensor | None,
    full: torch.Tensor,
    guidance_scale: float,
    reference_guidance_scale: float,
) -> torch.Tensor:
    """Classifier-free guidance on two conditions, the reference and the text (InstructPix2Pix's Eq. 3, ours here):

        e = e(0, 0) + s_ref * (e(ref, 0) - e(0, 0)) + s_text * (e(ref, text) - e(ref, 0))

    `e(0, 0)` (`uncond`): no reference (zeros) and the negative prompt; `e(ref, 0)` (`reference`): the reference and
    the negative prompt; `e(ref, text)` (`full`): both. With `s_ref = 1` it is text guidance with the reference always
    given, `e(ref, 0) + s_text * (e(ref, text) - e(ref, 0))`, and `uncond` is not needed; with both weights 1 it is
    `full` alone.
    """
    if reference_guidance_scale == 1.0:
        if guidance_scale == 1.0:
            return full
        return reference + guidance_scale * (full - reference)
    return uncond + reference_guidance_scale * (reference - uncond) + guidance_scale * (full - reference)


def _check_scalar_conditions(unet: Any, name: str, allowed: tuple[str, ...]) -> None:
    extra = sorted(set(getattr(unet.config, "scalar_conditions", ()) or ()) - set(allowed))
    if extra:
        raise ValueError(
            f"`{name}` has scalar conditions {extra} that the pipeline cannot give (it gives {list(allowed)})."
        )


def check_components(
    vae, text_encoder, unet, image_unet, super_resolution_unet, flow_upsampler, super_resolution_factor
) -> None:
    """Raises a `ValueError` naming the component and both values when the components of a [`VideoGenPipeline`]
    cannot work together: the reference-conditioned UNet's channels (`2 * C` in, `C` out), the image and
    super-resolution models' channels, text widths, the flow upsampler's channels, scalar conditions, the factor."""
    if isinstance(super_resolution_factor, bool) or not isinstance(super_resolution_factor, int):
        raise ValueError(f"`super_resolution_factor` must be an integer >= 2 but is {super_resolution_factor!r}.")
    if super_resolution_factor < 2:
        raise ValueError(f"`super_resolution_factor` must be an integer >= 2 but is {super_resolution_factor!r}.")
    if unet is None:
        return
    channels = vae.config.latent_channels if vae is not None else unet.config.out_channels
    config = unet.config
    if config.in_channels != 2 * channels or config.out_channels != channels:
        raise ValueError(
            f"`unet` reads the noisy latents ({channels} channels, the VAE's `latent_channels`) and the reference "
            f"latent repeated to every frame ({channels}), so it needs in_channels={2 * channels} and "
            f"out_channels={channels}, but has in_channels={config.in_channels} and out_channels={config.out_channels}."
        )
    text_dim = config.cross_attention_dim
    if text_encoder is not None and text_encoder.config.hidden_size != text_dim:
        raise ValueError(
            f"`text_encoder` has hidden_size={text_encoder.config.hidden_size} but `unet` has "
            f"cross_attention_dim={text_dim}."
        )
    _check_scalar_conditions(unet, "unet", ())

    if image_unet is not None:
        image = image_unet.config
        if image.in_channels != channels or image.out_channels != channels:
            raise ValueError(
                f"`image_unet` (the text-to-image model of the reference) must read and predict the VAE's {channels} "
                f"latent channels but has in_channels={image.in_channels} and out_channels={image.out_channels}."
            )
        if image.cross_attention_dim != text_dim:
            raise ValueError(
                f"`image_unet` has cross_attention_dim={image.cross_attention_dim} but `unet` has "
                f"cross_attention_dim={text_dim}: both read the same text encoder."
            )

    if super_resolution_unet is not None:
        sr = super_resolution_unet.config
        if sr.in_channels != 2 * channels or sr.out_channels != channels:
            raise ValueError(
                f"`super_resolution_unet` reads the noisy latents ({channels} channels) and the upsampled base latents "
                f"({channels}), so it needs in_channels={2 * channels} and out_channels={channels}, but has "
                f"in_channels={sr.in_channels} and out_channels={sr.out_channels}."
            )
        if reads_text(super_resolution_unet) and sr.cross_attention_dim != text_dim:
            raise ValueError(
                f"`super_resolution_unet` has cross_attention_dim={sr.cross_attention_dim} but `unet` has "
                f"cross_attention_dim={text_dim}: both read the same text embeddings."
            )
        _check_scalar_conditions(super_resolution_unet, "super_resolution_unet", (NOISE_AUG_CONDITION,))

    if flow_upsampler is not None:
        if not isinstance(flow_upsampler, FlowTemporalUpsampler):
            raise ValueError(f"`flow_upsampler` must be a FlowTemporalUpsampler but is a {type(flow_upsampler)}.")
        if flow_upsampler.config.in_channels != channels:
            raise ValueError(
                f"`flow_upsampler` has in_channels={flow_upsampler.config.in_channels} but the latents have {channels} "
                "channels."
            )
