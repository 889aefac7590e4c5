"""What loading trusts and what it refuses: code in saved folders, pickled weights, tampered training checkpoints.

The hostile folders are built here: a UTF-7 `pipeline.py` whose comment decodes to a call writing a file named PWNED,
the same in a component shim and an Imagen Video scheduler shim, pickles that would write a file when unpickled.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest

from diffusers_video import ImagenVideoPipeline, VideoFusionPipeline
from diffusers_video.cli import main
from diffusers_video.pipelines.pipeline_utils import VideoDiffusionPipeline

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


def test_the_shims_older_versions_wrote_still_load(in_tmp):
    assert isinstance(VideoDiffusionPipeline.from_pretrained(SAVED / "videofusion"), VideoFusionPipeline)
    assert isinstance(ImagenVideoPipeline.from_pretrained(SAVED / "imagen_video"), ImagenVideoPipeline)
