"""What the video pipelines of this package share: the output dataclass, output types, VAE decoding, post-processing,
and the thin base class [`VideoDiffusionPipeline`] that gives them Hub publishing, loading by repo id and LoRA.

Inference code is shared as small functions that each pipeline calls; the base class only adds what a plain
`DiffusionPipeline` cannot do for a third-party package: folder checks and Hub downloads (`pipelines.loading`),
remote-code shims (`pipelines.remote_code`) and publishing with our model card (the publisher that
`diffusers_video.hub` registers in `diffusers_video.folders`). Frames come back as diffusers' video pipelines return
them (see [`postprocess_video`]).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.models import AutoencoderKL
from diffusers.utils import BaseOutput, logging
from diffusers.video_processor import VideoProcessor

from ..folders import (
    CARD_NAME,
    DISTILLATION_NAME,
    INDEX_NAME,
    SAMPLE_NAME,
    SCORES_NAMES,
    TRAINING_CONFIG_NAME,
    atomic_folder,
    class_name_of,
    pickles_allowed,
    publisher,
    read_json,
)
from ..models.video_vae import AutoencoderKLVideo
from .checks import check_decode_chunk_size, check_output_type
from .foreign_folders import foreign_folder
from .loading import check_pipeline_folder, download_pipeline, is_repo_id, shadow_folder
from .lora import VideoLoraLoaderMixin
from .remote_code import PIPELINE_SHIM, write_remote_code_files

logger = logging.get_logger(__name__)

__all__ = [
    "VideoDiffusionPipeline",
    "VideoPipelineOutput",
    "decode_latents",
    "postprocess_video",
    "warn_if_half_on_cpu",
]


@dataclass
class VideoPipelineOutput(BaseOutput):
    """Output of the video pipelines of this package.

    Args:
        frames (`np.ndarray`, `torch.Tensor` or `list[list[PIL.Image.Image]]`):
            The videos, as the requested `output_type` gives them: "np" a `(batch, frames, height, width, 3)` float
            array in [0, 1]; "pt" a `(batch, frames, 3, height, width)` tensor in [0, 1]; "pil" one list of PIL images
            per video; "latent" the final latents `(batch, channels, frames, height, width)`.
    """

    frames: np.ndarray | torch.Tensor | list[list[PIL.Image.Image]]


class VideoDiffusionPipeline(VideoLoraLoaderMixin, DiffusionPipeline):
    r"""The base class of diffusers-video's pipelines: a `DiffusionPipeline` that publishes to and loads from the Hub.

    What it adds to [`DiffusionPipeline`]:

    - `from_pretrained("user/repo")` and `from_pretrained(folder)` check the folder before loading (it has a
      `model_index.json` naming this class, the components this class takes, complete safetensors files) and fail
      with a message naming the path or repo id. Repos are fetched by [`download`], since diffusers' own refuses
      components from a library other than diffusers or transformers. `local_files_only=True` reads the Hub cache.
      On this base class itself, `from_pretrained` returns the pipeline class named in `model_index.json`.
    - `push_to_hub(repo_id)` uploads the pipeline with a full model card (`diffusers_video.hub.make_model_card`) and
      the remote-code shims, so that `diffusers.DiffusionPipeline.from_pretrained(repo_id, trust_remote_code=True)`
      also returns this class. `save_pretrained(folder, remote_code=True)` writes the shims into a local folder.
    - LoRA the diffusers way ([`VideoLoraLoaderMixin`], `pipelines.lora`): `load_lora_weights(path_or_repo,
      adapter_name=...)`, `set_adapters`, `fuse_lora` / `unfuse_lora`, `unload_lora_weights`, `save_lora_weights`;
      a file's key prefixes name the components (`residual_unet`, `unet_0`, ...; `unet` is the video UNet).
    """

    @classmethod
    def pipeline_classes(cls) -> dict[str, type[VideoDiffusionPipeline]]:
        """Every pipeline class of diffusers-video (the subclasses of this class), by name."""
        found, todo = {}, list(VideoDiffusionPipeline.__subclasses__())
        while todo:
            subclass = todo.pop()
            found[subclass.__name__] = subclass
            todo.extend(subclass.__subclasses__())
        return found

    @classmethod
    def pipeline_class(cls, name: str) -> type[VideoDiffusionPipeline] | None:
        """The diffusers-video pipeline class called `name`, or None."""
        return cls.pipeline_classes().get(name)

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        variant: str | None = None,
        max_shard_size: int | str | None = None,
        push_to_hub: bool = False,
        remote_code: bool = True,
        **kwargs,
    ) -> None:
        """Saves the pipeline as [`DiffusionPipeline.save_pretrained`] does, optionally with the remote-code shims.

        The save is atomic: it writes a temporary sibling folder and swaps it into place once complete, so a failed
        save leaves an existing `save_directory` loadable and unchanged (files of it that a save does not write, such
        as a model card or `training_config.json`, are kept).

        Args:
            save_directory (`str` or `os.PathLike`): The folder; created if needed.
            safe_serialization, variant, max_shard_size: As in [`DiffusionPipeline.save_pretrained`].
            push_to_hub (`bool`, defaults to False): Also upload the folder (with the shims and a model card) to
                `repo_id` (keyword, defaults to the folder's name); `private`, `token`, `commit_message`,
                `create_pr` and the card's `base_model`, `scores` and `sample` may be passed as keywords.
            remote_code (`bool`, defaults to True): Also write the shims (`pipeline.py` and
                `<component>/<module>.py`, each a one-line import from `diffusers_video`) and set `model_index.json`'s
                `_class_name` to `["pipeline", "<Class>"]` (diffusers' form for a custom pipeline), so that
                `diffusers.DiffusionPipeline.from_pretrained(save_directory, trust_remote_code=True)` returns this
                class. False writes a plain diffusers folder (`_class_name` the class name, no shims), which only
                this package's classes load.
                `push_to_hub` always uploads the shims.
        """
        hub_kwargs = {}
        if push_to_hub:
            keys = ("repo_id", "private", "token", "commit_message", "create_pr", "base_model", "scores", "sample")
            hub_kwargs = {key: kwargs.pop(key) for key in keys if key in kwargs}
        rewritten = {*self.components, INDEX_NAME, f"{PIPELINE_SHIM}.py"}
        with atomic_folder(save_directory, keep=lambda name: name not in rewritten) as temporary:
            super().save_pretrained(
                temporary,
                safe_serialization=safe_serialization,
                variant=variant,
                max_shard_size=max_shard_size,
                **kwargs,
            )
            if remote_code or push_to_hub:
                write_remote_code_files(temporary, type(self).__module__)
        if push_to_hub:
            repo_id = hub_kwargs.pop("repo_id", Path(save_directory).name)
            publisher()(save_directory, repo_id, **hub_kwargs)

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        create_pr: bool = False,
        safe_serialization: bool = True,
        variant: str | None = None,
        *,
        base_model: str | list[str] | None = None,
        scores: str | os.PathLike | None = None,
        sample: str | os.PathLike | None = None,
    ):
        """Uploads the pipeline to the Hub with a model card and the remote-code shims, in one commit.

        The card (`diffusers_video.hub.make_model_card`) also describes the training, distillation, moving-shapes
        scores and sample GIF when the folder this pipeline was loaded from has `training_config.json`,
        `distillation.json`, `quality.json` and `sample.gif` (these files are uploaded too); a `README.md` there is
        uploaded instead of a generated card.

        Args:
            repo_id (`str`): "namespace/name"; created if it does not exist.
            commit_message (`str`, *optional*): Defaults to "Upload <Class> with diffusers-video".
            private (`bool`, *optional*): Create the repo private (ignored when it exists).
            token (`str`, *optional*): A Hub token; defaults to the saved one.
            create_pr (`bool`, defaults to False): Open a pull request instead of committing to main.
            safe_serialization, variant: As in [`DiffusionPipeline.save_pretrained`].
            base_model (`str` or `list[str]`, *optional*): Hub id(s) the model was made from, for the card.
            scores (`str`, *optional*): A `diffusers-video bench quality` result file, for the card.
            sample (`str`, *optional*): A GIF to show on the card.

        Returns:
            `huggingface_hub.CommitInfo`: The commit.
        """
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, safe_serialization=safe_serialization, variant=variant, remote_code=True)
            source = self.name_or_path
            if source and os.path.isdir(source):  # what the card tells about the model, from where it was loaded
                for name in (TRAINING_CONFIG_NAME, DISTILLATION_NAME, *SCORES_NAMES, SAMPLE_NAME, CARD_NAME):
                    if (Path(source) / name).is_file():
                        shutil.copyfile(Path(source) / name, Path(folder) / name)
            return publisher()(
                folder, repo_id, private=private, token=token, commit_message=commit_message, create_pr=create_pr,
                base_model=base_model, scores=scores, sample=sample,
            )  # fmt: skip

    @classmethod
    def download(cls, pretrained_model_name: str, **kwargs) -> str:
        """Downloads a pipeline repo into the Hub cache (or finds it there); returns the snapshot folder.

        Replaces [`DiffusionPipeline.download`], which rejects our repos: in diffusers 0.42.1 it calls
        `_get_custom_components_and_folders` (`diffusers.pipelines.pipeline_loading_utils`), which raises for every
        component whose library is neither in `LOADABLE_CLASSES` (diffusers, transformers, onnxruntime.training) nor a
        diffusers pipeline module unless the repo has a `<component>/<library>.py` file, and our components' library is
        their module path (e.g. "diffusers_video.models.unet_3d"). See `pipelines.loading.download_pipeline` for
        what is fetched.

        Args:
            pretrained_model_name (`str`): A Hub repo id.
            kwargs: `revision`, `cache_dir`, `force_download`, `local_files_only`, `token`, `use_safetensors`,
                `variant`;
                components passed as keywords (e.g. `base_unet=None`) are not downloaded. Other keywords of
                `from_pretrained` are ignored here.
        """
        return download_pipeline(
            pretrained_model_name,
            revision=kwargs.get("revision"),
            cache_dir=kwargs.get("cache_dir"),
            force_download=kwargs.get("force_download", False),
            local_files_only=kwargs.get("local_files_only"),
            token=kwargs.get("token"),
            use_safetensors=kwargs.get("use_safetensors"),
            skip_components=kwargs.keys(),
            variant=kwargs.get("variant"),
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        r"""Loads a pipeline from a folder written by `save_pretrained` or from a Hub repo id.

        Takes the keyword arguments of [`DiffusionPipeline.from_pretrained`] (`dtype`, `local_files_only`,
        `revision`, `cache_dir`, `token`, components to use instead of the saved ones, ...). The folder is checked
        first (see `pipelines.loading.check_pipeline_folder`); its shims, if any, must be byte for byte what
        `save_pretrained` writes (imports from `diffusers_video`), so loading never runs code from the folder.
        Pickled weights (a component with `.bin`/`.ckpt`/... files and no safetensors) load only with
        `allow_pickle=True`.
        The diffusers folder or repo of a public checkpoint (`TextToVideoSDPipeline` for `VideoFusionPipeline`,
        `VideoToVideoSDPipeline` for `VideoRefinerPipeline`, `I2VGenXLPipeline` for `I2VGenXLCascadePipeline`) is
        converted in memory with the conversion scripts' strict key maps, and one line is logged
        (`pipelines.foreign_folders`).

        Raises:
            FileNotFoundError: neither a folder nor an existing (or cached) repo, or no `model_index.json`.
            ValueError: the folder holds another pipeline class or its components, a damaged safetensors file,
                code other than the shims, or pickled weights without `allow_pickle=True`.
        """
        if kwargs.get("custom_pipeline") is not None:
            raise ValueError(
                f"`custom_pipeline` ({kwargs['custom_pipeline']!r}) is not taken by {cls.__name__}.from_pretrained, "
                "which loads its own class; use `diffusers.DiffusionPipeline.from_pretrained` for custom pipelines."
            )
        allow_pickle = bool(kwargs.pop("allow_pickle", False))
        if kwargs.get("use_safetensors") is False and not allow_pickle:
            raise ValueError(
                "`use_safetensors=False` loads pickled weights, which run code: pass `allow_pickle=True`."
            )
        path = os.fspath(pretrained_model_name_or_path)
        if os.path.isdir(path):
            folder = path
        elif os.path.exists(path):
            raise ValueError(
                f"'{path}' is a file, not a pipeline folder or Hub repo id; a single-file checkpoint must be "
                "converted to a diffusers folder first (see `diffusers-video convert --help`)."
            )
        elif not is_repo_id(path):
            raise FileNotFoundError(f"'{path}' is neither an existing folder nor a Hub repo id ('namespace/name').")
        else:
            folder = cls.download(path, **{**kwargs, "use_safetensors": False if allow_pickle else True})
        loads_any = cls.pipeline_classes() if cls is VideoDiffusionPipeline else None
        # a diffusers folder of a public checkpoint (TextToVideoSDPipeline, ...) is converted in memory
        foreign = foreign_folder(
            folder, cls, kwargs, source=path, allow_pickle=allow_pickle, pipeline_classes=loads_any
        )
        with foreign as (folder, converted), cls._folder_components_context(folder), pickles_allowed(allow_pickle):
            kwargs.update(converted)
            pipeline_class, has_shims = check_pipeline_folder(folder, cls, skip=kwargs, pipeline_classes=loads_any)
            if not has_shims:
                pipeline = super(VideoDiffusionPipeline, pipeline_class).from_pretrained(folder, **kwargs)
            else:
                # diffusers imports a custom pipeline's shims: it gets a shadow of the folder whose shims this package
                # wrote itself (the folder's own were checked to be exactly those), so no code of the folder runs
                with shadow_folder(folder, pipeline_class.__module__) as shadow:
                    kwargs["trust_remote_code"] = True
                    pipeline = super(VideoDiffusionPipeline, pipeline_class).from_pretrained(shadow, **kwargs)
        pipeline.register_to_config(
            _name_or_path=path
        )  # the folder or repo id the user named, as diffusers records it
        warn_if_half_on_cpu(pipeline)
        return pipeline

    def to(self, *args, **kwargs):
        """As [`DiffusionPipeline.to`]; warns when it leaves float16 models on the CPU (see [`warn_if_half_on_cpu`])."""
        pipeline = super().to(*args, **kwargs)
        warn_if_half_on_cpu(pipeline)
        return pipeline

    @classmethod
    def _components_context(cls, index: dict) -> contextlib.AbstractContextManager:
        """A context in which this class expects the components of a folder with this `model_index.json`.

        diffusers reads a pipeline's components from its `__init__` signature. A pipeline whose components depend on
        its config (the `unet_<i>` / `scheduler_<i>` stages of `ImagenVideoPipeline`) overrides this to declare them
        while `from_pretrained` checks and loads a folder. The default declares nothing.
        """
        return contextlib.nullcontext()

    @classmethod
    def _folder_components_context(cls, folder: str | os.PathLike) -> contextlib.AbstractContextManager:
        """`_components_context` of the pipeline class that `folder`'s `model_index.json` names (this class, or the
        class it names when called on `VideoDiffusionPipeline`); a no-op for an unreadable folder, which
        `check_pipeline_folder` then reports."""
        try:
            index = read_json(Path(folder) / INDEX_NAME, missing_ok=True)
            name = class_name_of(index, INDEX_NAME) if index is not None else None
        except ValueError:
            return contextlib.nullcontext()
        target = cls.pipeline_class(name) if cls is VideoDiffusionPipeline and name else cls
        if index is None or target is None:
            return contextlib.nullcontext()
        return target._components_context(index)


# Adapted from diffusers.pipelines.animatediff.pipeline_animatediff.AnimateDiffPipeline.decode_latents
# (`decode_chunk_size=None` decodes all frames at once, as TextToVideoSDPipeline.decode_latents does)
def warn_if_half_on_cpu(pipeline: DiffusionPipeline) -> list[str]:
    """Logs a warning naming the components that are float16 on the CPU, and returns their names.

    CPUs have no float16 arithmetic: PyTorch converts every float16 operation there, which made the Imagen Video demo
    about 30x slower than in float32 on this project's machine; bfloat16 (native on CPUs with AVX-512 BF16 or AMX) and
    float32 run at full speed, float16 is for GPUs.
    """
    slow = []
    for name, component in pipeline.components.items():
        parameter = next(component.parameters(), None) if isinstance(component, torch.nn.Module) else None
        if parameter is not None and parameter.dtype == torch.float16 and parameter.device.type == "cpu":
            slow.append(name)
    if slow:
        logger.warning(
            f"{', '.join(slow)} {'is' if len(slow) == 1 else 'are'} float16 on the CPU, where float16 runs many times"
            " slower than float32 (about 30x for the Imagen Video demo): use torch.float32 or torch.bfloat16 on a CPU,"
            " float16 on a GPU."
        )
    return slow


def decode_latents(
    vae: AutoencoderKL | AutoencoderKLVideo, latents: torch.Tensor, decode_chunk_size: int | None = None
) -> torch.Tensor:
    """Decodes video latents with an image VAE frame by frame, or with a video VAE as whole clips.

    Args:
        vae (`AutoencoderKL` or `AutoencoderKLVideo`): The VAE. An image VAE decodes `decode_chunk_size` frames per
            call; the video VAE's temporal layers see the whole clip (its own `decode_chunk_size` bounds the memory of
            each layer at no change of result).
        latents (`torch.Tensor`): `(batch, channels, frames, height, width)` latents (before `1 / scaling_factor`).
        decode_chunk_size (`int`, *optional*): Frames per chunk; `None` decodes all frames at once. Smaller chunks bound
            the memory of decoding at no change of result.

    Returns:
        `torch.Tensor`: float32 video `(batch, 3, frames, height * vae_scale_factor, width * vae_scale_factor)` in the
        VAE's output range (about [-1, 1]).
    """
    check_decode_chunk_size(decode_chunk_size)
    if latents.ndim != 5:
        raise ValueError(
            f"`latents` must have shape (batch, channels, frames, height, width) but has shape {tuple(latents.shape)}."
        )
    latents = 1 / vae.config.scaling_factor * latents
    if isinstance(vae, AutoencoderKLVideo):
        return vae.decode(latents, decode_chunk_size=decode_chunk_size).sample.float()  # (B, 3, F, H, W)

    batch_size, channels, num_frames, height, width = latents.shape
    # (B, C, F, h, w) -> (B*F, C, h, w)
    latents = latents.permute(0, 2, 1, 3, 4).reshape(batch_size * num_frames, channels, height, width)

    chunk = latents.shape[0] if decode_chunk_size is None else decode_chunk_size
    video = []
    for i in range(0, latents.shape[0], chunk):
        video.append(vae.decode(latents[i : i + chunk]).sample)
    video = torch.cat(video)  # (B*F, 3, H, W)
    video = video[None, :].reshape((batch_size, num_frames, -1) + video.shape[2:]).permute(0, 2, 1, 3, 4)
    # always float32: no significant overhead, and it works for bfloat16
    return video.float()  # (B, 3, F, H, W)


def postprocess_video(
    video: torch.Tensor, output_type: str = "np"
) -> np.ndarray | torch.Tensor | list[list[PIL.Image.Image]]:
    """A decoded video `(batch, 3, frames, height, width)` in [-1, 1] as the frames of `output_type`.

    Uses diffusers' `VideoProcessor.postprocess_video`, so the frames are exactly those of diffusers' video pipelines:
    "np" `(batch, frames, height, width, 3)` in [0, 1], "pt" `(batch, frames, 3, height, width)` in [0, 1], "pil" a
    list of lists of images. "latent" is not a post-processing: pipelines return their latents themselves.

    Args:
        video (`torch.Tensor`): The decoded video.
        output_type (`str`, defaults to "np"): "np", "pt" or "pil".
    """
    check_output_type(output_type, allowed=("np", "pt", "pil"))
    if video.ndim != 5:
        raise ValueError(
            f"`video` must have shape (batch, channels, frames, height, width) but has shape {tuple(video.shape)}."
        )
    # post-processing neither resizes nor depends on the VAE's scale factor
    return VideoProcessor(do_resize=False).postprocess_video(video=video, output_type=output_type)
