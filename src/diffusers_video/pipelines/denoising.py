"""The one denoising loop every pipeline of this package drives with a small `predict` of its own.

A pipeline prepares its inputs, calls `scheduler.set_timesteps`, draws its initial latents, and hands the loop a
function `predict(model_input, t, i, sample)` that returns the (guided) model output at step `i`. The loop does
everything else the way diffusers' Stable Diffusion pipeline does, so that diffusers' callbacks work unchanged:

- `pipe.interrupt` stops the loop (the remaining steps are skipped, as in diffusers);
- `scheduler.scale_model_input`, then `scheduler.step` with the keyword arguments its signature takes (`eta`,
  `generator`), as diffusers' `prepare_extra_step_kwargs` does;
- the current guidance weight on `pipe._guidance_scale` before each step, read back after the step's callback: a
  callback that changes it (diffusers' `SDCFGCutoffCallback` sets 0.0) sets the weight of every later step, and, as
  `do_classifier_free_guidance` is `guidance_scale > 1` in diffusers, a value of at most 1 switches guidance off
  (the conditional prediction alone, one pass per step);
- `callback_on_step_end(pipe, i, t, callback_kwargs)` with the tensors it asks for; the tensors of the dict it
  returns replace the loop's latents and the pipeline's `tensors` entries (which `predict` reads);
- the progress bar advanced once per step, counted by `scheduler.order` as diffusers does.

[`DenoisingPipelineMixin`] gives a pipeline the attributes diffusers' callbacks read: `guidance_scale`,
`_guidance_scale`, `do_classifier_free_guidance`, `num_timesteps`, `interrupt`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from ..guidance import GuidanceSchedule, scheduler_alpha_sigma
from ..schedulers.diffusion_math import prediction_to_x0_eps

__all__ = [
    "DenoisingPipelineMixin",
    "callback_tensor_inputs",
    "denoise",
    "extra_step_kwargs",
    "guidance_step_index",
    "replace_given_frames",
    "restart",
    "scheduler_restart_antithetic",
    "scheduler_restart_timestep",
    "sdedit_steps",
]

Predict = Callable[[torch.Tensor, torch.Tensor, int, torch.Tensor], torch.Tensor]


class DenoisingPipelineMixin:
    """The state of a running denoising loop, as diffusers' pipelines expose it to callbacks."""

    _guidance_scale: float = 1.0
    _num_timesteps: int = 0
    _interrupt: bool = False

    @property
    def guidance_scale(self) -> float:
        """The guidance weight of the current step (diffusers' convention: 1 is no guidance)."""
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        """Whether the current step is guided, i.e. needs the unconditional prediction (weight other than 1)."""
        return self._guidance_scale != 1.0

    @property
    def num_timesteps(self) -> int:
        """Timesteps of the loop being run (of the current stage, for a cascade)."""
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        """Set `pipe._interrupt = True` from a callback to skip the remaining steps."""
        return self._interrupt


def callback_tensor_inputs(callback_on_step_end: Any, requested: list[str] | None) -> list[str]:
    """The tensor names a callback is given: a diffusers `PipelineCallback`'s own `tensor_inputs`, else `requested`.

    Raises:
        TypeError: `requested` is a single string (it would read as a list of its characters).
    """
    if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
        return list(callback_on_step_end.tensor_inputs)
    if isinstance(requested, str):
        raise TypeError(f"`callback_on_step_end_tensor_inputs` must be a list of names but is {requested!r}.")
    return list(requested or [])


# Adapted from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion.StableDiffusionPipeline
# .prepare_extra_step_kwargs, as a function of the scheduler; `eta` is passed only when the pipeline has one
def extra_step_kwargs(
    scheduler: Any, generator: torch.Generator | list[torch.Generator] | None, eta: float | None = None
) -> dict[str, Any]:
    """The keyword arguments of `scheduler.step` that its signature takes: `eta` (DDIM's η; other schedulers
    ignore it) and `generator` (for the schedulers that draw noise)."""
    parameters = inspect.signature(scheduler.step).parameters
    kwargs = {}
    if eta is not None and "eta" in parameters:
        kwargs["eta"] = eta
    if "generator" in parameters:
        kwargs["generator"] = generator
    return kwargs


def sdedit_steps(num_inference_steps: int, strength: float) -> int:
    """How many of `num_inference_steps` an SDEdit start runs (Meng et al. 2022): the last `int(num_inference_steps *
    strength)`, at least one, as diffusers' image-to-image and video-to-video pipelines count them. The one convention
    of this package: the refiner's `strength` and VideoFusion's `window_strength` both start at step
    `num_inference_steps - sdedit_steps(...)` (times `scheduler.order` in `scheduler.timesteps`)."""
    return min(max(int(num_inference_steps * strength), 1), num_inference_steps)


def guidance_step_index(step_index: int, num_timesteps: int, num_inference_steps: int) -> int:
    """The guidance schedule's step for loop step `step_index`: the same for first-order schedulers; a scheduler that
    runs more timesteps than steps (Heun's `order=2`) maps its timesteps onto the schedule's steps in order."""
    if num_timesteps == num_inference_steps:
        return step_index
    return min(step_index * num_inference_steps // num_timesteps, num_inference_steps - 1)


def replace_given_frames(
    given: torch.Tensor,
    noise: torch.Tensor,
    add_noise: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
) -> Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]:
    """A `before_step(i, t, latents)` for `denoise` that sets the first frames of `latents` to `given` noised to `t`:
    the replacement method of Ho et al. 2022 ("Video Diffusion Models", Sec. 3.1), by which VideoFusion's extension
    windows continue the frames already made and I2VGen-XL's `replace_first_frame` keeps the image.

    Args:
        given (`torch.Tensor`): The clean latents of the given frames, `(B, C, G, h, w)`.
        noise (`torch.Tensor`): Their noise, `(B, C, G, h, w)`: the initial noise at those frames (before the
            scheduler's `init_noise_sigma`), so the given frames sit on the trajectory the latents started from.
        add_noise (`Callable`): The scheduler's `add_noise(original, noise, timesteps)`.
    """
    count = given.shape[2]

    def before_step(i: int, t: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        timesteps = t.reshape(1).expand(given.shape[0]) if isinstance(t, torch.Tensor) else t
        latents = latents.clone()
        latents[:, :, :count] = add_noise(given, noise, timesteps).to(latents.dtype)
        return latents

    return before_step


def denoise(
    pipe: DenoisingPipelineMixin,
    scheduler: Any,
    latents: torch.Tensor,
    predict: Predict,
    *,
    num_inference_steps: int,
    guidance: GuidanceSchedule | None = None,
    progress_bar: Any = None,
    generator: torch.Generator | list[torch.Generator] | None = None,
    eta: float | None = None,
    step_kwargs: Callable[[int, torch.Tensor], dict[str, Any]] | None = None,
    callback_on_step_end: Callable | None = None,
    callback_on_step_end_tensor_inputs: list[str] | None = None,
    tensors: MutableMapping[str, torch.Tensor] | None = None,
    before_step: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    start_step: int = 0,
) -> torch.Tensor:
    """Runs `scheduler.timesteps` (set by the caller) from `latents` and returns the final latents.

    Args:
        pipe (`DenoisingPipelineMixin`): The pipeline: its `_interrupt`, `_guidance_scale` and `_num_timesteps` are
            set here, and it is passed to the callback.
        scheduler: A diffusers scheduler whose `set_timesteps` was called.
        latents (`torch.Tensor`): The initial noisy latents, already scaled by `init_noise_sigma`.
        predict (`Callable`): `predict(model_input, t, i, sample)`: the model output at step `i` (0-based) and
            timestep `t`, from `model_input = scheduler.scale_model_input(sample, t)`; it reads the current guidance
            weight as `pipe.guidance_scale` and the tensors it needs from `tensors`.
        num_inference_steps (`int`): The steps asked for (the guidance schedule's step count).
        guidance (`GuidanceSchedule`, *optional*): The weight of each step (`pipe.guidance_scale`); None is weight 1.
        progress_bar: A `tqdm`-like bar (`pipe.progress_bar(total=...)`), or None.
        generator, eta: Passed to `scheduler.step` when its signature takes them (see [`extra_step_kwargs`]).
        step_kwargs (`Callable`, *optional*): `step_kwargs(i, latents)` -> more keyword arguments of this step's
            `scheduler.step` (e.g. VideoFusion's decomposed `variance_noise`; a scheduler is then not also given the
            generator).
        callback_on_step_end (`Callable`, *optional*): Called after each step as
            `callback_on_step_end(pipe, i, t, callback_kwargs)`; returns a dict of tensors to replace.
        callback_on_step_end_tensor_inputs (`list[str]`, *optional*): Names the callback receives: "latents" and
            keys of `tensors`.
        tensors (`MutableMapping`, *optional*): The pipeline's other tensors a callback may see and replace (e.g.
            `prompt_embeds`); updated in place.
        before_step (`Callable`, *optional*): `before_step(i, t, latents)` -> the latents step `i` starts from (e.g.
            frames given by an earlier window, noised to `t`); called before `scale_model_input`.
        start_step (`int`, defaults to 0): Skip the first `start_step` timesteps (SDEdit: `latents` are already noised
            to `scheduler.timesteps[start_step]`); `i` counts from `start_step`, the index into `scheduler.timesteps`.

    Returns:
        `torch.Tensor`: The denoised latents.
    """
    timesteps = scheduler.timesteps[start_step:]
    if start_step and hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start_step)  # as diffusers' image-to-image pipelines start a scheduler late
    tensors = {} if tensors is None else tensors
    names = list(callback_on_step_end_tensor_inputs or [])
    pipe._num_timesteps = len(timesteps)
    base_kwargs = extra_step_kwargs(scheduler, generator, eta)
    # diffusers counts a step when the scheduler's `order` model calls that make it are done
    num_timesteps = len(scheduler.timesteps)
    num_warmup_steps = num_timesteps - num_inference_steps * scheduler.order
    override: float | None = None  # a weight set by a callback (e.g. SDCFGCutoffCallback) for the remaining steps

    for i, t in enumerate(timesteps, start=start_step):
        if pipe.interrupt:
            continue
        if override is not None:
            weight = override
        elif guidance is not None:
            weight = guidance.scale(guidance_step_index(i, num_timesteps, num_inference_steps), num_inference_steps)
        else:
            weight = 1.0
        pipe._guidance_scale = weight

        if before_step is not None:
            latents = before_step(i, t, latents)
        model_input = scheduler.scale_model_input(latents, t)
        model_output = predict(model_input, t, i, latents)

        kwargs = dict(base_kwargs)
        if step_kwargs is not None:
            more = step_kwargs(i, latents)
            if "variance_noise" in more:
                kwargs.pop("generator", None)  # the noise is given: the scheduler must not draw its own
            kwargs.update(more)
        latents = scheduler.step(model_output, t, latents, **kwargs, return_dict=False)[0]

        if callback_on_step_end is not None:
            current: Mapping[str, torch.Tensor] = {"latents": latents, **tensors}
            callback_kwargs = {name: current[name] for name in names}
            outputs = callback_on_step_end(pipe, i, t, callback_kwargs)
            latents = outputs.pop("latents", latents)
            for name in tensors:
                tensors[name] = outputs.pop(name, tensors[name])
            if pipe._guidance_scale != weight:  # the callback changed the weight: diffusers' CFG cut-off
                override = pipe._guidance_scale if pipe._guidance_scale > 1.0 else 1.0

        if progress_bar is not None and (
            i == num_timesteps - 1 or ((i + 1) > num_warmup_steps and (i + 1) % scheduler.order == 0)
        ):
            progress_bar.update()
    return latents


def scheduler_restart_timestep(scheduler: Any, value: float | None) -> float | None:
    """The timestep a stage restarts its finished sample at (see [`restart`]): `value` when given, else the
    scheduler's `restart_timestep` config (a `VDistilledScheduler` of a few-step student may record one); None when
    neither is set or it is 0 (a restart at the clean end changes nothing)."""
    if value is None:
        value = getattr(scheduler, "config", {}).get("restart_timestep")
    return None if value is None or float(value) == 0.0 else float(value)


def scheduler_restart_antithetic(scheduler: Any, value: bool | None) -> bool:
    """Whether a stage's restart (see [`restart`]) averages an antithetic pair: `value` when given, else the
    scheduler's `restart_antithetic` config, else False."""
    if value is None:
        value = getattr(scheduler, "config", {}).get("restart_antithetic")
    return bool(value)


def restart(
    scheduler: Any,
    sample: torch.Tensor,
    predict: Predict,
    timestep: float,
    noise: torch.Tensor,
    antithetic: bool = False,
) -> torch.Tensor:
    """Restart sampling's last jump (Xu et al. 2023, https://huggingface.co/papers/2306.14878): the finished `sample`
    noised back to `timestep` with fresh `noise`, `x_t = alpha_t sample + sigma_t noise`, and the model's clean
    prediction there. One model call, at the guidance weight `pipe.guidance_scale` holds.

    A few-step sampler ends on the clean prediction of its last step, made at a high noise level; where that
    prediction carries high-frequency errors (the grain of a progressively distilled student), a prediction at a low
    level, from an input the model was trained on, removes them while keeping what the sample shows.

    Args:
        scheduler: The stage's scheduler (its `alpha_sigma` or `alphas_cumprod`, `scale_model_input` and
            `config.prediction_type`).
        sample (`torch.Tensor`): The finished sample `(B, C, F, H, W)`.
        predict (`Callable`): The stage's `predict(model_input, t, i, sample)` (`i` is -1: no step of the schedule).
        timestep (`float`): The timestep to restart at, in the scheduler's units.
        noise (`torch.Tensor`): Standard normal noise of `sample`'s shape.
        antithetic (`bool`, defaults to `False`): Average the clean predictions from `noise` and from `-noise` (two
            model calls). The part of the prediction's error that is odd in the noise cancels, where a second
            independent draw would only average it down (see docs/imagen_video.md for the demo's figures).

    Returns:
        `torch.Tensor`: The clean prediction, in `sample`'s dtype.
    """
    alpha, sigma = scheduler_alpha_sigma(scheduler, timestep)
    alpha, sigma = alpha.to(sample.device, torch.float32), sigma.to(sample.device, torch.float32)
    t = torch.tensor(timestep, dtype=scheduler.timesteps.dtype, device=sample.device)
    x0s = []
    for signed in (noise, -noise) if antithetic else (noise,):
        noisy = (alpha * sample.float() + sigma * signed.float()).to(sample.dtype)
        output = predict(scheduler.scale_model_input(noisy, t), t, -1, noisy)
        x0, _ = prediction_to_x0_eps(output.float(), noisy.float(), alpha, sigma, scheduler.config.prediction_type)
        x0s.append(x0)
    return (sum(x0s) / len(x0s)).to(sample.dtype)
