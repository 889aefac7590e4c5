"""`diffusers_video.folders`: the one JSON reader, the `model_index.json` helpers and the publisher registry."""

from __future__ import annotations

import re

import pytest

import diffusers_video
from diffusers_video import folders
from diffusers_video.hub import push_folder


def test_read_json_contract(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"a": 1}')
    assert folders.read_json(path) == {"a": 1}
    assert folders.read_json(str(path), missing_ok=True) == {"a": 1}

    missing = tmp_path / "missing.json"
    assert folders.read_json(missing, missing_ok=True) is None
    with pytest.raises(FileNotFoundError, match=re.escape(f"'{missing}' does not exist.")):
        folders.read_json(missing)

    path.write_text('{"a": 1')  # torn
    for missing_ok in (False, True):
        with pytest.raises(ValueError, match=re.escape(f"'{path}' is not valid JSON")):
            folders.read_json(path, missing_ok=missing_ok)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match=re.escape(f"'{path}' is not valid JSON")):
        folders.read_json(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=re.escape(f"'{path}' must hold a JSON object but holds a list.")):
        folders.read_json(path)


def test_model_index_helpers():
    index = {
        "_class_name": ["pipeline", "VideoFusionPipeline"],
        "_diffusers_version": "0.42.1",
        "residual_unet": ["diffusers_video.models.unet_3d", "UNet3DModel"],
        "base_unet": [None, None],
        "base_prediction_type": "epsilon",
    }
    assert folders.class_name_of(index, "model_index.json") == "VideoFusionPipeline"
    assert folders.class_name_of({"_class_name": "ImagenVideoPipeline"}, "x") == "ImagenVideoPipeline"
    with pytest.raises(ValueError, match="'somewhere/model_index.json' has no readable `_class_name`"):
        folders.class_name_of({"_class_name": 3}, "somewhere/model_index.json")
    assert folders.components_of(index) == {
        "residual_unet": ("diffusers_video.models.unet_3d", "UNet3DModel"),
        "base_unet": (None, None),
    }


def test_saved_file_names_are_defined_once():
    """Every layer imports the names from `folders`; the others hold the same objects, not copies."""
    from diffusers_video.pipelines import pipeline_utils
    from diffusers_video.training import trainer

    assert pipeline_utils.TRAINING_CONFIG_NAME is folders.TRAINING_CONFIG_NAME == "training_config.json"
    assert trainer.TRAINING_CONFIG_NAME is folders.TRAINING_CONFIG_NAME
    assert folders.DISTILLATION_NAME == "distillation.json" and folders.INDEX_NAME == "model_index.json"


def test_importing_the_package_registers_the_hub_publisher(monkeypatch):
    assert diffusers_video.hub.push_folder is push_folder
    assert folders.publisher() is push_folder
    with pytest.raises(TypeError, match="must be callable"):
        folders.register_publisher("push_folder")
    monkeypatch.setattr(folders, "_publisher", None)
    with pytest.raises(RuntimeError, match="No Hub publisher is registered"):
        folders.publisher()
    calls = []
    folders.register_publisher(lambda folder, repo_id, **options: calls.append((folder, repo_id, options)))
    folders.publisher()("folder", "user/repo", private=True)
    assert calls == [("folder", "user/repo", {"private": True})]
