"""UNet3DModel against diffusers' UNet3DConditionModel: forward time, peak memory, achieved GFLOP/s.

Both models get the same block widths, layers per block, attention heads, cross-attention width, frames and latent
size; each is measured in its own subprocess so that allocator state does not leak between them. Prints the ratios
(ours / peer) and the GFLOP/s each reaches against a float32 matmul measured in the same run.

    python benchmarks/bench_unet3d.py                 # CPU, a mid-sized latent video UNet
    python benchmarks/bench_unet3d.py --device cuda --dtype float16 --preset sd21

Peak memory on CPU is the process's peak resident set during the forward pass (VmHWM, reset just before it) minus
the resident set before it: the activations and workspace the forward pass needs. On CUDA it is
`torch.cuda.max_memory_allocated` minus the memory allocated before the forward pass.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from _measure import median_seconds, peak_bytes, run_worker  # benchmarks/ is on sys.path when this runs as a script

PRESETS = {
    # A small latent video UNet that runs in seconds on a 2-core CPU.
    "small": dict(block_out_channels=(64, 128, 256, 256), heads=8, cross_attention_dim=256, frames=16, size=32),
    # Stable Diffusion 2.1's UNet (865M spatial parameters) at 512x512 (64x64 latents), 16 frames: GPU only.
    "sd21": dict(
        block_out_channels=(320, 640, 1280, 1280), heads=(5, 10, 20, 20), cross_attention_dim=1024, frames=16, size=64
    ),
}


def _build(kind: str, preset: dict, layers: int):
    import torch
    from diffusers import UNet3DConditionModel

    from diffusers_video import UNet3DModel

    torch.manual_seed(0)
    n = len(preset["block_out_channels"])
    common = dict(
        in_channels=4,
        out_channels=4,
        block_out_channels=preset["block_out_channels"],
        layers_per_block=layers,
        cross_attention_dim=preset["cross_attention_dim"],
        attention_head_dim=preset["heads"],
        norm_num_groups=32,
    )
    if kind == "peer":
        return UNet3DConditionModel(
            down_block_types=("CrossAttnDownBlock3D",) * (n - 1) + ("DownBlock3D",),
            up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * (n - 1),
            **common,
        )
    return UNet3DModel(
        down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
        **common,
    )


def measure(
    kind: str, what: str, preset_name: str, device: str, dtype: str, batch: int, layers: int, repeats: int
) -> dict:
    """Runs in a subprocess: build one model and measure its peak memory (`what="memory"`: the first forward pass of
    the process) or its FLOPs and median forward time (`what="time"`)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    preset = PRESETS[preset_name]
    torch_dtype = getattr(torch, dtype)
    model = _build(kind, preset, layers).to(device=device, dtype=torch_dtype).eval()
    if kind == "ours" and os.environ.get("BENCH_NO_AUTO_CHUNK"):
        model.disable_forward_chunking()
    frames, size = preset["frames"], preset["size"]
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(batch, 4, frames, size, size, generator=gen).to(device, torch_dtype)
    text = torch.randn(batch, 77, preset["cross_attention_dim"], generator=gen).to(device, torch_dtype)
    timestep = torch.tensor([500] * batch, device=device)

    def forward():
        with torch.no_grad():
            return model(sample, timestep, encoder_hidden_states=text).sample

    result = {"kind": kind, "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    if what == "memory":
        result["peak_mb"] = peak_bytes(forward, device) / 2**20
        return result

    with FlopCounterMode(display=False) as counter:
        forward()
    result["gflop"] = counter.get_total_flops() / 1e9
    forward()  # warm-up
    result["seconds"] = median_seconds(forward, repeats, device)
    return result


def matmul_gflops(device: str, dtype: str, n: int = 2048, repeats: int = 5) -> float:
    import torch

    a = torch.randn(n, n, device=device, dtype=getattr(torch, dtype))
    b = torch.randn(n, n, device=device, dtype=getattr(torch, dtype))
    a @ b
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--layers", type=int, default=2, help="layers per block")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--no-auto-chunk",
        action="store_true",
        help="switch off UNet3DModel's automatic frame-chunked feed-forward (to see what it saves)",
    )
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    parser.add_argument("--_what", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._worker:
        result = measure(
            args._worker, args._what, args.preset, args.device, args.dtype, args.batch, args.layers, args.repeats
        )
        print(json.dumps(result))
        return

    def worker(kind: str, what: str) -> dict:
        return run_worker(
            __file__, kind, what, sys.argv[1:], {"BENCH_NO_AUTO_CHUNK": "1"} if args.no_auto_chunk else None
        )

    results = {kind: worker(kind, "memory") for kind in ("peer", "ours")}
    for _ in range(2):  # alternate the two models twice and keep each one's best, to even out machine noise
        for kind in ("peer", "ours"):
            timing = worker(kind, "time")
            if "seconds" not in results[kind] or timing["seconds"] < results[kind]["seconds"]:
                results[kind].update(gflop=timing["gflop"], seconds=timing["seconds"])
    peak = matmul_gflops(args.device, args.dtype)
    preset = PRESETS[args.preset]
    print(
        f"preset={args.preset} device={args.device} dtype={args.dtype} batch={args.batch} frames={preset['frames']} "
        f"latent={preset['size']}x{preset['size']} channels={preset['block_out_channels']} layers={args.layers}"
    )
    print(
        f"float32 matmul reference: {peak:.1f} GFLOP/s" if args.dtype == "float32" else f"matmul: {peak:.1f} GFLOP/s"
    )
    print(
        f"{'model':<22}{'params (M)':>12}{'forward (s)':>13}{'peak (MiB)':>12}{'GFLOP':>9}{'GFLOP/s':>9}{'of matmul':>11}"
    )
    names = {"peer": "UNet3DConditionModel", "ours": "UNet3DModel"}
    for kind in ("peer", "ours"):
        r = results[kind]
        rate = r["gflop"] / r["seconds"]
        print(
            f"{names[kind]:<22}{r['params_m']:>12.1f}{r['seconds']:>13.3f}{r['peak_mb']:>12.0f}{r['gflop']:>9.1f}"
            f"{rate:>9.1f}{rate / peak:>10.0%}"
        )
    time_ratio = results["ours"]["seconds"] / results["peer"]["seconds"]
    memory_ratio = results["ours"]["peak_mb"] / results["peer"]["peak_mb"]
    print(
        f"ratio ours/peer: forward time {time_ratio:.2f}x (target <= 0.80x), peak memory {memory_ratio:.2f}x (target <= 1.00x)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"results": results, "matmul_gflops": peak, "time_ratio": time_ratio, "memory_ratio": memory_ratio},
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
