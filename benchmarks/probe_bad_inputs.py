"""Bad values against the public API: is each refused with a clear error before any model runs?

Tries every case of `cases()` (both pipelines, `UNet3DModel`'s forward and config, the two schedulers, and
`diffusers-video generate`) on tiny models built in memory, counts the forward calls of every `torch.nn.Module` while
it runs (a global forward pre-hook), and sorts the outcome into

- clear: a `ValueError` or `TypeError` whose message names the argument (the case's `argument` regex), raised before
  any model ran (for a direct model call: before any of its submodules ran); for the CLI, exit code 1 and one line
  on stderr naming the option;
- unclear: another exception, a message that does not name the argument, or an error after a model ran;
- accepted: no error (with "NaN" when the result holds NaN, "timeout" when it ran past `--timeout` seconds).

    python benchmarks/probe_bad_inputs.py             # the tallies, then every case that is not clear
    python benchmarks/probe_bad_inputs.py --all       # every case with its outcome and message

The probe caps the process's address space (`--memory_gib`, default 8) so that a call that tries to allocate
terabytes fails at once instead of swapping; `tests/test_bad_inputs.py` runs the same cases and asserts that each is
clear.

Tallies of the 262 cases (clear / unclear / accepted): 158 / 54 / 50 at d93d61c (11 of the accepted returned NaN),
260 / 2 / 0 once the checks were added (the two unclear ones `generate` values that argparse refused with its usage
message and exit code 2: `--num_frames abc`, `--dtype float64`), 262 / 0 / 0 since the command line prints argparse's
refusals as one line with exit code 1 too.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shutil
import signal
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
SAVED_VIDEOFUSION = REPO / "tests" / "data" / "saved_by_e44bf79" / "videofusion"

TEXT_DIM = 16
PROMPT = "a red circle"
NAN, INF = float("nan"), float("inf")


@dataclass
class Case:
    """One bad value.

    Args:
        id (`str`): A unique name, `<target>-<what>`.
        target (`str`): What is called: "VideoFusionPipeline", "ImagenVideoPipeline", "UNet3DModel.forward",
            "UNet3DModel config", "DecomposedNoiseScheduler", "VDistilledScheduler" or "CLI".
        argument (`str`): A regex the message of a clear error matches: the argument (or config key, or option).
        call (`Callable[[Components], Any]`): Makes the call with the bad value.
        error (`type`): The exception a clear refusal raises (`SystemExit`-free CLI cases: ignored).
        direct_model (`bool`): The call runs one model directly: its own forward is not counted, its submodules are.
    """

    id: str
    target: str
    argument: str
    call: Callable[[Components], Any]
    error: type = ValueError
    direct_model: bool = False


@dataclass
class Outcome:
    """What a case did: `kind` is "clear", "unclear" or "accepted"; `forwards` counts model forward calls."""

    kind: str
    detail: str
    forwards: int = 0
    exception: BaseException | None = field(default=None, repr=False)


# ---------------------------------------------------------------------------------------------------------------------
# Tiny components
# ---------------------------------------------------------------------------------------------------------------------


def _perturb(model: torch.nn.Module, seed: int, scale: float = 0.02) -> torch.nn.Module:
    """Random weights everywhere (zero-initialised temporal layers included), in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)
    return model.eval()


def tiny_unet2d(**overrides):
    """A two-block `UNet2DConditionModel` (channels 8, 16; text width 16) on 8x8 latents."""
    from diffusers import UNet2DConditionModel

    config = dict(
        sample_size=8, in_channels=4, out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), block_out_channels=(8, 16), layers_per_block=1,
        attention_head_dim=2, cross_attention_dim=TEXT_DIM, norm_num_groups=4,
    )  # fmt: skip
    config.update(overrides)
    torch.manual_seed(0)
    return _perturb(UNet2DConditionModel(**config), seed=1)


def tiny_unet3d_config(**overrides) -> dict[str, Any]:
    """The config of a two-block latent `UNet3DModel` (4 channels, text width 16, 8 frames at most)."""
    config = dict(
        sample_size=8, in_channels=4, out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), block_out_channels=(8, 16), layers_per_block=1,
        attention_head_dim=2, cross_attention_dim=TEXT_DIM, norm_num_groups=4, temporal_attention_head_dim=4,
        max_frames=8,
    )  # fmt: skip
    config.update(overrides)
    return config


def tiny_unet3d(seed: int = 2, **overrides):
    from diffusers_video import UNet3DModel

    torch.manual_seed(seed)
    return _perturb(UNet3DModel(**tiny_unet3d_config(**overrides)), seed=seed)


def tiny_vae():
    """A two-block `AutoencoderKL` (2x downsampling, 4 latent channels)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4, norm_num_groups=4,
    ).eval()  # fmt: skip


def tiny_imagen_unet(sr: bool = False, seed: int = 0):
    """A two-block pixel-space `UNet3DModel`; an SR one reads 6 channels and a "noise_aug_level" condition."""
    from diffusers_video import UNet3DModel

    torch.manual_seed(seed)
    unet = UNet3DModel(
        sample_size=8, in_channels=6 if sr else 3, out_channels=3, down_block_types=("CrossAttnDownBlock2D",
        "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), block_out_channels=(8, 16),
        layers_per_block=1, norm_num_groups=4, cross_attention_dim=TEXT_DIM, attention_head_dim=2,
        temporal_attention_head_dim=4, scalar_conditions=("noise_aug_level",) if sr else (),
    )  # fmt: skip
    return _perturb(unet, seed, scale=0.05)


class Components:
    """The tiny models the cases call, built once on first use."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    @cached_property
    def videofusion(self):
        from diffusers_video import DecomposedNoiseScheduler, UNet3DModel, VideoFusionPipeline
        from diffusers_video.testing_utils import tiny_clip_text_models

        tokenizer, text_encoder = tiny_clip_text_models(TEXT_DIM, 16)
        base = tiny_unet2d()
        residual = _perturb(UNet3DModel.from_unet2d(base, temporal_attention_head_dim=4, max_frames=8), seed=2)
        pipe = VideoFusionPipeline(
            vae=tiny_vae(), text_encoder=text_encoder, tokenizer=tokenizer, residual_unet=residual,
            scheduler=DecomposedNoiseScheduler(base_noise_ratio=0.5), base_unet=base,
        )  # fmt: skip
        pipe.set_progress_bar_config(disable=True)
        return pipe

    @cached_property
    def imagen_video(self):
        from diffusers import DDIMScheduler

        from diffusers_video import ImagenVideoPipeline
        from diffusers_video.pipelines.imagen_video.cascade import StageSpec
        from diffusers_video.training.stand_in import build_t5_text_encoder, build_t5_tokenizer

        def ddim():
            return DDIMScheduler(
                prediction_type="v_prediction", clip_sample=False, timestep_spacing="trailing", set_alpha_to_one=False
            )

        tokenizer = build_t5_tokenizer(model_max_length=8)
        text_encoder = build_t5_text_encoder(len(tokenizer), d_model=TEXT_DIM, num_layers=1)
        pipe = ImagenVideoPipeline.from_stages(
            text_encoder,
            tokenizer,
            [
                ("base", tiny_imagen_unet(seed=0), ddim()),
                (StageSpec("tsr", 2), tiny_imagen_unet(sr=True, seed=1), ddim()),
                (StageSpec("ssr", 2), tiny_imagen_unet(sr=True, seed=2), ddim()),
            ],
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    @cached_property
    def unet(self):
        return tiny_unet3d()

    @cached_property
    def learned_unet(self):
        """Learned frame encodings for at most 4 frames."""
        return tiny_unet3d(frame_position_encoding="learned", max_frames=4)

    @cached_property
    def modulated_unet(self):
        """Text-modulated temporal convolutions (they pool the text over its tokens)."""
        return tiny_unet3d(temporal_text_modulation=True)

    @cached_property
    def conditioned_unet(self):
        """A "fps" scalar condition."""
        return tiny_unet3d(scalar_conditions=("fps",))

    @cached_property
    def saved_unets(self) -> dict[str, Path]:
        """Two saved `UNet3DModel` folders: "plain" and "modulated" (`temporal_text_modulation=True`)."""
        folders = {"plain": self.folder / "unet_plain", "modulated": self.folder / "unet_modulated"}
        self.unet.save_pretrained(folders["plain"])
        self.modulated_unet.save_pretrained(folders["modulated"])
        return folders

    def unet_folder(self, name: str, edit: Callable[[dict], None], source: str = "plain") -> Path:
        """A copy of a saved UNet folder whose config.json was changed by `edit(config)`."""
        folder = self.folder / name
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(self.saved_unets[source], folder)
        path = folder / "config.json"
        config = json.loads(path.read_text())
        edit(config)
        path.write_text(json.dumps(config, indent=2))
        return folder


# ---------------------------------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------------------------------


def _videofusion(**kwargs) -> Callable[[Components], Any]:
    def call(c: Components):
        arguments = dict(prompt=PROMPT, num_frames=5, num_inference_steps=2, guidance_scale=4.0, output_type="latent")
        arguments.update(kwargs)
        return c.videofusion(**arguments).frames

    return call


def _imagen_video(**kwargs) -> Callable[[Components], Any]:
    def call(c: Components):
        arguments = dict(prompt=PROMPT, num_frames=4, height=16, width=16, num_inference_steps=2, output_type="latent")
        arguments.update(kwargs)
        return c.imagen_video(**arguments).frames

    return call


def _latents(shape=(1, 4, 5, 8, 8), dtype=torch.float32, fill: float | None = None, device: str = "cpu"):
    """Lazily made latents (a `torch.Generator` cannot be built at import time on every device)."""

    def make():
        if device == "meta":
            return torch.empty(shape, dtype=dtype, device="meta")
        tensor = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
        if fill is not None:
            tensor.view(-1)[0] = fill
        return tensor

    return make


def _tensor(shape, fill: float | None = None, dtype=torch.float32):
    def make():
        tensor = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
        if fill is not None:
            tensor.view(-1)[0] = fill
        return tensor

    return make


def _lazy(kwargs: dict) -> dict:
    """`kwargs` with every callable value (a tensor maker) called."""
    return {key: value() if callable(value) and not isinstance(value, torch.nn.Module) else value for key, value in
            kwargs.items()}  # fmt: skip


def _videofusion_tensors(**kwargs) -> Callable[[Components], Any]:
    return lambda c: _videofusion(**_lazy(kwargs))(c)


def _imagen_video_tensors(**kwargs) -> Callable[[Components], Any]:
    return lambda c: _imagen_video(**_lazy(kwargs))(c)


def _generator():
    return torch.Generator().manual_seed(0)


def videofusion_cases() -> list[Case]:
    target = "VideoFusionPipeline"
    cases: list[Case] = []

    def add(what: str, argument: str, error: type = ValueError, tensors: bool = False, **kwargs):
        call = _videofusion_tensors(**kwargs) if tensors else _videofusion(**kwargs)
        cases.append(Case(f"videofusion-{what}", target, argument, call, error))

    # prompts
    add("prompt-empty-list", "`prompt`", prompt=[])
    add("prompt-int", "`prompt`", TypeError, prompt=3)
    add("prompt-list-with-int", "`prompt`", TypeError, prompt=["a", 3])
    add("prompt-bytes", "`prompt`", TypeError, prompt=b"a red circle")
    add("prompt-tuple", "`prompt`", TypeError, prompt=("a", "b"))
    add("prompt-none", "`prompt`", prompt=None)
    add("negative-prompt-int", "`negative_prompt`", TypeError, negative_prompt=3)
    add("negative-prompt-too-many", "`negative_prompt`", prompt=["a"], negative_prompt=["b", "c"])
    add("negative-prompt-empty-list", "`negative_prompt`", prompt=["a"], negative_prompt=[])
    add("negative-prompt-str-for-list", "`negative_prompt`", TypeError, prompt=["a", "b"], negative_prompt="c")
    # sizes
    for value in (0, -16, 18, 16.0, "16", True):
        add(f"height-{value!r}", "`height`", height=value)
    for value in (0, -16, 10, "16"):
        add(f"width-{value!r}", "`width`", width=value)
    add("size-too-large", r"`height`=.*`width`=.*GiB", height=10**6, width=10**6)
    for value in (0, -1, 2.5, "5", True):
        add(f"num_frames-{value!r}", "`num_frames`", num_frames=value)
    add("num_frames-too-many", r"`num_frames`.*GiB", num_frames=10**9)
    for value in (0, 1001, 2.0, "2", None):
        add(f"num_inference_steps-{value!r}", "`num_inference_steps`", num_inference_steps=value)
    for value in (0, 1.5, "1"):
        add(f"num_videos_per_prompt-{value!r}", "`num_videos_per_prompt`", num_videos_per_prompt=value)
    add("num_videos_per_prompt-too-many", r"`num_videos_per_prompt`.*GiB", num_videos_per_prompt=10**9)
    # guidance
    for value, error in ((-1.0, ValueError), (NAN, ValueError), (INF, ValueError), ("4", TypeError),
                         (None, TypeError), (True, TypeError), ([1.0, 2.0, 3.0], ValueError)):  # fmt: skip
        add(f"guidance_scale-{value!r}", "`guidance_scale`", error, guidance_scale=value)
    # eta
    for value in (-0.5, 1.5, NAN, INF, "0", True):
        add(f"eta-{value!r}", "`eta`", eta=value)
    # generator
    add("generator-str", "`generator`", TypeError, generator="seed")
    add("generator-int", "`generator`", TypeError, generator=0)
    add("generator-list-too-long", "`generator`", tensors=True, generator=lambda: [_generator(), _generator()])
    add("generator-list-with-str", "`generator`", TypeError, tensors=True, generator=lambda: [_generator(), "x"])
    # latents
    add("latents-shape", "`latents`", tensors=True, latents=_latents((1, 4, 3, 8, 8)))
    add("latents-4d", "`latents`", tensors=True, latents=_latents((1, 4, 8, 8)))
    add("latents-float64", "`latents`.*float64", TypeError, tensors=True, latents=_latents(dtype=torch.float64))
    add("latents-float16", "`latents`.*float16", TypeError, tensors=True, latents=_latents(dtype=torch.float16))
    add("latents-int64", "`latents`.*int64", TypeError, tensors=True, latents=_latents(dtype=torch.int64))
    add("latents-meta", "`latents`.*meta", tensors=True, latents=_latents(device="meta"))
    add("latents-nan", "`latents`.*NaN", tensors=True, latents=_latents(fill=NAN))
    add("latents-inf", "`latents`.*infinite", tensors=True, latents=_latents(fill=INF))
    add("latents-numpy", "`latents`", TypeError, tensors=True, latents=lambda: _latents()().numpy())
    # embeddings
    add("prompt_embeds-nan", "`prompt_embeds`.*NaN", tensors=True, prompt=None,
        prompt_embeds=_tensor((1, 16, TEXT_DIM), NAN))  # fmt: skip
    add("prompt_embeds-inf", "`prompt_embeds`.*infinite", tensors=True, prompt=None,
        prompt_embeds=_tensor((1, 16, TEXT_DIM), INF))  # fmt: skip
    add("prompt_embeds-no-tokens", "`prompt_embeds`", tensors=True, prompt=None,
        prompt_embeds=_tensor((1, 0, TEXT_DIM)))  # fmt: skip
    add("prompt_embeds-2d", "`prompt_embeds`", tensors=True, prompt=None, prompt_embeds=_tensor((16, TEXT_DIM)))
    add("prompt_embeds-width", "`prompt_embeds`", tensors=True, prompt=None, prompt_embeds=_tensor((1, 16, 8)))
    add("prompt_embeds-int64", "`prompt_embeds`.*int64", TypeError, tensors=True, prompt=None,
        prompt_embeds=_tensor((1, 16, TEXT_DIM), dtype=torch.int64))  # fmt: skip
    add("prompt_embeds-list", "`prompt_embeds`", TypeError, prompt=None, prompt_embeds=[[0.0] * TEXT_DIM])
    add("negative_prompt_embeds-nan", "`negative_prompt_embeds`.*NaN", tensors=True, prompt=None,
        prompt_embeds=_tensor((1, 16, TEXT_DIM)), negative_prompt_embeds=_tensor((1, 16, TEXT_DIM), NAN))  # fmt: skip
    add("negative_prompt_embeds-shape", "`negative_prompt_embeds`", tensors=True, prompt=None,
        prompt_embeds=_tensor((1, 16, TEXT_DIM)), negative_prompt_embeds=_tensor((1, 12, TEXT_DIM)))  # fmt: skip
    # output and the rest
    for value in ("numpy", None, 3):
        add(f"output_type-{value!r}", "`output_type`", output_type=value)
    add("return_dict-str", "`return_dict`", TypeError, return_dict="yes")
    add("cross_attention_kwargs-str", "`cross_attention_kwargs`", TypeError, cross_attention_kwargs="scale")
    for value in (0, 2.5):
        add(f"decode_chunk_size-{value!r}", "`decode_chunk_size`", decode_chunk_size=value, output_type="np")
    for value in (0, 2.5, "4"):
        add(f"window_size-{value!r}", "`window_size`", window_size=value)
    for value in (-1, 1.5):
        add(f"window_overlap-{value!r}", "`window_overlap`", window_size=4, window_overlap=value)
    add("window_overlap-equal-size", "`window_overlap`", window_size=4, window_overlap=4)
    add("callback-not-callable", "`callback_on_step_end`", TypeError, callback_on_step_end="print")
    add("callback-tensor-inputs-unknown", "`callback_on_step_end_tensor_inputs`",
        callback_on_step_end=lambda *a: {}, callback_on_step_end_tensor_inputs=["noise_pred"])  # fmt: skip
    add("callback-tensor-inputs-str", "`callback_on_step_end_tensor_inputs`", TypeError,
        callback_on_step_end=lambda *a: {}, callback_on_step_end_tensor_inputs="latents")  # fmt: skip
    return cases


def imagen_video_cases() -> list[Case]:
    target = "ImagenVideoPipeline"
    cases: list[Case] = []

    def add(what: str, argument: str, error: type = ValueError, tensors: bool = False, **kwargs):
        call = _imagen_video_tensors(**kwargs) if tensors else _imagen_video(**kwargs)
        cases.append(Case(f"imagen_video-{what}", target, argument, call, error))

    add("prompt-empty-list", "`prompt`", prompt=[])
    add("prompt-int", "`prompt`", TypeError, prompt=3)
    add("prompt-none", "`prompt`", prompt=None)
    add("negative-prompt-too-many", "`negative_prompt`", prompt=["a"], negative_prompt=["b", "c"])
    for value in (0, 3, 2.5, "4"):
        add(f"num_frames-{value!r}", "`num_frames`", num_frames=value)
    add("num_frames-too-many", r"`num_frames`.*GiB", num_frames=2 * 10**9)
    for value in (0, 15, -16, "16"):
        add(f"height-{value!r}", "`height`", height=value)
    add("width-float", "`width`", width=16.0)
    add("size-too-large", r"`height`=.*`width`=.*GiB", height=2**20, width=2**20)
    for value in (0, [2, 2], {5: 2}, 2.5, "2", 1001):
        add(f"num_inference_steps-{value!r}", "`num_inference_steps`", num_inference_steps=value)
    for value in (-1.0, NAN, INF, "6", [1.0, 2.0]):
        add(f"guidance_scale-{value!r}", "`guidance_scale`", guidance_scale=value)
    for value in ("cosine", 3, None):
        add(f"guidance-{value!r}", "`guidance`", guidance=value)
    for value in (-0.1, 1.5, NAN, "0.1"):
        add(f"noise_aug_level-{value!r}", "`noise_aug_level`", noise_aug_level=value)
    for value in (0.0, 1.5, NAN, "0.9"):
        add(f"dynamic_thresholding_percentile-{value!r}", "`dynamic_thresholding_percentile`",
            dynamic_thresholding_percentile=value)  # fmt: skip
    for value in (0, 2.5):
        add(f"num_videos_per_prompt-{value!r}", "`num_videos_per_prompt`", num_videos_per_prompt=value)
    add("num_videos_per_prompt-too-many", r"`num_videos_per_prompt`.*GiB", num_videos_per_prompt=10**9)
    add("generator-str", "`generator`", TypeError, generator="seed")
    add("generator-list-too-long", "`generator`", tensors=True, generator=lambda: [_generator()] * 3)
    add("prompt_embeds-nan", "`prompt_embeds`.*NaN", tensors=True, prompt=None,
        prompt_embeds=_tensor((1, 8, TEXT_DIM), NAN))  # fmt: skip
    add("prompt_embeds-no-tokens", "`prompt_embeds`", tensors=True, prompt=None,
        prompt_embeds=_tensor((1, 0, TEXT_DIM)))  # fmt: skip
    add("prompt_embeds-int64", "`prompt_embeds`.*int64", TypeError, tensors=True, prompt=None,
        prompt_embeds=_tensor((1, 8, TEXT_DIM), dtype=torch.int64))  # fmt: skip
    add("negative_prompt_embeds-inf", "`negative_prompt_embeds`.*infinite", tensors=True, prompt=None,
        prompt_embeds=_tensor((1, 8, TEXT_DIM)), negative_prompt_embeds=_tensor((1, 8, TEXT_DIM), INF))  # fmt: skip
    add("output_type-numpy", "`output_type`", output_type="numpy")
    add("return_dict-str", "`return_dict`", TypeError, return_dict="yes")
    add("return_intermediate-str", "`return_intermediate`", TypeError, return_intermediate="yes")
    add("callback-not-callable", "`callback_on_step_end`", TypeError, callback_on_step_end=3)
    return cases


def _forward(unet: str = "unet", **overrides) -> Callable[[Components], Any]:
    """`UNet3DModel.forward` on `(2, 4, 3, 8, 8)` latents at timestep 10 with 5 text tokens, overridden."""

    def call(c: Components):
        model = getattr(c, unet)
        arguments = dict(
            sample=torch.randn(2, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0)),
            timestep=10,
            encoder_hidden_states=torch.randn(2, 5, TEXT_DIM, generator=torch.Generator().manual_seed(1)),
        )
        arguments.update(_lazy(overrides))
        if unet == "conditioned_unet" and "scalar_conds" not in overrides:
            arguments["scalar_conds"] = {"fps": 8.0}
        with torch.no_grad():
            return model(**arguments).sample

    return call


def unet_forward_cases() -> list[Case]:
    target = "UNet3DModel.forward"
    cases: list[Case] = []

    def add(what: str, argument: str, error: type = ValueError, unet: str = "unet", **overrides):
        cases.append(Case(f"unet-forward-{what}", target, argument, _forward(unet, **overrides), error, True))

    add("sample-4d", "`sample`", sample=_tensor((2, 4, 8, 8)))
    add("sample-channels", "`sample`", sample=_tensor((2, 3, 3, 8, 8)))
    add("sample-size", "`sample`|`height` and `width`", sample=_tensor((2, 4, 3, 7, 8)))
    add("sample-no-frames", "`sample`.*frames", sample=_tensor((2, 4, 0, 8, 8)))
    add(
        "sample-no-batch",
        "`sample`.*batch",
        sample=_tensor((0, 4, 3, 8, 8)),
        encoder_hidden_states=_tensor((0, 5, 16)),
    )
    add("sample-numpy", "`sample`", TypeError, sample=lambda: _tensor((2, 4, 3, 8, 8))().numpy())
    add("sample-float64", "`sample`.*float64", TypeError, sample=_tensor((2, 4, 3, 8, 8), dtype=torch.float64))
    add("too-many-frames", "`sample`.*frames", unet="learned_unet", sample=_tensor((2, 4, 6, 8, 8)))
    for value in (NAN, INF, -INF):
        add(f"timestep-{value!r}", "`timestep`", timestep=value)
    add("timestep-tensor-nan", "`timestep`", timestep=lambda: torch.tensor([NAN, 3.0]))
    add("timestep-str", "`timestep`", TypeError, timestep="10")
    add("timestep-none", "`timestep`", TypeError, timestep=None)
    add("timestep-wrong-count", "`timestep`", timestep=lambda: torch.tensor([1, 2, 3]))
    add("timestep-2d", "`timestep`", timestep=lambda: torch.ones(2, 1))
    add("encoder_hidden_states-no-tokens", "`encoder_hidden_states`", encoder_hidden_states=_tensor((2, 0, 16)))
    add("encoder_hidden_states-no-tokens-modulated", "`encoder_hidden_states`", unet="modulated_unet",
        encoder_hidden_states=_tensor((2, 0, 16)))  # fmt: skip
    add("encoder_hidden_states-2d", "`encoder_hidden_states`", encoder_hidden_states=_tensor((2, 16)))
    add("encoder_hidden_states-width", "`encoder_hidden_states`", encoder_hidden_states=_tensor((2, 5, 8)))
    add("encoder_hidden_states-batch", "`encoder_hidden_states`", encoder_hidden_states=_tensor((1, 5, 16)))
    add("encoder_hidden_states-numpy", "`encoder_hidden_states`", TypeError,
        encoder_hidden_states=lambda: _tensor((2, 5, 16))().numpy())  # fmt: skip
    add("encoder_attention_mask-shape", "`encoder_attention_mask`", encoder_attention_mask=lambda: torch.ones(2, 6))
    add("scalar_conds-missing", "`scalar_conds`", unet="conditioned_unet", scalar_conds={})
    add("scalar_conds-nan", r"`scalar_conds\['fps'\]`", unet="conditioned_unet", scalar_conds={"fps": NAN})
    add("timestep_cond-unused", "`timestep_cond`", timestep_cond=lambda: torch.ones(2, 4))
    add("cross_attention_kwargs-str", "`cross_attention_kwargs`", TypeError, cross_attention_kwargs="scale")
    return cases


def _build_unet(**overrides) -> Callable[[Components], Any]:
    def call(c: Components):
        from diffusers_video import UNet3DModel

        return UNet3DModel(**tiny_unet3d_config(**overrides))

    return call


def _load_unet(name: str, edit: Callable[[dict], None], source: str = "plain") -> Callable[[Components], Any]:
    def call(c: Components):
        from diffusers_video import UNet3DModel

        return UNet3DModel.from_pretrained(c.unet_folder(name, edit, source))

    return call


def _set(key: str, value: Any) -> Callable[[dict], None]:
    return lambda config: config.__setitem__(key, value)


def _drop(key: str) -> Callable[[dict], None]:
    return lambda config: config.pop(key)


def unet_config_cases() -> list[Case]:
    target = "UNet3DModel config"
    cases: list[Case] = []

    def build(key: str, value: Any, error: type = TypeError):
        pattern = f"`{key}`.*{re.escape(repr(value))}"
        cases.append(Case(f"unet-config-{key}-{value!r}", target, pattern, _build_unet(**{key: value}), error))

    build("in_channels", "4")
    build("in_channels", 4.0)
    build("in_channels", 0, ValueError)
    build("temporal_text_modulation", "no")
    build("temporal_conv", 1)
    build("max_frames", "32")
    build("max_frames", 0, ValueError)
    build("cross_attention_dim", "16")
    build("block_out_channels", "8,16")
    build("layers_per_block", 0, ValueError)
    build("norm_num_groups", 3, ValueError)
    build("temporal_attention_head_dim", 0, ValueError)
    build("temporal_conv_kernel_size", 2, ValueError)
    build("act_fn", "swish2", ValueError)
    build("dropout", 1.5, ValueError)
    build("sample_size", "8")

    def load(what: str, argument: str, edit: Callable[[dict], None], error: type = TypeError, source="plain"):
        cases.append(Case(f"unet-folder-{what}", target, argument, _load_unet(what, edit, source), error))

    load("in_channels-str", r"`in_channels`.*'4'.*config\.json", _set("in_channels", "4"))
    load("temporal_text_modulation-str", r"`temporal_text_modulation`.*'no'.*config\.json",
         _set("temporal_text_modulation", "no"))  # fmt: skip
    load("max_frames-float", r"`max_frames`.*8\.5.*config\.json", _set("max_frames", 8.5))
    load("missing-in_channels", r"`in_channels`.*config\.json", _drop("in_channels"), ValueError)
    load("missing-temporal_text_modulation", r"`temporal_text_modulation`.*config\.json",
         _drop("temporal_text_modulation"), ValueError, source="modulated")  # fmt: skip
    load("unknown-key", r"`temporal_atention`.*config\.json", _set("temporal_atention", None), ValueError)
    return cases


def _decomposed(**config):
    from diffusers_video import DecomposedNoiseScheduler

    return DecomposedNoiseScheduler(**config)


def _distilled(**config):
    from diffusers_video import VDistilledScheduler

    return VDistilledScheduler(**config)


def _with_steps(scheduler, steps: int = 5):
    scheduler.set_timesteps(steps)
    return scheduler


VIDEO = (2, 3, 4, 5, 5)


def scheduler_cases() -> list[Case]:
    cases: list[Case] = []

    def add(target: str, what: str, argument: str, call: Callable[[], Any], error: type = ValueError):
        prefix = "decomposed" if target == "DecomposedNoiseScheduler" else "distilled"
        cases.append(Case(f"{prefix}-{what}", target, argument, lambda c, call=call: call(), error))

    d, v = "DecomposedNoiseScheduler", "VDistilledScheduler"
    zeros = torch.zeros
    # DecomposedNoiseScheduler: config
    add(d, "num_train_timesteps-0", "`num_train_timesteps`", lambda: _decomposed(num_train_timesteps=0))
    add(d, "num_train_timesteps-str", "`num_train_timesteps`", lambda: _decomposed(num_train_timesteps="1000"),
        ValueError)  # fmt: skip
    add(d, "beta_schedule-cosine", "`beta_schedule`", lambda: _decomposed(beta_schedule="cosine"))
    add(d, "beta_end-2", "`beta_end`", lambda: _decomposed(beta_end=2.0))
    add(d, "beta_start-negative", "`beta_start`", lambda: _decomposed(beta_start=-0.1))
    add(d, "trained_betas-length", "`trained_betas`", lambda: _decomposed(trained_betas=[0.1, 0.2]))
    add(d, "base_noise_ratio-1.5", "`base_noise_ratio`", lambda: _decomposed(base_noise_ratio=1.5))
    add(d, "base_noise_ratio-nan", "`base_noise_ratio`", lambda: _decomposed(base_noise_ratio=NAN))
    add(d, "config-eta-1.5", "`eta`", lambda: _decomposed(eta=1.5))
    add(d, "dynamic_thresholding_ratio-0", "`dynamic_thresholding_ratio`",
        lambda: _decomposed(dynamic_thresholding_ratio=0.0))  # fmt: skip
    add(d, "clip_sample_range-0", "`clip_sample_range`", lambda: _decomposed(clip_sample_range=0.0))
    add(d, "sample_max_value-0.5", "`sample_max_value`", lambda: _decomposed(sample_max_value=0.5))
    # DecomposedNoiseScheduler: timesteps
    add(d, "set_timesteps-0", "`num_inference_steps`", lambda: _decomposed().set_timesteps(0))
    add(d, "set_timesteps-str", "`num_inference_steps`", lambda: _decomposed().set_timesteps("10"), TypeError)
    add(d, "set_timesteps-nan", "`timesteps`", lambda: _decomposed().set_timesteps(timesteps=[NAN, 3]))
    add(d, "set_timesteps-inf", "`timesteps`", lambda: _decomposed().set_timesteps(timesteps=[INF, 3]))
    add(d, "set_timesteps-increasing", "`timesteps`", lambda: _decomposed().set_timesteps(timesteps=[3, 5]))
    add(d, "set_timesteps-empty", "`timesteps`", lambda: _decomposed().set_timesteps(timesteps=[]))
    add(d, "set_timesteps-out-of-range", "`timesteps`", lambda: _decomposed().set_timesteps(timesteps=[1000, 3]))
    add(d, "set_timesteps-2d", "`timesteps`", lambda: _decomposed().set_timesteps(timesteps=[[5, 3]]))
    # DecomposedNoiseScheduler: step
    step = lambda **kw: _with_steps(_decomposed()).step(**{  # noqa: E731
        "model_output": zeros(VIDEO), "timestep": 999, "sample": zeros(VIDEO), **kw})  # fmt: skip
    add(d, "step-eta-1.5", "`eta`", lambda: step(eta=1.5))
    add(d, "step-eta-nan", "`eta`", lambda: step(eta=NAN))
    add(d, "step-shape-mismatch", "`model_output`.*`sample`", lambda: step(model_output=zeros(2, 3, 1, 5, 5)))
    add(d, "step-batch-mismatch", "`model_output`.*`sample`", lambda: step(sample=zeros(1, 3, 4, 5, 5)))
    add(d, "step-4d", "`model_output`|`sample`", lambda: step(model_output=zeros(2, 3, 5, 5), sample=zeros(2, 3, 5, 5),
        eta=1.0))  # fmt: skip
    add(d, "step-variance_noise-shape", "`variance_noise`",
        lambda: step(eta=1.0, variance_noise=zeros(2, 3, 1, 5, 5)))  # fmt: skip
    add(d, "step-sample-nan", "`sample`", lambda: step(sample=torch.full(VIDEO, NAN)))
    add(d, "step-timestep-nan", "`timestep`", lambda: step(timestep=NAN))
    add(d, "step-generator-str", "`generator`", lambda: step(eta=1.0, generator="seed"), TypeError)
    # DecomposedNoiseScheduler: training and noise
    add_noise = lambda **kw: _decomposed().add_noise(**{  # noqa: E731
        "original_samples": zeros(VIDEO), "noise": zeros(VIDEO), "timesteps": torch.tensor([10, 20]), **kw})  # fmt: skip
    add(d, "add_noise-shape-mismatch", "`noise`.*`original_samples`", lambda: add_noise(noise=zeros(1, 3, 4, 5, 5)))
    add(d, "add_noise-timesteps-count", "`timesteps`", lambda: add_noise(timesteps=torch.tensor([1, 2, 3])))
    add(d, "add_noise-timestep-1000", "`timesteps`", lambda: add_noise(timesteps=1000))
    add(d, "add_noise-timestep-negative", "`timesteps`", lambda: add_noise(timesteps=-5))
    add(d, "add_noise-timestep-nan", "`timesteps`", lambda: add_noise(timesteps=NAN))
    add(d, "get_velocity-shape-mismatch", "`noise`.*`sample`",
        lambda: _decomposed().get_velocity(zeros(VIDEO), zeros(2, 3, 4, 5, 4), 10))  # fmt: skip
    add(d, "combine-base-frames", "`base_pred`", lambda: _decomposed().combine(zeros(2, 3, 2, 5, 5), zeros(VIDEO)))
    add(d, "combine-batch-mismatch", "`base_pred`.*`residual_pred`",
        lambda: _decomposed().combine(zeros(1, 3, 1, 5, 5), zeros(VIDEO)))  # fmt: skip
    add(d, "combine-size-mismatch", "`base_pred`.*`residual_pred`",
        lambda: _decomposed().combine(zeros(2, 3, 1, 1, 5), zeros(VIDEO)))  # fmt: skip
    add(
        d,
        "combine-residual-4d",
        "`residual_pred`",
        lambda: _decomposed().combine(zeros(2, 3, 5, 5), zeros(2, 3, 5, 5)),
    )
    add(d, "split-base-mismatch", "`base`.*`noise`",
        lambda: _decomposed().split(zeros(VIDEO), base=zeros(2, 2, 1, 5, 5)))  # fmt: skip
    add(d, "sample_noise-negative", "`shape`", lambda: _decomposed().sample_noise((2, 3, -4, 5, 5)))
    add(d, "remove_base_noise-mismatch", "`base_noise`.*`sample`",
        lambda: _decomposed().remove_base_noise(zeros(VIDEO), zeros(2, 3, 1, 4, 4), 10))  # fmt: skip
    # VDistilledScheduler
    add(v, "noise_schedule-cosine", "`noise_schedule`", lambda: _distilled(noise_schedule="cosine"))
    add(v, "distillation_base_steps-0", "`distillation_base_steps`", lambda: _distilled(distillation_base_steps=0))
    add(v, "default_num_inference_steps-off-grid", "`default_num_inference_steps`",
        lambda: _distilled(distillation_base_steps=8, default_num_inference_steps=3))  # fmt: skip
    add(v, "dynamic_thresholding_ratio-1.5", "`dynamic_thresholding_ratio`",
        lambda: _distilled(dynamic_thresholding_ratio=1.5))  # fmt: skip
    add(v, "beta_end-2", "`beta_end`", lambda: _distilled(beta_end=2.0))
    cosine = lambda: _distilled(noise_schedule="continuous_cosine")  # noqa: E731
    add(v, "set_timesteps-nan-continuous", "`timesteps`", lambda: cosine().set_timesteps(timesteps=[NAN, 3]))
    add(v, "set_timesteps-nan-discrete", "`timesteps`", lambda: _distilled().set_timesteps(timesteps=[NAN, 3]))
    add(v, "set_timesteps-inf-continuous", "`timesteps`", lambda: cosine().set_timesteps(timesteps=[INF, 3]))
    add(v, "set_timesteps-off-grid", "`num_inference_steps`",
        lambda: _distilled(distillation_base_steps=8).set_timesteps(3))  # fmt: skip
    add(v, "set_timesteps-float", "`num_inference_steps`", lambda: _distilled().set_timesteps(8.0), TypeError)
    vstep = lambda scheduler=None, **kw: _with_steps(scheduler or _distilled(), 4).step(**{  # noqa: E731
        "model_output": zeros(VIDEO), "timestep": 999, "sample": zeros(VIDEO), **kw})  # fmt: skip
    add(v, "step-shape-mismatch", "`model_output`.*`sample`", lambda: vstep(model_output=zeros(2, 3, 1, 5, 5)))
    add(v, "step-sample-inf", "`sample`", lambda: vstep(sample=torch.full(VIDEO, INF)))
    add(v, "step-timestep-nan", "`timestep`", lambda: vstep(cosine(), timestep=NAN))
    add(v, "step-before-set_timesteps", "`set_timesteps`",
        lambda: _distilled().step(zeros(VIDEO), 999, zeros(VIDEO)))  # fmt: skip
    vnoise = lambda scheduler=None, **kw: (scheduler or _distilled()).add_noise(**{  # noqa: E731
        "original_samples": zeros(VIDEO), "noise": zeros(VIDEO), "timesteps": torch.tensor([10, 20]), **kw})  # fmt: skip
    add(v, "add_noise-shape-mismatch", "`noise`.*`original_samples`", lambda: vnoise(noise=zeros(2, 3, 4, 5, 1)))
    add(v, "add_noise-timesteps-count", "`timesteps`", lambda: vnoise(timesteps=torch.tensor([1, 2, 3])))
    add(v, "add_noise-timestep-continuous-too-large", "`timesteps`", lambda: vnoise(cosine(), timesteps=1500.0))
    add(v, "add_noise-timestep-nan", "`timesteps`", lambda: vnoise(cosine(), timesteps=NAN))
    add(v, "get_velocity-shape-mismatch", "`noise`.*`sample`",
        lambda: _distilled().get_velocity(zeros(VIDEO), zeros(2, 1, 4, 5, 5), 10))  # fmt: skip
    return cases


def _cli(*options: str) -> Callable[[Components], Any]:
    def call(c: Components):
        from diffusers_video.cli import main

        argv = ["generate", "--pipeline", str(SAVED_VIDEOFUSION), "--prompt", PROMPT, "--device", "cpu",
                "--no_progress", "--output", str(c.folder / "cli.gif"), *options]  # fmt: skip
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as exit:  # argparse refuses a value with exit code 2 and a usage message
                code = exit.code
        return CliResult(code, stderr.getvalue())

    return call


@dataclass
class CliResult:
    """Exit code and stderr of `diffusers_video.cli.main`."""

    code: int | None
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def cli_cases() -> list[Case]:
    cases: list[Case] = []

    def add(what: str, argument: str, *options: str):
        cases.append(Case(f"cli-{what}", "CLI", argument, _cli(*options)))

    add("num_frames-0", "num_frames", "--num_frames", "0")
    add("num_frames-abc", "num_frames", "--num_frames", "abc")
    add("num_frames-too-many", "num_frames.*GiB", "--num_frames", str(10**9))
    add("height-18", "height", "--height", "18")
    add("width-negative", "width", "--width", "-16")
    add("steps-0", "steps|num_inference_steps", "--steps", "0")
    add("steps-abc", "steps", "--steps", "abc")
    add("steps-per-stage", "steps", "--steps", "2,2")
    add("guidance_scale-negative", "guidance_scale", "--guidance_scale", "-1")
    add("guidance_scale-nan", "guidance_scale", "--guidance_scale", "nan")
    add("fps-0", "fps", "--fps", "0", "--steps", "1")
    add("output-avi", "output", "--output", "video.avi")
    add("device-unknown", "device", "--device", "tpu9")
    add("dtype-float64", "dtype", "--dtype", "float64")
    add("image-for-text-to-video", "image", "--image", "frame.png")
    return cases


def cases() -> list[Case]:
    """Every bad value the probe and `tests/test_bad_inputs.py` try."""
    return [
        *videofusion_cases(),
        *imagen_video_cases(),
        *unet_forward_cases(),
        *unet_config_cases(),
        *scheduler_cases(),
        *cli_cases(),
    ]


# ---------------------------------------------------------------------------------------------------------------------
# Running a case
# ---------------------------------------------------------------------------------------------------------------------


class ForwardCounter:
    """Counts `torch.nn.Module` forward calls while active, through a global forward pre-hook."""

    def __init__(self):
        self.modules: list[torch.nn.Module] = []

    def __enter__(self):
        self._handle = torch.nn.modules.module.register_module_forward_pre_hook(
            lambda module, args: self.modules.append(module)
        )
        return self

    def __exit__(self, *exc):
        self._handle.remove()

    def count(self, direct_model: bool = False) -> int:
        """Forward calls; with `direct_model`, those of submodules of the model the case called (not its own)."""
        if direct_model and self.modules:
            return len(self.modules) - 1
        return len(self.modules)


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def _has_nan(result: Any) -> bool:
    """Whether a result (a tensor, a pipeline or scheduler output, a tuple of them) holds a NaN."""
    if isinstance(result, torch.Tensor):
        return result.is_floating_point() and bool(result.isnan().any())
    if isinstance(result, (tuple, list)):
        return any(_has_nan(item) for item in result)
    if hasattr(result, "to_tuple"):  # diffusers' BaseOutput
        return _has_nan(result.to_tuple())
    return False


def run_case(case: Case, components: Components, timeout: float | None = None) -> Outcome:
    """Runs `case` and says whether its refusal was clear (see the module docstring)."""
    counter = ForwardCounter()
    if timeout:
        signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with counter:
            result = case.call(components)
    except _Timeout:
        return Outcome("accepted", f"timeout: still running after {timeout} s", counter.count(case.direct_model))
    except Exception as error:  # every exception is a finding here
        forwards = counter.count(case.direct_model)
        message = str(error).splitlines()[0] if str(error) else ""
        detail = f"{type(error).__name__}: {message[:300]}"
        named = re.search(case.argument, str(error), flags=re.DOTALL) is not None
        if isinstance(error, (ValueError, TypeError)) and named and forwards == 0:
            return Outcome("clear", detail, forwards, error)
        return Outcome(
            "unclear", detail + (f" (after {forwards} model forwards)" if forwards else ""), forwards, error
        )
    finally:
        if timeout:
            signal.setitimer(signal.ITIMER_REAL, 0)
    forwards = counter.count(case.direct_model)
    if isinstance(result, CliResult):
        lines = result.error_lines
        text = " | ".join(lines)[:300]
        named = len(lines) == 1 and re.search(case.argument, lines[0]) is not None
        if result.code == 1 and named and forwards == 0:
            return Outcome("clear", text, forwards)
        if result.code in (0, None):
            return Outcome("accepted", f"exit code {result.code}", forwards)
        return Outcome("unclear", f"exit code {result.code}, {len(lines)} lines: {text}", forwards)
    return Outcome("accepted", "NaN in the result" if _has_nan(result) else "no error", forwards)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="print every case, not only those that are not clear")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds a case may run (default: 20)")
    parser.add_argument("--memory_gib", type=float, default=8.0, help="address-space cap in GiB (default: 8)")
    parser.add_argument("--only", default=None, help="run the cases whose id matches this regex")
    parser.add_argument("--output", default=None, help="also write the outcomes as JSON to this file")
    args = parser.parse_args(argv)

    import resource

    cap = int(args.memory_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    torch.set_num_threads(1)
    from diffusers.utils import logging

    logging.set_verbosity_error()

    selected = [case for case in cases() if args.only is None or re.search(args.only, case.id)]
    tallies: dict[str, Counter] = {}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        components = Components(folder)
        for case in selected:
            try:
                outcome = run_case(case, components, args.timeout)
            except BaseException:  # a case that breaks the probe itself
                outcome = Outcome("unclear", traceback.format_exc(limit=1).splitlines()[-1])
            tallies.setdefault(case.target, Counter())[outcome.kind] += 1
            rows.append({"id": case.id, "target": case.target, "kind": outcome.kind, "detail": outcome.detail})
            if args.all or outcome.kind != "clear":
                print(f"{outcome.kind:8} {case.id}: {outcome.detail}", flush=True)

    total = Counter()
    print(f"\n{'target':28} {'clear':>6} {'unclear':>8} {'accepted':>9} {'cases':>6}")
    for target, counts in tallies.items():
        total.update(counts)
        print(f"{target:28} {counts['clear']:6} {counts['unclear']:8} {counts['accepted']:9} {sum(counts.values()):6}")
    print(f"{'all':28} {total['clear']:6} {total['unclear']:8} {total['accepted']:9} {sum(total.values()):6}")
    if args.output:
        Path(args.output).write_text(json.dumps({"cases": rows, "total": dict(total)}, indent=1))
    return 0 if total["clear"] == sum(total.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
