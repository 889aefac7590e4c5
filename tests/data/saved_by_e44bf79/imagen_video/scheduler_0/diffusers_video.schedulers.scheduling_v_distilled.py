"""diffusers-video shim: lets `diffusers.DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`
load this pipeline's `scheduler_0`. It only imports VDistilledScheduler from the installed `diffusers_video` package (`pip install
diffusers-video`); it defines nothing itself. Written by diffusers-video's `save_pretrained`."""

from diffusers_video.schedulers.scheduling_v_distilled import VDistilledScheduler

__all__ = ['VDistilledScheduler']
