"""diffusers-video shim: lets `diffusers.DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`
load this MagicVideoPipeline pipeline. It only imports MagicVideoPipeline from the installed `diffusers_video` package (`pip install
diffusers-video`); it defines nothing itself. Written by diffusers-video's `save_pretrained`."""

from diffusers_video.pipelines.magicvideo.pipeline_magicvideo import MagicVideoPipeline

__all__ = ['MagicVideoPipeline']
