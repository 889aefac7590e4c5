"""diffusers-video shim: lets `diffusers.DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`
load this pipeline's `scheduler`. It only imports DecomposedNoiseScheduler from the installed `diffusers_video` package (`pip install
diffusers-video`); it defines nothing itself. Written by diffusers-video's `save_pretrained`."""

from diffusers_video.schedulers.scheduling_decomposed import DecomposedNoiseScheduler

__all__ = ['DecomposedNoiseScheduler']
