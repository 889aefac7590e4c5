"""What the video pipelines of this package share: the output dataclass, output types, VAE decoding, post-processing,
and the thin base class [`VideoDiffusionPipeline`] that gives them Hub publishing and loading by repo id.

Inference code is shared as small functions that each pipeline calls; the base class only adds what a plain
`DiffusionPipeline` cannot do for a third-party package (see `diffusers_video.hub`). Frames come back as diffusers'
video pipelines return them (see [`postprocess_video`]).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.models import AutoencoderKL
from diffusers.utils import BaseOutput, logging
from diffusers.video_processor import VideoProcessor
from transformers import CLIPTextModel, CLIPTokenizer

logger = logging.get_logger(__name__)

OUTPUT_TYPES = ("np", "pt", "pil", "latent")

__all__ = [
    "OUTPUT_TYPES",
    "VideoDiffusionPipeline",
    "VideoPipelineOutput",
    "check_decode_chunk_size",
    "check_output_type",
    "decode_latents",
    "encode_clip_prompt",
    "postprocess_video",
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


class VideoDiffusionPipeline(DiffusionPipeline):
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
        from ..hub import push_folder, write_remote_code_files

        hub_kwargs = {}
        if push_to_hub:
            keys = ("repo_id", "private", "token", "commit_message", "create_pr", "base_model", "scores", "sample")
            hub_kwargs = {key: kwargs.pop(key) for key in keys if key in kwargs}
        super().save_pretrained(
            save_directory,
            safe_serialization=safe_serialization,
            variant=variant,
            max_shard_size=max_shard_size,
            **kwargs,
        )
        if remote_code or push_to_hub:
            write_remote_code_files(save_directory, type(self).__module__)
        if push_to_hub:
            repo_id = hub_kwargs.pop("repo_id", Path(save_directory).name)
            push_folder(save_directory, repo_id, **hub_kwargs)

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
        from ..hub import CARD_NAME, DISTILLATION_NAME, SAMPLE_NAME, SCORES_NAMES, TRAINING_CONFIG_NAME, push_folder

        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, safe_serialization=safe_serialization, variant=variant, remote_code=True)
            source = self.name_or_path
            if source and os.path.isdir(source):  # what the card tells about the model, from where it was loaded
                for name in (TRAINING_CONFIG_NAME, DISTILLATION_NAME, *SCORES_NAMES, SAMPLE_NAME, CARD_NAME):
                    if (Path(source) / name).is_file():
                        shutil.copyfile(Path(source) / name, Path(folder) / name)
            return push_folder(
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
        their module path (e.g. "diffusers_video.models.unet_3d"). See `diffusers_video.hub.download_pipeline` for
        what is fetched.

        Args:
            pretrained_model_name (`str`): A Hub repo id.
            kwargs: `revision`, `cache_dir`, `force_download`, `local_files_only`, `token`, `use_safetensors`;
                components passed as keywords (e.g. `base_unet=None`) are not downloaded. Other keywords of
                `from_pretrained` are ignored here.
        """
        from ..hub import download_pipeline

        return download_pipeline(
            pretrained_model_name,
            revision=kwargs.get("revision"),
            cache_dir=kwargs.get("cache_dir"),
            force_download=kwargs.get("force_download", False),
            local_files_only=kwargs.get("local_files_only"),
            token=kwargs.get("token"),
            use_safetensors=kwargs.get("use_safetensors"),
            skip_components=kwargs.keys(),
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        r"""Loads a pipeline from a folder written by `save_pretrained` or from a Hub repo id.

        Takes the keyword arguments of [`DiffusionPipeline.from_pretrained`] (`dtype`, `local_files_only`,
        `revision`, `cache_dir`, `token`, components to use instead of the saved ones, ...). The folder is checked
        first (see `diffusers_video.hub.check_pipeline_folder`); its shims, if any, are checked to be imports from
        `diffusers_video` only, so loading never runs code from the folder.

        Raises:
            FileNotFoundError: neither a folder nor an existing (or cached) repo, or no `model_index.json`.
            ValueError: the folder holds another pipeline class or its components, a damaged safetensors file, or
                code other than the shims.
        """
        from ..hub import check_pipeline_folder, is_repo_id

        if kwargs.get("custom_pipeline") is not None:
            raise ValueError(
                f"`custom_pipeline` ({kwargs['custom_pipeline']!r}) is not taken by {cls.__name__}.from_pretrained, "
                "which loads its own class; use `diffusers.DiffusionPipeline.from_pretrained` for custom pipelines."
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
            folder = cls.download(path, **kwargs)
        with cls._folder_components_context(folder):
            pipeline_class, has_shims = check_pipeline_folder(folder, cls, skip=kwargs)
            if has_shims:
                # the shims only import classes from diffusers_video (checked above)
                kwargs["trust_remote_code"] = True
            pipeline = super(VideoDiffusionPipeline, pipeline_class).from_pretrained(folder, **kwargs)
        if folder != path:
            pipeline.register_to_config(_name_or_path=path)  # the repo id, as diffusers records it
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
        from ..hub import INDEX_NAME, class_name_of, read_json

        try:
            index = read_json(Path(folder) / INDEX_NAME)
            name = class_name_of(index, INDEX_NAME) if index is not None else None
        except ValueError:
            return contextlib.nullcontext()
        target = cls.pipeline_class(name) if cls is VideoDiffusionPipeline and name else cls
        if index is None or target is None:
            return contextlib.nullcontext()
        return target._components_context(index)


def check_output_type(output_type: str, allowed: Sequence[str] = OUTPUT_TYPES) -> None:
    """Raises a `ValueError` unless `output_type` is one of `allowed` (default "np", "pt", "pil", "latent").

    diffusers' image processor silently falls back to "np" for an unknown type; a typo should fail instead.
    """
    if not isinstance(output_type, str) or output_type not in allowed:
        raise ValueError(f"`output_type` must be one of {tuple(allowed)} but is {output_type!r}.")


def check_decode_chunk_size(decode_chunk_size: int | None) -> None:
    """Raises a `ValueError` unless `decode_chunk_size` is None or a positive integer."""
    if decode_chunk_size is None:
        return
    if isinstance(decode_chunk_size, bool) or not isinstance(decode_chunk_size, int) or decode_chunk_size < 1:
        raise ValueError(f"`decode_chunk_size` must be a positive integer or None but is {decode_chunk_size!r}.")


# Adapted from diffusers.pipelines.animatediff.pipeline_animatediff.AnimateDiffPipeline.decode_latents
# (`decode_chunk_size=None` decodes all frames at once, as TextToVideoSDPipeline.decode_latents does)
def decode_latents(vae: AutoencoderKL, latents: torch.Tensor, decode_chunk_size: int | None = None) -> torch.Tensor:
    """Decodes video latents with an image VAE, `decode_chunk_size` frames at a time.

    Args:
        vae (`AutoencoderKL`): The image VAE.
        latents (`torch.Tensor`): `(batch, channels, frames, height, width)` latents (before `1 / scaling_factor`).
        decode_chunk_size (`int`, *optional*): Frames per `vae.decode` call; `None` decodes all frames at once.
            Smaller chunks bound the memory of decoding at no change of result (frames decode independently).

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


# Adapted from diffusers.pipelines.deprecated.text_to_video_synthesis.pipeline_text_to_video_synth
# .TextToVideoSDPipeline.encode_prompt (itself StableDiffusionPipeline.encode_prompt), as a function of the tokenizer
# and text encoder, without the LoRA and textual-inversion branches (these pipelines have no such loaders), and with
# `dtype` in place of the UNet's dtype as the fallback when there is no text encoder; `clip_skip` also works with
# transformers 5's CLIPTextModel
def encode_clip_prompt(
    tokenizer: CLIPTokenizer,
    text_encoder: CLIPTextModel | None,
    prompt: str | list[str] | None,
    device: torch.device,
    num_images_per_prompt: int,
    do_classifier_free_guidance: bool,
    negative_prompt: str | list[str] | None = None,
    prompt_embeds: torch.Tensor | None = None,
    negative_prompt_embeds: torch.Tensor | None = None,
    clip_skip: int | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""Encodes a prompt with a CLIP text encoder exactly as diffusers' Stable Diffusion and text-to-video pipelines do.

    Args:
        tokenizer (`CLIPTokenizer`): The tokenizer.
        text_encoder (`CLIPTextModel`): The text encoder (may be None when both embeddings are given).
        prompt (`str` or `list[str]`, *optional*): The prompt or prompts to encode.
        device (`torch.device`): Device of the embeddings.
        num_images_per_prompt (`int`): Images or videos per prompt; the embeddings are repeated this many times.
        do_classifier_free_guidance (`bool`): Whether to also return unconditional embeddings.
        negative_prompt (`str` or `list[str]`, *optional*): What not to generate; the empty prompt when not given.
        prompt_embeds (`torch.Tensor`, *optional*): Pre-computed text embeddings instead of `prompt`.
        negative_prompt_embeds (`torch.Tensor`, *optional*): Pre-computed negative embeddings.
        clip_skip (`int`, *optional*): Number of final CLIP layers to skip (1 uses the pre-final layer).
        dtype (`torch.dtype`, *optional*): dtype of the embeddings when there is no text encoder (a pipeline passes
            its denoiser's dtype, as diffusers does); the text encoder's dtype otherwise.

    Returns:
        `tuple[torch.Tensor, torch.Tensor | None]`: `(prompt_embeds, negative_prompt_embeds)`, each
        `(batch * num_images_per_prompt, tokens, dim)`; the negative ones are None without guidance.
    """
    if prompt is not None and isinstance(prompt, str):
        batch_size = 1
    elif prompt is not None and isinstance(prompt, list):
        batch_size = len(prompt)
    else:
        batch_size = prompt_embeds.shape[0]

    if prompt_embeds is None:
        text_inputs = tokenizer(
            prompt,
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        text_input_ids = text_inputs.input_ids
        untruncated_ids = tokenizer(prompt, padding="longest", return_tensors="pt").input_ids

        if untruncated_ids.shape[-1] >= text_input_ids.shape[-1] and not torch.equal(text_input_ids, untruncated_ids):
            removed_text = tokenizer.batch_decode(untruncated_ids[:, tokenizer.model_max_length - 1 : -1])
            logger.warning(
                "The following part of your input was truncated because CLIP can only handle sequences up to"
                f" {tokenizer.model_max_length} tokens: {removed_text}"
            )

        if hasattr(text_encoder.config, "use_attention_mask") and text_encoder.config.use_attention_mask:
            attention_mask = text_inputs.attention_mask.to(device)
        else:
            attention_mask = None

        if clip_skip is None:
            prompt_embeds = text_encoder(text_input_ids.to(device), attention_mask=attention_mask)
            prompt_embeds = prompt_embeds[0]
        else:
            prompt_embeds = text_encoder(
                text_input_ids.to(device), attention_mask=attention_mask, output_hidden_states=True
            )
            # the hidden states of the chosen layer, through the final layer norm as the last layer's are
            prompt_embeds = prompt_embeds[-1][-(clip_skip + 1)]
            # transformers 5 flattened CLIPTextModel (no `.text_model`), which diffusers 0.42.1 still expects
            text_model = getattr(text_encoder, "text_model", text_encoder)
            prompt_embeds = text_model.final_layer_norm(prompt_embeds)

    if text_encoder is not None:
        prompt_embeds_dtype = text_encoder.dtype
    elif dtype is not None:
        prompt_embeds_dtype = dtype
    else:
        prompt_embeds_dtype = prompt_embeds.dtype

    prompt_embeds = prompt_embeds.to(dtype=prompt_embeds_dtype, device=device)

    bs_embed, seq_len, _ = prompt_embeds.shape
    # duplicate text embeddings for each generation per prompt, using mps friendly method
    prompt_embeds = prompt_embeds.repeat(1, num_images_per_prompt, 1)
    prompt_embeds = prompt_embeds.view(bs_embed * num_images_per_prompt, seq_len, -1)

    # get unconditional embeddings for classifier free guidance
    if do_classifier_free_guidance and negative_prompt_embeds is None:
        uncond_tokens: list[str]
        if negative_prompt is None:
            uncond_tokens = [""] * batch_size
        elif prompt is not None and type(prompt) is not type(negative_prompt):
            raise TypeError(
                f"`negative_prompt` should be the same type to `prompt`, but got {type(negative_prompt)} !="
                f" {type(prompt)}."
            )
        elif isinstance(negative_prompt, str):
            uncond_tokens = [negative_prompt]
        elif batch_size != len(negative_prompt):
            raise ValueError(
                f"`negative_prompt`: {negative_prompt} has batch size {len(negative_prompt)}, but `prompt`:"
                f" {prompt} has batch size {batch_size}. Please make sure that passed `negative_prompt` matches"
                " the batch size of `prompt`."
            )
        else:
            uncond_tokens = negative_prompt

        max_length = prompt_embeds.shape[1]
        uncond_input = tokenizer(
            uncond_tokens,
            padding="max_length",
            max_length=max_length,
            truncation=True,
            return_tensors="pt",
        )

        if hasattr(text_encoder.config, "use_attention_mask") and text_encoder.config.use_attention_mask:
            attention_mask = uncond_input.attention_mask.to(device)
        else:
            attention_mask = None

        negative_prompt_embeds = text_encoder(
            uncond_input.input_ids.to(device),
            attention_mask=attention_mask,
        )
        negative_prompt_embeds = negative_prompt_embeds[0]

    if do_classifier_free_guidance:
        # duplicate unconditional embeddings for each generation per prompt, using mps friendly method
        seq_len = negative_prompt_embeds.shape[1]

        negative_prompt_embeds = negative_prompt_embeds.to(dtype=prompt_embeds_dtype, device=device)

        negative_prompt_embeds = negative_prompt_embeds.repeat(1, num_images_per_prompt, 1)
        negative_prompt_embeds = negative_prompt_embeds.view(batch_size * num_images_per_prompt, seq_len, -1)

    return prompt_embeds, negative_prompt_embeds


def check_prompt_arguments(
    prompt, prompt_embeds, negative_prompt, negative_prompt_embeds, text_dim: int | None
) -> None:
    """The prompt checks every text-conditioned pipeline here makes before any model runs.

    Exactly one of `prompt` and `prompt_embeds`, at most one of `negative_prompt` and `negative_prompt_embeds`;
    prompts are strings or lists of strings; embeddings are `(batch, tokens, text_dim)` tensors (`text_dim` None: any
    width). Batch sizes are the pipeline's own business (they may broadcast a single negative prompt, or not).

    Raises:
        ValueError: A pair given both or neither, or embeddings of the wrong shape.
        TypeError: A prompt that is not a string or a list of strings.
    """
    if prompt is not None and prompt_embeds is not None:
        raise ValueError(
            f"Pass either `prompt` or `prompt_embeds`, not both, but got `prompt`={prompt!r} and"
            f" `prompt_embeds` of shape {tuple(prompt_embeds.shape)}."
        )
    if prompt is None and prompt_embeds is None:
        raise ValueError("Pass either `prompt` or `prompt_embeds`; both are None.")
    if negative_prompt is not None and negative_prompt_embeds is not None:
        raise ValueError(
            f"Pass at most one of `negative_prompt` and `negative_prompt_embeds` but got `negative_prompt`="
            f"{negative_prompt!r} and `negative_prompt_embeds` of shape {tuple(negative_prompt_embeds.shape)}."
        )
    for name, value in (("prompt", prompt), ("negative_prompt", negative_prompt)):
        if value is not None and not (
            isinstance(value, str) or (isinstance(value, list) and all(isinstance(p, str) for p in value))
        ):
            raise TypeError(f"`{name}` must be a string or a list of strings but is {value!r}.")
    for name, embeds in (("prompt_embeds", prompt_embeds), ("negative_prompt_embeds", negative_prompt_embeds)):
        if embeds is None:
            continue
        if not isinstance(embeds, torch.Tensor) or embeds.ndim != 3 or (text_dim and embeds.shape[-1] != text_dim):
            shape = tuple(embeds.shape) if isinstance(embeds, torch.Tensor) else type(embeds).__name__
            raise ValueError(f"`{name}` must have shape (batch, tokens, {text_dim}) but has shape {shape}.")
