"""Sharing diffusers-video pipelines and models on the Hugging Face Hub, by job:

- `hub.cards`: [`make_model_card`], the model card of a saved folder (metadata, paper, training and distillation,
  moving-shapes scores, sample GIF, usage snippet).
- `hub.upload`: [`push_folder`], which uploads a saved pipeline or model folder in one commit, with the card and the
  remote-code shims, without changing the folder. Importing it registers it as the publisher of
  `diffusers_video.folders`, which `UNet3DModel.push_to_hub` and `VideoDiffusionPipeline.push_to_hub` use.

What loading needs lives below the pipeline classes and is re-exported here: the folder check and the Hub download of
a pipeline repo (`pipelines.loading`: [`check_pipeline_folder`], [`download_pipeline`]) and the remote-code shims
(`pipelines.remote_code`: [`write_remote_code_files`], [`check_remote_code_files`], [`is_reexport_shim`]).
"""

from ..pipelines.loading import check_pipeline_folder, check_safetensors, download_pipeline, is_repo_id
from ..pipelines.remote_code import (
    check_remote_code_files,
    is_reexport_shim,
    remote_code_files,
    write_remote_code_files,
)
from .cards import LIBRARY_NAME, LIBRARY_TAG, PAPERS, Paper, load_scores, make_model_card, pipeline_tag_for
from .upload import push_folder

__all__ = [
    "LIBRARY_NAME",
    "LIBRARY_TAG",
    "PAPERS",
    "Paper",
    "check_pipeline_folder",
    "check_remote_code_files",
    "check_safetensors",
    "download_pipeline",
    "is_reexport_shim",
    "is_repo_id",
    "load_scores",
    "make_model_card",
    "pipeline_tag_for",
    "push_folder",
    "remote_code_files",
    "write_remote_code_files",
]
