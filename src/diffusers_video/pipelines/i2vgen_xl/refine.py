"""The refinement stage shared by `VideoRefinerPipeline` and `I2VGenXLCascadePipeline`: SDEdit on video latents.

The video is encoded (or given as latents), noised to a fraction `strength` of the schedule, and denoised by a
text-conditioned video UNet over the remaining steps (Meng et al. 2022, SDEdit; I2VGen-XL's second stage; diffusers'
`VideoToVideoSDPipeline`). The noise is either fresh (drawn from the generator) or found by DDIM inversion of the
video's latents with the UNet itself (VGen's SR600 refiner), which keeps more of the input.

Everything the scheduler says holds: its `prediction_type` (v-prediction), `rescale_betas_zero_snr` and
`timestep_spacing` ("trailing" starts SDEdit at the exact noise level of `strength`). Random draws follow diffusers'
`VideoToVideoSDPipeline`, so the same generator gives the same frames: the VAE posterior is sampled first, then the
noise, both over the frames of all videos in order (frame-major, `(B * F, C, h, w)`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor

from ...guidance import GuidanceSchedule, apply_guidance, scheduler_alpha_sigma
from ...schedulers.diffusion_math import prediction_to_x0_eps
from ..checks import is_number
from ..denoising import denoise, sdedit_steps

__all__ = [
    "NOISE_MODES",
    "LastSteps",
    "TimestepWindow",
    "check_guidance_rescale",
    "check_noise_mode",
    "check_strength",
    "ddim_invert",
    "encode_video",
    "frame_major_noise",
    "preprocess_video",
    "refine_latents",
    "resize_video",
    "sdedit_timesteps",
    "step_noise_kwargs",
]

NOISE_MODES = ("fresh", "ddim_inversion")


def check_strength(strength: Any, name: str = "strength") -> None:
    """Raises a `ValueError` unless `strength` is a number in (0, 1]."""
    if not is_number(strength) or not 0 < strength <= 1:
        raise ValueError(f"`{name}` must be a number in (0, 1] but is {strength!r}.")


def check_guidance_rescale(guidance_rescale: Any, name: str = "guidance_rescale") -> None:
    """Raises a `ValueError` unless `guidance_rescale` is a number in [0, 1]."""
    if not is_number(guidance_rescale) or not 0 <= guidance_rescale <= 1:
        raise ValueError(f"`{name}` must be a number in [0, 1] but is {guidance_rescale!r}.")


def check_noise_mode(noise_mode: Any, name: str = "noise_mode") -> None:
    """Raises a `ValueError` unless `noise_mode` is "fresh" or "ddim_inversion"."""
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"`{name}` must be one of {NOISE_MODES} but is {noise_mode!r}.")


def _video_batch(video: Any) -> bool:
    """Whether a list `video` holds several videos (lists of frames, or 4D tensors / arrays)."""
    return (
        isinstance(video, list)
        and len(video) > 0
        and isinstance(video[0], (list, torch.Tensor, np.ndarray))
        and (isinstance(video[0], list) or video[0].ndim == 4)
    )


def preprocess_video(video: Any, latent_channels: int) -> tuple[torch.Tensor, bool]:
    """The `video` argument as a `(B, C, F, H, W)` tensor, and whether it already holds latents.

    Frames are what diffusers' `VideoProcessor.preprocess_video` takes (a list of PIL images or of `(H, W, 3)` arrays
    for one video, a list of such lists, a `(F, H, W, 3)` / `(B, F, H, W, 3)` array, a `(F, 3, H, W)` /
    `(B, F, 3, H, W)` tensor, values in [0, 1]) and come back in [-1, 1]. A 5D tensor with `latent_channels` channels
    is taken as latents `(B, C, F, h, w)`, as diffusers does.

    Raises:
        ValueError, TypeError: naming `video` and what it is.
    """
    if video is None:
        raise ValueError("`video` must be given (frames or latents) but is None.")
    if isinstance(video, torch.Tensor) and video.ndim == 5 and video.shape[1] == latent_channels:
        if not video.is_floating_point():
            raise TypeError(f"`video` latents must be floats but have dtype {video.dtype}.")
        return video, True
    items = video if isinstance(video, list) else [video]
    if not items:
        raise ValueError("`video` is an empty list: pass at least one frame.")
    for item in (frame for entry in items for frame in (entry if isinstance(entry, list) else [entry])):
        if not isinstance(item, (PIL.Image.Image, np.ndarray, torch.Tensor)):
            raise TypeError(
                f"`video` must hold PIL images, numpy arrays or torch tensors but holds a {type(item).__name__}."
            )
        if isinstance(item, (np.ndarray, torch.Tensor)):
            values = torch.as_tensor(item)
            if not values.is_floating_point():
                raise TypeError(f"`video` frames must hold floats in [0, 1] but have dtype {values.dtype}.")
            if values.numel() and (not bool(torch.isfinite(values).all()) or values.min() < 0 or values.max() > 1):
                raise ValueError(
                    f"`video` frames must hold values in [0, 1] but hold values in [{float(values.min())}, "
                    f"{float(values.max())}]."
                )
    try:
        pixels = VideoProcessor(do_resize=False).preprocess_video(video)  # (B, 3, F, H, W) in [-1, 1]
    except (ValueError, TypeError, IndexError, AttributeError) as error:
        raise ValueError(f"`video` could not be read as frames: {error}") from error
    if pixels.ndim != 5 or pixels.shape[1] != 3 or 0 in pixels.shape:
        raise ValueError(f"`video` must be RGB frames but reads as a tensor of shape {tuple(pixels.shape)}.")
    return pixels, False


def resize_video(video: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize of every frame of `(B, C, F, H, W)` to `height` x `width` (a no-op at that size)."""
    batch, channels, num_frames = video.shape[:3]
    if tuple(video.shape[-2:]) == (height, width):
        return video
    frames = video.permute(0, 2, 1, 3, 4).reshape(batch * num_frames, channels, *video.shape[-2:])
    frames = F.interpolate(frames, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return frames.reshape(batch, num_frames, channels, height, width).permute(0, 2, 1, 3, 4)


def _first_generator(generator: Any) -> torch.Generator | None:
    return generator[0] if isinstance(generator, list) else generator


def encode_video(
    vae: Any,
    video: torch.Tensor,
    generator: torch.Generator | list[torch.Generator] | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """VAE latents of `(B, 3, F, H, W)` frames in [-1, 1]: `(B, C, F, h, w)`, posterior samples times the scaling.

    The frames are encoded `chunk_size` at a time (all at once when None); the posterior is sampled once for all of
    them, frame-major, so the result does not depend on the chunking (with a list of generators, video `i` is sampled
    with `generator[i]`).
    """
    batch, channels, num_frames, height, width = video.shape
    frames = video.permute(0, 2, 1, 3, 4).reshape(batch * num_frames, channels, height, width)  # (B*F, 3, H, W)
    chunk = frames.shape[0] if chunk_size is None else chunk_size
    parameters = torch.cat(
        [vae.encode(frames[i : i + chunk]).latent_dist.parameters for i in range(0, frames.shape[0], chunk)]
    )  # (B*F, 2C, h, w)
    posterior = DiagonalGaussianDistribution(parameters)
    if isinstance(generator, list):
        per_video = posterior.mean.shape[0] // len(generator)
        noise = torch.cat(
            [
                randn_tensor(
                    (per_video, *posterior.mean.shape[1:]), generator=g, device=frames.device, dtype=frames.dtype
                )
                for g in generator
            ]
        )
    else:
        noise = randn_tensor(posterior.mean.shape, generator=generator, device=frames.device, dtype=frames.dtype)
    latents = (posterior.mean + posterior.std * noise) * vae.config.scaling_factor  # (B*F, C, h, w)
    latents = latents.reshape(batch, num_frames, *latents.shape[1:]).permute(0, 2, 1, 3, 4)  # (B, C, F, h, w)
    return latents.contiguous()  # a permuted layout would reach the UNet as channels-last frames


def frame_major_noise(
    shape: tuple[int, ...],
    generator: torch.Generator | list[torch.Generator] | None,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Gaussian noise of shape `(B, C, F, h, w)` drawn frame by frame, `(B * F, C, h, w)`, as diffusers' video
    pipelines draw it when they reshape their latents; one generator per video for a list."""
    batch, channels, num_frames, height, width = shape
    if isinstance(generator, list):
        noise = torch.cat(
            [
                randn_tensor((num_frames, channels, height, width), generator=g, device=device, dtype=dtype)
                for g in generator
            ]
        )
    else:
        noise = randn_tensor(
            (batch * num_frames, channels, height, width), generator=generator, device=device, dtype=dtype
        )
    return noise.reshape(batch, num_frames, channels, height, width).permute(0, 2, 1, 3, 4).contiguous()


def sdedit_timesteps(scheduler: Any, num_inference_steps: int, strength: float) -> tuple[torch.Tensor, int]:
    """The timesteps SDEdit runs, the last `sdedit_steps(num_inference_steps, strength)` steps of the schedule, as
    diffusers' image-to-image pipelines take them; sets the scheduler's begin index where it has one.

    The refiner walks them through a `TimestepWindow` rather than `denoise(start_step=...)` because, as in diffusers'
    `VideoToVideoSDPipeline`, its callbacks and guidance see the SDEdit steps counted from 0.

    Returns:
        `tuple[torch.Tensor, int]`: The timesteps (`scheduler.order` per step) and the number of steps.
    """
    steps = sdedit_steps(num_inference_steps, strength)
    start = (num_inference_steps - steps) * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    return scheduler.timesteps[start:], steps


class TimestepWindow:
    """A view of a scheduler whose `timesteps` are only some of those it set (SDEdit's last steps); everything else
    (`step`, `scale_model_input`, `order`, `config`, ...) is the scheduler's own, so its state advances as usual."""

    def __init__(self, scheduler: Any, timesteps: torch.Tensor):
        self._scheduler = scheduler
        self.timesteps = timesteps

    def __getattr__(self, name: str) -> Any:
        return getattr(self._scheduler, name)


def step_noise_kwargs(scheduler: Any, eta: float, generator: Any) -> Callable[[int, torch.Tensor], dict] | None:
    """`step_kwargs` for `denoise` that give DDIM's `eta > 0` step noise frame-major (diffusers' video pipelines step
    `(B * F, C, h, w)` latents, so DDIM draws it in that order); None when the step adds no noise."""
    parameters = inspect.signature(scheduler.step).parameters
    if not (eta and eta > 0 and "eta" in parameters and "variance_noise" in parameters):
        return None

    def step_kwargs(i: int, sample: torch.Tensor) -> dict[str, Any]:
        return {"variance_noise": frame_major_noise(tuple(sample.shape), generator, sample.device, sample.dtype)}

    return step_kwargs


@torch.no_grad()
def ddim_invert(
    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler: Any,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
) -> torch.Tensor:
    """Deterministic DDIM inversion of clean latents up to the first (noisiest) of `timesteps`.

    The timesteps are walked from the least noisy up. At each `t` the model reads the sample of the level below (the
    clean latents first, `alpha = 1`, `sigma = 0`) and its prediction, read at that level, gives `(x_0, eps)` (any
    parameterisation, see `prediction_to_x0_eps`); the sample at `t` is `alpha_t x_0 + sigma_t eps` (DDIM, eq. 12 of
    Song et al. 2021 with eta = 0, run from less to more noise). A model that predicts the true noise of the latents
    returns `alpha_t x_0 + sigma_t eps` exactly, which DDIM sampling maps back onto the latents.

    Args:
        predict (`Callable`): `predict(sample, t)` -> the model output at timestep `t`.
        scheduler: A scheduler with `alphas_cumprod` (or `alpha_sigma`) and `config.prediction_type` ("epsilon" or
            "v_prediction").
        latents (`torch.Tensor`): Clean latents `(B, C, F, h, w)`.
        timesteps (`torch.Tensor`): The denoising timesteps, noisiest first.

    Returns:
        `torch.Tensor`: The latents at `timesteps[0]`.
    """
    prediction_type = scheduler.config.prediction_type
    if prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(
            f"DDIM inversion needs an epsilon or v-prediction scheduler but `prediction_type` is {prediction_type!r}."
        )
    alpha_in = torch.ones((), device=latents.device, dtype=latents.dtype)
    sigma_in = torch.zeros((), device=latents.device, dtype=latents.dtype)
    sample = latents
    for t in reversed(list(timesteps)):
        alpha, sigma = (value.to(latents.device, latents.dtype) for value in scheduler_alpha_sigma(scheduler, t))
        x0, eps = prediction_to_x0_eps(predict(sample, t), sample, alpha_in, sigma_in, prediction_type)
        sample = alpha * x0 + sigma * eps  # (B, C, F, h, w) at level t
        alpha_in, sigma_in = alpha, sigma
    return sample


class LastSteps(GuidanceSchedule):
    """The guidance of the last steps of a schedule: SDEdit runs steps `skipped ... n - 1` of `guidance`'s `n`, so its
    step `i` of `n - skipped` has the weight of step `i + skipped` (a constant weight is unchanged)."""

    def __init__(self, guidance: GuidanceSchedule, skipped: int):
        super().__init__(guidance.guidance_rescale)
        self.guidance, self.skipped = guidance, skipped

    def scale(self, step_index: int, num_steps: int) -> float:
        return self.guidance.scale(step_index + self.skipped, num_steps + self.skipped)


def refine_latents(
    pipe: Any,
    unet: Any,
    scheduler: Any,
    video_latents: torch.Tensor | None,
    tensors: dict[str, torch.Tensor | None],
    *,
    strength: float,
    num_inference_steps: int,
    guidance: Any,
    guidance_rescale: float,
    noise_mode: str,
    generator: torch.Generator | list[torch.Generator] | None,
    eta: float,
    cross_attention_kwargs: dict[str, Any] | None,
    progress_bar: Any,
    callback_on_step_end: Callable | None,
    callback_on_step_end_tensor_inputs: list[str],
    latents: torch.Tensor | None = None,
) -> torch.Tensor:
    """SDEdit: noise clean `video_latents` to the first of the last `strength` part of the schedule (fresh noise or
    DDIM inversion), or start from the given noisy `latents`, and denoise them with `unet` over the remaining steps.

    Args:
        pipe (`DenoisingPipelineMixin`): The pipeline (its guidance state, interrupt flag and callbacks).
        unet (`UNet3DModel`): The text-conditioned video UNet.
        scheduler: Any diffusers scheduler; `set_timesteps` is called here.
        video_latents (`torch.Tensor`): Clean latents `(B, C, F, h, w)`, None when `latents` is given.
        tensors (`dict`): "prompt_embeds" and "negative_prompt_embeds" (None without guidance), which a callback may
            replace.
        strength, num_inference_steps, guidance_rescale, noise_mode, generator, eta, cross_attention_kwargs,
            callback_on_step_end, callback_on_step_end_tensor_inputs: As in `VideoRefinerPipeline.__call__`.
        guidance (`GuidanceSchedule`): The guidance weights of the full schedule's steps.
        progress_bar: A `tqdm`-like bar of the SDEdit steps, or None.
        latents (`torch.Tensor`, *optional*): Noisy latents at the first SDEdit timestep.

    Returns:
        `torch.Tensor`: The refined latents.
    """
    device = tensors["prompt_embeds"].device
    scheduler.set_timesteps(num_inference_steps, device=device)
    timesteps, steps = sdedit_timesteps(scheduler, num_inference_steps, strength)
    skipped = num_inference_steps - steps
    window = TimestepWindow(scheduler, timesteps)

    def model_output(sample: torch.Tensor, t: torch.Tensor, guided: bool) -> torch.Tensor:
        text = tensors["prompt_embeds"]
        if guided:
            sample, text = torch.cat([sample] * 2), torch.cat([tensors["negative_prompt_embeds"], text])
        return unet(sample, t, encoder_hidden_states=text, cross_attention_kwargs=cross_attention_kwargs).sample

    if latents is None:
        start = timesteps[:1].repeat(video_latents.shape[0])
        if noise_mode == "fresh":
            noise = frame_major_noise(tuple(video_latents.shape), generator, device, video_latents.dtype)
            latents = scheduler.add_noise(video_latents, noise, start)
        else:  # the text-conditional prediction: guided inversion drifts (Mokady et al. 2023)
            latents = ddim_invert(lambda x, t: model_output(x, t, False), scheduler, video_latents, timesteps)

    def predict(model_input: torch.Tensor, t: torch.Tensor, i: int, sample: torch.Tensor) -> torch.Tensor:
        guided = pipe.do_classifier_free_guidance
        output = model_output(model_input, t, guided)
        if guided:
            uncond, cond = output.chunk(2)
            output = apply_guidance(uncond, cond, pipe.guidance_scale, guidance_rescale)
        return output

    return denoise(
        pipe, window, latents, predict, num_inference_steps=steps, guidance=LastSteps(guidance, skipped),
        progress_bar=progress_bar,
        generator=generator, eta=eta, step_kwargs=step_noise_kwargs(scheduler, eta, generator),
        callback_on_step_end=callback_on_step_end,
        callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs, tensors=tensors,
    )  # fmt: skip
