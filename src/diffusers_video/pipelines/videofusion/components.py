"""The components of a VideoFusion pipeline, checked together before anything runs."""

from __future__ import annotations

from ...schedulers.scheduling_decomposed import DecomposedNoiseScheduler

BASE_PREDICTION_TYPES = ("epsilon", "v_prediction")
"""What the base generator may predict."""

__all__ = ["BASE_PREDICTION_TYPES", "check_components"]


def check_components(vae, text_encoder, residual_unet, scheduler, base_unet, base_prediction_type) -> None:
    """Raises a `ValueError` (a `TypeError` for a wrong class) naming both values when the components of a
    [`VideoFusionPipeline`] cannot work together: latent channels, text widths, prediction types, zero terminal SNR."""
    if base_prediction_type not in BASE_PREDICTION_TYPES:
        raise ValueError(
            f"`base_prediction_type` must be one of {BASE_PREDICTION_TYPES} but is {base_prediction_type!r}."
        )
    if scheduler is not None and not isinstance(scheduler, DecomposedNoiseScheduler):
        raise TypeError(
            f"`scheduler` must be a DecomposedNoiseScheduler (use `base_noise_ratio=0` for plain DDIM) but is a"
            f" {type(scheduler).__name__}."
        )
    if residual_unet is None:
        return
    channels = residual_unet.config.in_channels
    text_dim = residual_unet.config.cross_attention_dim
    if residual_unet.config.out_channels != channels:
        raise ValueError(
            f"`residual_unet` must predict as many channels as it reads but has in_channels={channels} and"
            f" out_channels={residual_unet.config.out_channels}."
        )
    if vae is not None and vae.config.latent_channels != channels:
        raise ValueError(
            f"`vae` has {vae.config.latent_channels} latent channels but `residual_unet` has in_channels={channels}."
        )
    if text_encoder is not None and text_encoder.config.hidden_size != text_dim:
        raise ValueError(
            f"`text_encoder` has hidden_size={text_encoder.config.hidden_size} but `residual_unet` has"
            f" cross_attention_dim={text_dim}."
        )
    if base_unet is None:
        return
    base_channels = (base_unet.config.in_channels, base_unet.config.out_channels)
    if base_channels != (channels, channels):
        raise ValueError(
            f"`base_unet` must read and predict the residual UNet's {channels} latent channels but has"
            f" in_channels={base_channels[0]} and out_channels={base_channels[1]}."
        )
    base_text_dim = base_unet.config.cross_attention_dim
    base_text_dims = set(base_text_dim) if isinstance(base_text_dim, (list, tuple)) else {base_text_dim}
    if base_text_dims != {text_dim}:
        raise ValueError(
            f"`base_unet` has cross_attention_dim={base_text_dim} but `residual_unet` has"
            f" cross_attention_dim={text_dim}: both must read the same text embeddings."
        )
    if scheduler is None:
        return
    prediction_type = scheduler.config.prediction_type
    if prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(
            "With a base generator the two estimates combine into an epsilon or a v prediction, so the scheduler's"
            f" `prediction_type` must be 'epsilon' or 'v_prediction' but is {prediction_type!r}."
        )
    if scheduler.config.get("rescale_betas_zero_snr") and "epsilon" in (prediction_type, base_prediction_type):
        raise ValueError(
            "The scheduler has zero terminal SNR (`rescale_betas_zero_snr=True`), where an epsilon prediction says"
            f" nothing about x_0: the scheduler's `prediction_type` ({prediction_type!r}) and `base_prediction_type`"
            f" ({base_prediction_type!r}) must both be 'v_prediction'."
        )
