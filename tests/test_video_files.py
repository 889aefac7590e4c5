"""Training on a folder of real video files (`training.video_files`): MP4 and GIF clips of the moving-shapes world
decoded and sampled at a stride or fps from a seeded start, resized and centre-cropped, image files for joint
image-video training, WebVid-style CSV captions, corrupt files skipped and reported, latents cached as safetensors
shards and reused, and exact resumption of a run on them."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import read_train_log, tiny_clip_text_models, tiny_vae
from diffusers import DDPMScheduler
from diffusers.utils import export_to_gif, export_to_video
from safetensors.torch import load_file

from diffusers_video import UNet3DModel
from diffusers_video.data.shapes import ShapesWorld
from diffusers_video.training import TrainingConfig, train
from diffusers_video.training import video_files as vf
from diffusers_video.training.components import TrainingComponents
from diffusers_video.training.data import TrainingItems, build_datasets

pytestmark = pytest.mark.usefixtures("one_thread_and_fresh_accelerate")

SOURCE_FRAMES, HEIGHT, WIDTH = 12, 32, 48  # the files: 12 frames of 32x48 at 8 fps
SIZE, FRAMES = 16, 4  # what the model trains on
CAPTIONS = ["a red circle moving right", "a blue square moving up", "a green triangle moving left"]


def shapes_clip(caption: str, seed: int) -> np.ndarray:
    world = ShapesWorld(height=HEIGHT, width=WIDTH, num_frames=SOURCE_FRAMES)
    return world.render(world.scene_for_prompt(caption, seed=seed))  # (F, H, W, 3) in [0, 1]


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    return {f"clip{i}": shapes_clip(caption, i) for i, caption in enumerate(CAPTIONS)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory, clips) -> Path:
    """Two MP4s and a GIF, a still image, a corrupt .mp4 and a listed file that is missing, with metadata.jsonl."""
    folder = tmp_path_factory.mktemp("videos")
    export_to_video(list(clips["clip0"]), str(folder / "clip0.mp4"), fps=8)
    (folder / "sub").mkdir()
    export_to_video(list(clips["clip1"]), str(folder / "sub" / "clip1.mp4"), fps=8)
    gif = [PIL.Image.fromarray((frame * 255).round().astype(np.uint8)) for frame in clips["clip2"]]
    export_to_gif(gif, str(folder / "clip2.gif"), fps=8)
    PIL.Image.fromarray((clips["clip0"][0] * 255).astype(np.uint8)).save(folder / "still.png")
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    entries = [
        ("clip0.mp4", CAPTIONS[0]), ("sub/clip1.mp4", CAPTIONS[1]), ("clip2.gif", CAPTIONS[2]),
        ("still.png", "a red circle"), ("broken.mp4", "nothing"), ("gone.mp4", "nothing"),
    ]  # fmt: skip
    lines = [json.dumps({"file_name": name, "caption": caption}) for name, caption in entries]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_files_are_probed_and_unreadable_ones_skipped_with_their_names(folder, caplog):
    with caplog.at_level(logging.WARNING, logger=vf.__name__):
        videos = vf.VideoFileDataset(folder, SIZE, SIZE, FRAMES, mode="video")
    assert [e.path.name for e in videos.entries] == ["clip0.mp4", "clip1.mp4", "clip2.gif"]
    assert [e.num_frames for e in videos.entries] == [12] * 3
    assert [e.fps for e in videos.entries] == pytest.approx([8.0, 8.0, 8.33], abs=0.01)  # a GIF counts centiseconds
    assert len(videos.skipped) == 2 and "broken.mp4: cannot be decoded" in videos.skipped[0]
    assert "gone.mp4: does not exist" in videos.skipped[1]
    assert "broken.mp4" in caplog.text and "gone.mp4" in caplog.text
    images = vf.VideoFileDataset(folder, SIZE, SIZE, FRAMES, mode="image")  # images and video frames
    assert [e.path.name for e in images.entries] == ["clip0.mp4", "clip1.mp4", "clip2.gif", "still.png"]


def test_frames_at_a_stride_or_fps_from_a_start_drawn_per_sample(folder, clips):
    entry = vf.MediaEntry(Path("x"), "", "video", num_frames=12, fps=8.0)
    assert vf.frame_indices(entry, 4, 3, None, 0.0) == [0, 3, 6, 9]
    assert vf.frame_indices(entry, 4, 3, None, 1.0) == [2, 5, 8, 11]
    assert vf.frame_indices(entry, 4, 1, 4.0, 0.0) == [0, 2, 4, 6]  # 4 fps of an 8 fps clip: every other frame
    assert vf.frame_indices(entry, 5, 3, None, 0.0) is None  # 13 frames needed
    data = vf.VideoFileDataset(folder, HEIGHT, WIDTH, FRAMES, frame_stride=2)
    # decoded at the file's own size, a clip is the rendered one to MP4 rounding, at the drawn start and stride
    for position in range(3):
        item = data.item(0, position)["video"]  # (3, F, H, W) in [-1, 1]
        start = np.random.default_rng((0, position, 0)).random() * (12 - 1 - 6)
        indices = [int(round(start + 2 * i)) for i in range(FRAMES)]
        decoded = (item.permute(1, 2, 3, 0).numpy() + 1) / 2
        assert np.abs(decoded - clips["clip0"][indices]).mean() < 0.03
    assert torch.equal(data.item(1, 5)["video"], data.item(1, 5)["video"])  # the same sample, the same frames
    starts = {data.item(1, p)["video"].numpy().tobytes() for p in range(6)}
    assert len(starts) > 1  # other samples, other starts


def test_resize_covers_the_size_and_crops_the_centre():
    frames = np.zeros((2, 32, 48, 3), np.float32)
    frames[:, :, 16:32] = 1.0  # a white middle third
    clip = vf.resize_and_crop(frames, 16, 16)  # 32x48 -> 16x24 -> the middle 16x16
    assert clip.shape == (3, 2, 16, 16)
    assert clip[:, :, :, 5:11].min() > 0.99 and clip[:, :, :, :3].max() < -0.99 and clip[:, :, :, 13:].max() < -0.99


def test_webvid_csv_and_missing_captions(tmp_path, clips):
    (tmp_path / "000").mkdir()
    export_to_video(list(clips["clip0"]), str(tmp_path / "000" / "31353427.mp4"), fps=8)
    with open(tmp_path / "results_2M_train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["videoid", "contentUrl", "duration", "page_dir", "name"])
        writer.writerow(["31353427", "https://example.invalid/x.mp4", "PT00H00M12S", "000", CAPTIONS[0]])
    data = vf.VideoFileDataset(tmp_path, SIZE, SIZE, FRAMES)
    assert [(e.path.relative_to(tmp_path).as_posix(), e.caption) for e in data.entries] == [
        ("000/31353427.mp4", CAPTIONS[0])
    ]
    with pytest.raises(FileNotFoundError, match="`data.captions` '.*nope.csv' does not exist"):
        vf.VideoFileDataset(tmp_path, SIZE, SIZE, FRAMES, captions="nope.csv")


def test_a_folder_with_nothing_readable_is_an_error_before_training(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"not a video")
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "a.mp4", "caption": "x"}) + "\n")
    config = TrainingConfig.from_dict(
        {"output_dir": str(tmp_path / "run"), "data": {"path": str(tmp_path), "height": SIZE, "width": SIZE}}
    )
    with pytest.raises(ValueError, match=r"has no readable video file for training \(1 skipped: .*a.mp4: cannot"):
        build_datasets(config.data, 0, 2, 0)


# ------------------------------------------------------------------------------------------------------ training


def components(vae=None) -> TrainingComponents:
    tokenizer, text_encoder = tiny_clip_text_models(16)
    torch.manual_seed(0)
    channels = 3 if vae is None else 4
    unet = UNet3DModel(
        sample_size=SIZE, in_channels=channels, out_channels=channels,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, cross_attention_dim=16,
        attention_head_dim=2, temporal_attention_head_dim=8, mid_block_type=None,
    )  # fmt: skip
    return TrainingComponents(
        unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, vae=vae,
        noise_scheduler=DDPMScheduler(clip_sample=False),
    )  # fmt: skip


def config(output_dir: Path, folder: Path, steps: int, data: dict | None = None, **overrides) -> TrainingConfig:
    values = dict(
        output_dir=str(output_dir), max_train_steps=steps, train_batch_size=2, learning_rate=1e-3,
        checkpointing_steps=2, data={"path": str(folder), "height": SIZE, "width": SIZE, "num_frames": FRAMES,
                                     "frame_stride": 2, **(data or {})},
    )  # fmt: skip
    values.update(overrides)
    return TrainingConfig.from_dict(values)


def test_training_on_video_files_resumes_exactly_and_reports_skipped_files(folder, tmp_path):
    full = train(config(tmp_path / "full", folder, 4, image_fraction=0.5), components())
    report = json.loads((tmp_path / "full" / "data_report.json").read_text())
    assert report["items"] == {"video": 3, "image": 4} and len(report["skipped"]) == 2
    train(config(tmp_path / "half", folder, 2, image_fraction=0.5), components())
    resumed = train(
        config(tmp_path / "half", folder, 4, image_fraction=0.5, resume_from_checkpoint="latest"), components()
    )
    assert [line["loss"] for line in read_train_log(tmp_path / "half")] == [
        line["loss"] for line in read_train_log(tmp_path / "full")
    ]
    a = load_file(full / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_file(resumed / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cached_latents_are_written_once_as_shards_and_reused(folder, tmp_path, monkeypatch):
    vae = tiny_vae()
    run = config(tmp_path / "first", folder, 1, data={"cache_latents": True, "cache_dir": str(tmp_path / "cache")})
    train(run, components(vae))
    (key,) = [p for p in (tmp_path / "cache").iterdir()]
    index = json.loads((key / "index.json").read_text())
    assert index["files"] == ["clip0.mp4", "sub/clip1.mp4", "clip2.gif"]
    shard = load_file(key / index["shards"][0])["latents"]
    assert shard.shape == (3, 4, FRAMES, SIZE // 2, SIZE // 2)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded a video although its latents are cached")

    monkeypatch.setattr(vf, "decode_frames", no_decoding)  # the second run reads the shards and decodes nothing
    again = config(tmp_path / "second", folder, 1, data={"cache_latents": True, "cache_dir": str(tmp_path / "cache")})
    datasets = build_datasets(again.data, again.seed, 2, 0)
    np.testing.assert_array_equal(datasets["video"].cache_latents(vae).numpy(), shard.numpy())
    train(again, components(vae))
    items = TrainingItems(datasets, 0)
    assert items[(5, "video")]["latent"] is True
    # another VAE is another key: its latents are not the cached ones
    other = tiny_vae(latent_channels=4, block_out_channels=(8, 8))
    assert datasets["video"].cache_key(other) != key.name
