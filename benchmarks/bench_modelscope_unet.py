"""diffusers' UNet3DConditionModel (ModelScope) against the UNet3DModel converted from it: same weights, same output.

The peer is a `UNet3DConditionModel` with random weights (its zero-initialised temporal outputs made random too);
ours is the `UNet3DModel(temporal_layout="modelscope")` that `conversion_scripts/convert_modelscope_to_videofusion.py`
makes of it. Prints the largest difference of their outputs, then forward time (median) and peak memory of each, each
measured in its own subprocess so that allocator state does not leak between them, and the ratios ours / peer.

    python benchmarks/bench_modelscope_unet.py              # CPU, a small latent video UNet, batch 2 (as in CFG)
    python benchmarks/bench_modelscope_unet.py --threads 1  # compute alone, on a CPU that other jobs share
    python benchmarks/bench_modelscope_unet.py --device cuda --dtype float16 --preset ms17b

On a CPU with more busy threads than cores, multi-threaded timings mostly measure how long each operation waits for
its threads to be scheduled (both models then slow down several times over); `--threads 1` compares the computation.

Peak memory on CPU is the process's peak resident set during the forward pass (VmHWM, reset just before it) minus the
resident set before it; on CUDA it is `torch.cuda.max_memory_allocated` minus the memory allocated before it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from _measure import median_seconds, peak_bytes, run_worker  # benchmarks/ is on sys.path when this runs as a script

CONVERTER = Path(__file__).resolve().parents[1] / "conversion_scripts" / "convert_modelscope_to_videofusion.py"

PRESETS = {
    # A small latent video UNet that runs in seconds on a 2-core CPU.
    "small": dict(block_out_channels=(64, 128, 256, 256), cross_attention_dim=256, frames=16, size=32),
    # ModelScope text-to-video 1.7B (damo-vilab/text-to-video-ms-1.7b) at 256x256 (32x32 latents): GPU only.
    "ms17b": dict(block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=1024, frames=16, size=32),
}


def _converter():
    spec = importlib.util.spec_from_file_location("convert_modelscope_to_videofusion", CONVERTER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _build(kind: str, preset: dict, layers: int, device: str, dtype: str):
    """The peer with seeded random weights, or ours converted from exactly those weights."""
    import torch
    from diffusers import UNet3DConditionModel

    from diffusers_video import UNet3DModel

    n = len(preset["block_out_channels"])
    torch.manual_seed(0)
    peer = UNet3DConditionModel(
        down_block_types=("CrossAttnDownBlock3D",) * (n - 1) + ("DownBlock3D",),
        up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * (n - 1),
        block_out_channels=preset["block_out_channels"],
        layers_per_block=layers,
        cross_attention_dim=preset["cross_attention_dim"],
        attention_head_dim=64,
        norm_num_groups=32,
    )
    with torch.no_grad():  # the zero-initialised temporal outputs too, so that every layer counts
        for name, param in peer.named_parameters():
            if ".conv4." in name:
                param.normal_(0, 0.02)
    if kind == "ours":
        converter = _converter()
        config = converter.unet3d_condition_config_to_unet3d(dict(peer.config))
        state_dict = converter.convert_unet3d_condition_state_dict(peer.state_dict(), dict(peer.config))
        model = UNet3DModel(**config)
        model.load_state_dict(state_dict, strict=True)
        del peer
    else:
        model = peer
    # torch's own `to`: diffusers' `ModelMixin.to` warns about float32-only modules that neither model has.
    return torch.nn.Module.to(model, device=device, dtype=getattr(torch, dtype)).eval()


def _inputs(preset: dict, batch: int, device: str, dtype: str):
    import torch

    gen = torch.Generator().manual_seed(0)
    frames, size = preset["frames"], preset["size"]
    sample = torch.randn(batch, 4, frames, size, size, generator=gen).to(device, getattr(torch, dtype))
    text = torch.randn(batch, 77, preset["cross_attention_dim"], generator=gen).to(device, getattr(torch, dtype))
    timestep = torch.tensor([500] * batch, device=device)
    return sample, timestep, text


def measure(
    kind: str,
    what: str,
    preset_name: str,
    device: str,
    dtype: str,
    batch: int,
    layers: int,
    repeats: int,
    threads: int | None = None,
) -> dict:
    """Runs in a subprocess: the peak memory of the first forward pass (`what="memory"`), the median forward time
    (`what="time"`), or both models' outputs compared (`what="parity"`, kind "both")."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    preset = PRESETS[preset_name]
    sample, timestep, text = _inputs(preset, batch, device, dtype)
    if what == "parity":
        with torch.no_grad():
            outputs = {
                name: _build(name, preset, layers, device, dtype)(sample, timestep, encoder_hidden_states=text)
                .sample.float()
                .cpu()
                for name in ("peer", "ours")
            }
        return {"max_abs_diff": (outputs["peer"] - outputs["ours"]).abs().max().item()}

    model = _build(kind, preset, layers, device, dtype)

    def forward():
        with torch.no_grad():
            return model(sample, timestep, encoder_hidden_states=text).sample

    result = {"kind": kind, "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    if what == "memory":
        result["peak_mb"] = peak_bytes(forward, device) / 2**20
        return result
    forward()  # warm-up
    result["seconds"] = median_seconds(forward, repeats, device)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch", type=int, default=2, help="videos per forward pass (2: a CFG pair)")
    parser.add_argument("--layers", type=int, default=2, help="layers per block")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two timing workers")
    parser.add_argument("--threads", type=int, help="torch threads of the workers (default: torch's default)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    parser.add_argument("--_what", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._worker:
        result = measure(
            args._worker,
            args._what,
            args.preset,
            args.device,
            args.dtype,
            args.batch,
            args.layers,
            args.repeats,
            args.threads,
        )
        print(json.dumps(result))
        return

    parity = run_worker(__file__, "both", "parity", sys.argv[1:])
    results = {kind: run_worker(__file__, kind, "memory", sys.argv[1:]) for kind in ("peer", "ours")}
    for _ in range(args.rounds):  # alternate the two models and keep each one's best, to even out machine noise
        for kind in ("peer", "ours"):
            timing = run_worker(__file__, kind, "time", sys.argv[1:])
            results[kind]["seconds"] = min(results[kind].get("seconds", float("inf")), timing["seconds"])

    import torch

    preset = PRESETS[args.preset]
    threads = args.threads or torch.get_num_threads()
    print(
        f"preset={args.preset} device={args.device} dtype={args.dtype} batch={args.batch} frames={preset['frames']} "
        f"latent={preset['size']}x{preset['size']} channels={preset['block_out_channels']} layers={args.layers} "
        f"threads={threads}"
    )
    print(f"max |ours - peer| over the output: {parity['max_abs_diff']:.2e}")
    print(f"{'model':<44}{'params (M)':>12}{'forward (s)':>13}{'peak (MiB)':>12}")
    names = {"peer": "UNet3DConditionModel (diffusers)", "ours": "UNet3DModel(temporal_layout='modelscope')"}
    for kind in ("peer", "ours"):
        r = results[kind]
        print(f"{names[kind]:<44}{r['params_m']:>12.1f}{r['seconds']:>13.3f}{r['peak_mb']:>12.0f}")
    time_ratio = results["ours"]["seconds"] / results["peer"]["seconds"]
    memory_ratio = results["ours"]["peak_mb"] / results["peer"]["peak_mb"]
    print(
        f"ratio ours/peer: forward time {time_ratio:.2f}x (target <= 0.80x), "
        f"peak memory {memory_ratio:.2f}x (target <= 1.00x)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"results": results, "parity": parity, "time_ratio": time_ratio, "memory_ratio": memory_ratio},
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
