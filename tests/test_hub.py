"""Publishing to and loading from the Hub, over real HTTP against the local server of tests/hub_server.py.

Code that talks to the Hub runs in one worker process whose environment points `huggingface_hub` at the server (see
hub_server.py for why not this process); checks that need no Hub run here. No test touches the internet.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import tiny_clip_text_models, tiny_sd21_unet2d_config
from diffusers import AutoencoderKL, UNet2DConditionModel
from hub_server import HubServer, HubWorker, hub_env
from huggingface_hub import ModelCard

from diffusers_video import DecomposedNoiseScheduler, UNet3DModel, VideoFusionPipeline
from diffusers_video.hub import (
    check_pipeline_folder,
    is_reexport_shim,
    make_model_card,
    push_folder,
    remote_code_files,
    write_remote_code_files,
)
from diffusers_video.pipelines.pipeline_utils import VideoDiffusionPipeline

TEXT_DIM = 16
PROMPT = "a red circle moving right"
REPOS = {True: "user/videofusion-with-base", False: "user/videofusion"}


# ---------------------------------------------------------------------------------------------------------------------
# Tiny pipelines and what runs in the worker
# ---------------------------------------------------------------------------------------------------------------------


def _perturb(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.02)  # every weight matters, zero-initialised ones too
    return model.eval()


def tiny_pipeline(with_base: bool) -> VideoFusionPipeline:
    """A VideoFusionPipeline of tiny random models: 16x16 frames, 8x8 latents."""
    tokenizer, text_encoder = tiny_clip_text_models(TEXT_DIM, 16)
    torch.manual_seed(0)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16), latent_channels=4, norm_num_groups=4,
    )  # fmt: skip
    base = _perturb(UNet2DConditionModel(**tiny_sd21_unet2d_config(sample_size=8, cross_attention_dim=TEXT_DIM)), 1)
    residual = _perturb(UNet3DModel.from_unet2d(base, temporal_attention_head_dim=8), 2)
    return VideoFusionPipeline(
        vae=vae.eval(), text_encoder=text_encoder, tokenizer=tokenizer, residual_unet=residual,
        scheduler=DecomposedNoiseScheduler(base_noise_ratio=0.5), base_unet=base if with_base else None,
    )  # fmt: skip


def generate(pipe) -> np.ndarray:
    """Final latents of a seeded 2-step, 4-frame generation."""
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(0)
    frames = pipe(PROMPT, num_frames=4, num_inference_steps=2, output_type="latent", generator=generator).frames
    return frames.numpy()


def push_and_reload(folder: str, repo_id: str) -> dict:
    """In the worker: load a saved pipeline, push it, load it back by repo id; both generate."""
    torch.set_num_threads(1)
    pipe = VideoFusionPipeline.from_pretrained(folder)
    expected = generate(pipe)
    commit = pipe.push_to_hub(repo_id)
    loaded = VideoFusionPipeline.from_pretrained(repo_id)
    return dict(
        expected=expected, reloaded=generate(loaded), type=type(loaded), name_or_path=loaded.name_or_path,
        has_base=loaded.base_unet is not None, commit_url=commit.commit_url,
    )  # fmt: skip


def load_and_generate(path_or_repo: str, **kwargs) -> tuple[type, np.ndarray]:
    """In the worker: `VideoFusionPipeline.from_pretrained(path_or_repo, **kwargs)` and its generation."""
    torch.set_num_threads(1)
    pipe = VideoFusionPipeline.from_pretrained(path_or_repo, **kwargs)
    return type(pipe), generate(pipe)


def load_error(path_or_repo: str, **kwargs) -> tuple[str, str]:
    """In the worker: the error of `VideoFusionPipeline.from_pretrained(path_or_repo, **kwargs)`."""
    try:
        VideoFusionPipeline.from_pretrained(path_or_repo, **kwargs)
    except Exception as error:  # the test asserts which
        return type(error).__name__, str(error)
    return "no error", ""


def unet_and_scheduler_round_trip(repo_id: str) -> dict:
    """In the worker: a UNet3DModel and a DecomposedNoiseScheduler through push_to_hub and from_pretrained."""
    torch.set_num_threads(1)
    base = UNet2DConditionModel(**tiny_sd21_unet2d_config(sample_size=8, cross_attention_dim=TEXT_DIM))
    unet = _perturb(UNet3DModel.from_unet2d(base, temporal_attention="directed", frame_adaptor=True), 3)
    sample = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    text = torch.randn(1, 5, TEXT_DIM, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = unet(sample, 500, text).sample
    unet.push_to_hub(repo_id, base_model="stabilityai/stable-diffusion-2-1")
    scheduler = DecomposedNoiseScheduler(base_noise_ratio=0.3, prediction_type="v_prediction")
    scheduler.push_to_hub(repo_id + "-scheduler")
    results = {}
    for key, kwargs in (("online", {}), ("cache", {"local_files_only": True})):
        loaded = UNet3DModel.from_pretrained(repo_id, **kwargs).eval()
        weights = loaded.state_dict()
        same_weights = weights.keys() == unet.state_dict().keys() and all(
            torch.equal(weights[name], value) for name, value in unet.state_dict().items()
        )
        with torch.no_grad():
            # float32 rounding may differ between a model built in memory and one loaded (memory layout)
            error = (loaded(sample, 500, text).sample - expected).abs().max().item() / expected.abs().max().item()
        results[key] = same_weights and error < 1e-5
    with tempfile.TemporaryDirectory() as folder:  # a model folder through `push_folder` (`diffusers-video push`)
        unet.save_pretrained(folder)
        push_folder(folder, repo_id + "-pushed", base_model="stabilityai/stable-diffusion-2-1")
    results["pushed_folder"] = torch.equal(
        UNet3DModel.from_pretrained(repo_id + "-pushed").state_dict()["conv_in.weight"], unet.conv_in.weight
    )
    loaded_scheduler = DecomposedNoiseScheduler.from_pretrained(repo_id + "-scheduler")
    public = [{k: v for k, v in s.config.items() if not k.startswith("_")} for s in (scheduler, loaded_scheduler)]
    results["scheduler_config"] = public[0] == public[1] and loaded_scheduler.config.base_noise_ratio == 0.3
    return results


def upload_without_shims_and_load(folder: str, repo_id: str) -> tuple[str, type, np.ndarray]:
    """In the worker: a folder uploaded as it is (no shims, `_class_name` a plain name), then loaded by repo id; and
    the error of diffusers' own `DiffusionPipeline.download` on that repo."""
    from diffusers import DiffusionPipeline
    from huggingface_hub import HfApi

    HfApi().create_repo(repo_id)
    HfApi().upload_folder(folder_path=folder, repo_id=repo_id)
    try:
        DiffusionPipeline.download(repo_id)
        diffusers_error = ""
    except ValueError as error:
        diffusers_error = str(error)
    return (diffusers_error, *load_and_generate(repo_id))


def save_with_push_to_hub(folder: str, destination: str, repo_id: str) -> None:
    """In the worker: `save_pretrained(destination, push_to_hub=True, repo_id=...)`, as diffusers spells it."""
    VideoFusionPipeline.from_pretrained(folder).save_pretrained(destination, push_to_hub=True, repo_id=repo_id)


def push(folder: str, repo_id: str, **kwargs) -> str:
    """In the worker: `push_folder`; the commit's URL."""
    return push_folder(folder, repo_id, **kwargs).commit_url


def run_snippet(code: str, folder: str) -> int:
    """In the worker: execute a card's usage snippet in `folder`; the frame count of the GIF it writes."""
    import PIL.Image

    torch.set_num_threads(1)
    os.chdir(folder)
    exec(compile(code, "model card snippet", "exec"), {"__name__": "__card__"})
    with PIL.Image.open(Path(folder) / "video.gif") as gif:
        return gif.n_frames


# ---------------------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    with HubServer(root / "store") as server, HubWorker(server, root / "home") as worker:
        yield SimpleNamespace(server=server, worker=worker, root=root)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[bool, Path]:
    """Saved tiny pipelines, with and without a base generator. The one with a base is a distilled student with
    its training config, distillation record, moving-shapes scores and a sample GIF, as training leaves them."""
    from diffusers.utils import export_to_gif

    from diffusers_video.data.quality import evaluate_pipeline
    from diffusers_video.training.config import TrainingConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pipelines")
    result = {}
    for with_base in (True, False):
        pipe = tiny_pipeline(with_base)
        pipe.save_pretrained(root / str(with_base), remote_code=with_base)  # shims by default; False: a plain folder
        result[with_base] = root / str(with_base)
    folder = result[True]
    TrainingConfig(
        max_train_steps=300, train_batch_size=8, data={"height": 16, "width": 16, "num_frames": 4},
        model={"pretrained_model_name_or_path": "stabilityai/stable-diffusion-2-1"},
        videofusion={"base_noise_ratio": 0.5},
    ).to_json_file(folder / "training_config.json")  # fmt: skip
    distillation = {"round": 1, "num_rounds": 1, "num_inference_steps": 2, "teacher_steps": 4}
    (folder / "distillation.json").write_text(json.dumps({**distillation, "guidance_scale_range": [1.0, 7.0]}))
    pipe.set_progress_bar_config(disable=True)
    scores = evaluate_pipeline(
        pipe, num_samples=2, num_inference_steps=1, height=16, width=16, num_frames=4, num_real=2, progress=False
    )
    (folder / "quality.json").write_text(json.dumps(scores))
    video = pipe(PROMPT, num_frames=4, num_inference_steps=1, output_type="pil").frames[0]
    export_to_gif(video, str(folder / "sample.gif"))
    torch.set_num_threads(threads)
    return result


@pytest.fixture(scope="module")
def pushed(hub, folders) -> dict[bool, dict]:
    """Both pipelines pushed with `push_to_hub` and loaded back by repo id (in the worker)."""
    return {
        with_base: hub.worker.call(push_and_reload, str(folders[with_base]), REPOS[with_base]) for with_base in REPOS
    }


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "copy"))


# ---------------------------------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_base", [True, False])
def test_a_pipeline_pushed_and_loaded_by_repo_id_generates_the_same_video(with_base, hub, pushed):
    result = pushed[with_base]
    assert result["type"] is VideoFusionPipeline and result["has_base"] == with_base
    assert result["name_or_path"] == REPOS[with_base]
    assert np.array_equal(result["reloaded"], result["expected"])

    files = hub.server.files(REPOS[with_base])
    index = json.loads(files["model_index.json"])
    assert index["_class_name"] == ["pipeline", "VideoFusionPipeline"]
    assert index["residual_unet"] == ["diffusers_video.models.unet_3d", "UNet3DModel"]
    assert ("base_unet/diffusion_pytorch_model.safetensors" in files) == with_base
    assert {"README.md", "pipeline.py", "residual_unet/diffusers_video.models.unet_3d.py"} <= set(files)
    assert result["commit_url"].startswith(hub.server.url)


@pytest.mark.parametrize("with_base", [True, False])
def test_a_second_load_with_local_files_only_reads_the_cache_and_asks_the_hub_nothing(with_base, hub, pushed):
    requests = len(hub.server.requests)
    loaded_type, video = hub.worker.call(load_and_generate, REPOS[with_base], local_files_only=True)
    assert len(hub.server.requests) == requests
    assert loaded_type is VideoFusionPipeline
    assert np.array_equal(video, pushed[with_base]["expected"])


def test_a_repo_uploaded_without_shims_loads_by_repo_id_although_diffusers_download_refuses_it(hub, pushed, folders):
    diffusers_error, loaded_type, video = hub.worker.call(
        upload_without_shims_and_load, str(folders[False]), "user/plain"
    )
    # where diffusers 0.42.1 rejects a component library it does not know (pipeline_loading_utils)
    assert "residual_unet/diffusers_video.models.unet_3d.py as defined in `model_index.json` does not exist" in (
        diffusers_error
    )
    assert loaded_type is VideoFusionPipeline
    assert np.array_equal(video, pushed[False]["expected"])
    assert "pipeline.py" not in hub.server.files("user/plain")


def test_unet3d_and_scheduler_round_trip_through_the_hub(hub):
    result = hub.worker.call(unet_and_scheduler_round_trip, "user/unet3d")
    assert result["online"] and result["cache"]  # the same weights bit for bit, the same output
    assert result["scheduler_config"] and result["pushed_folder"]
    assert "diffusion_pytorch_model.safetensors" in hub.server.files("user/unet3d")
    card = ModelCard(hub.server.files("user/unet3d-pushed")["README.md"].decode())
    assert card.data.base_model == "stabilityai/stable-diffusion-2-1" and "UNet3DModel" in card.data.tags
    assert 'UNet3DModel.from_pretrained("user/unet3d-pushed")' in card.text
    card = ModelCard(hub.server.files("user/unet3d")["README.md"].decode())  # UNet3DModel.push_to_hub: the same card
    assert card.data.base_model == "stabilityai/stable-diffusion-2-1" and "diffusers-video" in card.data.tags
    assert 'UNet3DModel.from_pretrained("user/unet3d")' in card.text


def test_plain_diffusers_loads_our_pipeline_with_trust_remote_code(hub, pushed, folders, tmp_path):
    """`diffusers.DiffusionPipeline` in a fresh process that never imported diffusers_video itself: a repo id, and a
    local folder as `save_pretrained` writes it by default."""
    local = copy_of(folders[True], tmp_path)  # saved with the default remote_code=True: the shims are there
    assert (local / "pipeline.py").is_file()
    assert json.loads((local / "model_index.json").read_text())["_class_name"] == ["pipeline", "VideoFusionPipeline"]
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np, torch
        from diffusers import DiffusionPipeline

        torch.set_num_threads(1)
        assert "diffusers_video" not in sys.modules
        results = {{}}
        for key, source in (("repo", {REPOS[True]!r}), ("folder", {str(local)!r})):
            pipe = DiffusionPipeline.from_pretrained(source, trust_remote_code=True)
            pipe.set_progress_bar_config(disable=True)
            frames = pipe({PROMPT!r}, num_frames=4, num_inference_steps=2, output_type="latent",
                          generator=torch.Generator().manual_seed(0)).frames
            np.save({str(tmp_path)!r} + f"/{{key}}.npy", frames.numpy())
            results[key] = f"{{type(pipe).__module__}}.{{type(pipe).__name__}}"
        try:
            DiffusionPipeline.from_pretrained({REPOS[True]!r})
        except ValueError as error:
            results["untrusted"] = str(error)
        print(json.dumps(results))
        """
    )
    env = {**os.environ, **hub_env(hub.server, hub.root / "home"), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    expected = pushed[True]["expected"]
    for key in ("repo", "folder"):
        assert results[key] == "diffusers_video.pipelines.videofusion.pipeline_videofusion.VideoFusionPipeline"
        np.testing.assert_allclose(
            np.load(tmp_path / f"{key}.npy"), expected, rtol=0, atol=1e-5 * np.abs(expected).max()
        )
    assert "trust_remote_code=True" in results["untrusted"]


def test_the_base_class_loads_the_pipeline_class_named_in_the_folder(folders):
    pipe = VideoDiffusionPipeline.from_pretrained(folders[False])
    assert type(pipe) is VideoFusionPipeline and pipe.base_unet is None


# ---------------------------------------------------------------------------------------------------------------------
# The model card
# ---------------------------------------------------------------------------------------------------------------------


def test_the_card_has_the_metadata_the_paper_the_training_and_the_scores(hub, pushed, folders):
    files = hub.server.files(REPOS[True])
    card = ModelCard(files["README.md"].decode())
    data = card.data.to_dict()
    assert data["library_name"] == "diffusers"
    assert data["pipeline_tag"] == "text-to-video"
    assert data["base_model"] == "stabilityai/stable-diffusion-2-1"  # from the training config's source model
    assert {"diffusers-video", "VideoFusionPipeline", "text-to-video", "arxiv:2303.08320"} <= set(data["tags"])
    text = card.text
    assert "https://arxiv.org/abs/2303.08320" in text
    assert "16x16 x 4 frames" in text and "300 steps, batch 8" in text
    assert "round 1 of 1, a 2-step student of a 4-step teacher" in text and "weights 1.0 to 7.0" in text
    scores = json.loads((folders[True] / "quality.json").read_text())["scores"]
    entry = scores["all_correct"]
    assert f"| all correct | {entry['accuracy']:.3f} | {entry['ci_low']:.3f}-{entry['ci_high']:.3f} |" in text
    assert f"| temporal consistency | {scores['temporal_consistency']['mean']:.4f} |" in text  # 4 decimals for means
    assert "![A video generated by this pipeline](sample.gif)" in text
    assert files["sample.gif"] == (folders[True] / "sample.gif").read_bytes()
    assert json.loads(files["training_config.json"])["max_train_steps"] == 300

    plain = ModelCard(hub.server.files(REPOS[False])["README.md"].decode())  # nothing known: no such sections
    assert "base_model" not in plain.data.to_dict()
    assert "## Training" not in plain.text and "## Evaluation" not in plain.text and "sample.gif" not in plain.text


def test_the_cards_usage_snippet_runs(hub, pushed, tmp_path):
    text = hub.server.files(REPOS[True])["README.md"].decode()
    code = re.search(r"```python\n(.*?)```", text, flags=re.DOTALL).group(1)
    assert f'VideoFusionPipeline.from_pretrained("{REPOS[True]}")' in code
    assert "num_inference_steps=2" in code  # the distilled student's step count
    assert hub.worker.call(run_snippet, code, str(tmp_path)) == 4  # the training config's frame count


def test_a_card_in_the_folder_is_uploaded_instead_of_a_generated_one(hub, folders, tmp_path):
    folder = copy_of(folders[False], tmp_path)
    (folder / "README.md").write_text("# my own card\n")
    hub.worker.call(push, str(folder), "user/own-card", private=True)
    assert hub.server.files("user/own-card")["README.md"] == b"# my own card\n"
    assert hub.server.repos["user/own-card"].private
    assert "pipeline" not in json.loads((folder / "model_index.json").read_text())["_class_name"]  # folder unchanged


def test_save_pretrained_with_push_to_hub_saves_the_shims_and_uploads_with_a_card(hub, folders, tmp_path):
    hub.worker.call(save_with_push_to_hub, str(folders[False]), str(tmp_path / "saved"), "user/saved-and-pushed")
    files = hub.server.files("user/saved-and-pushed")
    assert ModelCard(files["README.md"].decode()).data.tags[:2] == ["diffusers-video", "VideoFusionPipeline"]
    assert files["pipeline.py"] == (tmp_path / "saved" / "pipeline.py").read_bytes()
    assert (
        files["residual_unet/diffusion_pytorch_model.safetensors"]
        == (folders[False] / "residual_unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    )


def test_a_model_folder_gets_a_card_with_a_runnable_model_snippet(tmp_path):
    base = UNet2DConditionModel(**tiny_sd21_unet2d_config(sample_size=8, cross_attention_dim=TEXT_DIM))
    UNet3DModel.from_unet2d(base).save_pretrained(tmp_path / "unet")
    card = make_model_card(tmp_path / "unet", "user/unet", base_model="stabilityai/stable-diffusion-2-1")
    assert card.data.library_name == "diffusers" and card.data.pipeline_tag is None
    assert card.data.base_model == "stabilityai/stable-diffusion-2-1"
    code = re.search(r"```python\n(.*?)```", card.text, flags=re.DOTALL).group(1)
    code = code.replace('"user/unet"', repr(str(tmp_path / "unet")))  # the snippet, run against the folder
    namespace = {}
    exec(compile(code, "model card snippet", "exec"), namespace)
    assert tuple(namespace["prediction"].shape) == (1, 4, 8, 8, 8)


# ---------------------------------------------------------------------------------------------------------------------
# Shims
# ---------------------------------------------------------------------------------------------------------------------


def test_the_shims_only_import_from_diffusers_video():
    index = {
        "_class_name": "VideoFusionPipeline",
        "residual_unet": ["diffusers_video.models.unet_3d", "UNet3DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    files = remote_code_files(index, "diffusers_video.pipelines.videofusion.pipeline_videofusion")
    assert sorted(files) == ["pipeline.py", "residual_unet/diffusers_video.models.unet_3d.py"]
    assert is_reexport_shim(files["pipeline.py"], ["VideoFusionPipeline"])
    assert not is_reexport_shim(files["pipeline.py"], ["UNet3DModel"])  # must import what it stands for
    shim = files["residual_unet/diffusers_video.models.unet_3d.py"]
    for addition in ("import os\n", "print('hi')\n", "from . import x\n", "from diffusers import DiffusionPipeline\n"):
        assert not is_reexport_shim(shim + addition)
    assert not is_reexport_shim("from diffusers_video import UNet3DModel as VideoFusionPipeline\n")
    # diffusers imports every module its regexes find in the text, docstrings included
    assert not is_reexport_shim('"""Docs.\nimport antigravity\n"""\n' + shim.split('"""\n', 2)[-1])


def test_a_pipeline_file_that_is_not_a_shim_is_refused_and_never_run(folders, tmp_path):
    folder = copy_of(folders[False], tmp_path)
    write_remote_code_files(folder, VideoFusionPipeline.__module__)
    (folder / "pipeline.py").write_text("import os\nos.system('echo pwned')\n")
    with pytest.raises(ValueError, match=re.escape(f"'{folder / 'pipeline.py'}' is custom code")):
        VideoFusionPipeline.from_pretrained(folder)
    write_remote_code_files(folder, VideoFusionPipeline.__module__)
    (folder / "residual_unet" / "diffusers_video.models.unet_3d.py").write_text("import shutil\n")
    with pytest.raises(ValueError, match=re.escape("unet_3d.py' is custom code, not a diffusers-video shim")):
        VideoFusionPipeline.from_pretrained(folder)
    write_remote_code_files(folder, VideoFusionPipeline.__module__)
    (folder / "None.py").write_text("import os\n")  # diffusers runs `<custom_pipeline>.py` for custom_pipeline=None
    with pytest.raises(ValueError, match=re.escape(f"'{folder / 'None.py'}' would be run by diffusers")):
        VideoFusionPipeline.from_pretrained(folder)


# ---------------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------------


def test_a_repo_id_that_does_not_exist_is_named(hub):
    kind, message = hub.worker.call(load_error, "user/does-not-exist")
    assert kind == "FileNotFoundError"
    assert "'user/does-not-exist'" in message and hub.server.url in message


def test_an_uncached_repo_with_local_files_only_is_named(hub, pushed):
    requests = len(hub.server.requests)
    kind, message = hub.worker.call(load_error, "user/never-downloaded", local_files_only=True)
    assert kind == "FileNotFoundError" and "'user/never-downloaded'" in message and "cache" in message
    assert len(hub.server.requests) == requests


def test_a_folder_without_model_index_is_named(tmp_path):
    UNet3DModel.from_unet2d(UNet2DConditionModel(**tiny_sd21_unet2d_config())).save_pretrained(tmp_path / "unet")
    with pytest.raises(FileNotFoundError, match=re.escape(f"'{tmp_path / 'unet'}' has no model_index.json")) as info:
        VideoFusionPipeline.from_pretrained(tmp_path / "unet")
    assert "UNet3DModel.from_pretrained" in str(info.value)  # it holds a model: say how to load that
    with pytest.raises(FileNotFoundError, match="neither an existing folder nor a Hub repo id"):
        VideoFusionPipeline.from_pretrained(tmp_path / "no" / "such" / "folder")


def test_a_folder_of_another_pipeline_class_is_named():
    folder = Path(__file__).resolve().parents[1] / "pipelines" / "shapes_sd"
    with pytest.raises(ValueError, match=r"shapes_sd/model_index.json' holds a StableDiffusionPipeline, not a Video"):
        VideoFusionPipeline.from_pretrained(folder)
    with pytest.raises(ValueError, match="'StableDiffusionPipeline', which is not a diffusers-video pipeline"):
        VideoDiffusionPipeline.from_pretrained(folder)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda index: index.update(residual_unet=["diffusers", "UNet2DConditionModel"]),
         "`residual_unet` as a UNet2DConditionModel \\(diffusers\\), but VideoFusionPipeline takes a UNet3DModel"),
        (lambda index: index.update(unet=index.pop("residual_unet")), r"does not take: \['unet'\]"),
        (lambda index: index.pop("residual_unet"), "has no `residual_unet`, which VideoFusionPipeline requires"),
        (lambda index: index.update(scheduler=["diffusers", "DDIMScheduler"]), "takes a DecomposedNoiseScheduler"),
    ],
)  # fmt: skip
def test_a_folder_whose_components_belong_to_another_pipeline_is_named(change, message, folders, tmp_path):
    folder = copy_of(folders[False], tmp_path)
    index = json.loads((folder / "model_index.json").read_text())
    change(index)
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=re.escape(str(folder / "model_index.json")) + ".*" + message):
        VideoFusionPipeline.from_pretrained(folder)


def test_a_corrupted_safetensors_file_is_named(folders, tmp_path):
    folder = copy_of(folders[False], tmp_path)
    weights = folder / "residual_unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])  # an interrupted download
    with pytest.raises(ValueError, match=re.escape(f"'{weights}' is not a readable safetensors file")):
        VideoFusionPipeline.from_pretrained(folder)
    with pytest.raises(ValueError, match=re.escape(f"'{weights}' is not a readable safetensors file")):
        push_folder(folder, "user/broken")  # refused before anything is uploaded


def test_a_single_file_checkpoint_and_pickles_are_refused_with_their_path(folders, tmp_path):
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"pickle")
    with pytest.raises(ValueError, match=re.escape(f"'{checkpoint}' is a file, not a pipeline folder")):
        VideoFusionPipeline.from_pretrained(checkpoint)
    folder = copy_of(folders[False], tmp_path)
    shutil.copy(checkpoint, folder / "residual_unet" / "old.ckpt")
    with pytest.raises(ValueError, match=re.escape(f"'{folder / 'residual_unet' / 'old.ckpt'}' is a pickled file")):
        push_folder(folder, "user/pickles")
    with pytest.raises(ValueError, match="`repo_id` must be 'namespace/name'.*'not a repo'"):
        push_folder(folders[False], "not a repo")


def test_check_pipeline_folder_skips_components_passed_by_the_caller(folders, tmp_path):
    folder = copy_of(folders[False], tmp_path)
    shutil.rmtree(folder / "text_encoder")
    with pytest.raises(FileNotFoundError, match=re.escape(f"'{folder / 'text_encoder'}' is missing")):
        check_pipeline_folder(folder, VideoFusionPipeline)
    assert check_pipeline_folder(folder, VideoFusionPipeline, skip=["text_encoder"]) == (VideoFusionPipeline, False)
