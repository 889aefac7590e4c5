"""diffusers-video shim: lets `diffusers.DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`
load this VideoGenPipeline pipeline. It only imports VideoGenPipeline from the installed `diffusers_video` package (`pip install
diffusers-video`); it defines nothing itself. Written by diffusers-video's `save_pretrained`."""

from diffusers_video.pipelines.videogen.pipeline_videogen import VideoGenPipeline

__all__ = ['VideoGenPipeline']
