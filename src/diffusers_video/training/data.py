"""The training data stream: a deterministic function of (seed, sample position).

Every sample a run trains on has a global position `p = 0, 1, 2, ...`: micro-batch `m` (counted over the whole
run) holds positions `[m * B, (m + 1) * B)` for a global batch of `B`, and process `r` of `n` takes the `r`-th
contiguous slice of `B / n` of them. Position `p` shows item `permutation(seed, epoch)[p % N]` of a dataset of `N`
items (`epoch = p // N`), and seeds its own noise, timestep and caption dropout (`sample_seed`). Nothing depends on
how many steps ran in this process, so a resumed run sees exactly what the uninterrupted run would have seen, and a
run on two processes sees the samples of a run on one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ..data.shapes import ShapesWorld, image_to_tensor, video_to_tensor
from ..data.shapes_datasets import ShapesDataset
from .config import DataConfig
from .video_files import CLIP_EXTENSIONS, VideoFileDataset, encode_frames

# Frames of the clips that still images are taken from when training an image model (`num_frames == 1`).
_IMAGE_SOURCE_FRAMES = 8


def sample_seed(*key: int) -> int:
    """A 63-bit seed for a tuple of non-negative integers, e.g. `(seed, position)`; different tuples, unrelated seeds."""
    low, high = np.random.SeedSequence([int(k) for k in key]).generate_state(2)
    return (int(high) << 32 | int(low)) & (2**63 - 1)


def sample_generator(*key: int) -> torch.Generator:
    """A CPU `torch.Generator` seeded with `sample_seed(*key)` (CPU, so every device draws the same numbers)."""
    return torch.Generator().manual_seed(sample_seed(*key))


def per_process_batch_size(train_batch_size: int, num_processes: int) -> int:
    """`train_batch_size / num_processes`; a `ValueError` when it does not divide evenly."""
    if train_batch_size % num_processes:
        raise ValueError(
            f"`train_batch_size` ({train_batch_size}) must be divisible by the number of processes ({num_processes}): "
            "it is the batch summed over all processes."
        )
    return train_batch_size // num_processes


def split_batch(batch_size: int, image_fraction: float, num_frames: int) -> tuple[int, int]:
    """`(videos, images)` of a per-process batch: `round(batch_size * image_fraction)` images (half up).

    With `num_frames == 1` every sample is an image.
    """
    if num_frames == 1:
        return 0, batch_size
    images = int(batch_size * image_fraction + 0.5)
    if image_fraction > 0 and images == 0:
        raise ValueError(
            f"`image_fraction` ({image_fraction}) of a per-process batch of {batch_size} is no image; raise "
            "`train_batch_size` or `image_fraction`."
        )
    return batch_size - images, images


class VideoFolderDataset(torch.utils.data.Dataset):
    """Clips in a folder: `metadata.jsonl` lines `{"file_name": "clip.npy", "caption": "..."}`.

    Each `.npy` file is a clip `(frames, height, width, 3)` (or one image `(height, width, 3)`), `uint8` or float in
    [0, 1]. Items follow `ShapesDataset`: mode "video" gives `video` `(3, frames, height, width)` in [-1, 1], mode
    "image" gives `image` `(3, height, width)`, one frame of the clip chosen by `(seed, index)`, each with `caption`.

    Args:
        path (`str | Path`): The folder.
        height (`int`): Required frame height.
        width (`int`): Required frame width.
        num_frames (`int`): Required frames per clip in mode "video".
        mode (`str`, defaults to "video"): "video" or "image".
        seed (`int`, defaults to 0): Picks the frame of an image item.
    """

    def __init__(self, path: str | Path, height: int, width: int, num_frames: int, mode: str = "video", seed: int = 0):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"The data folder `data.path`='{self.path}' does not exist.")
        metadata = self.path / "metadata.jsonl"
        if not metadata.is_file():
            raise FileNotFoundError(f"The data folder '{self.path}' has no `metadata.jsonl`.")
        if mode not in ("video", "image"):
            raise ValueError(f"`mode` must be 'video' or 'image' but is {mode!r}.")
        self.entries = [json.loads(line) for line in metadata.read_text().splitlines() if line.strip()]
        if not self.entries:
            raise ValueError(f"'{metadata}' lists no clips.")
        for entry in self.entries:
            if not isinstance(entry, dict) or not {"file_name", "caption"} <= set(entry):
                raise ValueError(f"Every line of '{metadata}' needs `file_name` and `caption`; one is {entry!r}.")
        self.height, self.width, self.num_frames = height, width, num_frames
        self.mode, self.seed = mode, seed
        self.latents: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def _clip(self, index: int) -> np.ndarray:
        file = self.path / self.entries[index]["file_name"]
        clip = np.load(file)
        clip = clip[None] if clip.ndim == 3 else clip
        if clip.dtype == np.uint8:
            clip = clip.astype(np.float32) / 255.0
        if clip.ndim != 4 or clip.shape[1:] != (self.height, self.width, 3):
            raise ValueError(
                f"'{file}' has shape {clip.shape}; expected (frames, {self.height}, {self.width}, 3) (data.height, "
                "data.width)."
            )
        if self.mode == "video" and clip.shape[0] != self.num_frames:
            raise ValueError(f"'{file}' has {clip.shape[0]} frames but `data.num_frames` is {self.num_frames}.")
        return clip.astype(np.float32)

    def __getitem__(self, index: int) -> dict:
        clip, caption = self._clip(index), self.entries[index]["caption"]
        if self.mode == "video":
            item = {"video": video_to_tensor(clip), "caption": caption}
        else:
            frame = int(np.random.default_rng([self.seed, index]).integers(clip.shape[0]))
            item = {"image": image_to_tensor(clip[frame]), "caption": caption}
        if self.latents is not None:
            item["latents"] = self.latents[index]
        return item

    @torch.no_grad()
    def cache_latents(self, vae, batch_size: int = 16) -> torch.Tensor:
        """Encode every item once (posterior mode, scaled) and keep the latents, as `ShapesDataset.cache_latents`."""
        key = "video" if self.mode == "video" else "image"
        latents = []
        for start in range(0, len(self), batch_size):
            pixels = torch.stack([self[i][key] for i in range(start, min(start + batch_size, len(self)))])
            pixels = pixels if key == "video" else pixels.unsqueeze(2)  # (b, 3, F, H, W)
            encoded = encode_frames(vae, pixels).float().cpu()
            latents.append(encoded if key == "video" else encoded[:, :, 0])
        self.latents = torch.cat(latents)
        return self.latents


def build_datasets(
    data: DataConfig, seed: int, num_videos: int, num_images: int
) -> dict[str, torch.utils.data.Dataset]:
    """The datasets a run draws from: "video" when it has videos, "image" when it has still images."""
    kinds = [kind for kind, count in (("video", num_videos), ("image", num_images)) if count > 0]
    if data.path is not None and _is_npy_folder(data):
        return {
            kind: VideoFolderDataset(data.path, data.height, data.width, data.num_frames, mode=kind, seed=seed)
            for kind in kinds
        }
    if data.path is not None:  # video (and image) files, decoded and sampled (`training.video_files`)
        options = dict(frame_stride=data.frame_stride, fps=data.fps, captions=data.captions, cache_dir=data.cache_dir)
        return {
            kind: VideoFileDataset(data.path, data.height, data.width, data.num_frames, kind, seed, **options)
            for kind in kinds
        }
    frames = data.num_frames if data.num_frames > 1 else _IMAGE_SOURCE_FRAMES
    world = ShapesWorld(height=data.height, width=data.width, num_frames=frames, **data.world)
    return {
        kind: ShapesDataset(
            num_samples=data.num_samples, world=world, seed=seed, mode=kind, image_frame=data.image_frame
        )
        for kind in kinds
    }


def _is_npy_folder(data: DataConfig) -> bool:
    """A folder of `.npy` clips at the training size listed in `metadata.jsonl`, with no sampling option set: the
    original layout (`VideoFolderDataset`, clips used as they are)."""
    metadata = Path(data.path) / "metadata.jsonl"
    if data.captions is not None or data.frame_stride != 1 or data.fps is not None or not metadata.is_file():
        return False
    names = [json.loads(line).get("file_name", "") for line in metadata.read_text().splitlines() if line.strip()]
    return bool(names) and all(Path(str(name)).suffix in CLIP_EXTENSIONS for name in names)


class TrainingItems(torch.utils.data.Dataset):
    """Item `(position, kind)`: the sample at a global position, as `{"x", "caption", "position", "kind"}`.

    `x` is `(channels, frames, height, width)`: pixels in [-1, 1], or the cached latents when the dataset has them;
    an image is a single-frame video.
    """

    def __init__(self, datasets: dict[str, torch.utils.data.Dataset], seed: int):
        self.datasets, self.seed = datasets, seed
        self._permutations: dict[tuple[int, int], np.ndarray] = {}

    def dataset_index(self, position: int, length: int) -> int:
        """The dataset index shown at `position`: a fresh permutation of the dataset every epoch."""
        epoch, offset = divmod(position, length)
        key = (epoch, length)
        if key not in self._permutations:
            if len(self._permutations) > 4:
                self._permutations.clear()
            self._permutations[key] = np.random.default_rng([self.seed, epoch]).permutation(length)
        return int(self._permutations[key][offset])

    def __getitem__(self, key: tuple[int, str]) -> dict:
        position, kind = key
        dataset = self.datasets[kind]
        index = self.dataset_index(position, len(dataset))
        # a decoded video's start (or frame) is drawn per sample position (`VideoFileDataset.item`)
        item = dataset.item(index, position) if hasattr(dataset, "item") else dataset[index]
        if "latents" in item:
            x, latent = item["latents"], True
        else:
            x, latent = item[kind], False
        if kind == "image":
            x = x.unsqueeze(1)  # (C, 1, H, W)
        return {"x": x, "latent": latent, "caption": item["caption"], "position": position, "kind": kind}

    def __len__(self) -> int:  # not used for sampling; positions are unbounded
        return max(len(dataset) for dataset in self.datasets.values())


class MicroBatchSampler(torch.utils.data.Sampler):
    """Yields the `(position, kind)` keys of this process's slice of consecutive micro-batches.

    Args:
        start_position (`int`): Position of the first sample of the first micro-batch (the data position).
        train_batch_size (`int`): Global batch of a micro-batch (all processes).
        num_videos (`int`): Videos of this process's slice (they come first).
        num_images (`int`): Still images of this process's slice.
        process_index (`int`): This process.
        num_micro_batches (`int`): How many micro-batches to yield.
    """

    def __init__(
        self,
        start_position: int,
        train_batch_size: int,
        num_videos: int,
        num_images: int,
        process_index: int,
        num_micro_batches: int,
    ):
        self.start_position, self.train_batch_size = start_position, train_batch_size
        self.num_videos, self.num_images = num_videos, num_images
        self.process_index, self.num_micro_batches = process_index, num_micro_batches

    def __iter__(self) -> Iterator[list[tuple[int, str]]]:
        per_process = self.num_videos + self.num_images
        for micro in range(self.num_micro_batches):
            first = self.start_position + micro * self.train_batch_size + self.process_index * per_process
            yield [(first + j, "video" if j < self.num_videos else "image") for j in range(per_process)]

    def __len__(self) -> int:
        return self.num_micro_batches


def collate(items: list[dict]) -> dict[str, dict]:
    """Group a micro-batch into its parts: `{"video": part, "image": part}` (absent parts left out), each part
    `{"x": (B, C, F, H, W), "latent": bool, "captions": [...], "positions": (B,)}`."""
    parts = {}
    for kind in ("video", "image"):
        chosen = [item for item in items if item["kind"] == kind]
        if chosen:
            parts[kind] = {
                "x": torch.stack([item["x"] for item in chosen]),
                "latent": chosen[0]["latent"],
                "captions": [item["caption"] for item in chosen],
                "positions": torch.tensor([item["position"] for item in chosen]),
            }
    return parts
