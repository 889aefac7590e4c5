"""Progressive distillation with guidance distilled in: the target property, a toy round, the guidance condition,
resuming, and bad input. Tiny models built in memory; the whole file runs in well under a minute on one thread."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import read_train_log, tiny_clip_text_models
from diffusers import DDPMScheduler, UNet2DConditionModel

from diffusers_video import UNet3DModel, VDistilledScheduler
from diffusers_video.cli import main as cli_main
from diffusers_video.guidance import guidance_condition
from diffusers_video.training import TrainingComponents, TrainingConfig, save_components
from diffusers_video.training.data import TrainingItems, collate
from diffusers_video.training.distillation import (
    DistillationConfig,
    DistillationTrainer,
    distill,
    load_teacher,
    with_guidance_condition,
)
from diffusers_video.training.distillation_sampling import DistillationSampler, as_distillation_scheduler

SIZE, FRAMES, TEXT_DIM = 16, 4, 16


# ------------------------------------------------------------------------------------------------- tiny components


def tiny_teacher_unet(scalar_conditions: tuple[str, ...] = ()) -> UNet3DModel:
    """A random teacher: every weight perturbed (temporal layers and scalar embeddings too), so all of them count."""
    torch.manual_seed(0)
    unet = UNet3DModel(
        sample_size=SIZE, in_channels=3, out_channels=3,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, cross_attention_dim=TEXT_DIM,
        attention_head_dim=2, temporal_attention_head_dim=8, mid_block_type=None, scalar_conditions=scalar_conditions,
    )  # fmt: skip
    with torch.no_grad():
        for parameter in unet.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return unet.eval()


def teacher_components(scheduler=None, scalar_conditions: tuple[str, ...] = ()) -> TrainingComponents:
    tokenizer, text_encoder = tiny_clip_text_models(TEXT_DIM)
    scheduler = (
        scheduler if scheduler is not None else DDPMScheduler(prediction_type="v_prediction", clip_sample=False)
    )
    return TrainingComponents(tiny_teacher_unet(scalar_conditions), text_encoder, tokenizer, scheduler)


def make_config(output_dir, **overrides) -> DistillationConfig:
    values = dict(
        output_dir=str(output_dir), teacher_steps=4, student_steps=2, max_train_steps=3, train_batch_size=2,
        learning_rate=1e-3, checkpointing_steps=None, data={"height": SIZE, "width": SIZE, "num_frames": FRAMES},
    )  # fmt: skip
    values.update(overrides)
    return DistillationConfig.from_dict(values)


def round_trainer(config, teacher: TrainingComponents, num_student_steps: int, base_steps: int | None = None):
    """A distillation round's trainer for an in-memory teacher, built as `distill` builds it."""
    scheduler = as_distillation_scheduler(teacher.noise_scheduler, base_steps or 2 * num_student_steps)
    unet = teacher.unet
    student_unet = with_guidance_condition(unet) if "guidance_scale" not in unet.config.scalar_conditions else unet
    student = TrainingComponents(student_unet, teacher.text_encoder, teacher.tokenizer, scheduler)
    return DistillationTrainer(config, student, unet, num_student_steps)


def fixed_part(trainer, positions) -> dict:
    """The batch part that the data stream shows at `positions`."""
    items = TrainingItems(trainer.datasets, trainer.config.seed)
    return collate([items[(p, "video")] for p in positions])["video"]


def encode(teacher: TrainingComponents, captions: list[str]) -> torch.Tensor:
    ids = teacher.tokenizer(captions, padding="max_length", max_length=32, truncation=True, return_tensors="pt")
    with torch.no_grad():
        return teacher.text_encoder(ids.input_ids)[0]


pytestmark = pytest.mark.usefixtures("one_thread_and_fresh_accelerate")


# ------------------------------------------------------------------------------------ (a) the distillation target


@pytest.mark.parametrize(
    "noise_schedule, teacher_kind", [("discrete", "two_pass"), ("continuous_cosine", "guidance_condition")]
)
def test_one_student_step_to_the_target_lands_where_two_guided_teacher_steps_land(
    tmp_path, noise_schedule, teacher_kind
):
    """Through the loss code: the target of `distillation_batch`, stepped once by the student's scheduler, lands where
    the teacher's own scheduler lands in two guided steps on the twice-finer grid (computed here independently)."""
    conditions = ("guidance_scale",) if teacher_kind == "guidance_condition" else ()
    teacher = teacher_components(VDistilledScheduler(noise_schedule=noise_schedule), conditions)
    if conditions:  # a teacher that is itself a guidance-distilled student: make the condition matter
        with torch.no_grad():
            for parameter in teacher.unet.scalar_embeddings.parameters():
                parameter.copy_(torch.randn_like(parameter) * 0.5)
    trainer = round_trainer(make_config(tmp_path, train_batch_size=6), teacher, num_student_steps=4)
    batch = trainer.distillation_batch(fixed_part(trainer, range(6)))

    teacher_grid = VDistilledScheduler.from_config(trainer.components.noise_scheduler.config)
    teacher_grid.set_timesteps(8)
    student_grid = VDistilledScheduler.from_config(trainer.components.noise_scheduler.config)
    student_grid.set_timesteps(4)
    assert len(set(batch.timesteps[:, 0].tolist())) > 1  # several student steps are exercised
    captions = fixed_part(trainer, range(6))["captions"]
    cond, uncond = encode(teacher, captions), encode(teacher, [""] * 6)
    for i in range(6):
        t, mid, s = batch.timesteps[i]
        w = float(batch.guidance_scale[i])
        x = batch.x_t[i : i + 1]
        with torch.no_grad():
            for timestep in (t, mid):
                if conditions:
                    conds = {"guidance_scale": torch.tensor([100.0 * w])}
                    v = teacher.unet(x, timestep, cond[i : i + 1], scalar_conds=conds).sample
                else:
                    v_cond = teacher.unet(x, timestep, cond[i : i + 1]).sample
                    v_uncond = teacher.unet(x, timestep, uncond[i : i + 1]).sample
                    v = v_uncond + w * (v_cond - v_uncond)
                x = teacher_grid.step(v, timestep, x).prev_sample
        assert teacher_grid.previous_timestep(mid) == s
        landed = student_grid.step(batch.target[i : i + 1], t, batch.x_t[i : i + 1]).prev_sample
        assert student_grid.previous_timestep(t) == s
        assert (landed - x).abs().max() <= 1e-5, (i, (landed - x).abs().max())
        assert (batch.x_s[i : i + 1] - x).abs().max() <= 1e-5


# ----------------------------------------------------------------------------------------------- (b) a toy round


def test_a_toy_round_from_4_to_2_steps_lowers_the_loss_and_writes_a_loadable_student(tmp_path, capsys):
    teacher = teacher_components()
    teacher_dir, out = tmp_path / "teacher", tmp_path / "out"
    save_components(teacher_dir, teacher)
    data = {"height": SIZE, "width": SIZE, "num_frames": FRAMES, "num_samples": 4}
    TrainingConfig(prediction_type="v_prediction", data=data).to_json_file(teacher_dir / "training_config.json")
    command = ["distill", "--teacher", str(teacher_dir), "--output_dir", str(out), "--teacher_steps", "4"]
    command += ["--student_steps", "2", "--max_train_steps", "30", "--train_batch_size", "4"]
    command += ["--learning_rate", "2e-3", "--checkpointing_steps", "null"]
    assert cli_main(command) == 0  # data settings come from the teacher's training_config.json
    folder = out / "student-2-steps"
    assert f"Saved student {folder}" in capsys.readouterr().out

    # the student folder loads, and its scheduler samples on the 2-step distillation grid
    unet = UNet3DModel.from_pretrained(folder / "unet")
    assert "guidance_scale" in unet.config.scalar_conditions
    scheduler = VDistilledScheduler.from_pretrained(folder / "scheduler")
    assert scheduler.config.prediction_type == "v_prediction" and scheduler.config.distillation_base_steps == 4
    assert scheduler.default_num_inference_steps == 2  # the student knows its own step count
    scheduler.set_timesteps(2)
    assert scheduler.timesteps.tolist() == scheduler.distillation_timesteps(2)[:, 0].tolist() == [999, 499]
    info = json.loads((folder / "distillation.json").read_text())
    assert info["num_inference_steps"] == 2 and info["teacher_steps"] == 4 and info["guidance_condition_scale"] == 100
    saved = DistillationConfig.from_json_file(folder / "training_config.json")
    assert saved.data.num_samples == 4 and saved.teacher == str(teacher_dir)
    video = DistillationSampler.from_folder(folder)(
        "a red circle moving right", generator=torch.Generator().manual_seed(0)
    )
    assert video.frames.shape == (1, FRAMES, SIZE, SIZE, 3) and 0 <= video.frames.min() <= video.frames.max() <= 1

    # on a fixed batch, the trained student's distillation loss is well below the initial student's
    config = DistillationConfig.from_json_file(folder / "training_config.json")
    trainer = round_trainer(config, load_teacher(teacher_dir), num_student_steps=2, base_steps=4)
    part = {"video": fixed_part(trainer, range(8))}
    with torch.no_grad():
        before = trainer.training_loss(part).item()
        trainer.unet.load_state_dict(unet.state_dict())
        after = trainer.training_loss(part).item()
    assert after < 0.8 * before, (before, after)  # about 0.6 on this toy teacher


# ------------------------------------------------------------------------------------- (c) the guidance condition


def test_the_guidance_condition_starts_at_zero_and_the_target_is_the_guided_teachers(tmp_path):
    teacher = teacher_components()
    student = with_guidance_condition(teacher.unet, seed=3)
    assert student.config.scalar_conditions == ("guidance_scale",)
    teacher_state = teacher.unet.state_dict()
    assert all(
        torch.equal(value, teacher_state[key]) for key, value in student.state_dict().items() if key in teacher_state
    )
    x, text = torch.randn(2, 3, FRAMES, SIZE, SIZE), encode(teacher, ["a red circle moving right", "a blue square"])
    with torch.no_grad():
        reference = teacher.unet(x, torch.tensor([700, 80]), text).sample
        for w in (1.0, 7.5, torch.tensor([0.0, 12.0])):
            conds = {"guidance_scale": guidance_condition(w)}
            out = student(x, torch.tensor([700, 80]), text, scalar_conds=conds).sample
            assert torch.allclose(out, reference, rtol=0, atol=1e-6)  # another instance: summation order may differ

    # the target: two DDIM steps of `uncond + w (cond - uncond)`, computed here by hand from the formulas
    config = make_config(tmp_path, train_batch_size=4, guidance_scale_range=[2.0, 6.0])
    trainer = round_trainer(config, teacher, num_student_steps=2)
    part = fixed_part(trainer, range(4))
    batch = trainer.distillation_batch(part)
    w = batch.guidance_scale
    assert ((w >= 2.0) & (w <= 6.0)).all() and len(set(w.tolist())) == 4
    assert torch.equal(trainer.distillation_batch(part).guidance_scale, w)  # a function of (seed, position)
    assert torch.allclose(batch.unet_kwargs["scalar_conds"]["guidance_scale"], 100 * w)
    scheduler = trainer.components.noise_scheduler
    cond, uncond = encode(teacher, part["captions"]), encode(teacher, [""] * 4)

    @torch.no_grad()
    def guided(sample, timestep, i):
        v_cond = teacher.unet(sample, timestep, cond[i : i + 1]).sample
        v_uncond = teacher.unet(sample, timestep, uncond[i : i + 1]).sample
        return v_uncond + w[i] * (v_cond - v_uncond)

    for i in range(4):
        (a_t, s_t), (a_m, s_m), (a_s, s_s) = (scheduler.alpha_sigma(x) for x in batch.timesteps[i])
        x_t = batch.x_t[i : i + 1]
        v = guided(x_t, batch.timesteps[i, 0], i)
        x_m = a_m * (a_t * x_t - s_t * v) + s_m * (s_t * x_t + a_t * v)  # DDIM: x0 = a x - s v, eps = s x + a v
        v = guided(x_m, batch.timesteps[i, 1], i)
        x_s = a_s * (a_m * x_m - s_m * v) + s_s * (s_m * x_m + a_m * v)
        x0 = (x_s - (s_s / s_t) * x_t) / (a_s - (s_s / s_t) * a_t)
        target = (a_t * x_t - x0) / s_t
        assert torch.allclose(batch.target[i : i + 1], target, atol=1e-5), (i, (batch.target[i] - target).abs().max())


# ------------------------------------------------------------------------------------------ (d) resume a round


def test_an_interrupted_distillation_resumes_at_the_right_round_and_step(tmp_path, monkeypatch):
    config = make_config(tmp_path / "run", student_steps=1, max_train_steps=4, checkpointing_steps=2)
    reference = distill(config.with_overrides({"output_dir": str(tmp_path / "reference")}), teacher_components())

    calls, original = [0], DistillationTrainer.training_loss

    def interrupted(self, parts):
        calls[0] += 1
        if calls[0] == 7:  # round 1: 4 steps; round 2: killed in step 3, after checkpoint-2
            raise KeyboardInterrupt
        return original(self, parts)

    monkeypatch.setattr(DistillationTrainer, "training_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        distill(config, teacher_components())
    monkeypatch.setattr(DistillationTrainer, "training_loss", original)
    first_round = read_train_log(tmp_path / "run" / "round-1")
    students = distill(config.with_overrides({"resume_from_checkpoint": "latest"}), teacher_components())

    assert [p.name for p in students] == [p.name for p in reference] == ["student-2-steps", "student-1-steps"]
    assert read_train_log(tmp_path / "run" / "round-1") == first_round  # the finished round was not run again
    log, reference_log = (
        read_train_log(tmp_path / "run" / "round-2"),
        read_train_log(tmp_path / "reference" / "round-2"),
    )
    assert [line["step"] for line in log] == [1, 2, 3, 4]
    # equal up to float32 summation order (see the kill-and-resume test of the training loop)
    losses, reference_losses = [line["loss"] for line in log], [line["loss"] for line in reference_log]
    assert losses == pytest.approx(reference_losses, rel=1e-6, abs=1e-9)
    assert log[1]["run"] != log[2]["run"]  # steps 3-4 came from the resumed run
    a = UNet3DModel.from_pretrained(students[-1] / "unet").state_dict()
    b = UNet3DModel.from_pretrained(reference[-1] / "unet").state_dict()
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a)


# ------------------------------------------------------------------------------------------------- (e) bad input


def test_bad_input_gets_clear_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"`student_steps` must be `teacher_steps` \(64\) halved .* but is 12"):
        DistillationConfig(teacher_steps=64, student_steps=12)
    with pytest.raises(ValueError, match="halved"):
        DistillationConfig(teacher_steps=8, student_steps=8)
    with pytest.raises(ValueError, match="`prediction_type` must be 'v_prediction'"):
        DistillationConfig(prediction_type="epsilon")
    with pytest.raises(ValueError, match=r"`guidance_scale_range` must be \[low, high\]"):
        DistillationConfig(guidance_scale_range=[6.0, 2.0])
    with pytest.raises(ValueError, match="`resume_from_checkpoint` must be None or 'latest'"):
        DistillationConfig(resume_from_checkpoint="checkpoint-4")
    with pytest.raises(ValueError, match="`model.pretrained_model_name_or_path` must be unset"):
        DistillationConfig(model={"pretrained_model_name_or_path": "somewhere"})
    with pytest.raises(ValueError, match="`videofusion` must be unset for distillation"):
        DistillationConfig(videofusion={"base_noise_ratio": 0.5})

    # a teacher folder that does not exist, from Python and from the command line
    missing = tmp_path / "no-such-teacher"
    with pytest.raises(FileNotFoundError, match="no-such-teacher"):
        distill(make_config(tmp_path / "out", teacher=str(missing)))
    assert cli_main(["distill", "--teacher", str(missing), "--output_dir", str(tmp_path / "out")]) == 1
    assert "does not exist" in capsys.readouterr().err

    # a teacher that is not v-prediction
    eps_dir = tmp_path / "epsilon-teacher"
    save_components(eps_dir, teacher_components(DDPMScheduler(prediction_type="epsilon")))
    with pytest.raises(ValueError, match="v-prediction teacher.*'epsilon'"):
        distill(make_config(tmp_path / "out", teacher=str(eps_dir)))
    command = ["distill", "--teacher", str(eps_dir), "--output_dir", str(tmp_path / "out")]
    assert cli_main([*command, "--data.height", "16"]) == 1
    assert "'epsilon'" in capsys.readouterr().err
    assert cli_main([*command, "--student_steps", "3"]) == 1
    assert "`student_steps` must be" in capsys.readouterr().err

    # a teacher that is not a UNet3DModel, and a guidance-distilled teacher without a guidance range
    tokenizer, text_encoder = tiny_clip_text_models(TEXT_DIM)
    unet2d = UNet2DConditionModel(
        sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
        norm_num_groups=4, cross_attention_dim=TEXT_DIM, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=2,
    )  # fmt: skip
    v_scheduler = DDPMScheduler(prediction_type="v_prediction")
    with pytest.raises(ValueError, match="must be a UNet3DModel"):
        distill(make_config(tmp_path / "out"), TrainingComponents(unet2d, text_encoder, tokenizer, v_scheduler))
    with pytest.raises(ValueError, match="set `guidance_scale_range`"):
        distill(
            make_config(tmp_path / "out", guidance_scale_range=None),
            teacher_components(scalar_conditions=("guidance_scale",)),
        )
