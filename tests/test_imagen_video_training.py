"""Training and distilling Imagen Video cascade stages (`training.imagen_video`): an SR stage's loss by hand, joint
image-video batches, exact kill-and-resume, a distillation round of an SR stage, and bad input. Tiny models, T5
stand-in text encoder, built in memory."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import read_train_log
from diffusers import DDPMScheduler
from test_training import run_killed_and_resumed

from diffusers_video import UNet3DModel, VDistilledScheduler
from diffusers_video.cli import main as cli_main
from diffusers_video.commands.imagen_video import main as imagen_video_main
from diffusers_video.folders import STAGE_CONFIG_NAME
from diffusers_video.training import Trainer, TrainingComponents, TrainingConfig, save_components, train
from diffusers_video.training.data import sample_generator
from diffusers_video.training.distillation import DistillationConfig, distill, load_teacher, with_guidance_condition
from diffusers_video.training.distillation_sampling import as_distillation_scheduler
from diffusers_video.training.imagen_video import (
    ImagenVideoDistillationTrainer,
    ImagenVideoTrainer,
    assemble_cascade,
    extract_stage,
    write_text_encoder_folder,
)
from diffusers_video.training.stand_in import build_t5_text_encoder, build_t5_tokenizer
from diffusers_video.training.trainer import export_checkpoint

SIZE, FRAMES, TEXT_DIM = 16, 4, 16
SSR = {"kind": "ssr", "factor": 2}
TSR = {"kind": "tsr", "factor": 2}

pytestmark = pytest.mark.usefixtures("one_thread_and_fresh_accelerate")


# ------------------------------------------------------------------------------------------------- tiny components


_T5 = {}


def t5_models():
    """The T5 stand-in (tokenizer built once per session; a fresh encoder each time)."""
    if "tokenizer" not in _T5:
        _T5["tokenizer"] = build_t5_tokenizer()
    tokenizer = _T5["tokenizer"]
    return tokenizer, build_t5_text_encoder(len(tokenizer), d_model=TEXT_DIM, num_layers=1)


def tiny_stage_unet(super_resolution: bool = True, perturb: bool = False, **overrides) -> UNet3DModel:
    """A stage UNet: 6 input channels and a "noise_aug_level" condition for an SR stage, 3 and none for the base."""
    torch.manual_seed(0)
    config = dict(
        sample_size=SIZE, in_channels=6 if super_resolution else 3, out_channels=3,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, cross_attention_dim=TEXT_DIM,
        attention_head_dim=2, temporal_attention_head_dim=8, mid_block_type=None,
        scalar_conditions=("noise_aug_level",) if super_resolution else (),
    )  # fmt: skip
    config.update(overrides)
    unet = UNet3DModel(**config)
    if perturb:  # every weight matters (zero-initialised temporal outputs and condition embeddings included)
        with torch.no_grad():
            for parameter in unet.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.05)
    return unet


def components(unet=None, scheduler=None, vae=None) -> TrainingComponents:
    tokenizer, text_encoder = t5_models()
    scheduler = (
        scheduler if scheduler is not None else DDPMScheduler(prediction_type="v_prediction", clip_sample=False)
    )
    return TrainingComponents(unet if unet is not None else tiny_stage_unet(), text_encoder, tokenizer, scheduler, vae)


def make_config(output_dir, stage=SSR, imagen_video=None, **overrides) -> TrainingConfig:
    values = dict(
        output_dir=str(output_dir), max_train_steps=3, train_batch_size=4, learning_rate=1e-3,
        checkpointing_steps=None, condition_dropout=0.5, prediction_type="v_prediction",
        data={"height": SIZE, "width": SIZE, "num_frames": FRAMES, "num_samples": 64},
        imagen_video={"stage": stage, "noise_aug_max": 0.6, **(imagen_video or {})},
    )  # fmt: skip
    values.update(overrides)
    return TrainingConfig.from_dict(values)


def record_unet_inputs(unet) -> list[tuple[torch.Tensor, dict]]:
    calls = []
    unet.register_forward_pre_hook(lambda m, args, kwargs: calls.append((args[0].detach(), kwargs)), with_kwargs=True)
    return calls


def encode(tokenizer, text_encoder, captions) -> torch.Tensor:
    """As `ImagenVideoPipeline.encode_prompt` encodes prompts: padded, with T5's attention mask."""
    tokens = tokenizer(captions, padding="max_length", max_length=32, truncation=True, return_tensors="pt")
    with torch.no_grad():
        return text_encoder(tokens.input_ids, attention_mask=tokens.attention_mask)[0]


def by_hand_condition(x0: torch.Tensor, level: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """2x2 block means, bilinear back up (half-pixel centres), then `cos(pi u / 2) c + sin(pi u / 2) n`."""
    b, c, f, h, w = x0.shape
    frames = x0.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
    low = frames.reshape(b * f, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5))
    up = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    up = up.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)
    u = level.view(-1, 1, 1, 1, 1).double()
    return torch.cos(math.pi / 2 * u) * up + torch.sin(math.pi / 2 * u) * noise


# --------------------------------------------------------------------------------- (a) the SR-stage loss by hand


def test_sr_stage_loss_on_a_joint_batch_equals_the_formulas_computed_by_hand(tmp_path):
    parts = components(tiny_stage_unet(perturb=True))
    config = make_config(tmp_path, image_fraction=0.5)
    trainer = ImagenVideoTrainer(config, parts)
    calls = record_unet_inputs(parts.unet)
    batch = next(iter(trainer._data_loader()))
    assert set(batch) == {"video", "image"}  # an SR stage trains on still images too, as single-frame videos
    with torch.no_grad():
        loss = trainer.training_loss(batch)

    alphas_cumprod = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), dim=0)
    losses, levels_seen = [], []
    for (name, part), (unet_input, unet_kwargs) in zip(batch.items(), calls):
        x0 = part["x"].double()  # (B, 3, F, H, W) at the stage's output size; F = 1 for the images
        t, drop, noise, level, aug_noise = [], [], [], [], []
        for position in part["positions"].tolist():
            g = sample_generator(config.seed, position)  # the loop's draws, in its order
            t.append(torch.randint(0, 1000, (1,), generator=g))
            drop.append(torch.rand(1, generator=g).item() < 0.5)
            noise.append(torch.randn((1, *x0.shape[1:]), generator=g))
            a = sample_generator(config.seed, position, 1)  # the augmentation's own generator
            level.append(torch.rand(1, generator=a) * 0.6)
            aug_noise.append(torch.randn((1, *x0.shape[1:]), generator=a))
        t, noise, level = torch.cat(t), torch.cat(noise).double(), torch.cat(level)
        alpha = alphas_cumprod[t].sqrt().view(-1, 1, 1, 1, 1)
        sigma = (1 - alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1, 1)
        x_t = alpha * x0 + sigma * noise
        condition = by_hand_condition(x0, level, torch.cat(aug_noise).double())

        # what the UNet was given: [x_t, augmented condition] along channels, and 1000 * level as its condition
        assert unet_input.shape == (x0.shape[0], 6, *x0.shape[2:]), name
        assert torch.allclose(unet_input[:, :3].double(), x_t, atol=1e-5)
        assert torch.allclose(unet_input[:, 3:].double(), condition, atol=1e-5)
        assert torch.allclose(unet_kwargs["scalar_conds"]["noise_aug_level"], 1000 * level)
        levels_seen += level.tolist()

        captions = ["" if d else c for d, c in zip(drop, part["captions"])]
        text = encode(parts.tokenizer, parts.text_encoder, captions)
        with torch.no_grad():
            unet_in = torch.cat([x_t, condition], dim=1).float()
            v = parts.unet(unet_in, t, text, scalar_conds={"noise_aug_level": 1000 * level}).sample.double()
        losses.append(((v - (alpha * noise - sigma * x0)) ** 2).mean(dim=(1, 2, 3, 4)))
    assert loss.item() == pytest.approx(torch.cat(losses).mean().item(), rel=1e-5)
    assert 0 < min(levels_seen) and max(levels_seen) <= 0.6 and len(set(levels_seen)) == 4


def test_tsr_condition_repeats_every_other_frame_and_base_stage_takes_no_condition(tmp_path):
    unet = tiny_stage_unet()
    config = make_config(tmp_path, stage=TSR, imagen_video={"noise_aug_max": 0.0, "noise_aug_level": 0.0})
    trainer = ImagenVideoTrainer(config, components(unet))
    part = next(iter(trainer._data_loader()))["video"]
    clean = part["x"]
    condition = trainer.conditioning(part, clean)  # level 0: no augmentation, the frames themselves
    assert torch.equal(condition, clean[:, :, [0, 0, 2, 2]])
    assert torch.equal(trainer.unet_kwargs(part, 4)["scalar_conds"]["noise_aug_level"], torch.zeros(4))

    base = make_config(tmp_path / "base", stage={"kind": "base"}, image_fraction=0.5)
    base_unet = tiny_stage_unet(super_resolution=False)
    calls = record_unet_inputs(base_unet)
    final = train(base, components(base_unet))
    assert [tuple(x.shape) for x, _ in calls[:2]] == [(2, 3, FRAMES, SIZE, SIZE), (2, 3, 1, SIZE, SIZE)]
    assert all("scalar_conds" not in kwargs for _, kwargs in calls)
    stage = json.loads((final / STAGE_CONFIG_NAME).read_text())
    assert stage == {"kind": "base", "factor": 1, "noise_aug_level": None, "num_frames": FRAMES, "height": SIZE,
                     "width": SIZE}  # fmt: skip


# -------------------------------------------------------------------------------- (b) the saved stage folder


def test_sr_stage_final_folder_loads_as_a_stage(tmp_path):
    parts = components()
    save_components(tmp_path / "model", parts)  # a T5 model folder: `load_components` reads T5 text encoders
    config = make_config(
        tmp_path / "run", max_train_steps=2, checkpointing_steps=2, imagen_video={"noise_aug_level": 0.25},
        model={"pretrained_model_name_or_path": str(tmp_path / "model")},
    )  # fmt: skip
    trainer = ImagenVideoTrainer(config)
    assert type(trainer.components.text_encoder).__name__ == "T5EncoderModel"
    final = trainer.train()
    assert sorted(p.name for p in final.iterdir()) == [
        "scheduler", "stage.json", "text_encoder", "tokenizer", "training_config.json", "unet"
    ]  # fmt: skip
    stage = json.loads((final / STAGE_CONFIG_NAME).read_text())
    assert stage == {"kind": "ssr", "factor": 2, "noise_aug_level": 0.25, "num_frames": FRAMES, "height": SIZE,
                     "width": SIZE}  # fmt: skip
    unet = UNet3DModel.from_pretrained(final / "unet")
    assert unet.config.in_channels == 6 and tuple(unet.config.scalar_conditions) == ("noise_aug_level",)
    trained = trainer.unet.state_dict()
    assert all(torch.equal(value, trained[key]) for key, value in unet.state_dict().items())
    assert any(not torch.equal(value, parts.unet.state_dict()[key]) for key, value in trained.items())
    assert DDPMScheduler.from_pretrained(final / "scheduler").config.prediction_type == "v_prediction"
    assert TrainingConfig.from_json_file(final / "training_config.json").imagen_video.stage == SSR

    # a mid-run checkpoint exports as the same stage folder
    exported = export_checkpoint(tmp_path / "run" / "checkpoint-2", tmp_path / "exported")
    assert (exported / STAGE_CONFIG_NAME).read_text() == (final / STAGE_CONFIG_NAME).read_text()
    exported_state = UNet3DModel.from_pretrained(exported / "unet").state_dict()
    assert all(torch.equal(value, trained[key]) for key, value in exported_state.items())


# ----------------------------------------------------------------------------------------- (c) kill and resume


def test_sr_stage_sigkill_then_resume_repeats_the_uninterrupted_losses(tmp_path):
    folder = tmp_path / "model"
    save_components(folder, components())
    config = make_config(
        tmp_path / "run", max_train_steps=100_000, checkpointing_steps=2, ema_decay=0.9, image_fraction=0.5,
        model={"pretrained_model_name_or_path": str(folder)},
    )  # fmt: skip
    run_dir, reference_dir = run_killed_and_resumed(tmp_path, config)
    a = UNet3DModel.from_pretrained(run_dir / "final" / "unet")
    assert a.config.in_channels == 6
    assert json.loads((run_dir / "final" / STAGE_CONFIG_NAME).read_text())["kind"] == "ssr"


# ------------------------------------------------------------------------------ (d) distilling an SR stage


def test_one_distillation_round_of_an_sr_stage_conditions_teacher_and_student_alike(tmp_path):
    teacher = components(tiny_stage_unet(perturb=True))
    teacher_dir = tmp_path / "teacher"
    train(make_config(tmp_path / "teacher_run", max_train_steps=1), teacher)  # a real stage folder to distil
    (tmp_path / "teacher_run" / "final").rename(teacher_dir)
    # the stage (and data) come from the teacher's training_config.json; the level is overridden
    command = ["distill", "--teacher", str(teacher_dir), "--output_dir", str(tmp_path / "out"), "--teacher_steps", "4"]
    command += ["--student_steps", "2", "--max_train_steps", "2", "--train_batch_size", "3", "--checkpointing_steps"]
    command += ["null", "--imagen_video.noise_aug_level", "0.2"]
    assert cli_main(command) == 0
    student_dir = tmp_path / "out" / "student-2-steps"
    config = DistillationConfig.from_json_file(student_dir / "training_config.json")
    assert config.imagen_video.stage == SSR and config.imagen_video.noise_aug_max == 0.6

    student = UNet3DModel.from_pretrained(student_dir / "unet")
    assert student.config.in_channels == 6
    assert set(student.config.scalar_conditions) == {"noise_aug_level", "guidance_scale"}
    stage = json.loads((student_dir / STAGE_CONFIG_NAME).read_text())
    assert stage["kind"] == "ssr" and stage["noise_aug_level"] == 0.2
    assert json.loads((student_dir / "distillation.json").read_text())["num_inference_steps"] == 2
    assert len(read_train_log(tmp_path / "out" / "round-1")) == 2

    # the round's batch: the conditioning is the fixed-level one, and the target is two *conditioned* teacher steps
    loaded = load_teacher(teacher_dir)
    scheduler = as_distillation_scheduler(loaded.noise_scheduler, 4)
    student_parts = TrainingComponents(
        with_guidance_condition(loaded.unet), loaded.text_encoder, loaded.tokenizer, scheduler
    )
    round_config = config.with_overrides({"output_dir": str(tmp_path / "probe")})
    trainer = ImagenVideoDistillationTrainer(round_config, student_parts, loaded.unet, 2)
    part = next(iter(trainer._data_loader()))["video"]
    batch = trainer.distillation_batch(part)
    noise = torch.cat([torch.randn((1, 3, FRAMES, SIZE, SIZE), generator=_aug(config, p)) for p in part["positions"]])
    expected = by_hand_condition(part["x"].double(), torch.full((3,), 0.2), noise.double())
    assert torch.allclose(batch.condition.double(), expected, atol=1e-5)
    assert torch.allclose(batch.unet_kwargs["scalar_conds"]["noise_aug_level"], torch.full((3,), 200.0))

    cond = encode(loaded.tokenizer, loaded.text_encoder, part["captions"])
    uncond = encode(loaded.tokenizer, loaded.text_encoder, [""] * 3)
    grid = VDistilledScheduler.from_config(scheduler.config)
    grid.set_timesteps(4)
    for i in range(3):
        x, w = batch.x_t[i : i + 1], float(batch.guidance_scale[i])
        conds = {"noise_aug_level": torch.tensor([200.0])}
        with torch.no_grad():
            for timestep in batch.timesteps[i, :2]:
                unet_in = torch.cat([x, expected[i : i + 1].float()], dim=1)
                v_c = loaded.unet(unet_in, timestep, cond[i : i + 1], scalar_conds=conds).sample
                v_u = loaded.unet(unet_in, timestep, uncond[i : i + 1], scalar_conds=conds).sample
                x = grid.step(v_u + w * (v_c - v_u), timestep, x).prev_sample
        assert (batch.x_s[i : i + 1] - x).abs().max() <= 1e-5, i

    # the student is a cascade stage: a base stage (8x8 clips) and the 8x8 -> 16x16 student sample as one pipeline
    base_config = make_config(
        tmp_path / "base", stage={"kind": "base"}, max_train_steps=1,
        data={"height": SIZE // 2, "width": SIZE // 2, "num_frames": FRAMES},
    )  # fmt: skip
    base_dir = train(base_config, components(tiny_stage_unet(super_resolution=False, sample_size=SIZE // 2)))
    pipe = assemble_cascade([base_dir, student_dir], tmp_path / "cascade")
    assert [str(spec) for spec in pipe.stage_specs] == ["base", "ssrx2"]
    assert isinstance(pipe.scheduler_1, VDistilledScheduler) and pipe.scheduler_1.config.distillation_base_steps == 4
    reloaded = type(pipe).from_pretrained(tmp_path / "cascade")
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in reloaded.unet_1.state_dict().items())
    video = reloaded(
        "a red circle moving right", num_frames=FRAMES, num_inference_steps=[4, 2], guidance_scale=3.0, output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).frames  # fmt: skip
    assert video.shape == (1, FRAMES, SIZE, SIZE, 3)
    # --fp16: the UNets saved in float16 (half the bytes), loaded back in float32 as the rounded weights
    halved = assemble_cascade([base_dir, student_dir], tmp_path / "cascade_fp16", fp16=True)
    assert halved.unet_1.dtype == torch.float32
    size = {name: sum(f.stat().st_size for f in (tmp_path / name / "unet_1").glob("*.safetensors"))
            for name in ("cascade", "cascade_fp16")}  # fmt: skip
    assert size["cascade_fp16"] < 0.6 * size["cascade"]
    loaded_fp16 = type(pipe).from_pretrained(tmp_path / "cascade_fp16")
    for key, value in loaded_fp16.unet_1.state_dict().items():
        assert value.dtype == torch.float32
        assert torch.equal(value, student.state_dict()[key].half().float()), key
        assert torch.equal(value, halved.unet_1.state_dict()[key]), key
    with pytest.raises(ValueError, match=r"Stage 1 \(ssrx2, .*makes \(frames, height, width\) \(4, 16, 16\) from "):
        assemble_cascade([teacher_dir, student_dir])  # a 16x16 base cannot feed an 8x8 -> 16x16 stage


def _aug(config, position):
    g = sample_generator(config.seed, int(position), 1)
    torch.rand(1, generator=g)  # the level's draw (made even when the level is fixed)
    return g


def public_config(obj) -> dict:
    """A diffusers config as saved (JSON types), without the private `_...` keys."""
    public = {k: v for k, v in dict(obj.config).items() if not k.startswith("_")}
    return json.loads(json.dumps(public))


def test_extract_stage_is_the_inverse_of_assemble_cascade(tmp_path):
    from diffusers_video import ImagenVideoPipeline
    from diffusers_video.pipelines.imagen_video.cascade import StageSpec

    tokenizer, text_encoder = t5_models()
    base = tiny_stage_unet(super_resolution=False, perturb=True, sample_size=SIZE // 2)
    ssr = tiny_stage_unet(perturb=True)

    def v_scheduler(base_steps=None):
        return VDistilledScheduler(
            noise_schedule="continuous_cosine", prediction_type="v_prediction", distillation_base_steps=base_steps
        )

    stages = [("base", base, v_scheduler()), (StageSpec("ssr", 2), ssr, v_scheduler(64))]
    ImagenVideoPipeline.from_stages(text_encoder, tokenizer, stages).save_pretrained(tmp_path / "cascade")

    # each stage out as a stage folder (one through the command line), then assembled again: the same cascade
    extract_stage(tmp_path / "cascade", 0, tmp_path / "base")
    argv = ["extract", str(tmp_path / "cascade"), "--stage", "-1", "--output_dir", str(tmp_path / "ssr")]
    assert imagen_video_main(argv + ["--noise_aug_level", "0.2"]) == 0
    assert sorted(p.name for p in (tmp_path / "ssr").iterdir()) == [
        "scheduler", "stage.json", "text_encoder", "tokenizer", "unet"
    ]  # fmt: skip
    assert json.loads((tmp_path / "base" / STAGE_CONFIG_NAME).read_text()) == {
        "kind": "base", "factor": 1, "noise_aug_level": None, "num_frames": 8, "height": SIZE // 2,
        "width": SIZE // 2,
    }  # fmt: skip
    assert json.loads((tmp_path / "ssr" / STAGE_CONFIG_NAME).read_text()) == {
        "kind": "ssr", "factor": 2, "noise_aug_level": 0.2, "num_frames": 8, "height": SIZE, "width": SIZE
    }  # fmt: skip
    again = assemble_cascade([tmp_path / "base", tmp_path / "ssr"], tmp_path / "again")
    assert again.stage_specs == (StageSpec("base", 1), StageSpec("ssr", 2))
    for unet, (_, original, _) in zip((again.unet_0, again.unet_1), stages):
        assert public_config(unet) == public_config(original)
        assert all(torch.equal(value, original.state_dict()[key]) for key, value in unet.state_dict().items())
    assert public_config(again.scheduler_1) == public_config(stages[1][2])
    assert all(torch.equal(v, text_encoder.state_dict()[k]) for k, v in again.text_encoder.state_dict().items())
    # an extracted SR stage is a distillation teacher as it stands
    teacher = load_teacher(tmp_path / "ssr")
    assert teacher.unet.config.in_channels == 6 and teacher.noise_scheduler.config.prediction_type == "v_prediction"

    # a float16 cascade gives float32 stage folders holding its rounded weights; a final size of its own
    assemble_cascade([tmp_path / "base", tmp_path / "ssr"], tmp_path / "fp16", fp16=True)
    extract_stage(tmp_path / "fp16", 0, tmp_path / "base_fp16", num_frames=4, height=32, width=32)
    stage = json.loads((tmp_path / "base_fp16" / STAGE_CONFIG_NAME).read_text())
    assert (stage["num_frames"], stage["height"], stage["width"]) == (4, 16, 16)
    rounded = UNet3DModel.from_pretrained(tmp_path / "base_fp16" / "unet")
    for key, value in rounded.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, base.state_dict()[key].half().float()), key

    # bad input, refused before anything is written; a failed write leaves the existing folder as it was
    before = (tmp_path / "ssr" / STAGE_CONFIG_NAME).read_text()
    with pytest.raises(ValueError, match=r"`index` must be a stage of the 2-stage cascade \(0 to 1\), but is 2"):
        extract_stage(again, 2, tmp_path / "ssr")
    with pytest.raises(ValueError, match=r"all of `num_frames`, `height` and `width` or none.*\(8, None, None\)"):
        extract_stage(again, 1, tmp_path / "ssr", num_frames=8)
    with pytest.raises(ValueError, match=r"`noise_aug_level` must be in \[0, 1\], but is 1.5"):
        extract_stage(again, 1, tmp_path / "ssr", noise_aug_level=1.5)
    with pytest.raises(ValueError, match=r"Stage 1 \(ssrx2\) cannot produce 8 frames of 15x15"):
        extract_stage(again, 1, tmp_path / "ssr", num_frames=8, height=15, width=15)
    original_save = again.tokenizer.save_pretrained
    again.tokenizer.save_pretrained = lambda *a, **k: (_ for _ in ()).throw(OSError("disk full"))
    with pytest.raises(OSError, match="disk full"):
        extract_stage(again, 1, tmp_path / "ssr", noise_aug_level=0.3)
    again.tokenizer.save_pretrained = original_save
    assert (tmp_path / "ssr" / STAGE_CONFIG_NAME).read_text() == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert again.unet_1.dtype == torch.float32


def test_committed_teacher_cascade_is_the_demo_s_teacher():
    """`pipelines/imagen_video/teacher` (the 64-step stages) and `demo` (their 8-step students): one cascade before
    and after distillation, so that the table and `bench_imagen_video_stages` run from the repository."""
    from diffusers_video import ImagenVideoPipeline

    root = Path(__file__).resolve().parents[1] / "pipelines" / "imagen_video"
    teacher = ImagenVideoPipeline.from_pretrained(root / "teacher")
    demo = ImagenVideoPipeline.from_pretrained(root / "demo")
    assert teacher.stage_specs == demo.stage_specs and teacher.default_size() == (16, 64, 64)
    assert all(torch.equal(v, demo.text_encoder.state_dict()[k]) for k, v in teacher.text_encoder.state_dict().items())
    for i, (stage, student) in enumerate(zip(teacher.stages, demo.stages)):
        assert stage.unet.dtype == torch.float32  # stored in float16, loaded back in float32
        assert stage.scheduler.config.prediction_type == "v_prediction"
        assert stage.scheduler.config.get("distillation_base_steps") is None  # a teacher samples any step count
        assert student.scheduler.config.distillation_base_steps == 64  # distilled from 64 teacher steps
        # the students add the guidance weight as an input exactly where the stage reads the text
        added = set(student.unet.config.scalar_conditions) - set(stage.unet.config.scalar_conditions)
        assert added == ({"guidance_scale"} if stage.reads_text else set()), i
        assert public_config(stage.unet) | {"scalar_conditions": None} == public_config(student.unet) | {
            "scalar_conditions": None
        }, i


# ------------------------------------------------------------------------------------------------- (e) bad input


def test_bad_input_gets_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="`prediction_type` must be 'v_prediction' with `imagen_video`.*'epsilon'"):
        make_config(tmp_path, prediction_type="epsilon")
    with pytest.raises(ValueError, match=r"`data.num_frames` 4, `data.height` 17.*2 must divide both"):
        make_config(tmp_path, data={"height": 17, "width": SIZE, "num_frames": FRAMES})
    with pytest.raises(ValueError, match="factor 3 cannot produce 4 frames"):
        make_config(tmp_path, stage={"kind": "tsr", "factor": 3})
    for value in (1.5, -0.1):
        with pytest.raises(ValueError, match=f"`imagen_video.noise_aug_max` must be in \\[0, 1\\] but is {value}"):
            make_config(tmp_path, imagen_video={"noise_aug_max": value})
    with pytest.raises(ValueError, match=r"`imagen_video.noise_aug_level` \(0.7\) must not exceed .* \(0.6\)"):
        make_config(tmp_path, imagen_video={"noise_aug_level": 0.7})
    with pytest.raises(ValueError, match="`image_fraction` must be 0 for a 'tsr' stage .* but is 0.25"):
        make_config(tmp_path, stage=TSR, image_fraction=0.25)
    with pytest.raises(ValueError, match="`imagen_video.stage` is not a valid stage.*'xsr'"):
        make_config(tmp_path, stage={"kind": "xsr", "factor": 2})
    with pytest.raises(ValueError, match="needs `factor` >= 2 but was given 1"):
        make_config(tmp_path, stage={"kind": "ssr", "factor": 1})
    with pytest.raises(ValueError, match="Unknown config keys \\['imagen_video.noise_aug'\\]"):
        TrainingConfig.from_dict({"imagen_video": {"noise_aug": 0.1}})
    with pytest.raises(ValueError, match="`model.pipeline_class` must be None with `imagen_video`"):
        make_config(tmp_path, model={"pipeline_class": "StableDiffusionPipeline"})
    with pytest.raises(ValueError, match="`videofusion` and `imagen_video` cannot both be set"):
        make_config(tmp_path, videofusion={})

    # models that do not fit the stage
    with pytest.raises(ValueError, match=r"`in_channels` \(3\) must equal .* \(3: pixel space, no VAE\) plus 3"):
        ImagenVideoTrainer(make_config(tmp_path), components(tiny_stage_unet(in_channels=3)))
    with pytest.raises(ValueError, match="'ssr' stage's UNet needs a 'noise_aug_level' scalar condition.*\\[\\]"):
        ImagenVideoTrainer(make_config(tmp_path), components(tiny_stage_unet(scalar_conditions=())))
    with pytest.raises(ValueError, match="'base' stage's UNet must not have a 'noise_aug_level'"):
        ImagenVideoTrainer(make_config(tmp_path, stage={"kind": "base"}), components())
    from conftest import tiny_vae

    with pytest.raises(ValueError, match="pixel space, but the components have a VAE"):
        ImagenVideoTrainer(make_config(tmp_path), components(vae=tiny_vae()))
    with pytest.raises(ValueError, match="Trainer cannot train a config with an `imagen_video` section"):
        Trainer(make_config(tmp_path), components())

    # distillation: the stage must be the teacher's
    teacher = tmp_path / "teacher"
    train(make_config(tmp_path / "run", max_train_steps=1), components())
    (tmp_path / "run" / "final").rename(teacher)
    values = dict(output_dir=str(tmp_path / "out"), teacher=str(teacher), teacher_steps=4, student_steps=2)
    with pytest.raises(ValueError, match="is an Imagen Video stage .*set the `imagen_video` section"):
        distill(DistillationConfig.from_dict(values))
    with pytest.raises(ValueError, match=r"`imagen_video.stage` is \{'kind': 'tsr', 'factor': 2\} but the teacher"):
        distill(DistillationConfig.from_dict({**values, "imagen_video": {"stage": TSR}}))


# ---------------------------------------------------------------------------------------------- (f) the recipes


def test_demo_recipes_parse_and_chain_into_one_cascade():
    from diffusers_video import ImagenVideoPipeline
    from diffusers_video.pipelines.imagen_video.cascade import StageSpec

    recipes = Path(__file__).resolve().parents[1] / "pipelines" / "imagen_video"
    specs, unets, size = [], [], None
    for name in ("base", "tsr", "ssr32", "ssr64"):
        config = TrainingConfig.from_json_file(recipes / f"train_{name}.json")
        spec, data = StageSpec.from_dict(config.imagen_video.stage), config.data
        output = (data.num_frames, data.height, data.width)
        if size is not None:
            assert spec.input_size(*output) == size, name  # each stage makes what the next one starts from
        size = output
        unet_config = config.model.unet_config
        assert unet_config["cross_attention_dim"] == 64  # `write_text_encoder_folder`'s default d_model
        assert unet_config["sample_size"] == data.height
        specs.append(spec)
        unets.append(UNet3DModel(**unet_config))
        distill_config = DistillationConfig.from_json_file(recipes / f"distill_{name}.json")
        teachers = [f"{config.output_dir}/final"]
        if (recipes / f"train_{name}_more.json").is_file():  # the stage trained on from the committed teacher
            more = TrainingConfig.from_json_file(recipes / f"train_{name}_more.json")
            assert more.imagen_video.stage == config.imagen_video.stage and more.data == config.data, name
            teachers.append(f"{more.output_dir}/final")
        assert distill_config.teacher in teachers, name
        assert distill_config.imagen_video == config.imagen_video and distill_config.data == config.data
    assert size == (16, 64, 64)
    ImagenVideoPipeline.check_stages(specs, unets, [VDistilledScheduler()] * 4)  # the pipeline takes these stages


def test_text_encoder_folder_trains_the_t5_stand_in_contrastively(tmp_path):
    random_folder = write_text_encoder_folder(tmp_path / "random", d_model=32, num_layers=1)
    trained_folder = write_text_encoder_folder(
        tmp_path / "trained", d_model=32, num_layers=1, text_steps=2, text_num_clips=16
    )
    from transformers import T5EncoderModel

    random_state, trained_state = (
        T5EncoderModel.from_pretrained(folder / "text_encoder").state_dict()
        for folder in (random_folder, trained_folder)
    )
    assert (
        VDistilledScheduler.from_pretrained(trained_folder / "scheduler").config.noise_schedule == "continuous_cosine"
    )
    changed = [name for name in random_state if not torch.equal(random_state[name], trained_state[name])]
    assert changed and "shared.weight" in changed  # same seed: only the contrastive steps made them differ
    with pytest.raises(ValueError, match="text_steps"):
        write_text_encoder_folder(tmp_path / "bad", text_steps=-1)
