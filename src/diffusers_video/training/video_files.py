"""Training on a folder of video files: `data.path` with `.mp4`, `.webm`, `.mov`, `.gif` (and `.mkv`, `.avi`) clips,
still images for joint image-video training, and captions.

Captions come from `metadata.jsonl` (`{"file_name": ..., "caption": ...}` per line, as diffusers' `imagefolder` and
`videofolder` layouts) or from a CSV file: columns `file_name` and `caption`, or WebVid's `videoid`, `name` and
optionally `page_dir` (the clip is `<page_dir>/<videoid>.<ext>`). `data.captions` names the file; by default the
folder's `metadata.jsonl`, else its `metadata.csv`, else its only `.csv`.

Videos are decoded with imageio-ffmpeg (`pip install "diffusers-video[video]"`). A video item is `data.num_frames`
frames taken every `data.frame_stride` frames, or at `data.fps` frames per second of the clip's own time, from a start
drawn uniformly from where the clip has room, by a generator seeded with `(seed, position)` of the sample (with
`data.cache_latents`, the clip of position 0 is encoded once and shown every time), so a resumed run decodes exactly
the frames of the uninterrupted one. Frames are resized so that they cover `(data.height, data.width)` and centre-cropped.
An image item is an image file, or one frame of a video drawn the same way.

Every file is probed once when the dataset is built: a file that cannot be decoded, or a video too short for the
clip, is skipped with a warning that names it and counted (`skipped`); a folder with no usable file is an error
before training starts.

`cache_latents(vae)` encodes every item once and writes the latents as safetensors shards under
`data.cache_dir` (default `<data.path>/.latent_cache`), in a subfolder named by a hash of the files, the VAE weights
and the sampling settings; a later run with the same key reads them instead of decoding and encoding again.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".gif", ".mkv", ".avi")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CLIP_EXTENSIONS = (".npy",)  # decoded clips `(frames, height, width, 3)`, as `training.data.VideoFolderDataset` reads
SHARD_SIZE = 256  # items per latent-cache shard


@dataclass
class MediaEntry:
    """One usable file: its path, caption, kind ("video" or "image"), frame count and frames per second."""

    path: Path
    caption: str
    kind: str
    num_frames: int = 1
    fps: float | None = None


def read_caption_table(folder: Path, captions: str | None = None) -> list[tuple[str, str]]:
    """`(file name relative to folder, caption)` pairs from `metadata.jsonl` or a CSV (see the module docstring)."""
    if captions is not None:
        table = Path(captions) if Path(captions).is_absolute() else folder / captions
        if not table.is_file():
            raise FileNotFoundError(f"`data.captions` '{table}' does not exist.")
    elif (folder / "metadata.jsonl").is_file():
        table = folder / "metadata.jsonl"
    elif (folder / "metadata.csv").is_file():
        table = folder / "metadata.csv"
    else:
        tables = sorted(folder.glob("*.csv"))
        if len(tables) != 1:
            raise FileNotFoundError(
                f"The data folder '{folder}' has no `metadata.jsonl`"
                + (f" and {len(tables)} CSV files: name one with `data.captions`." if tables else " or CSV captions.")
            )
        table = tables[0]
    if table.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(table.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            entry = json.loads(line)
            if not isinstance(entry, dict) or not {"file_name", "caption"} <= set(entry):
                raise ValueError(f"Line {number} of '{table}' needs `file_name` and `caption` but is {line[:80]!r}.")
            rows.append((str(entry["file_name"]), str(entry["caption"])))
        return rows
    with open(table, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        if {"file_name", "caption"} <= columns:
            return [(row["file_name"], row["caption"]) for row in reader]
        if {"videoid", "name"} <= columns:  # WebVid
            return [(_webvid_file(folder, row), row["name"]) for row in reader]
        raise ValueError(
            f"The captions CSV '{table}' needs columns `file_name` and `caption`, or WebVid's `videoid` and `name`, "
            f"but has {sorted(columns)}."
        )


def _webvid_file(folder: Path, row: dict) -> str:
    stem = Path(row.get("page_dir") or "") / str(row["videoid"])
    for extension in VIDEO_EXTENSIONS:
        if (folder / stem.with_suffix(extension)).is_file():
            return str(stem.with_suffix(extension))
    return str(stem.with_suffix(".mp4"))  # missing: reported as unreadable


def probe(path: Path) -> MediaEntry:
    """Frame count and fps of a video, or an image's kind; raises (OSError, RuntimeError, ValueError) when the file
    cannot be decoded."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        with PIL.Image.open(path) as image:
            image.verify()
        return MediaEntry(path, "", "image")
    if suffix in CLIP_EXTENSIONS:
        clip = np.load(path, mmap_mode="r")
        if clip.ndim not in (3, 4) or clip.shape[-1] != 3:
            raise ValueError(f"shape {clip.shape} is neither (frames, height, width, 3) nor (height, width, 3)")
        return MediaEntry(path, "", "video" if clip.ndim == 4 else "image", clip.shape[0] if clip.ndim == 4 else 1)
    import imageio_ffmpeg  # optional: `pip install "diffusers-video[video]"`

    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(reader)
    finally:
        reader.close()
    num_frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    if num_frames < 1:
        raise ValueError("no frames")
    return MediaEntry(path, "", "video", int(num_frames), float(meta.get("fps") or 0) or None)


def frame_indices(
    entry: MediaEntry, num_frames: int, stride: int, fps: float | None, start: float
) -> list[int] | None:
    """The frames of a clip: `num_frames` at `stride` (or at `fps` of the clip's time) from `start` in [0, 1) of the
    room the clip has; None when the clip is too short."""
    step = stride if fps is None or entry.fps is None else entry.fps / fps
    span = (num_frames - 1) * step
    if span > entry.num_frames - 1 + 1e-6:
        return None
    first = start * (entry.num_frames - 1 - span)
    return [min(int(round(first + i * step)), entry.num_frames - 1) for i in range(num_frames)]


def decode_frames(path: Path, indices: list[int]) -> np.ndarray:
    """Frames `indices` (sorted) of a video or `.npy` clip as `(len(indices), height, width, 3)` float32 in [0, 1]."""
    if path.suffix.lower() in CLIP_EXTENSIONS:
        clip = np.load(path)
        clip = clip.astype(np.float32) / 255.0 if clip.dtype == np.uint8 else clip.astype(np.float32)
        return clip[indices]
    import imageio_ffmpeg  # optional: `pip install "diffusers-video[video]"`

    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        width, height = next(reader)["size"]
        wanted, frames = set(indices), {}
        for index, raw in enumerate(reader):
            if index in wanted:
                frames[index] = np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
            if index >= indices[-1]:
                break
    finally:
        reader.close()
    if len(frames) != len(wanted):
        raise OSError(f"'{path}' ended before frame {indices[-1]}")
    return np.stack([frames[i] for i in indices]).astype(np.float32) / 255.0


def load_still(path: Path) -> np.ndarray:
    """An image file or a `(height, width, 3)` `.npy` array as `(1, height, width, 3)` float32 in [0, 1]."""
    if path.suffix.lower() in CLIP_EXTENSIONS:
        image = np.load(path)
        return (image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32))[None]
    with PIL.Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32)[None] / 255.0


@torch.no_grad()
def encode_frames(vae, pixels: torch.Tensor) -> torch.Tensor:
    """Encode videos `(B, 3, F, H, W)` in [-1, 1] frame by frame: `(B, c, F, h, w)` scaled latents.

    As `ShapesDataset.cache_latents` does: the posterior mode, `(z - shift_factor) * scaling_factor`, so training
    on cached latents and on latents encoded on the fly is the same.
    """
    batch, channels, frames, height, width = pixels.shape
    flat = pixels.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)  # (B*F, 3, H, W)
    parameter = next(vae.parameters())
    dist = vae.encode(flat.to(device=parameter.device, dtype=parameter.dtype)).latent_dist
    z = dist.mode() if hasattr(dist, "mode") else dist.mean
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    z = (z - shift) * vae.config.scaling_factor  # (B*F, c, h, w)
    return z.reshape(batch, frames, *z.shape[1:]).permute(0, 2, 1, 3, 4)  # (B, c, F, h, w)


def resize_and_crop(frames: np.ndarray, height: int, width: int) -> torch.Tensor:
    """`(F, h, w, 3)` in [0, 1] -> `(3, F, height, width)` in [-1, 1]: scaled to cover the size, centre-cropped."""
    clip = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # (F, 3, h, w)
    scale = max(height / clip.shape[2], width / clip.shape[3])
    size = (max(height, round(clip.shape[2] * scale)), max(width, round(clip.shape[3] * scale)))
    if size != tuple(clip.shape[2:]):
        clip = F.interpolate(clip, size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    clip = clip[:, :, top : top + height, left : left + width].clamp(0, 1)
    return (clip * 2 - 1).permute(1, 0, 2, 3).contiguous()  # (3, F, H, W)


class VideoFileDataset(torch.utils.data.Dataset):
    """Video files (and still images) in a folder, with captions (see the module docstring).

    Items are as `ShapesDataset`'s: mode "video" gives `video` `(3, num_frames, height, width)` in [-1, 1], mode
    "image" gives `image` `(3, height, width)`, each with `caption` (and `latents` once cached). `item(index,
    position)` draws the clip's start from `(seed, position)`; `dataset[index]` uses position 0.

    Args:
        path (`str | Path`): The folder.
        height (`int`), width (`int`): The training size.
        num_frames (`int`): Frames per video item.
        mode (`str`, defaults to "video"): "video" (video files only) or "image" (image files and video frames).
        seed (`int`, defaults to 0): The run's seed.
        frame_stride (`int`, defaults to 1): Take every `frame_stride`-th frame.
        fps (`float | None`, defaults to None): Take frames at this rate of the clip's time instead.
        captions (`str | None`, defaults to None): The captions file (see `read_caption_table`).
        cache_dir (`str | None`, defaults to None): Where `cache_latents` writes (default `<path>/.latent_cache`).
    """

    def __init__(
        self,
        path: str | Path,
        height: int,
        width: int,
        num_frames: int,
        mode: str = "video",
        seed: int = 0,
        frame_stride: int = 1,
        fps: float | None = None,
        captions: str | None = None,
        cache_dir: str | None = None,
    ):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"The data folder `data.path`='{self.path}' does not exist.")
        if mode not in ("video", "image"):
            raise ValueError(f"`mode` must be 'video' or 'image' but is {mode!r}.")
        self.height, self.width, self.num_frames, self.mode, self.seed = height, width, num_frames, mode, seed
        self.frame_stride, self.fps = frame_stride, fps
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.path / ".latent_cache"
        self.entries: list[MediaEntry] = []
        self.skipped: list[str] = []  # "<file>: <why>"
        known = VIDEO_EXTENSIONS + IMAGE_EXTENSIONS + CLIP_EXTENSIONS
        for name, caption in read_caption_table(self.path, captions):
            file = self.path / name
            if not file.is_file():
                self._skip(file, "does not exist")
                continue
            if file.suffix.lower() not in known:
                self._skip(file, f"not a video or image file ({', '.join(known)})")
                continue
            try:
                entry = probe(file)
            except Exception as error:  # any decoder failure: the file is unusable, the run goes on
                self._skip(file, f"cannot be decoded ({type(error).__name__}: {str(error).splitlines()[0][:200]})")
                continue
            entry.caption = caption
            if entry.kind == "video" and frame_indices(entry, num_frames, frame_stride, fps, 0.0) is None:
                if mode == "video":
                    self._skip(file, f"has {entry.num_frames} frames, too few for {num_frames} at this stride/fps")
                    continue
            if mode == "video" and entry.kind != "video":
                continue  # still images are for the image part of a batch
            self.entries.append(entry)
        if not self.entries:
            what = "video" if mode == "video" else "video or image"
            raise ValueError(
                f"The data folder '{self.path}' has no readable {what} file for training"
                + (f" ({len(self.skipped)} skipped: {'; '.join(self.skipped[:3])})." if self.skipped else ".")
            )
        self.latents: torch.Tensor | None = None

    def _skip(self, file: Path, why: str) -> None:
        self.skipped.append(f"{file}: {why}")
        logger.warning(f"Skipping the training file '{file}': {why}.")

    def __len__(self) -> int:
        return len(self.entries)

    def item(self, index: int, position: int) -> dict:
        """The item `index` as shown at sample `position` (its start, or frame, drawn from `(seed, position)`)."""
        entry = self.entries[index]
        rng = np.random.default_rng((self.seed, position, index))
        item = {"caption": entry.caption}
        if self.latents is not None:  # nothing to decode
            return {**item, "latents": self.latents[index]}
        if entry.kind == "image":
            frames = load_still(entry.path)
        elif self.mode == "image":
            frames = decode_frames(entry.path, [int(rng.integers(entry.num_frames))])
        else:
            indices = frame_indices(entry, self.num_frames, self.frame_stride, self.fps, float(rng.random()))
            frames = decode_frames(entry.path, indices)
        clip = resize_and_crop(frames, self.height, self.width)  # (3, F, H, W)
        item[self.mode] = clip if self.mode == "video" else clip[:, 0]
        return item

    def __getitem__(self, index: int) -> dict:
        return self.item(index, 0)

    # --------------------------------------------------------------------------------------------- latent cache

    def cache_key(self, vae) -> str:
        """A hash of what the cached latents depend on: the files (names, sizes, times), captions order, sampling
        settings, seed and the VAE's config and weights."""
        digest = hashlib.sha256()
        settings = [self.height, self.width, self.num_frames, self.mode, self.seed, self.frame_stride, self.fps]
        digest.update(json.dumps(settings).encode())
        for entry in self.entries:
            stat = entry.path.stat()
            digest.update(f"{entry.path.name}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        public = {key: value for key, value in vae.config.items() if not key.startswith("_")}  # not bookkeeping
        digest.update(json.dumps(public, sort_keys=True, default=str).encode())
        for name, tensor in sorted(vae.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()[:20]

    @torch.no_grad()
    def cache_latents(self, vae, batch_size: int = 16) -> torch.Tensor:
        """Encode every item once (posterior mode, scaled, as `encode_frames`), reading the shards of an
        earlier run with the same `cache_key` instead when they exist; returns the latents."""
        folder = self.cache_dir / self.cache_key(vae)
        if (folder / "index.json").is_file():
            index = json.loads((folder / "index.json").read_text())
            self.latents = torch.cat([load_file(folder / name)["latents"] for name in index["shards"]])
            logger.info(f"Read {len(self)} cached latents from '{folder}'.")
            return self.latents
        key = self.mode
        latents = []
        for start in range(0, len(self), batch_size):
            pixels = torch.stack([self[i][key] for i in range(start, min(start + batch_size, len(self)))])
            pixels = pixels if key == "video" else pixels.unsqueeze(2)  # (b, 3, F, H, W)
            encoded = encode_frames(vae, pixels).float().cpu()
            latents.append(encoded if key == "video" else encoded[:, :, 0])
        self.latents = torch.cat(latents)
        self._write_shards(folder)
        return self.latents

    def _write_shards(self, folder: Path) -> None:
        temporary = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}")
        temporary.mkdir(parents=True)
        shards = []
        for number, start in enumerate(range(0, len(self), SHARD_SIZE)):
            name = f"latents-{number:05d}.safetensors"
            save_file({"latents": self.latents[start : start + SHARD_SIZE].contiguous()}, temporary / name)
            shards.append(name)
        files = [str(entry.path.relative_to(self.path)) for entry in self.entries]
        (temporary / "index.json").write_text(json.dumps({"shards": shards, "files": files}, indent=1) + "\n")
        try:
            os.rename(temporary, folder)  # complete or absent; another process may have written it first
        except OSError:
            shutil.rmtree(temporary, ignore_errors=True)
