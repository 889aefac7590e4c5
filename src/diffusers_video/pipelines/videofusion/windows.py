"""Long videos: overlapping frame windows of a video UNet and the weights that blend their predictions.

A video UNet's memory grows with the frames it sees at once. Running it over windows of a fixed number of frames, with
consecutive windows sharing some frames, keeps that memory constant; in the shared frames the predictions of the two
windows are crossfaded. VideoFusion's residual generator runs this way while one base noise, shared by every frame,
keeps the windows coherent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["frame_windows", "predict_over_windows", "window_blend_weights"]


def frame_windows(num_frames: int, window_size: int, window_overlap: int) -> list[tuple[int, int]]:
    """The `(start, end)` frame windows that cover `num_frames` frames.

    Windows hold `window_size` frames and start every `window_size - window_overlap` frames; the last one is moved
    back to end at the last frame (it then overlaps its neighbour by more). One window `(0, num_frames)` when
    `window_size >= num_frames`.

    Args:
        num_frames (`int`): Frames of the video, at least 1.
        window_size (`int`): Frames per window, at least 1.
        window_overlap (`int`): Frames shared by consecutive windows, in [0, `window_size`).
    """
    if window_size < 1 or not 0 <= window_overlap < window_size:
        raise ValueError(
            f"`window_size` must be at least 1 and `window_overlap` in [0, window_size) but they are {window_size} and"
            f" {window_overlap}."
        )
    if window_size >= num_frames:
        return [(0, num_frames)]
    stride = window_size - window_overlap
    starts = list(range(0, num_frames - window_size + 1, stride))
    if starts[-1] + window_size < num_frames:
        starts.append(num_frames - window_size)
    return [(start, start + window_size) for start in starts]


def window_blend_weights(windows: Sequence[tuple[int, int]], num_frames: int) -> torch.Tensor:
    """Per-window weights of every frame, `(num_windows, num_frames)`, that sum to 1 over the windows of each frame.

    In the frames two neighbouring windows share, the earlier window's weight ramps down linearly and the later one's
    ramps up (`(j + 1) / (n + 1)` over an overlap of `n` frames), so a prediction crossfades from window to window
    instead of jumping; a frame outside every overlap takes its window's prediction unchanged.
    """
    weights = torch.zeros(len(windows), num_frames, dtype=torch.float64)
    for index, (start, end) in enumerate(windows):
        window = torch.ones(end - start, dtype=torch.float64)
        if index > 0:  # ramp up over the frames shared with the previous window
            shared = max(0, windows[index - 1][1] - start)
            window[:shared] *= torch.arange(1, shared + 1, dtype=torch.float64) / (shared + 1)
        if index < len(windows) - 1:  # ramp down over the frames shared with the next window
            shared = max(0, end - windows[index + 1][0])
            window[end - start - shared :] *= torch.arange(shared, 0, -1, dtype=torch.float64) / (shared + 1)
        weights[index, start:end] = window
    return weights / weights.sum(dim=0, keepdim=True)


def predict_over_windows(
    model: Callable[[torch.Tensor], torch.Tensor],
    sample: torch.Tensor,
    windows: Sequence[tuple[int, int]],
    weights: torch.Tensor,
) -> torch.Tensor:
    """`model` run on every frame window of `sample`, its predictions blended with `weights`.

    With one window covering the video this is exactly `model(sample)`; otherwise the model never sees more frames than
    a window holds, and only the blended prediction spans all frames.

    Args:
        model (`Callable`): Maps a video `(N, C, W, H, W')` to a prediction `(N, C_out, W, H, W')` of the same frames.
        sample (`torch.Tensor`): The video, `(N, C, F, H, W')`.
        windows (`Sequence[tuple[int, int]]`): `(start, end)` windows (see [`frame_windows`]).
        weights (`torch.Tensor`): `(num_windows, F)` weights (see [`window_blend_weights`]).

    Returns:
        `torch.Tensor`: `(N, C_out, F, H, W')`.
    """
    if len(windows) == 1 and tuple(windows[0]) == (0, sample.shape[2]):
        return model(sample)
    prediction = None
    for (start, end), window_weights in zip(windows, weights):
        window_prediction = model(sample[:, :, start:end])  # (N, C_out, W, H, W')
        if prediction is None:
            batch, channels, _, height, width = window_prediction.shape
            prediction = window_prediction.new_zeros(
                batch, channels, sample.shape[2], height, width
            )  # (N, C_out, F, ..)
        frame_weights = window_weights[start:end].to(window_prediction).reshape(1, 1, -1, 1, 1)
        prediction[:, :, start:end] += frame_weights * window_prediction
    return prediction
