"""`torch.compile` and bfloat16 on the CPU: `UNet3DModel` forward time eager against compiled (inductor), in float32
and bfloat16, at the same preset as `bench_unet3d.py`.

Prints, for each dtype, the eager and compiled forward times (median of `--repeats`, after warm-up; the compile
time is reported separately) and the ratios: compiled / eager (the speed-up `torch.compile` brings) and bfloat16 /
float32 (what bfloat16 brings, eager and compiled), all measured in the same run. A profile of where the eager
float32 time goes (`--profile`) prints the operators by self time.

    python benchmarks/bench_compile.py --threads 1
    python benchmarks/bench_compile.py --threads 2 --profile
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from _measure import median_seconds  # benchmarks/ is on sys.path when this runs as a script
from bench_unet3d import PRESETS, _build


def _inputs(preset: dict, dtype: torch.dtype):
    generator = torch.Generator().manual_seed(0)
    size, frames = preset["size"], preset["frames"]
    sample = torch.randn(1, 4, frames, size, size, generator=generator).to(dtype)
    text = torch.randn(1, 77, preset["cross_attention_dim"], generator=generator).to(dtype)
    return sample, text


def measure(preset_name: str, dtype: torch.dtype, compiled: bool, repeats: int, layers: int) -> dict:
    preset = PRESETS[preset_name]
    model = _build("ours", preset, layers).to(dtype).eval()
    sample, text = _inputs(preset, dtype)
    forward_model = torch.compile(model, fullgraph=True) if compiled else model
    steps = iter(range(999, 0, -37))  # a new timestep every call, as in a denoising loop: no recompilation allowed

    def forward():
        with torch.no_grad():
            return forward_model(sample, torch.tensor([next(steps)]), encoder_hidden_states=text).sample

    start = time.perf_counter()
    output = forward()  # compiles (or warms up)
    first = time.perf_counter() - start
    forward()
    return {"seconds": median_seconds(forward, repeats, "cpu"), "first_call_seconds": first, "output": output.float()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=2, help="layers per block")
    parser.add_argument("--profile", action="store_true", help="also print where the eager float32 time goes")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch._dynamo.config.error_on_recompile = True
    results: dict = {}
    for dtype in (torch.float32, torch.bfloat16):
        for compiled in (False, True):
            name = f"{str(dtype).removeprefix('torch.')}_{'compiled' if compiled else 'eager'}"
            results[name] = measure(args.preset, dtype, compiled, args.repeats, args.layers)
            torch._dynamo.reset()
    reference = results["float32_eager"]["output"]
    print(f"preset={args.preset} threads={args.threads} (UNet3DModel forward, median of {args.repeats})")
    print(f"{'run':<20}{'forward (s)':>13}{'first call (s)':>16}{'rel. diff':>11}")
    for name, r in results.items():
        difference = ((r["output"] - reference).abs().mean() / reference.abs().mean()).item()
        r["relative_difference"] = difference
        print(f"{name:<20}{r['seconds']:>13.3f}{r['first_call_seconds']:>16.1f}{difference:>11.1e}")
    ratios = {
        "compiled/eager float32": results["float32_compiled"]["seconds"] / results["float32_eager"]["seconds"],
        "compiled/eager bfloat16": results["bfloat16_compiled"]["seconds"] / results["bfloat16_eager"]["seconds"],
        "bfloat16/float32 eager": results["bfloat16_eager"]["seconds"] / results["float32_eager"]["seconds"],
        "bfloat16/float32 compiled": results["bfloat16_compiled"]["seconds"] / results["float32_compiled"]["seconds"],
    }
    for name, ratio in ratios.items():
        print(f"ratio {name}: {ratio:.2f}x (speed-up {1 / ratio:.2f}x)")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        model = _build("ours", PRESETS[args.preset], args.layers).eval()
        sample, text = _inputs(PRESETS[args.preset], torch.float32)
        with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
            model(sample, torch.tensor([500]), encoder_hidden_states=text)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    summary = {
        "runs": {name: {k: v for k, v in r.items() if k != "output"} for name, r in results.items()},
        "ratios": ratios,
        "threads": args.threads,
        "preset": args.preset,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return summary


if __name__ == "__main__":
    main()
