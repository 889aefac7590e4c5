"""What loading trusts and what it refuses: code in saved folders, pickled weights, tampered training checkpoints.

The hostile folders are built here: a UTF-7 `pipeline.py` whose comment decodes to a call writing a file named PWNED,
the same in a component shim and an Imagen Video scheduler shim, pickles that would write a file when unpickled.
"""

from __future__ import annotations

import ast
import json
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import tiny_vae
from diffusers import DDPMScheduler
from test_training import SIZE, components, make_config, tiny_unet2d

from diffusers_video import ImagenVideoPipeline, UNet3DModel, VideoFusionPipeline
from diffusers_video.cli import main
from diffusers_video.pipelines import pipeline_utils
from diffusers_video.pipelines.pipeline_utils import VideoDiffusionPipeline
from diffusers_video.training import Trainer, checkpointing, stand_in
from diffusers_video.training.components import load_components
from diffusers_video.training.config import ModelConfig

SAVED = Path(__file__).parent / "data" / "saved_by_e44bf79"
PAYLOAD = b"# -*- coding: utf-7 -*-\n# +AAo-open(+ACI-PWNED+ACI-,+ACI-w+ACI-)\n"
"""A coding line, then a comment that Python decodes as `#` newline `open("PWNED","w")`."""


def _copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(SAVED / name, tmp_path / name))


def _poison(path: Path) -> None:
    """Puts the payload in front of a shim: it still parses as a shim as text, and runs `open` when imported."""
    data = PAYLOAD + path.read_bytes()
    path.write_bytes(data)
    calls = [n.func.id for n in ast.walk(ast.parse(data)) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    assert calls == ["open"]  # what Python's import would run: the payload is live


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    "folder_name, shim, pipeline_class",
    [
        ("videofusion", "pipeline.py", VideoFusionPipeline),
        ("videofusion", "residual_unet/diffusers_video.models.unet_3d.py", VideoFusionPipeline),
        ("videofusion", "pipeline.py", VideoDiffusionPipeline),
        ("imagen_video", "pipeline.py", ImagenVideoPipeline),
        ("imagen_video", "scheduler_0/diffusers_video.schedulers.scheduling_v_distilled.py", ImagenVideoPipeline),
        ("imagen_video", "unet_1/diffusers_video.models.unet_3d.py", VideoDiffusionPipeline),
    ],
)
def test_a_utf7_shim_is_refused_and_never_run(folder_name, shim, pipeline_class, in_tmp):
    folder = _copy(folder_name, in_tmp)
    _poison(folder / shim)
    with pytest.raises(ValueError, match=re.escape(f"'{folder / shim}' is custom code, not a diffusers-video shim")):
        pipeline_class.from_pretrained(folder)


def test_generate_refuses_a_utf7_shim_in_one_line(in_tmp, capsys):
    folder = _copy("videofusion", in_tmp)
    _poison(folder / "pipeline.py")
    assert main(["generate", "--pipeline", str(folder), "--prompt", "a red circle", "--no_progress"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("diffusers-video generate: error: ") and str(folder / "pipeline.py") in error


def test_a_custom_pipeline_file_name_and_a_foreign_library_are_refused(in_tmp):
    folder = _copy("videofusion", in_tmp)
    index = (folder / "model_index.json").read_text()
    (folder / "evil.py").write_text((folder / "pipeline.py").read_text())
    (folder / "model_index.json").write_text(index.replace('"pipeline"', '"evil"'))
    with pytest.raises(ValueError, match="custom pipeline file 'evil.py'"):
        VideoFusionPipeline.from_pretrained(folder)
    (folder / "model_index.json").write_text(index.replace('"diffusers_video.models.unet_3d"', '"evil"'))
    (folder / "residual_unet" / "evil.py").write_text("open('PWNED', 'w')\n")
    with pytest.raises(ValueError, match="from 'evil', which is neither diffusers, transformers nor diffusers_video"):
        VideoFusionPipeline.from_pretrained(folder)


@pytest.mark.parametrize(
    "folder_name, shim",
    [
        ("videofusion", "pipeline.py"),
        ("imagen_video", "scheduler_0/diffusers_video.schedulers.scheduling_v_distilled.py"),
    ],
)
def test_a_shim_swapped_after_the_check_is_never_imported(folder_name, shim, in_tmp, monkeypatch):
    """The race between the byte check and diffusers' import: diffusers loads a shadow whose shims we wrote."""
    folder = _copy(folder_name, in_tmp)
    check = pipeline_utils.check_pipeline_folder

    def check_then_swap(*args, **kwargs):
        result = check(*args, **kwargs)
        _poison(folder / shim)  # the folder changes after it was found clean
        return result

    monkeypatch.setattr(pipeline_utils, "check_pipeline_folder", check_then_swap)
    pipe = VideoDiffusionPipeline.from_pretrained(folder)
    assert pipe.name_or_path == str(folder)  # the folder the user named, not the shadow diffusers read
    assert (folder / shim).read_bytes().startswith(PAYLOAD)  # swapped indeed; the fixture checks PWNED never appears


def test_the_shims_older_versions_wrote_still_load(in_tmp):
    assert isinstance(VideoDiffusionPipeline.from_pretrained(SAVED / "videofusion"), VideoFusionPipeline)
    assert isinstance(ImagenVideoPipeline.from_pretrained(SAVED / "imagen_video"), ImagenVideoPipeline)


# ---------------------------------------------------------------------------------------------------------------------
# Atomic saves
# ---------------------------------------------------------------------------------------------------------------------


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _fail_halfway(original):
    """A `save_file` that writes half of the file, then fails as a full disk does."""

    def save_file(tensors, filename, metadata=None):
        original(tensors, filename, metadata=metadata)
        data = Path(filename).read_bytes()
        Path(filename).write_bytes(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    return save_file


def test_a_pipeline_save_that_fails_leaves_the_previous_folder_unchanged_and_loadable(tmp_path, monkeypatch):
    import safetensors.torch

    folder = _copy("videofusion", tmp_path)
    (folder / "README.md").write_text("card")  # a file the save does not write: kept by a successful save
    before = _snapshot(folder)
    pipe = VideoFusionPipeline.from_pretrained(folder)
    with torch.no_grad():
        pipe.residual_unet.conv_out.bias.add_(1.0)  # what the new save would change

    def fail(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:  # fails at a component after the first ones were written
        patch.setattr(type(pipe.vae), "save_pretrained", fail)  # the last component
        with pytest.raises(OSError, match=re.escape(f"Could not write '{folder}': No space left on device")):
            pipe.save_pretrained(folder)
    assert _snapshot(folder) == before and not list(tmp_path.glob(".tmp-*"))
    with monkeypatch.context() as patch:  # fails halfway through a weights file
        patch.setattr(safetensors.torch, "save_file", _fail_halfway(safetensors.torch.save_file))
        with pytest.raises(OSError, match=re.escape(f"Could not write '{folder}': No space left on device")):
            pipe.save_pretrained(folder)
    assert _snapshot(folder) == before and not list(tmp_path.glob(".tmp-*"))
    VideoFusionPipeline.from_pretrained(folder)
    pipe.save_pretrained(folder)
    assert (folder / "README.md").read_text() == "card"
    assert torch.equal(
        VideoFusionPipeline.from_pretrained(folder).residual_unet.conv_out.bias, pipe.residual_unet.conv_out.bias
    )


def test_a_unet3d_save_that_fails_halfway_leaves_the_previous_folder_unchanged(tmp_path, monkeypatch):
    import safetensors.torch

    folder = tmp_path / "unet"
    model = UNet3DModel.from_pretrained(SAVED / "videofusion", subfolder="residual_unet")
    model.save_pretrained(folder)
    before = _snapshot(folder)
    with torch.no_grad():
        model.conv_out.bias.add_(1.0)
    monkeypatch.setattr(safetensors.torch, "save_file", _fail_halfway(safetensors.torch.save_file))
    with pytest.raises(OSError, match=re.escape(f"Could not write '{folder}': No space left on device")):
        model.save_pretrained(folder)
    assert _snapshot(folder) == before and not list(tmp_path.glob(".tmp-*"))
    UNet3DModel.from_pretrained(folder)


# ---------------------------------------------------------------------------------------------------------------------
# Pickled weights
# ---------------------------------------------------------------------------------------------------------------------


class _WritesAFile:
    """Unpickling this opens a file named PWNED in the current folder."""

    def __reduce__(self):
        return (open, ("PWNED", "w"))


def _pickled_weights(folder: Path) -> Path:
    """Replaces `folder`'s safetensors weights with a pickle that would write a file."""
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    path = folder / "diffusion_pytorch_model.bin"
    path.write_bytes(pickle.dumps({"conv_out.bias": _WritesAFile()}))
    return path


def test_pickled_weights_are_refused_without_allow_pickle(in_tmp):
    folder = _copy("videofusion", in_tmp)
    weights = _pickled_weights(folder / "residual_unet")
    message = re.escape(f"'{weights}' is a pickled file") + ".*`allow_pickle=True`"
    with pytest.raises(ValueError, match=message):
        VideoFusionPipeline.from_pretrained(folder)
    with pytest.raises(ValueError, match=message):
        VideoDiffusionPipeline.from_pretrained(folder, use_safetensors=True)
    with pytest.raises(ValueError, match=message):
        UNet3DModel.from_pretrained(folder, subfolder="residual_unet")
    with pytest.raises(ValueError, match="`use_safetensors=False` loads pickled weights.*`allow_pickle=True`"):
        VideoFusionPipeline.from_pretrained(folder, use_safetensors=False)


def test_pickled_weights_load_with_allow_pickle(tmp_path):
    folder = _copy("videofusion", tmp_path)
    unet = UNet3DModel.from_pretrained(folder, subfolder="residual_unet")
    torch.save(unet.state_dict(), folder / "residual_unet" / "diffusion_pytorch_model.bin")
    (folder / "residual_unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ValueError, match="allow_pickle=True"):
        VideoFusionPipeline.from_pretrained(folder)
    pipe = VideoFusionPipeline.from_pretrained(folder, allow_pickle=True)
    assert torch.equal(pipe.residual_unet.conv_out.bias, unet.conv_out.bias)
    assert torch.equal(
        UNet3DModel.from_pretrained(folder / "residual_unet", allow_pickle=True).conv_out.bias, unet.conv_out.bias
    )


# ---------------------------------------------------------------------------------------------------------------------
# Training checkpoints
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def checkpoint(tmp_path, one_thread_and_fresh_accelerate) -> Path:
    """`checkpoint-2` of a two-step tiny run (with EMA)."""
    config = make_config(tmp_path / "run", max_train_steps=2, checkpointing_steps=2, ema_decay=0.9)
    Trainer(config, components()).train()
    return tmp_path / "run" / "checkpoint-2"


def _resume(folder: Path, tmp_path: Path):
    config = make_config(tmp_path / "resumed", max_train_steps=3, ema_decay=0.9, resume_from_checkpoint=str(folder))
    return Trainer(config, components()).train()


def test_a_checkpoint_stores_our_state_without_pickles_and_records_sha256_sums(checkpoint, tmp_path):
    names = {p.name for p in checkpoint.iterdir()}
    assert {"loop_state.json", "lr_scheduler.json", "ema.json", "ema.safetensors"} <= names
    assert not any(name.startswith("custom_checkpoint") for name in names)
    marker = json.loads((checkpoint / "checkpoint.json").read_text())
    assert set(marker["sha256"]) == set(marker["files"]) and "random_states_0.pkl" in marker["sha256"]
    _resume(checkpoint, tmp_path)  # resumes from it


@pytest.mark.parametrize("same_size", [False, True])
def test_a_checkpoint_with_a_tampered_state_file_is_refused_before_anything_loads(
    same_size, checkpoint, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    state = checkpoint / "random_states_0.pkl"
    hostile = pickle.dumps(_WritesAFile())
    size = state.stat().st_size
    state.write_bytes(hostile + b" " * (size - len(hostile)) if same_size else hostile)
    with pytest.raises(ValueError, match=re.escape(f"'{state}' does not match the SHA-256 sum")):
        _resume(checkpoint, tmp_path)
    assert not (tmp_path / "PWNED").exists()


def test_a_file_the_marker_does_not_list_is_refused(checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    extra = checkpoint / "custom_checkpoint_0.pkl"
    extra.write_bytes(pickle.dumps(_WritesAFile()))
    with pytest.raises(ValueError, match=re.escape(f"'{extra}' is not listed in")):
        _resume(checkpoint, tmp_path)
    with pytest.raises(ValueError, match=re.escape(f"'{extra}' is not listed in")):
        checkpointing.resolve_resume(str(checkpoint), tmp_path)
    assert not (tmp_path / "PWNED").exists()


# ---------------------------------------------------------------------------------------------------------------------
# Failing disks
# ---------------------------------------------------------------------------------------------------------------------


def _blocked(tmp_path: Path) -> Path:
    """An output folder that cannot be created: a file stands where its parent should be."""
    (tmp_path / "blocker").write_text("a file")
    return tmp_path / "blocker" / "out"


def test_an_unwritable_output_folder_is_one_line_before_any_model_loads(tmp_path, monkeypatch, capsys):
    def never(*args, **kwargs):
        raise AssertionError("loaded a model before checking the output folder")

    monkeypatch.setattr("diffusers_video.commands.train.train", never)
    monkeypatch.setattr("diffusers_video.commands.distill.distill", never)
    monkeypatch.setattr(VideoDiffusionPipeline, "from_pretrained", never)
    blocked = _blocked(tmp_path)
    make_config(tmp_path / "ok").to_json_file(tmp_path / "ok.json")
    commands = [
        ["train", "--config", str(tmp_path / "ok.json"), "--output_dir", str(blocked)],
        ["distill", "--teacher", str(tmp_path), "--output_dir", str(blocked), "--student_steps", "2"],
        ["generate", "--pipeline", str(SAVED / "videofusion"), "--prompt", "x", "--output", str(blocked / "v.gif")],
    ]
    for argv in commands:
        assert main(argv) == 1, argv
        error = capsys.readouterr().err.strip()
        assert error.startswith(f"diffusers-video {argv[0]}: error: Cannot write to '{blocked}': "), error
        assert "\n" not in error


def test_a_full_disk_during_a_checkpoint_names_the_folder(tmp_path, one_thread_and_fresh_accelerate, monkeypatch):
    from accelerate import Accelerator

    def full_disk(self, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 431616 vs 431508")

    monkeypatch.setattr(Accelerator, "save_state", full_disk)
    config = make_config(tmp_path / "run", max_train_steps=1, checkpointing_steps=1)
    with pytest.raises(OSError) as raised:
        Trainer(config, components()).train()
    target = tmp_path / "run" / "checkpoint-1"
    assert str(raised.value) == (
        f"Could not write '{target}': [enforce fail at inline_container.cc:672] . unexpected pos 431616 vs 431508 "
        "(is the disk full, or the folder read-only?)"
    )
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".tmp-")]


def test_a_checkpoint_emptied_by_a_kill_during_rotation_is_removed_at_the_next_start(checkpoint, tmp_path):
    run = checkpoint.parent
    (run / "checkpoint-21").mkdir()  # emptied
    half = run / "checkpoint-22"
    shutil.copytree(checkpoint, half)
    (half / "model.safetensors").unlink()  # half-deleted, its marker still there
    config = make_config(run, max_train_steps=3, ema_decay=0.9, resume_from_checkpoint="latest")
    Trainer(config, components()).train()
    assert not (run / "checkpoint-21").exists() and not half.exists()
    assert checkpoint.exists()


def test_saving_into_the_working_folder_writes_in_place(tmp_path, monkeypatch):
    model = UNet3DModel.from_pretrained(SAVED / "videofusion", subfolder="residual_unet")
    (tmp_path / "unet").mkdir()
    monkeypatch.chdir(tmp_path / "unet")
    model.save_pretrained(".")  # swapping the working folder away would leave the process in a deleted folder
    assert Path.cwd() == tmp_path / "unet" and (tmp_path / "unet" / "config.json").is_file()
    assert torch.equal(UNet3DModel.from_pretrained(".").conv_out.bias, model.conv_out.bias)


def test_the_stand_in_reads_the_ema_of_a_checkpoint_without_pickles(tmp_path, one_thread_and_fresh_accelerate):
    unet = tiny_unet2d()
    parts = components(
        unet=unet, vae=tiny_vae(sample_size=SIZE), noise_scheduler=DDPMScheduler(steps_offset=1, clip_sample=False)
    )
    config = make_config(
        tmp_path, max_train_steps=2, checkpointing_steps=2, ema_decay=0.9, prediction_type="v_prediction",
        model={"pipeline_class": "StableDiffusionPipeline", "unet_config": dict(unet.config)},
        data={"height": SIZE, "width": SIZE, "num_frames": 1, "num_samples": 8},
    )  # fmt: skip
    trainer = Trainer(config, parts)
    final = trainer.train()
    pipe = stand_in.pipeline_from_checkpoint(tmp_path / "checkpoint-2", base_folder=final)
    for value, shadow in zip(pipe.unet.parameters(), trainer.ema.shadow_params, strict=True):
        assert torch.equal(value, shadow)
    (tmp_path / "checkpoint-2" / "ema.json").write_text("{}")
    with pytest.raises(ValueError, match="ema.json' does not match the SHA-256 sum"):
        stand_in.pipeline_from_checkpoint(tmp_path / "checkpoint-2", base_folder=final)


def test_inflating_and_training_refuse_pickled_weights(tmp_path):
    unet = tiny_unet2d()
    unet.save_pretrained(tmp_path / "unet", safe_serialization=False)
    weights = tmp_path / "unet" / "diffusion_pytorch_model.bin"
    with pytest.raises(ValueError, match=re.escape(f"'{weights}' is a pickled file")):
        UNet3DModel.from_pretrained_2d(str(tmp_path), subfolder="unet")
    inflated = UNet3DModel.from_pretrained_2d(str(tmp_path), subfolder="unet", allow_pickle=True)
    assert torch.equal(inflated.conv_in.weight, unet.conv_in.weight)
    parts = components()
    parts.text_encoder.save_pretrained(tmp_path / "text_encoder")
    parts.tokenizer.save_pretrained(tmp_path / "tokenizer")
    with pytest.raises(ValueError, match=re.escape(f"'{weights}' is a pickled file")):
        load_components(ModelConfig(pretrained_model_name_or_path=str(tmp_path)), seed=0)
