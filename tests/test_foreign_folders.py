"""The public checkpoints by their repo ids: our classes' `from_pretrained` on diffusers-format folders and repos.

Tiny random diffusers-format repos of each public layout (ModelScope / zeroscope `TextToVideoSDPipeline`, zeroscope XL
`VideoToVideoSDPipeline`, `I2VGenXLPipeline`, Stable Video Diffusion's `vae/`) are uploaded to the local Hub server
of tests/hub_server.py and loaded by repo id through `VideoFusionPipeline`, `VideoRefinerPipeline`,
`I2VGenXLCascadePipeline` and `AutoencoderKLVideo` in a worker process (see hub_server.py for why a worker); their
frames must be those of diffusers' own pipeline for the same seed, online and from the cache with no request, and
`save_pretrained` must write our format, which loads without converting. Every weight is random, the zero-initialised
ones included, so a weight left out or misplaced changes the frames.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import tiny_clip_text_models, tiny_sd21_unet2d_config, tiny_vae
from diffusers import (
    AutoencoderKLTemporalDecoder,
    DDIMScheduler,
    I2VGenXLPipeline,
    I2VGenXLUNet,
    StableDiffusionPipeline,
    TextToVideoSDPipeline,
    UNet2DConditionModel,
    UNet3DConditionModel,
    VideoToVideoSDPipeline,
)
from hub_server import HubServer, HubWorker
from safetensors.torch import load_file, save_file
from transformers import CLIPImageProcessor, CLIPTextModel, CLIPVisionConfig, CLIPVisionModelWithProjection

from diffusers_video import (
    AutoencoderKLVideo,
    DecomposedNoiseScheduler,
    I2VGenXLCascadePipeline,
    VideoFusionPipeline,
    VideoRefinerPipeline,
)
from diffusers_video.pipelines.pipeline_utils import VideoDiffusionPipeline

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPT = "a red circle moving right"
TINY_UNET3D = dict(
    sample_size=8, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8, cross_attention_dim=32,
    attention_head_dim=8, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
    up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
)  # fmt: skip
CONVERTED = "in memory"  # in the one line `from_pretrained` logs when it converts
WEIGHTS = [("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"), ("text_encoder", "model")]
T2V, V2V, I2V, SVD = "user/text-to-video-ms", "user/zeroscope-xl", "user/i2vgen-xl", "user/svd"


def _random(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return model.eval()


def text_to_video(scheduler: DDIMScheduler | None = None) -> TextToVideoSDPipeline:
    tokenizer, text_encoder = tiny_clip_text_models(text_dim=32)
    torch.manual_seed(0)
    unet = _random(UNet3DConditionModel(**TINY_UNET3D), 1)
    scheduler = scheduler or DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
        steps_offset=1,
    )  # fmt: skip
    return TextToVideoSDPipeline(tiny_vae(), text_encoder, tokenizer, unet, scheduler)


def video_to_video() -> VideoToVideoSDPipeline:
    scheduler = DDIMScheduler(
        beta_schedule="squaredcos_cap_v2", rescale_betas_zero_snr=True, prediction_type="v_prediction",
        timestep_spacing="trailing", clip_sample=False,
    )  # fmt: skip
    return VideoToVideoSDPipeline(**text_to_video(scheduler).components)


def image_to_video() -> I2VGenXLPipeline:
    tokenizer, text_encoder = tiny_clip_text_models(text_dim=32)
    torch.manual_seed(0)
    vision = CLIPVisionConfig(
        hidden_size=16, projection_dim=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        image_size=16, patch_size=8,
    )  # fmt: skip
    scheduler = DDIMScheduler(
        beta_schedule="squaredcos_cap_v2", rescale_betas_zero_snr=True, set_alpha_to_one=True, clip_sample=False,
        steps_offset=1, timestep_spacing="leading", prediction_type="v_prediction",
    )  # fmt: skip
    return I2VGenXLPipeline(
        vae=tiny_vae(), text_encoder=text_encoder, tokenizer=tokenizer,
        image_encoder=CLIPVisionModelWithProjection(vision).eval(),
        feature_extractor=CLIPImageProcessor(crop_size=16, size=16),
        unet=_random(I2VGenXLUNet(**TINY_UNET3D), 2), scheduler=scheduler,
    )  # fmt: skip


def svd_vae() -> AutoencoderKLTemporalDecoder:
    torch.manual_seed(0)
    vae = AutoencoderKLTemporalDecoder(
        down_block_types=("DownEncoderBlock2D",) * 2, block_out_channels=(32, 64), layers_per_block=2, sample_size=16
    )
    return _random(vae, 3)  # the mix factors and the zero-initialised temporal outputs too


def a_video() -> list[np.ndarray]:
    return list(np.random.RandomState(0).rand(3, 16, 16, 3).astype(np.float32))


def an_image() -> PIL.Image.Image:
    return PIL.Image.fromarray((np.random.RandomState(1).rand(20, 28, 3) * 255).astype(np.uint8))


def svd_latents() -> torch.Tensor:
    return torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(4))  # (frames, 4, h, w): SVD's layout


def generate(pipe, kind: str) -> np.ndarray:
    """Seeded frames of a pipeline of `kind` ("t2v", "v2v", "i2v"), as diffusers' pipelines and ours take them."""
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(0)
    common = dict(num_inference_steps=3, guidance_scale=7.5, output_type="np", generator=generator)
    if kind == "t2v":
        return pipe(PROMPT, num_frames=3, height=16, width=16, **common).frames
    if kind == "v2v":
        return pipe(PROMPT, video=a_video(), strength=0.6, **common).frames
    latents = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)  # diffusers samples the image latent from the global generator
    return pipe(image=an_image(), prompt=PROMPT, height=16, width=16, num_frames=3, latents=latents, **common).frames


# ---------------------------------------------------------------------------------------------------------------------
# What runs in the worker (its `huggingface_hub` talks to the test server)
# ---------------------------------------------------------------------------------------------------------------------

CLASSES = {"t2v": VideoFusionPipeline, "v2v": VideoRefinerPipeline, "i2v": I2VGenXLCascadePipeline}


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def load_by_repo_id(kind: str, repo_id: str, **kwargs) -> dict:
    """In the worker: our class's `from_pretrained(repo_id, **kwargs)`: its frames, the converted lines logged, the
    dtypes of its models, and, after `save_pretrained`, the saved index, the reloaded frames and lines."""
    torch.set_num_threads(1)
    handler = _Lines()
    logging.getLogger("diffusers_video").addHandler(handler)
    try:
        pipe = CLASSES[kind].from_pretrained(repo_id, **kwargs)
        result = dict(type=type(pipe).__name__, lines=list(handler.lines), name_or_path=pipe.name_or_path)
        result["dtypes"] = {n: str(c.dtype) for n, c in pipe.components.items() if isinstance(c, torch.nn.Module)}
        if kwargs.get("torch_dtype") not in (None, torch.float32):
            return result  # no generation in half precision on the CPU
        result["frames"] = generate(pipe, kind)
        with tempfile.TemporaryDirectory() as folder:
            pipe.save_pretrained(folder)
            result["index"] = json.loads((Path(folder) / "model_index.json").read_text())
            handler.lines.clear()
            result["reloaded"] = generate(CLASSES[kind].from_pretrained(folder), kind)
            result["reload_lines"] = list(handler.lines)
        return result
    finally:
        logging.getLogger("diffusers_video").removeHandler(handler)


def load_vae_by_repo_id(repo_id: str, **kwargs) -> dict:
    """In the worker: `AutoencoderKLVideo.from_pretrained(repo_id, **kwargs)`; its decode of `svd_latents`, and the
    same after `save_pretrained` and a reload."""
    torch.set_num_threads(1)
    handler = _Lines()
    logging.getLogger("diffusers_video").addHandler(handler)
    try:
        vae = AutoencoderKLVideo.from_pretrained(repo_id, **kwargs)
        with torch.no_grad():
            decoded = vae.decode(svd_latents(), num_frames=3).sample
        with tempfile.TemporaryDirectory() as folder:
            vae.save_pretrained(folder)
            class_name = json.loads((Path(folder) / "config.json").read_text())["_class_name"]
            lines = list(handler.lines)
            handler.lines.clear()
            with torch.no_grad():
                reloaded = AutoencoderKLVideo.from_pretrained(folder).decode(svd_latents(), num_frames=3).sample
        return dict(
            decoded=decoded, reloaded=reloaded, lines=lines, reload_lines=list(handler.lines), saved=class_name
        )
    finally:
        logging.getLogger("diffusers_video").removeHandler(handler)


def upload(folder: str, repo_id: str) -> str:
    """In the worker: uploads `folder` as it is to a new repo; the commit id."""
    from huggingface_hub import HfApi

    HfApi().create_repo(repo_id, exist_ok=True)
    return HfApi().upload_folder(folder_path=folder, repo_id=repo_id).oid


def load_error(kind: str, repo_id: str, **kwargs) -> tuple[str, str]:
    """In the worker: the error of our class's `from_pretrained(repo_id)`."""
    try:
        CLASSES[kind].from_pretrained(repo_id, **kwargs)
    except Exception as error:  # the test asserts which
        return type(error).__name__, str(error)
    return "no error", ""


# ---------------------------------------------------------------------------------------------------------------------
# Fixtures: the diffusers folders, their reference frames (diffusers' own pipelines, here), the Hub
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("diffusers-format")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t2v = text_to_video()
    # both weights side by side, as the public repos have them (the configs last written by the float32 save)
    text_to_video().to(torch.float16).save_pretrained(root / "t2v", variant="fp16")
    t2v.save_pretrained(root / "t2v")
    video_to_video().save_pretrained(root / "v2v")
    image_to_video().save_pretrained(root / "i2v")
    svd_vae().save_pretrained(root / "svd" / "vae")
    index = {"_class_name": "StableVideoDiffusionPipeline", "_diffusers_version": "0.42.1"}
    (root / "svd" / "model_index.json").write_text(
        json.dumps({**index, "vae": ["diffusers", "AutoencoderKLTemporalDecoder"]})
    )
    torch.set_num_threads(threads)
    return {"t2v": root / "t2v", "v2v": root / "v2v", "i2v": root / "i2v", "svd": root / "svd"}


@pytest.fixture(scope="module")
def references(folders) -> dict[str, np.ndarray]:
    """diffusers' own pipelines on the same folders (I2VGenXLPipeline with `text_model` patched, see
    tests/test_i2vgen_xl.py: transformers 5's CLIPTextModel is flat)."""
    patch = pytest.MonkeyPatch()
    patch.setattr(CLIPTextModel, "text_model", property(lambda self: self), raising=False)
    try:
        result = {
            "t2v": generate(TextToVideoSDPipeline.from_pretrained(folders["t2v"]), "t2v"),
            # transformers 5 loads the fp16 text encoder as fp16 unless told: float32, which the CPU runs
            "t2v-fp16": generate(
                TextToVideoSDPipeline.from_pretrained(folders["t2v"], variant="fp16", torch_dtype=torch.float32), "t2v"
            ),
            "v2v": generate(VideoToVideoSDPipeline.from_pretrained(folders["v2v"]), "v2v"),
            "i2v": generate(I2VGenXLPipeline.from_pretrained(folders["i2v"]), "i2v"),
        }
    finally:
        patch.undo()
    with torch.no_grad():
        svd = AutoencoderKLTemporalDecoder.from_pretrained(folders["svd"], subfolder="vae")
        result["svd"] = svd.decode(svd_latents(), num_frames=3).sample
    return result


@pytest.fixture(scope="module")
def hub(tmp_path_factory, folders):
    root = tmp_path_factory.mktemp("hub")
    with HubServer(root / "store") as server, HubWorker(server, root / "home") as worker:
        commits = {repo: worker.call(upload, str(folders[kind]), repo) for kind, repo in
                   (("t2v", T2V), ("v2v", V2V), ("i2v", I2V), ("svd", SVD))}  # fmt: skip
        yield SimpleNamespace(server=server, worker=worker, root=root, commits=commits)


# ---------------------------------------------------------------------------------------------------------------------
# Loaded by repo id: diffusers' frames, from the cache with no request, saved in our format
# ---------------------------------------------------------------------------------------------------------------------

OURS = {
    "t2v": ("VideoFusionPipeline", T2V),
    "v2v": ("VideoRefinerPipeline", V2V),
    "i2v": ("I2VGenXLCascadePipeline", I2V),
}


@pytest.mark.parametrize("kind", ["t2v", "v2v", "i2v"])
def test_a_diffusers_repo_loads_by_repo_id_with_the_frames_of_diffusers_pipeline(kind, hub, references, tmp_path):
    class_name, repo_id = OURS[kind]
    cache = tmp_path / "cache"
    result = hub.worker.call(load_by_repo_id, kind, repo_id, cache_dir=str(cache))
    assert result["type"] == class_name and result["name_or_path"] == repo_id
    assert np.abs(result["frames"] - references[kind]).max() <= 1e-4
    assert len([line for line in result["lines"] if CONVERTED in line]) == 1  # one line says what was converted
    assert class_name in result["lines"][0] and repo_id in result["lines"][0]

    # saved: our own format, which loads without converting and makes the same frames
    assert result["index"]["_class_name"] == ["pipeline", class_name]
    assert "unet" not in result["index"] or result["index"]["unet"][0] == "diffusers_video.models.unet_3d"
    assert not any(CONVERTED in line for line in result["reload_lines"])
    assert np.abs(result["reloaded"] - result["frames"]).max() <= 1e-5  # float32 rounding of another memory layout

    # the second time from the cache: no request at all
    requests = len(hub.server.requests)
    cached = hub.worker.call(load_by_repo_id, kind, repo_id, cache_dir=str(cache), local_files_only=True)
    assert len(hub.server.requests) == requests
    assert np.array_equal(cached["frames"], result["frames"])


def _fetched_weights(hub, since: int) -> set[str]:
    paths = [path for method, path in hub.server.requests[since:] if method == "GET" and "/resolve/" in path]
    return {path.split("/resolve/", 1)[1].split("/", 1)[1] for path in paths if "safetensors" in path}


def test_variant_dtype_and_revision_behave_as_in_diffusers(hub, references, tmp_path):
    since = len(hub.server.requests)
    fp16 = hub.worker.call(
        load_by_repo_id, "t2v", T2V, variant="fp16", torch_dtype=torch.float32, cache_dir=str(tmp_path / "fp16")
    )
    # only the variant's weights are downloaded, as diffusers does
    assert _fetched_weights(hub, since) == {f"{c}/{n}.fp16.safetensors" for c, n in WEIGHTS}
    assert np.abs(fp16["frames"] - references["t2v-fp16"]).max() <= 1e-4  # diffusers' frames from the fp16 files
    assert not np.array_equal(references["t2v-fp16"], references["t2v"])  # ... which are other weights
    assert set(fp16["dtypes"].values()) == {"torch.float32"}  # the converted models too
    half = hub.worker.call(load_by_repo_id, "t2v", T2V, variant="fp16", torch_dtype=torch.bfloat16)
    assert set(half["dtypes"]) == {"vae", "text_encoder", "residual_unet"}
    assert set(half["dtypes"].values()) == {"torch.bfloat16"}
    since = len(hub.server.requests)
    pinned = hub.worker.call(load_by_repo_id, "t2v", T2V, revision=hub.commits[T2V], cache_dir=str(tmp_path / "32"))
    assert _fetched_weights(hub, since) == {f"{c}/{n}.safetensors" for c, n in WEIGHTS}
    assert np.abs(pinned["frames"] - references["t2v"]).max() <= 1e-4
    error = hub.worker.call(load_error, "t2v", T2V, revision="0" * 40)
    assert error[0] == "FileNotFoundError" and T2V in error[1]


def test_the_vae_of_a_stable_video_diffusion_repo_loads_as_autoencoder_kl_video(hub, references):
    result = hub.worker.call(load_vae_by_repo_id, SVD, subfolder="vae")
    assert (result["decoded"] - references["svd"]).abs().max() <= 1e-4
    assert len(result["lines"]) == 1 and "AutoencoderKLTemporalDecoder" in result["lines"][0]
    assert result["saved"] == "AutoencoderKLVideo" and not result["reload_lines"]
    assert (result["reloaded"] - result["decoded"]).abs().max() <= 1e-5
    requests = len(hub.server.requests)
    cached = hub.worker.call(load_vae_by_repo_id, SVD, subfolder="vae", local_files_only=True)
    assert len(hub.server.requests) == requests and torch.equal(cached["decoded"], result["decoded"])


def test_the_base_class_picks_our_class_and_a_component_passed_is_not_converted(folders):
    assert type(VideoDiffusionPipeline.from_pretrained(folders["v2v"])) is VideoRefinerPipeline
    scheduler = DecomposedNoiseScheduler(base_noise_ratio=0.3)
    pipe = VideoFusionPipeline.from_pretrained(folders["t2v"], scheduler=scheduler, dtype=torch.bfloat16)
    assert pipe.scheduler is scheduler and pipe.residual_unet.dtype == pipe.vae.dtype == torch.bfloat16
    vae = AutoencoderKLVideo.from_pretrained(folders["svd"] / "vae", dtype=torch.bfloat16)
    assert vae.dtype == torch.bfloat16


def test_an_i2vgen_xl_folder_takes_a_refiner_and_saves_it_in_our_format(folders, tmp_path):
    refiner = VideoRefinerPipeline.from_pretrained(folders["v2v"])  # zeroscope XL, converted too
    pipe = I2VGenXLCascadePipeline.from_pretrained(
        folders["i2v"], refiner_unet=refiner.unet, refiner_scheduler=refiner.scheduler
    )
    assert pipe.refiner_unet is refiner.unet and pipe.refiner_scheduler is refiner.scheduler
    pipe.save_pretrained(tmp_path / "cascade")
    reloaded = I2VGenXLCascadePipeline.from_pretrained(tmp_path / "cascade")
    assert torch.equal(reloaded.refiner_unet.conv_in.weight, refiner.unet.conv_in.weight)


# ---------------------------------------------------------------------------------------------------------------------
# Bad input (local folders: no Hub needed)
# ---------------------------------------------------------------------------------------------------------------------


def test_an_image_pipeline_is_refused_naming_its_class_and_the_class_that_loads_it(tmp_path):
    tokenizer, text_encoder = tiny_clip_text_models(text_dim=24)
    unet = UNet2DConditionModel(**tiny_sd21_unet2d_config(sample_size=8))
    StableDiffusionPipeline(
        tiny_vae(), text_encoder, tokenizer, unet, DDIMScheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(tmp_path / "sd")  # fmt: skip
    with pytest.raises(ValueError, match=r"holds a StableDiffusionPipeline, not a VideoFusionPipeline") as error:
        VideoFusionPipeline.from_pretrained(tmp_path / "sd")
    assert "`StableDiffusionPipeline.from_pretrained`" in str(error.value)
    assert "TextToVideoSDPipeline (VideoFusionPipeline)" in str(error.value)  # what it does convert


def test_a_stable_video_diffusion_folder_is_refused_with_a_pointer_to_its_vae(folders):
    with pytest.raises(ValueError, match=r"holds a StableVideoDiffusionPipeline, not a VideoFusionPipeline") as error:
        VideoFusionPipeline.from_pretrained(folders["svd"])
    assert "AutoencoderKLVideo.from_pretrained" in str(error.value)


def test_an_svd_unet_where_a_text_to_video_unet_is_expected_is_refused_by_name(folders, tmp_path):
    folder = Path(shutil.copytree(folders["t2v"], tmp_path / "t2v"))
    index = json.loads((folder / "model_index.json").read_text())
    index["unet"] = ["diffusers", "UNetSpatioTemporalConditionModel"]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="UNetSpatioTemporalConditionModel") as error:
        VideoFusionPipeline.from_pretrained(folder)
    message = str(error.value)
    assert "`UNetSpatioTemporalConditionModel.from_pretrained`" in message and "VideoFusionPipeline" in message
    # the index right, the UNet's own config of the other class
    index["unet"] = ["diffusers", "UNet3DConditionModel"]
    (folder / "model_index.json").write_text(json.dumps(index))
    config = json.loads((folder / "unet" / "config.json").read_text())
    config["_class_name"] = "UNetSpatioTemporalConditionModel"
    (folder / "unet" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="describes a UNetSpatioTemporalConditionModel") as error:
        VideoFusionPipeline.from_pretrained(folder)
    assert "`UNetSpatioTemporalConditionModel.from_pretrained`" in str(error.value)


def test_an_unknown_key_is_an_error_naming_it(folders, tmp_path):
    folder = Path(shutil.copytree(folders["t2v"], tmp_path / "t2v"))
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    save_file({**load_file(weights), "down_blocks.0.bogus.weight": torch.zeros(2)}, weights)
    with pytest.raises(ValueError, match=r"Unexpected key `down_blocks\.0\.bogus\.weight`"):
        VideoFusionPipeline.from_pretrained(folder)
    vae = Path(shutil.copytree(folders["svd"] / "vae", tmp_path / "vae"))
    weights = vae / "diffusion_pytorch_model.safetensors"
    save_file({**load_file(weights), "decoder.extra.weight": torch.zeros(1)}, weights)
    with pytest.raises(ValueError, match=r"decoder\.extra\.weight"):
        AutoencoderKLVideo.from_pretrained(vae)
