"""LoRA end to end: training adapters (`training.lora`, `lora` in the config) and loading them into every pipeline the
diffusers way (`pipelines.lora.VideoLoraLoaderMixin`): exact unloading, fuse/unfuse, adapter mixing, key prefixes per
component, exact resumption, a LoRA on the Hub emulator loaded by repo id, and a LoRA trained on one colour shifting
the generated videos towards it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_clip_text_models, tiny_vae
from diffusers import DDPMScheduler, UNet2DConditionModel
from hub_server import HubServer, HubWorker
from safetensors import safe_open
from safetensors.torch import load_file

from diffusers_video import DecomposedNoiseScheduler, ImagenVideoPipeline, UNet3DModel, VideoFusionPipeline
from diffusers_video.data.shapes import ShapesWorld
from diffusers_video.pipelines.imagen_video.cascade import NOISE_AUG_CONDITION
from diffusers_video.pipelines.lora import LORA_WEIGHT_NAME, VideoLoraLoaderMixin
from diffusers_video.training import TrainingConfig, train
from diffusers_video.training.components import TrainingComponents
from diffusers_video.training.config import LoraTrainingConfig
from diffusers_video.training.lora import add_lora, lora_weights
from diffusers_video.training.stand_in import build_t5_text_encoder, build_t5_tokenizer

SIZE, FRAMES, TEXT_DIM = 16, 4, 16
PROMPT = "a red circle moving right"
BETAS = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}

pytestmark = pytest.mark.usefixtures("one_thread_and_fresh_accelerate")


# ------------------------------------------------------------------------------------------------- tiny components


def _perturb(model: torch.nn.Module, seed: int, scale: float = 0.05) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * scale)
    return model.eval()


def tiny_unet3d(
    seed: int = 0, in_channels: int = 4, out_channels: int = 4, cross: int = TEXT_DIM, conditions: tuple = ()
) -> UNet3DModel:
    torch.manual_seed(seed)
    return UNet3DModel(
        sample_size=SIZE // 2, in_channels=in_channels, out_channels=out_channels,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, cross_attention_dim=cross,
        attention_head_dim=2, temporal_attention_head_dim=8, mid_block_type=None, scalar_conditions=conditions,
    )  # fmt: skip


def tiny_base() -> UNet2DConditionModel:
    torch.manual_seed(1)
    return UNet2DConditionModel(
        sample_size=SIZE // 2, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, cross_attention_dim=TEXT_DIM,
        attention_head_dim=2, use_linear_projection=True,
    )  # fmt: skip


def videofusion(
    residual: UNet3DModel | None = None, base: bool = False, ratio: float = 0.5, vae=None, text_models=None
) -> VideoFusionPipeline:
    """A VideoFusionPipeline of tiny random models (16x16 frames, 8x8 latents), or around the given ones."""
    tokenizer, text_encoder = text_models or tiny_clip_text_models(TEXT_DIM)
    pipe = VideoFusionPipeline(
        vae=vae if vae is not None else tiny_vae(), text_encoder=text_encoder, tokenizer=tokenizer,
        residual_unet=residual if residual is not None else _perturb(tiny_unet3d(), 2),
        scheduler=DecomposedNoiseScheduler(base_noise_ratio=ratio, clip_sample=False, **BETAS),
        base_unet=_perturb(tiny_base(), 1) if base else None,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, prompt: str = PROMPT, steps: int = 2) -> np.ndarray:
    generator = torch.Generator().manual_seed(0)
    kwargs = dict(num_frames=FRAMES, num_inference_steps=steps, output_type="np", generator=generator)
    if isinstance(pipe, ImagenVideoPipeline):
        kwargs.update(height=8, width=8)
    return np.asarray(pipe(prompt, **kwargs).frames)


def random_lora(model: torch.nn.Module, seed: int, **options) -> tuple[dict, dict]:
    """A LoRA of `model` with random A and B (a trained adapter's B is not zero): `(state_dict, metadata)`."""
    adapted = copy.deepcopy(model)
    add_lora(adapted, LoraTrainingConfig(**options))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in adapted.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    return lora_weights(adapted)


def write_lora(folder: Path, layers: dict, metadata: dict) -> Path:
    VideoLoraLoaderMixin.save_lora_weights(folder, layers, metadata)
    return folder


@pytest.fixture(scope="module")
def lora_folder(tmp_path_factory) -> Path:
    """A LoRA of the tiny residual UNet, prefixed `unet.` as `diffusers-video train` writes it, rank 4, alpha 8."""
    state, metadata = random_lora(videofusion().residual_unet, 0, rank=4, alpha=8.0)
    return write_lora(tmp_path_factory.mktemp("lora"), {"unet": state}, {"unet": metadata})


# ------------------------------------------------------------------------------------------------------ loading


def test_loading_changes_the_frames_and_unloading_restores_them_exactly(lora_folder):
    pipe = videofusion(base=True)
    before = {name: p.clone() for name, p in pipe.residual_unet.state_dict().items()}
    reference = generate(pipe)
    pipe.load_lora_weights(lora_folder, adapter_name="red")
    # `unet.` keys go to the video UNet; the image UNet and the text encoder get nothing
    assert pipe.get_list_adapters() == {"residual_unet": ["red"]}
    adapted = generate(pipe)
    assert np.abs(adapted - reference).max() > 1e-2
    pipe.disable_lora()
    np.testing.assert_array_equal(generate(pipe), reference)
    pipe.enable_lora()
    np.testing.assert_array_equal(generate(pipe), adapted)
    pipe.unload_lora_weights()
    assert pipe.get_list_adapters() == {}
    np.testing.assert_array_equal(generate(pipe), reference)
    after = pipe.residual_unet.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())


def test_the_file_records_rank_and_alpha_and_loading_applies_their_scale(lora_folder, tmp_path):
    file = lora_folder / LORA_WEIGHT_NAME
    with safe_open(file, "pt") as handle:
        metadata = json.loads(handle.metadata()["lora_adapter_metadata"])
    assert metadata["unet.r"] == 4 and metadata["unet.lora_alpha"] == 8.0
    assert all(key.startswith("unet.") and ".lora_" in key for key in load_file(file))
    # the same weights without metadata load with alpha = rank (scale 1 instead of 2): another output
    plain = write_lora(tmp_path, {"unet": {k.removeprefix("unet."): v for k, v in load_file(file).items()}}, {})
    pipe = videofusion()
    reference = generate(pipe)
    pipe.load_lora_weights(lora_folder, adapter_name="scaled")
    scaled = generate(pipe) - reference
    pipe.unload_lora_weights()
    pipe.load_lora_weights(plain, adapter_name="plain")
    unscaled = generate(pipe) - reference
    assert not np.allclose(scaled, unscaled, atol=1e-4)
    # weight 2 on the alpha = rank adapter is the alpha = 2 rank adapter (the LoRA update is linear in its scale)
    pipe.set_adapters("plain", 2.0)
    np.testing.assert_allclose(generate(pipe) - reference, scaled, atol=1e-5)


def test_fuse_then_unfuse_restores_the_frames(lora_folder):
    pipe = videofusion()
    reference = generate(pipe)
    pipe.load_lora_weights(lora_folder)
    adapted = generate(pipe)
    pipe.fuse_lora()
    assert pipe.num_fused_loras == 1
    np.testing.assert_allclose(generate(pipe), adapted, atol=1e-5)
    pipe.unfuse_lora()
    np.testing.assert_allclose(generate(pipe), adapted, atol=1e-5)
    pipe.unload_lora_weights()
    np.testing.assert_allclose(generate(pipe), reference, atol=1e-5)


def test_set_adapters_mixes_and_delete_adapters_removes(lora_folder, tmp_path):
    pipe = videofusion()
    state, metadata = random_lora(pipe.residual_unet, 1, rank=2)
    other = write_lora(tmp_path, {"residual_unet": state}, {"residual_unet": metadata})  # the component's own name
    reference = generate(pipe)
    pipe.load_lora_weights(lora_folder, adapter_name="a")
    only_a = generate(pipe)
    pipe.load_lora_weights(other, adapter_name="b")
    assert pipe.get_list_adapters() == {"residual_unet": ["a", "b"]}
    pipe.set_adapters(["a", "b"], [1.0, 0.0])
    np.testing.assert_allclose(generate(pipe), only_a, atol=1e-5)
    pipe.set_adapters(["a", "b"], [0.0, 0.0])
    np.testing.assert_allclose(generate(pipe), reference, atol=1e-5)
    pipe.set_adapters("b")
    assert pipe.get_active_adapters() == ["b"]
    pipe.delete_adapters("b")
    assert pipe.get_list_adapters() == {"residual_unet": ["a"]}
    with pytest.raises(ValueError, match=r"`adapter_names` \['b'\] are not loaded"):
        pipe.set_adapters("b")
    with pytest.raises(ValueError, match="'a' is already loaded"):
        pipe.load_lora_weights(lora_folder, adapter_name="a")


def test_a_file_with_two_components_loads_each_part_into_its_own(tmp_path):
    pipe = videofusion(base=True)
    residual, residual_meta = random_lora(pipe.residual_unet, 2)
    base, base_meta = random_lora(pipe.base_unet, 3, target_modules=["attn1.to_q", "attn2.to_v"])
    layers = {"residual_unet": residual, "base_unet": base}
    pipe.load_lora_weights(write_lora(tmp_path, layers, {"residual_unet": residual_meta, "base_unet": base_meta}))
    assert pipe.get_list_adapters() == {"base_unet": ["default_0"], "residual_unet": ["default_0"]}
    targets = {n.split(".lora_")[0] for n, _ in pipe.base_unet.named_parameters() if ".lora_A" in n}
    assert targets and all(name.endswith(("attn1.to_q", "attn2.to_v")) for name in targets)


def test_text_encoder_keys_load_into_the_text_encoder_and_unet_cannot_be_given_twice(lora_folder):
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    pipe = videofusion()
    adapted = copy.deepcopy(pipe.text_encoder)
    adapted = inject_adapter_in_model(
        LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False), adapted
    )
    state = {f"text_encoder.{k}": v for k, v in get_peft_model_state_dict(adapted).items()}
    reference = generate(pipe)
    pipe.load_lora_weights(state, adapter_name="words")
    assert pipe.get_list_adapters() == {"text_encoder": ["words"]}
    assert np.abs(generate(pipe) - reference).max() > 1e-3
    pipe.unload_lora_weights()
    np.testing.assert_array_equal(generate(pipe), reference)
    both = {**load_file(lora_folder / LORA_WEIGHT_NAME)}
    both.update({k.replace("unet.", "residual_unet.", 1): v for k, v in list(both.items())})
    with pytest.raises(ValueError, match="both 'unet' and 'residual_unet', which are the same component"):
        pipe.load_lora_weights(both)


def test_imagen_video_stages_take_their_own_prefix_and_unet_means_the_base_stage():
    tokenizer = build_t5_tokenizer(model_max_length=8)
    text_encoder = build_t5_text_encoder(len(tokenizer), d_model=TEXT_DIM, num_layers=1)
    stages = [
        (
            "base",
            _perturb(tiny_unet3d(seed=3, in_channels=3, out_channels=3), 3),
            DDPMScheduler(prediction_type="v_prediction", clip_sample=False),
        ),
        (
            {"kind": "tsr", "factor": 2},
            _perturb(tiny_unet3d(seed=4, in_channels=6, out_channels=3, conditions=(NOISE_AUG_CONDITION,)), 4),
            DDPMScheduler(prediction_type="v_prediction", clip_sample=False),
        ),
    ]
    pipe = ImagenVideoPipeline.from_stages(text_encoder, tokenizer, stages)
    pipe.set_progress_bar_config(disable=True)
    assert pipe._lora_loadable_modules == ["text_encoder", "unet_0", "unet_1"] and pipe.lora_unet_component == "unet_0"
    state, metadata = random_lora(pipe.unet_0, 4)
    pipe.load_lora_weights({f"unet.{k}": v for k, v in state.items()}, adapter_name="base")
    state, metadata = random_lora(pipe.unet_1, 5)
    pipe.load_lora_weights({f"unet_1.{k}": v for k, v in state.items()}, adapter_name="sr")
    assert pipe.get_list_adapters() == {"unet_0": ["base"], "unet_1": ["sr"]}
    with pytest.raises(ValueError, match=r"keys for \['unet_7'\].*'text_encoder', 'unet_0', 'unet_1'"):
        pipe.load_lora_weights({f"unet_7.{k}": v for k, v in state.items()})


def test_bad_lora_files_are_refused_with_what_is_wrong(lora_folder):
    pipe = videofusion()
    with pytest.raises(ValueError, match=r"keys for \['base_unet'\]"):  # no base generator in this pipeline
        pipe.load_lora_weights({"base_unet.conv_in.lora_A.weight": torch.zeros(1, 1)})
    with pytest.raises(ValueError, match="must contain 'lora'"):
        pipe.load_lora_weights({"unet.conv_in.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="Unknown LoRA loading options \\['adapter_nam'\\]"):
        pipe.load_lora_weights(lora_folder, adapter_nam="x")
    with pytest.raises(ValueError, match="not a safetensors file: pass `allow_pickle=True`"):
        pipe.load_lora_weights(lora_folder, weight_name="pytorch_lora_weights.bin")
    with pytest.raises(ValueError, match="no LoRA to fuse"):
        pipe.fuse_lora()
    with pytest.raises(ValueError, match="`lora.target_modules` entry 'to_qq' matches no"):
        add_lora(tiny_unet3d(), LoraTrainingConfig(target_modules=["to_qq"]))
    for bad, message in (
        ({"rank": 0}, "lora.rank"),
        ({"dropout": 1.0}, "lora.dropout"),
        ({"prefix": "a.b"}, "prefix"),
    ):
        with pytest.raises(ValueError, match=message):
            LoraTrainingConfig(**bad)
    with pytest.raises(ValueError, match="`lora` and `freeze_spatial`"):
        TrainingConfig(freeze_spatial=True, lora={})


# ------------------------------------------------------------------------------------------------------ training


def components(unet: UNet3DModel, vae=None, text_models=None) -> TrainingComponents:
    tokenizer, text_encoder = text_models or tiny_clip_text_models(TEXT_DIM)
    return TrainingComponents(
        unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, vae=vae if vae is not None else tiny_vae(),
        noise_scheduler=DDPMScheduler(clip_sample=False, **BETAS),
    )  # fmt: skip


def lora_config(output_dir, steps: int, **overrides) -> TrainingConfig:
    values = dict(
        output_dir=str(output_dir), max_train_steps=steps, train_batch_size=2, learning_rate=1e-3,
        checkpointing_steps=2, condition_dropout=0.2, lora={"rank": 4, "alpha": 4.0},
        data={"height": SIZE, "width": SIZE, "num_frames": FRAMES, "num_samples": 32},
    )  # fmt: skip
    values.update(overrides)
    return TrainingConfig.from_dict(values)


def test_training_a_lora_trains_only_the_adapters_and_resumes_exactly(tmp_path):
    pretrained = _perturb(tiny_unet3d(), 2)
    frozen = {name: p.clone() for name, p in pretrained.state_dict().items()}
    unet = copy.deepcopy(pretrained)
    final = train(lora_config(tmp_path / "full", 4, ema_decay=0.9), components(unet))
    assert sorted(p.name for p in final.iterdir()) == [LORA_WEIGHT_NAME, "training_config.json"]
    weights = load_file(final / LORA_WEIGHT_NAME)
    assert all(key.startswith("unet.") for key in weights)
    assert any("temp_attentions" in key for key in weights) and any("attn2" in key for key in weights)
    assert any(v.abs().sum() > 0 for k, v in weights.items() if "lora_B" in k)  # B started at zero: it learned
    base = {k: v for k, v in unet.state_dict().items() if "lora_" not in k}
    for name, value in frozen.items():  # the UNet's own weights did not move (peft renames them `base_layer`)
        assert torch.equal(base.get(name, base.get(name.replace(".weight", ".base_layer.weight").replace(
            ".bias", ".base_layer.bias"))), value), name  # fmt: skip

    # stopped after the checkpoint at step 2 and resumed: the same adapter, bit for bit
    train(lora_config(tmp_path / "half", 2, ema_decay=0.9), components(copy.deepcopy(pretrained)))
    resumed = train(
        lora_config(tmp_path / "half", 4, ema_decay=0.9, resume_from_checkpoint="latest"),
        components(copy.deepcopy(pretrained)),
    )
    again = load_file(resumed / LORA_WEIGHT_NAME)
    assert again.keys() == weights.keys() and all(torch.equal(again[k], weights[k]) for k in weights)

    # the trained file loads into a pipeline around the same UNet: the adapted frames differ, unloading restores
    pipe = videofusion(copy.deepcopy(pretrained))
    reference = generate(pipe)
    pipe.load_lora_weights(final)
    assert np.abs(generate(pipe) - reference).max() > 0
    pipe.unload_lora_weights()
    np.testing.assert_array_equal(generate(pipe), reference)


def test_a_videofusion_run_trains_a_lora_of_the_residual_generator(tmp_path):
    from diffusers_video.training.videofusion import VideoFusionComponents

    pipe = videofusion(base=True)
    residual, base = copy.deepcopy(pipe.residual_unet), copy.deepcopy(pipe.base_unet)
    base_before = {name: p.clone() for name, p in base.state_dict().items()}
    parts = VideoFusionComponents(
        **vars(components(residual, pipe.vae, (pipe.tokenizer, pipe.text_encoder))),
        base_unet=base, base_prediction_type="epsilon",
    )  # fmt: skip
    run = lora_config(tmp_path, 2, videofusion={"train_base": False}, checkpointing_steps=None)
    final = train(run, parts)
    assert all(torch.equal(base.state_dict()[k], v) for k, v in base_before.items())  # the base stays frozen
    reference = generate(pipe)
    pipe.load_lora_weights(final, adapter_name="residual")
    assert pipe.get_list_adapters() == {"residual_unet": ["residual"]}  # `unet.` keys: the video UNet
    assert np.abs(generate(pipe) - reference).max() > 0


def test_a_videofusion_lora_with_train_base_adapts_both_generators(tmp_path):
    # the base generator draws the key frame (its colour, its shape): a LoRA meant to change those must adapt it too
    from diffusers_video.training.videofusion import VideoFusionComponents

    pipe = videofusion(base=True)
    residual, base = copy.deepcopy(pipe.residual_unet), copy.deepcopy(pipe.base_unet)
    base_before = {name: p.clone() for name, p in base.state_dict().items()}
    parts = VideoFusionComponents(
        **vars(components(residual, pipe.vae, (pipe.tokenizer, pipe.text_encoder))),
        base_unet=base, base_prediction_type="epsilon",
    )  # fmt: skip
    final = train(lora_config(tmp_path, 2, videofusion={"train_base": True}, checkpointing_steps=None), parts)
    weights = load_file(final / LORA_WEIGHT_NAME)
    assert {key.split(".")[0] for key in weights} == {"unet", "base_unet"}
    assert any(v.abs().sum() > 0 for k, v in weights.items() if k.startswith("base_unet.") and "lora_B" in k)
    unadapted = {k: v for k, v in base.state_dict().items() if "lora_" not in k}
    for name, value in base_before.items():  # the base's own weights stay as they were: only its adapter trained
        assert torch.equal(unadapted.get(name, unadapted.get(name.replace(".weight", ".base_layer.weight").replace(
            ".bias", ".base_layer.bias"))), value), name  # fmt: skip
    reference = generate(pipe)
    pipe.load_lora_weights(final, adapter_name="both")
    assert pipe.get_list_adapters() == {"residual_unet": ["both"], "base_unet": ["both"]}
    assert np.abs(generate(pipe) - reference).max() > 0
    pipe.unload_lora_weights()  # diffusers' unloading of an image UNet's adapter restores it to float rounding
    np.testing.assert_allclose(generate(pipe), reference, atol=1e-5, rtol=0)


def colour_folder(folder: Path, colour: str, count: int, size: int, frames: int = FRAMES) -> Path:
    """A `.npy` training folder of moving-shapes clips of one colour (every shape and direction)."""
    world = ShapesWorld(height=size, width=size, num_frames=frames)
    folder.mkdir(parents=True)
    lines = []
    for i in range(count):
        shape, direction = ("circle", "square", "triangle")[i % 3], ("left", "right", "up", "down")[i % 4]
        scene = world.scene_for_prompt(f"a {colour} {shape} moving {direction}", seed=i)
        np.save(folder / f"{i}.npy", world.render(scene).astype(np.float32))
        lines.append(json.dumps({"file_name": f"{i}.npy", "caption": scene.caption}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def blue_share(video: np.ndarray) -> float:
    """The blue share `B / (R + G + B)` of the most saturated tenth of the pixels (where the shapes are)."""
    saturation = video.max(-1) - video.min(-1)
    colours = video[saturation >= np.quantile(saturation, 0.9)].mean(0)  # (3,)
    return float(colours[2] / max(colours.sum(), 1e-6))


@pytest.mark.slow
def test_a_lora_trained_on_one_colour_shifts_the_videos_towards_it(tmp_path):
    """A LoRA trained on blue shapes makes the videos of other colours' prompts bluer (the demo's trained VAE and
    text encoder, so that pixels mean colours; 32x32 frames, 8x8 latents). About a minute on one CPU core."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTokenizer

    demo = Path(__file__).resolve().parents[1] / "pipelines" / "videofusion" / "demo"
    vae = AutoencoderKL.from_pretrained(demo / "vae").eval()
    text = CLIPTokenizer.from_pretrained(demo / "tokenizer"), CLIPTextModel.from_pretrained(demo / "text_encoder")
    size, width = 32, text[1].config.hidden_size
    torch.manual_seed(0)
    pretrained = _perturb(tiny_unet3d(cross=width), 2)
    pretrained.register_to_config(sample_size=size // 4)
    data = colour_folder(tmp_path / "blue", "blue", 24, size)
    config = lora_config(
        tmp_path / "run", 400, learning_rate=2e-2, checkpointing_steps=None, train_batch_size=4,
        lora={"rank": 8, "target_modules": ["spatial_attention", "temporal_attention", "conv_out"]},
        prediction_type="v_prediction",
        data={"path": str(data), "height": size, "width": size, "num_frames": FRAMES, "cache_latents": True},
    )  # fmt: skip
    final = train(config, components(copy.deepcopy(pretrained), vae, text))
    pipe = videofusion(copy.deepcopy(pretrained), ratio=0.0, vae=vae, text_models=text)  # no shared noise: DDIM
    pipe.scheduler = DecomposedNoiseScheduler.from_config(pipe.scheduler.config, prediction_type="v_prediction")
    prompts = ["a red circle moving right", "a green square moving up", "a yellow triangle moving left"]
    before = [blue_share(generate(pipe, p, steps=10)[0]) for p in prompts]
    pipe.load_lora_weights(final)
    after = [blue_share(generate(pipe, p, steps=10)[0]) for p in prompts]
    assert all(a > b + 0.05 for a, b in zip(after, before)), (before, after)


# ----------------------------------------------------------------------------------------------------------- Hub


def load_from_repo(repo_id: str, residual_state: dict) -> dict:
    """In the Hub worker: a pipeline loads the LoRA by repo id; frames with it, and after unloading."""
    torch.set_num_threads(1)
    residual = tiny_unet3d()
    residual.load_state_dict(residual_state)
    pipe = videofusion(residual)
    reference = generate(pipe)
    pipe.load_lora_weights(repo_id, adapter_name="hub")
    adapted = generate(pipe)
    adapters = pipe.get_list_adapters()
    pipe.unload_lora_weights()
    return {"reference": reference, "adapted": adapted, "restored": generate(pipe), "adapters": adapters}


def upload(folder: str, repo_id: str) -> None:
    from huggingface_hub import HfApi

    HfApi().create_repo(repo_id)
    HfApi().upload_folder(folder_path=folder, repo_id=repo_id)


def test_a_lora_on_the_hub_loads_by_repo_id(lora_folder, tmp_path):
    residual = _perturb(tiny_unet3d(), 2)
    local = videofusion(copy.deepcopy(residual))
    local.load_lora_weights(lora_folder)
    expected = generate(local)
    with HubServer(tmp_path / "store") as server, HubWorker(server, tmp_path / "home") as worker:
        worker.call(upload, str(lora_folder), "user/blue-lora")
        result = worker.call(load_from_repo, "user/blue-lora", residual.state_dict())
    assert result["adapters"] == {"residual_unet": ["hub"]}
    np.testing.assert_allclose(result["adapted"], expected, atol=1e-6)
    np.testing.assert_array_equal(result["restored"], result["reference"])


@pytest.mark.slow
def test_a_lora_trained_on_blue_clips_makes_the_demo_draw_blue_and_unloads_exactly(tmp_path):
    # the committed VideoFusion demo, 150 steps of a rank-8 LoRA on both generators (about 1.5 minutes on 2 CPU
    # threads), on blue clips whose captions leave the colour out: prompts without a colour then come out blue
    from diffusers_video.data.shapes_scorer import ShapesScorer

    clips = colour_folder(tmp_path / "blue", "blue", 96, 32, frames=8)
    lines = [json.loads(line) for line in (clips / "metadata.jsonl").read_text().splitlines()]
    for line in lines:
        line["caption"] = " ".join(word for word in line["caption"].split() if word != "blue")
    (clips / "metadata.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    config = TrainingConfig.from_dict(dict(
        output_dir=str(tmp_path / "run"), max_train_steps=150, train_batch_size=8, learning_rate=1e-3,
        lr_scheduler="constant", prediction_type="v_prediction", condition_dropout=0.1, checkpointing_steps=None,
        lora={"rank": 8}, data={"path": str(clips), "height": 32, "width": 32, "num_frames": 8},
        model={"pretrained_model_name_or_path": "pipelines/videofusion/demo", "unet_class": "UNet3DModel",
               "pipeline_class": "VideoFusionPipeline"},
        videofusion={"base_noise_ratio": 0.5, "train_base": True, "key_frame_residual": True},
    ))  # fmt: skip
    final = train(config)
    pipe = VideoFusionPipeline.from_pretrained("pipelines/videofusion/demo", torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    prompts = [f"a {shape} moving {direction}" for shape, direction in (("circle", "right"), ("square", "up"),
               ("triangle", "left"), ("circle", "down"), ("square", "left"), ("triangle", "right"))]  # fmt: skip
    scorer = ShapesScorer()

    def videos():
        return [pipe(prompt, num_inference_steps=25, guidance_scale=4.0,
                     generator=torch.Generator().manual_seed(100 + i)).frames[0] for i, prompt in enumerate(prompts)]  # fmt: skip

    def reads_blue(found):
        return sum(scorer.score(v, p.replace("a ", "a blue ", 1)).color_ok is True for v, p in zip(found, prompts))

    before = videos()
    pipe.load_lora_weights(final, adapter_name="blue")
    adapted = videos()
    pipe.unload_lora_weights()
    after = videos()
    assert reads_blue(adapted) >= 5 and reads_blue(before) <= 2  # measured: 12 of 12 against 0 of 12
    assert np.mean([blue_share(v) for v in adapted]) > np.mean([blue_share(v) for v in before]) + 0.2
    for reference, restored in zip(before, after):
        np.testing.assert_allclose(restored, reference, atol=1e-5, rtol=0)
