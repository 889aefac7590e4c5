"""diffusers-video shim: lets `diffusers.DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`
load this pipeline's `flow_upsampler`. It only imports FlowTemporalUpsampler from the installed `diffusers_video` package (`pip install
diffusers-video`); it defines nothing itself. Written by diffusers-video's `save_pretrained`."""

from diffusers_video.models.flow_upsampler import FlowTemporalUpsampler

__all__ = ['FlowTemporalUpsampler']
