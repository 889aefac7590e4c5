"""Our training step against diffusers' UNet3DConditionModel of the same layout: steps/s and peak memory.

One training step is what `diffusers_video.training.Trainer` does per optimizer step on a pixel-space video batch:
draw timesteps and noise, noise the clean batch, forward the UNet, v-prediction MSE loss
(`diffusers_video.training.objectives`), backward, AdamW step (and an EMA update with `--ema`). A fixed random text
embedding `(batch, 8, cross_attention_dim)` stands in for the frozen text encoder, so only the UNet step is compared.

Both models get the configuration of `/work/shared/design/TRAINING-NOTES.md` (the measured peer: 2.22M parameters,
channels 32/64/64, one layer per block, 4 attention heads, cross-attention width 32, attention only at 8x8 and in the
middle block, RGB 16x16 x 8 frames, batch 16, cosine schedule, AdamW 1e-3). At 16x16 with three blocks the blocks run
at 16x16, 8x8 and 4x4, so only the second down block and its matching up block have cross-attention.

Each model is measured in its own subprocess: peak memory in one (with `MALLOC_MMAP_THRESHOLD_` fixed), steps/s in
another; the timing workers alternate between the models twice and each model keeps its best run.

    python benchmarks/bench_training.py                  # CPU, the TRAINING-NOTES configuration
    python benchmarks/bench_training.py --device cuda --batch 64

Peak memory is that of one training step after a warm-up step (AdamW state exists, gradients were freed by
`zero_grad`): on CPU the peak resident set during the step (VmHWM, reset just before it) minus the resident set before
it; on CUDA `torch.cuda.max_memory_allocated` minus the memory allocated before it. It covers activations, gradients
and workspace, not the parameters and optimizer state held between steps.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from _measure import median_seconds, peak_bytes, run_worker  # benchmarks/ is on sys.path when this runs as a script

CONFIG = dict(
    in_channels=3,
    out_channels=3,
    block_out_channels=(32, 64, 64),
    layers_per_block=1,
    attention_head_dim=4,
    cross_attention_dim=32,
    norm_num_groups=32,
)
# attention at the second resolution (8x8 at 16x16 input) and in the middle block only
DOWN_2D = ("DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
UP_2D = ("UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
TEXT_TOKENS = 8
NAMES = {"peer": "UNet3DConditionModel", "ours": "UNet3DModel"}


def build(kind: str):
    """The peer (`"peer"`, diffusers' `UNet3DConditionModel`) or our `UNet3DModel` (`"ours"`) in the same layout."""
    import torch
    from diffusers import UNet3DConditionModel

    from diffusers_video import UNet3DModel

    torch.manual_seed(0)
    if kind == "peer":
        return UNet3DConditionModel(
            down_block_types=tuple(name.replace("2D", "3D") for name in DOWN_2D),
            up_block_types=tuple(name.replace("2D", "3D") for name in UP_2D),
            **CONFIG,
        )
    return UNet3DModel(down_block_types=DOWN_2D, up_block_types=UP_2D, **CONFIG)


def measure(kind: str, what: str, args: argparse.Namespace) -> dict:
    """Runs in a subprocess: build one model and its optimizer, then measure the peak memory of one training step
    (`what="memory"`) or the median time of `args.steps` steps after two warm-up steps (`what="time"`)."""
    import torch
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    from diffusers_video.training.objectives import OBJECTIVES, per_sample_mse, sample_training_noise

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    model = build(kind).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    ema = EMAModel(params, decay=args.ema) if args.ema is not None else None
    if ema is not None:
        ema.to(device)
    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    objective = OBJECTIVES["v_prediction"]
    num_timesteps = scheduler.config.num_train_timesteps

    gen = torch.Generator().manual_seed(0)
    shape = (args.batch, CONFIG["in_channels"], args.frames, args.size, args.size)
    clean = (torch.rand(shape, generator=gen) * 2 - 1).to(device)
    text = torch.randn(args.batch, TEXT_TOKENS, CONFIG["cross_attention_dim"], generator=gen).to(device)

    def step():
        timesteps = torch.randint(0, num_timesteps, (args.batch,), generator=gen).to(device)
        noise = sample_training_noise(scheduler, shape, gen).to(device, clean.dtype)
        noisy = scheduler.add_noise(clean, noise.noise, timesteps)
        target = objective(scheduler, clean, noise, timesteps)
        prediction = model(noisy, timesteps, encoder_hidden_states=text).sample
        loss = per_sample_mse(prediction, target).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(params)
        return loss

    result = {"kind": kind, "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    step()  # warm-up: allocates the optimizer state
    if what == "memory":
        result["peak_mb"] = peak_bytes(step, device) / 2**20
        return result
    step()
    result["seconds"] = median_seconds(step, args.steps, device)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=16, help="height and width in pixels")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per worker (after 2 warm-up steps)")
    parser.add_argument("--ema", type=float, default=None, help="also update an EMA of the weights with this decay")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in the workers")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    parser.add_argument("--_what", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._worker:
        print(json.dumps(measure(args._worker, args._what, args)))
        return

    def worker(kind: str, what: str) -> dict:
        return run_worker(__file__, kind, what, sys.argv[1:])

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    results = {kind: worker(kind, "memory") for kind in ("peer", "ours")}
    for _ in range(2):  # alternate the two models twice and keep each one's best, to even out machine noise
        for kind in ("peer", "ours"):
            seconds = worker(kind, "time")["seconds"]
            results[kind]["seconds"] = min(seconds, results[kind].get("seconds", float("inf")))
    for r in results.values():
        r["steps_per_s"] = 1 / r["seconds"]

    print(
        f"device={args.device} threads={args.threads or 'default'} batch={args.batch} frames={args.frames} "
        f"size={args.size}x{args.size} channels={CONFIG['block_out_channels']} layers=1 heads=4 "
        f"cross_attention_dim={CONFIG['cross_attention_dim']} v-prediction AdamW 1e-3 ema={args.ema} "
        f"load average at start={load:.2f} cores={os.cpu_count()}"
    )
    print(f"{'model':<22}{'params (M)':>12}{'steps/s':>10}{'s/step':>9}{'peak (MiB)':>12}")
    for kind in ("peer", "ours"):
        r = results[kind]
        print(
            f"{NAMES[kind]:<22}{r['params_m']:>12.2f}{r['steps_per_s']:>10.2f}{r['seconds']:>9.2f}{r['peak_mb']:>12.0f}"
        )
    speed_ratio = results["ours"]["steps_per_s"] / results["peer"]["steps_per_s"]
    memory_ratio = results["ours"]["peak_mb"] / results["peer"]["peak_mb"]
    print(
        f"ratio ours/peer: steps/s {speed_ratio:.2f}x (higher is better), "
        f"peak memory {memory_ratio:.2f}x (lower is better)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"args": vars(args), "results": results, "speed_ratio": speed_ratio, "memory_ratio": memory_ratio},
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
