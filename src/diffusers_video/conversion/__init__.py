"""State-dict conversions into diffusers-video's formats, as plain functions (no command line here).

- `conversion.sd`: a Stable Diffusion UNet (diffusers folder or original single file) -> an inflated `UNet3DModel`
  that equals it frame by frame (`convert`); its weights and config readers are `conversion.sd_weights` and
  `conversion.sd_config`.
- `conversion.modelscope`: diffusers' ModelScope `TextToVideoSDPipeline` / `UNet3DConditionModel` folder -> a
  `VideoFusionPipeline` / `UNet3DModel(temporal_layout="modelscope")` folder with the same outputs (`convert`).
- `conversion.svd_decoder`: Stable Video Diffusion's `AutoencoderKLTemporalDecoder` -> an `AutoencoderKLVideo` that
  decodes the same frames (`convert_svd_decoder`, `svd_decoder_state_dict_to_video_vae`).
- `conversion.i2vgen_xl`: diffusers' `I2VGenXLPipeline` / `I2VGenXLUNet` folder -> an `I2VGenXLCascadePipeline` folder
  / a `UNet3DModel` and an `I2VGenXLContentEncoder` with the same outputs (`convert`, `split_i2vgen_xl_state_dict`).
- `conversion.video_refiner`: diffusers' `VideoToVideoSDPipeline` folder -> a `VideoRefinerPipeline` folder that refines
  a video into the same frames (`convert`).

The layer sits just above the models and schedulers: it imports them and `diffusers_video.folders`, never a pipeline
class. `diffusers-video convert` (`commands/convert.py`) is their command line, and the scripts in the repository's
`conversion_scripts/` are thin wrappers over it, so the conversions also work from an installed package.
"""
