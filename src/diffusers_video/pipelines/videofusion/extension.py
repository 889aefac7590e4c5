"""Long videos that continue the motion: each window of frames generated after the previous one, from its last frames.

A video model trained on clips of `W` frames makes a longer video window by window. Blending windows denoised side by
side (see `windows.py`) keeps memory constant but does not keep the motion: with VideoFusion's one base noise every
window's key frame is the same image, so a moving shape jumps back at each window. Extension instead generates the
first window as a short video and every later window with its first `overlap` frames *given*: the frames the previous
windows already made. At every denoising step the given frames are replaced by themselves noised to the step's level
(the replacement method of Ho et al. 2022, "Video Diffusion Models", Sec. 3.1), with the window's own decomposed
noise, so the model denoises the new frames in the context of the motion so far. With an overlap beyond the middle of
the window the key frame, the one the image model reads, is a given frame, so the window's base noise describes the
video already made.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..denoising import sdedit_steps
from .windows import frame_windows

__all__ = [
    "ExtensionWindow",
    "default_extension_overlap",
    "extension_windows",
    "start_from_given_frames",
]


def default_extension_overlap(window_size: int) -> int:
    """`window_size // 2 + 1` given frames per window (the key frame `window_size // 2` among them), at most
    `window_size - 1`."""
    return max(0, min(window_size // 2 + 1, window_size - 1))


class ExtensionWindow(NamedTuple):
    """`(start, end, given)`: a window's frames `[start, end)`, of which the first `given` come from earlier windows."""

    start: int
    end: int
    given: int


def extension_windows(num_frames: int, window_size: int, overlap: int) -> list[ExtensionWindow]:
    """The windows that make `num_frames` frames by extension, in order.

    Windows start every `window_size - overlap` frames; the last one ends at the last frame, so it may be given more
    than `overlap` frames. One window `(0, num_frames, 0)` when the video fits in one.
    """
    windows = frame_windows(num_frames, window_size, overlap)
    plan, made = [], 0
    for start, end in windows:
        plan.append(ExtensionWindow(start, end, made - start if made else 0))
        made = end
    return plan


def start_from_given_frames(
    scheduler, given: torch.Tensor, noise: torch.Tensor, strength: float, num_inference_steps: int
) -> tuple[int, torch.Tensor]:
    """`(start_step, latents)` of a window that runs the last `strength` of the schedule (SDEdit, Meng et al. 2022).

    With `strength` 1 the window starts from its noise at the first step. Below 1 it starts at step
    `num_inference_steps - sdedit_steps(num_inference_steps, strength)` (the refiner's count) from the given frames followed by copies of the last
    one, noised with the window's noise to that step's level: the new frames inherit the background and the shape,
    and the remaining steps move the shape on.

    Args:
        scheduler: The window's scheduler, after `set_timesteps(num_inference_steps)`.
        given (`torch.Tensor`): The clean latents of the given frames, `(B, C, G, h, w)`.
        noise (`torch.Tensor`): The window's noise, `(B, C, W, h, w)`, `W > G`.
        strength (`float`): In (0, 1].
        num_inference_steps (`int`): The steps of the full schedule.
    """
    start_step = num_inference_steps - sdedit_steps(num_inference_steps, strength)
    if start_step <= 0:
        return 0, noise * scheduler.init_noise_sigma
    new = noise.shape[2] - given.shape[2]
    initial = torch.cat([given, given[:, :, -1:].expand(-1, -1, new, -1, -1)], dim=2).to(noise.dtype)
    start_index = start_step * getattr(scheduler, "order", 1)  # a second-order scheduler lists two per step
    timestep = scheduler.timesteps[start_index]
    return start_index, scheduler.add_noise(initial, noise, timestep.reshape(1).expand(noise.shape[0]))
