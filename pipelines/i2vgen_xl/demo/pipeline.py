"""diffusers-video shim: lets `diffusers.DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`
load this I2VGenXLCascadePipeline pipeline. It only imports I2VGenXLCascadePipeline from the installed `diffusers_video` package (`pip install
diffusers-video`); it defines nothing itself. Written by diffusers-video's `save_pretrained`."""

from diffusers_video.pipelines.i2vgen_xl.pipeline_i2vgen_xl_cascade import I2VGenXLCascadePipeline

__all__ = ['I2VGenXLCascadePipeline']
