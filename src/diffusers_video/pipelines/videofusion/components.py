"""The components of a VideoFusion pipeline, checked together before anything runs."""

from __future__ import annotations

from .schedulers import check_scheduler

BASE_PREDICTION_TYPES = ("epsilon", "v_prediction")
"""What the base generator may predict."""

KEY_FRAME_ESTIMATES = ("base", "residual")
"""Where the key frame's `x_0` comes from: the base generator alone, or the residual generator, which sees every frame."""

__all__ = ["BASE_PREDICTION_TYPES", "KEY_FRAME_ESTIMATES", "check_components"]


def check_components(
    vae, text_encoder, residual_unet, scheduler, base_unet, base_prediction_type, key_frame_estimate="base"
) -> None:
    """Raises a `ValueError` (a `TypeError` for a wrong class) naming both values when the components of a
    [`VideoFusionPipeline`] cannot work together: latent channels, text widths, prediction types, zero terminal SNR,
    the key frame's estimate."""
    if base_prediction_type not in BASE_PREDICTION_TYPES:
        raise ValueError(
            f"`base_prediction_type` must be one of {BASE_PREDICTION_TYPES} but is {base_prediction_type!r}."
        )
    if key_frame_estimate not in KEY_FRAME_ESTIMATES:
        raise ValueError(f"`key_frame_estimate` must be one of {KEY_FRAME_ESTIMATES} but is {key_frame_estimate!r}.")
    if scheduler is not None:
        check_scheduler(scheduler)
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
    if key_frame_estimate == "residual" and prediction_type != "v_prediction":
        raise ValueError(
            "`key_frame_estimate='residual'` reads the key frame's x_0 from the residual generator's velocity, so the"
            f" scheduler's `prediction_type` must be 'v_prediction' but is {prediction_type!r}."
        )
    if scheduler.config.get("rescale_betas_zero_snr") and "epsilon" in (prediction_type, base_prediction_type):
        raise ValueError(
            "The scheduler has zero terminal SNR (`rescale_betas_zero_snr=True`), where an epsilon prediction says"
            f" nothing about x_0: the scheduler's `prediction_type` ({prediction_type!r}) and `base_prediction_type`"
            f" ({base_prediction_type!r}) must both be 'v_prediction'."
        )
