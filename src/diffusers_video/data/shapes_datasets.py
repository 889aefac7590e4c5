"""Training datasets of the moving-shapes world (`ShapesWorld` in `shapes.py`): a fixed-size map-style dataset whose
latents can be cached, and an endless iterable one."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..pipelines.checks import check_int_at_least
from .shapes import ShapesSample, ShapesWorld, image_to_tensor, video_to_tensor

__all__ = ["IMAGE_FRAMES", "MODES", "ShapesDataset", "ShapesIterableDataset"]

MODES = ("video", "image", "image_to_video")
IMAGE_FRAMES = ("still", "first")
"""What a still image of mode "image" is: a frame at the scene's `still_frame` time with its still caption, or the
first frame with the full caption (see `ShapesDataset`)."""


def _make_item(sample: ShapesSample, mode: str, image_frame: str = "still") -> dict:
    if mode == "image" and image_frame == "first":
        return {"image": image_to_tensor(sample.first_frame), "caption": sample.caption}
    if mode == "image":
        return {"image": image_to_tensor(sample.image), "caption": sample.still_caption}
    item = {"video": video_to_tensor(sample.video), "caption": sample.caption}
    if mode == "image_to_video":
        item["first_frame"] = image_to_tensor(sample.first_frame)
    return item


class ShapesDataset(torch.utils.data.Dataset):
    """A fixed-size map-style dataset of the moving-shapes world for training.

    Item `i` is the scene with seed `(seed, i)`, so a dataset is reproducible and two datasets with different
    seeds do not share clips. Items are dicts:

    - mode "video": `video` `(3, frames, height, width)` in [-1, 1], `caption`.
    - mode "image": `image` `(3, height, width)` in [-1, 1] (one frame of the clip), `caption` (no motion words),
      for joint image-video training; with `image_frame="first"`, the first frame and the full caption.
    - mode "image_to_video": as "video" plus `first_frame` `(3, height, width)`.

    After `cache_latents(vae)` items also carry `latents`: `(latent_channels, frames, h, w)` (or
    `(latent_channels, h, w)` in mode "image"), already multiplied by the VAE's scaling factor.

    Args:
        num_samples (`int`, defaults to 1024): dataset length.
        world (`ShapesWorld`, *optional*): the generator; defaults to `ShapesWorld(split="train")` (32x32, 8
            frames, training captions only).
        seed (`int`, defaults to 0): base seed.
        mode (`str`, defaults to "video"): "video", "image" or "image_to_video".
        image_frame (`str`, defaults to "still"): Mode "image": "still" (a frame at the scene's `still_frame` time,
            the still caption) or "first" (the first frame, the full caption: where a shape starts for its motion).
    """

    def __init__(
        self,
        num_samples: int = 1024,
        world: ShapesWorld | None = None,
        seed: int = 0,
        mode: str = "video",
        image_frame: str = "still",
    ):
        check_int_at_least(num_samples, "num_samples", 1)
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}, but is {mode!r}.")
        if image_frame not in IMAGE_FRAMES:
            raise ValueError(f"`image_frame` must be one of {IMAGE_FRAMES}, but is {image_frame!r}.")
        self.image_frame = image_frame
        self.num_samples = int(num_samples)
        self.world = ShapesWorld(split="train") if world is None else world
        self.seed = int(seed)
        self.mode = mode
        self.latents: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.num_samples

    def sample(self, index: int) -> ShapesSample:
        """The rendered `ShapesSample` behind item `index`."""
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"index {index} is out of range for a dataset of {self.num_samples} samples.")
        return self.world.sample((self.seed, index % self.num_samples))

    def __getitem__(self, index: int) -> dict:
        item = _make_item(self.sample(index), self.mode, self.image_frame)
        if self.latents is not None:
            item["latents"] = self.latents[index]
        return item

    @torch.no_grad()
    def cache_latents(
        self, vae, batch_size: int = 16, device: str | torch.device | None = None, sample_posterior: bool = False
    ) -> torch.Tensor:
        """Encode every item once with a VAE and keep the scaled latents (on the CPU) for training.

        Frames are encoded independently, as 2D images, which is how Stable-Diffusion-style VAEs (and
        `AutoencoderKLVideo`, whose temporal layers are in the decoder) are used for video latents.

        Args:
            vae: an `AutoencoderKL`-like module: `vae.encode(x).latent_dist` with `.mode()` / `.mean` and
                `.sample()`, and `vae.config.scaling_factor` (and optionally `shift_factor`).
            batch_size (`int`, defaults to 16): frames per encoder call.
            device (`str | torch.device`, *optional*): where to run the VAE; defaults to its current device.
            sample_posterior (`bool`, defaults to `False`): cache a posterior sample instead of its mode.

        Returns:
            `torch.Tensor`: the cached latents, `(num_samples, latent_channels, frames, h, w)` (no frame axis in
            mode "image").
        """
        check_int_at_least(batch_size, "batch_size", 1)
        config = getattr(vae, "config", None)
        scaling = getattr(config, "scaling_factor", None)
        if scaling is None or not hasattr(vae, "encode"):
            raise TypeError(
                f"`vae` must have `encode(x).latent_dist` and `config.scaling_factor`, but is {type(vae).__name__}."
            )
        shift = getattr(config, "shift_factor", None) or 0.0
        parameter = next(iter(vae.parameters()), None)
        device = torch.device(device) if device is not None else (parameter.device if parameter is not None else "cpu")
        dtype = parameter.dtype if parameter is not None else torch.float32
        frames = []
        for index in range(self.num_samples):
            sample = self.sample(index)
            frames.append(sample.video if self.mode != "image" else sample.image[None])  # (T, H, W, 3)
        pixels = torch.from_numpy(np.stack(frames))  # (N, T, H, W, 3)
        n, t = pixels.shape[:2]
        pixels = pixels.reshape(n * t, *pixels.shape[2:]).permute(0, 3, 1, 2) * 2.0 - 1.0  # (N*T, 3, H, W)
        encoded = []
        for start in range(0, n * t, batch_size):
            batch = pixels[start : start + batch_size].to(device=device, dtype=dtype)
            dist = vae.encode(batch).latent_dist
            z = dist.sample() if sample_posterior else (dist.mode() if hasattr(dist, "mode") else dist.mean)
            encoded.append(((z - shift) * scaling).float().cpu())
        latents = torch.cat(encoded)  # (N*T, c, h, w)
        latents = latents.reshape(n, t, *latents.shape[1:]).permute(0, 2, 1, 3, 4)  # (N, c, T, h, w)
        self.latents = latents[:, :, 0] if self.mode == "image" else latents.contiguous()
        return self.latents


class ShapesIterableDataset(torch.utils.data.IterableDataset):
    """An endless (or bounded) stream of training items, generated on the fly.

    Yields exactly the items of `ShapesDataset(num_samples=..., world=world, seed=seed, mode=mode)` in order;
    with several `DataLoader` workers each worker yields every `num_workers`-th item, so no item repeats.

    Args:
        world (`ShapesWorld`, *optional*): the generator; defaults to `ShapesWorld(split="train")`.
        seed (`int`, defaults to 0): base seed.
        mode (`str`, defaults to "video"): "video", "image" or "image_to_video".
        num_samples (`int`, *optional*): stop after this many items; endless when `None`.
    """

    def __init__(
        self, world: ShapesWorld | None = None, seed: int = 0, mode: str = "video", num_samples: int | None = None
    ):
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}, but is {mode!r}.")
        if num_samples is not None:
            check_int_at_least(num_samples, "num_samples", 1)
        self.world = ShapesWorld(split="train") if world is None else world
        self.seed = int(seed)
        self.mode = mode
        self.num_samples = num_samples

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        index, step = (0, 1) if info is None else (info.id, info.num_workers)
        while self.num_samples is None or index < self.num_samples:
            yield _make_item(self.world.sample((self.seed, index)), self.mode)
            index += step
