"""The GPU check: speed, memory and numerics of the video UNets and the committed demos, in one JSON report.

Sections, each run in its own try/except so that one failure is recorded in the report and the others still run:

- `unet_vs_peer`: `UNet3DModel` against diffusers' `UNet3DConditionModel` at Stable Diffusion 2.1's UNet size
  (`PRESETS["sd21"]` and `_build` of `bench_unet3d.py`: random weights, 16 frames of 64x64 latents), in float16 and
  bfloat16, with PyTorch SDPA and (when importable) xformers: parameters, median forward time (CUDA synchronised
  around each call), peak memory of a forward pass (`torch.cuda.max_memory_allocated` beyond what was allocated
  before it), whether the output is finite, and the ratios ours / peer.
- `modelscope`: diffusers' `UNet3DConditionModel` (ModelScope text-to-video 1.7B's structure) against the
  `UNet3DModel(temporal_layout="modelscope")` converted from the same weights (`bench_modelscope_unet.py`): the
  largest difference of their outputs, time, memory and ratios, batch 2 as under guidance.
- `demo_<name>`: each committed demo (`pipelines/videofusion/demo`, `pipelines/imagen_video/demo`) loaded with
  `diffusers_video.data.quality.load_pipeline` in float16: one generation checked for non-finite values (frames, and
  the outputs of every component), then `evaluate_pipeline` on held-out captions; its all-correct accuracy is reported
  next to the CPU verdict recorded in the docs.

    python benchmarks/gpu_check.py --output report.json                  # CUDA: under 8 minutes on one H100/H200
    python benchmarks/gpu_check.py --device cpu --small --output r.json  # the same sections at tiny sizes (smoke test)

`--small` runs tiny models (float32 and bfloat16 on the CPU), 2 repeats, 2 videos of 2 steps per demo. The exit
status is 1 when any section or row failed (the report is written either way).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
import traceback
from functools import partial
from pathlib import Path

# benchmarks/ is on sys.path when this runs as a script
import bench_modelscope_unet
import bench_unet3d
from _measure import median_seconds, peak_bytes

ROOT = Path(__file__).resolve().parents[1]

# `--small`: tiny models in the structure of the full-size presets (channels divisible by the 32 GroupNorm groups that
# both builders use; the ModelScope peer's 64-channel attention heads need at least 64 channels).
SMALL_UNET = dict(block_out_channels=(32, 64), heads=2, cross_attention_dim=32, frames=4, size=8)
SMALL_MODELSCOPE = dict(block_out_channels=(64, 64), cross_attention_dim=32, frames=4, size=8)

# The demos, the settings of their CPU verdicts, and those verdicts (all-correct accuracy, `ShapesScorer`).
DEMOS = {
    "videofusion": dict(
        path="pipelines/videofusion/demo",
        evaluate=dict(num_frames=8, guidance_scale=4.0),
        num_inference_steps=25,
        cpu_reference=dict(
            all_correct=0.953,
            num_samples=64,
            source="docs/videofusion.md: bench quality --num-frames 8 --guidance-scale 4 (25 steps, float32)",
        ),
    ),
    "imagen_video": dict(
        path="pipelines/imagen_video/demo",
        evaluate=dict(),
        num_inference_steps=8,
        cpu_reference=dict(
            all_correct=1.0,
            num_samples=16,
            source="docs/imagen_video.md: bench quality --num-samples 16 --steps 8 (float32)",
        ),
    ),
}
SECTIONS = ("unet_vs_peer", "modelscope", "demos")
NAMES = {"peer": "UNet3DConditionModel", "ours": "UNet3DModel"}


def _error(exc: BaseException) -> dict:
    return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=8)}


def _free(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def xformers_available() -> bool:
    try:
        import xformers.ops  # noqa: F401
    except Exception:
        return False
    return True


def _attention_backends(device: str) -> list[str]:
    """SDPA always; xformers where it imports and the device is CUDA (its kernels are CUDA only)."""
    return ["sdpa"] + (["xformers"] if device.startswith("cuda") and xformers_available() else [])


def _processors(model) -> list[str]:
    """The attention processor classes a model uses (to show that xformers really was switched on)."""
    return sorted({type(p).__name__ for p in model.attn_processors.values()})


def _measure_forward(model, inputs: tuple, device: str, repeats: int) -> dict:
    """Warm-up, then the median forward time over `repeats` calls, the peak memory of one call, and finiteness."""
    import torch

    def forward():
        with torch.no_grad():
            return model(*inputs).sample

    output = forward()  # warm-up (kernel selection, allocator)
    seconds = median_seconds(forward, repeats, device)
    peak = peak_bytes(forward, device)
    return {
        "seconds": seconds,
        "peak_mib": peak / 2**20,
        "finite": bool(torch.isfinite(output).all()),
        "output_shape": list(output.shape),
    }


def _build_on(device: str, build, row: dict):
    """`build()` with tensors created on `device` (random initialisation of SD-size models is slow on a CPU); where
    that fails, on the CPU (the reason recorded in `row["build_note"]`). The caller moves the model afterwards."""
    import torch

    if device == "cpu":
        return build()
    try:
        with torch.device(device):
            return build()
    except Exception as exc:
        row["build_note"] = f"built on the CPU: on {device} {type(exc).__name__}: {exc}"
        return build()


def _ratio(ours: float | None, peer: float | None) -> float | None:
    if ours is None or peer is None or peer <= 0:
        return None
    return ours / peer


def _video_inputs(preset: dict, batch: int, device: str, dtype) -> tuple:
    import torch

    gen = torch.Generator().manual_seed(0)
    frames, size = preset["frames"], preset["size"]
    sample = torch.randn(batch, 4, frames, size, size, generator=gen).to(device, dtype)
    text = torch.randn(batch, 77, preset["cross_attention_dim"], generator=gen).to(device, dtype)
    timestep = torch.tensor([500] * batch, device=device)
    return sample, timestep, text


# ---------------------------------------------------------------------------------------------------------------- UNet


def unet_vs_peer(device: str, dtypes: list[str], preset: dict, layers: int, repeats: int) -> dict:
    """Ours against diffusers' `UNet3DConditionModel`, same block widths, layers, heads and text width; one row per
    (dtype, attention backend, model), each in its own try/except."""
    import torch

    rows, ratios = [], []
    for dtype in dtypes:
        torch_dtype = getattr(torch, dtype)
        inputs = _video_inputs(preset, 1, device, torch_dtype)
        for attention in _attention_backends(device):
            measured = {}
            for kind in ("peer", "ours"):
                row = {"model": NAMES[kind], "kind": kind, "dtype": dtype, "attention": attention}
                try:
                    model = _build_on(device, partial(bench_unet3d._build, kind, preset, layers), row)
                    model = torch.nn.Module.to(model, device=device, dtype=torch_dtype).eval()
                    if attention == "xformers":
                        model.enable_xformers_memory_efficient_attention()
                    row["params"] = sum(p.numel() for p in model.parameters())
                    row["processors"] = _processors(model)
                    row.update(_measure_forward(model, inputs, device, repeats))
                    row["ok"] = True
                    measured[kind] = row
                except Exception as exc:  # recorded, and the next row runs
                    row.update(_error(exc))
                finally:
                    model = None
                    _free(device)
                rows.append(row)
            if len(measured) == 2:
                ours, peer = measured["ours"], measured["peer"]
                ratios.append(
                    {
                        "dtype": dtype,
                        "attention": attention,
                        "time": _ratio(ours["seconds"], peer["seconds"]),
                        "memory": _ratio(ours["peak_mib"], peer["peak_mib"]),
                        "params": _ratio(ours["params"], peer["params"]),
                    }
                )
    return {"ok": all(r["ok"] for r in rows), "preset": _jsonable(preset), "layers": layers, "rows": rows,
            "ratios": ratios}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------- ModelScope


def modelscope(device: str, dtypes: list[str], preset: dict, layers: int, repeats: int, batch: int = 2) -> dict:
    """The converted ModelScope-layout UNet against the peer it was converted from: parity, time, memory."""
    import torch

    rows, comparisons = [], []
    for dtype in dtypes:
        torch_dtype = getattr(torch, dtype)
        inputs = _video_inputs(preset, batch, device, torch_dtype)
        outputs, measured = {}, {}
        for kind in ("peer", "ours"):
            row = {"model": NAMES[kind], "kind": kind, "dtype": dtype, "attention": "sdpa"}
            try:
                build = partial(bench_modelscope_unet._build, kind, preset, layers, device, dtype)
                model = _build_on(device, build, row)
                row["params"] = sum(p.numel() for p in model.parameters())
                with torch.no_grad():
                    outputs[kind] = model(*inputs).sample.float().cpu()
                row.update(_measure_forward(model, inputs, device, repeats))
                row["ok"] = True
                measured[kind] = row
            except Exception as exc:
                row.update(_error(exc))
            finally:
                model = None
                _free(device)
            rows.append(row)
        if len(measured) == 2:
            ours, peer = measured["ours"], measured["peer"]
            difference = (outputs["ours"] - outputs["peer"]).abs().max().item()
            comparisons.append(
                {
                    "dtype": dtype,
                    "max_abs_diff": difference,
                    "relative_diff": difference / max(outputs["peer"].abs().max().item(), 1e-12),
                    "time": _ratio(ours["seconds"], peer["seconds"]),
                    "memory": _ratio(ours["peak_mib"], peer["peak_mib"]),
                }
            )
    return {"ok": all(r["ok"] for r in rows), "preset": _jsonable(preset), "layers": layers, "batch": batch,
            "rows": rows, "comparisons": comparisons}  # fmt: skip


# -------------------------------------------------------------------------------------------------------------- demos


def _count_nonfinite_outputs(pipe):
    """Count, per model of the pipeline, the calls (`__call__`, and `encode` / `decode` of the autoencoders) whose tensor
    outputs hold a NaN or an inf. Returns `(counts, calls, undo)`; `undo()` removes the instrumentation."""
    import torch

    counts, calls, undo = {}, {}, []

    def tensors(value):
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (tuple, list)):
            for item in value:
                yield from tensors(item)
        elif isinstance(value, dict):  # diffusers' and transformers' outputs are dicts
            for item in value.values():
                yield from tensors(item)
        elif hasattr(value, "parameters") and isinstance(value.parameters, torch.Tensor):
            yield value.parameters  # a DiagonalGaussianDistribution (`encode`)

    def record(name, output):
        calls[name] += 1
        if any(t.is_floating_point() and not bool(torch.isfinite(t).all()) for t in tensors(output)):
            counts[name] += 1

    def wrap(component, method, name):
        original = getattr(component, method)

        def wrapped(*args, **kwargs):
            output = original(*args, **kwargs)
            record(name, output)
            return output

        setattr(component, method, wrapped)  # an instance attribute over the class's method
        undo.append(lambda: delattr(component, method))

    for name, component in pipe.components.items():
        if isinstance(component, torch.nn.Module):
            counts[name], calls[name] = 0, 0
            handle = component.register_forward_hook(lambda module, args, output, name=name: record(name, output))
            undo.append(handle.remove)
            for method in ("encode", "decode"):
                if callable(getattr(component, method, None)):
                    wrap(component, method, name)

    def remove():
        for step in reversed(undo):
            step()

    return counts, calls, remove


def demo(name: str, path: str, device: str, dtype: str, num_samples: int, steps: int | None) -> dict:
    """Load a demo folder, generate once checking for non-finite values, then score `num_samples` videos."""
    import numpy as np
    import torch

    from diffusers_video.data.quality import evaluate_pipeline, load_pipeline

    spec = DEMOS.get(name, {})
    settings = dict(spec.get("evaluate", {}))
    steps = steps if steps is not None else spec.get("num_inference_steps", 25)
    started = time.perf_counter()
    pipe = load_pipeline(ROOT / path if not Path(path).is_absolute() else path, device, getattr(torch, dtype))
    pipe.set_progress_bar_config(disable=True)
    result = {"path": str(path), "pipeline": type(pipe).__name__, "dtype": dtype, "num_inference_steps": steps}

    counts, calls, remove = _count_nonfinite_outputs(pipe)
    try:
        output = pipe(
            prompt="a red circle moving right",
            num_inference_steps=steps,
            generator=torch.Generator("cpu" if pipe.device.type == "mps" else pipe.device).manual_seed(0),
            output_type="np",
            **settings,
        )
    finally:
        remove()
    frames = np.asarray(output.frames, dtype=np.float32)
    result["frames_shape"] = list(frames.shape)
    result["frames_finite"] = bool(np.isfinite(frames).all())
    result["nonfinite_component_calls"] = counts
    result["component_calls"] = calls

    evaluation = evaluate_pipeline(
        pipe, num_samples=num_samples, num_inference_steps=steps, progress=False, num_real=max(num_samples, 2),
        **settings,
    )  # fmt: skip
    all_correct = evaluation["scores"]["all_correct"]
    result["all_correct"] = all_correct
    result["seconds_per_video"] = evaluation["seconds_per_video"]
    reference = spec.get("cpu_reference")
    if reference is not None:
        result["cpu_reference"] = reference
        # agreement: the CPU verdict lies within this run's 95% (Wilson) interval
        result["cpu_reference_within_ci"] = bool(
            all_correct["ci_low"] <= reference["all_correct"] <= all_correct["ci_high"]
        )
    result["seconds"] = time.perf_counter() - started
    result["ok"] = result["frames_finite"] and not any(counts.values())
    if not result["ok"]:
        result["error"] = "non-finite values: " + (
            "in the frames" if not result["frames_finite"] else f"component outputs {counts}"
        )
    return result


# --------------------------------------------------------------------------------------------------------------- main


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def _run_section(report: dict, name: str, fn, *args) -> None:
    started = time.perf_counter()
    try:
        section = fn(*args)
    except Exception as exc:  # the section is recorded as failed, and the next one runs
        section = _error(exc)
    section["seconds"] = time.perf_counter() - started
    report["sections"][name] = section
    print(f"[{name}] {'ok' if section['ok'] else 'FAILED: ' + section.get('error', 'see rows')} "
          f"({section['seconds']:.1f} s)", flush=True)  # fmt: skip


def _yes(value) -> str:
    return "-" if value is None else "yes" if value else "NO"


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(report: dict) -> None:
    sections = report["sections"]
    for name in ("unet_vs_peer", "modelscope"):
        section = sections.get(name)
        if not section or "rows" not in section:
            continue
        print(f"\n{name}: preset {section['preset']}")
        print(
            f"{'model':<22}{'dtype':<10}{'attention':<10}{'params (M)':>11}{'forward (s)':>13}{'peak (MiB)':>12}"
            f"{'finite':>8}  ran"
        )
        for row in section["rows"]:
            params = row.get("params")
            print(
                f"{row['model']:<22}{row['dtype']:<10}{row.get('attention', 'sdpa'):<10}"
                f"{_fmt(params / 1e6 if params else None, '.1f'):>11}{_fmt(row.get('seconds'), '.4f'):>13}"
                f"{_fmt(row.get('peak_mib'), '.0f'):>12}{_yes(row.get('finite')):>8}  "
                f"{'yes' if row['ok'] else row['error'][:60]}"
            )
        for ratio in section.get("ratios", []) + section.get("comparisons", []):
            extra = f", max |ours - peer| {ratio['max_abs_diff']:.2e}" if "max_abs_diff" in ratio else ""
            print(
                f"{name} ratio ours/peer {ratio['dtype']} {ratio.get('attention', 'sdpa')}: forward time "
                f"{_fmt(ratio['time'], '.2f')}x, peak memory {_fmt(ratio['memory'], '.2f')}x{extra}"
            )
    demos = {k: v for k, v in sections.items() if k.startswith("demo_")}
    if demos:
        print(f"\n{'demo':<16}{'dtype':<10}{'finite':<8}{'all correct':>14}{'95% CI':>16}{'CPU verdict':>13}")
        for name, section in demos.items():
            if "all_correct" not in section:
                print(f"{name[5:]:<16}FAILED: {section.get('error', '')[:80]}")
                continue
            acc = section["all_correct"]
            interval = f"{acc['ci_low']:.2f}-{acc['ci_high']:.2f}"
            reference = section.get("cpu_reference", {}).get("all_correct")
            print(
                f"{name[5:]:<16}{section['dtype']:<10}{'yes' if section['ok'] else 'NO':<8}"
                f"{acc['correct']:>7}/{acc['n']:<3} {acc['accuracy']:.2f}"
                f"{interval:>11}{_fmt(reference, '.3f'):>13}"
            )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--small", action="store_true", help="tiny models, 2 repeats, 2 videos of 2 steps per demo")
    parser.add_argument("--output", default="gpu_check.json", help="the JSON report (default: gpu_check.json)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    parser.add_argument("--dtypes", default=None, help="default: float16,bfloat16 on CUDA, float32,bfloat16 on CPU")
    parser.add_argument("--repeats", type=int, default=None, help="timed forward passes (default 5; --small: 2)")
    parser.add_argument("--layers", type=int, default=None, help="layers per block (default 2; --small: 1)")
    parser.add_argument(
        "--demo",
        action="append",
        metavar="NAME=PATH",
        help="a demo to check (repeatable; default: videofusion and imagen_video, the committed demos)",
    )
    parser.add_argument("--demo-dtype", default=None, help="default: float16 on CUDA, float32 on CPU")
    parser.add_argument("--num-samples", type=int, default=None, help="videos scored per demo (default 16; --small 2)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps of the demos (default: each its own)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the check; write and return the report. Exits with status 1 (after writing) when anything failed, when
    run as a script."""
    import torch

    args = parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    dtypes = args.dtypes.split(",") if args.dtypes else (["float16", "bfloat16"] if cuda else ["float32", "bfloat16"])
    repeats = args.repeats or (2 if args.small else 5)
    layers = args.layers or (1 if args.small else 2)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    if args.demo:
        demos = dict(item.split("=", 1) for item in args.demo)
    else:
        demos = {name: spec["path"] for name, spec in DEMOS.items()}

    import diffusers

    report = {
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "xformers": xformers_available(),
        "small": args.small,
        "dtypes": dtypes,
        "repeats": repeats,
        "memory_measure": (
            "torch.cuda.max_memory_allocated during one forward pass minus the memory allocated before it"
            if cuda
            else "peak resident set during one forward pass (VmHWM) minus the resident set before it: coarse, and "
            "often 0 for tiny models, whose activations fit in memory the process already holds"
        ),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "sections": {},
    }
    started = time.perf_counter()
    if "unet_vs_peer" in sections:
        preset = SMALL_UNET if args.small else bench_unet3d.PRESETS["sd21"]
        _run_section(report, "unet_vs_peer", unet_vs_peer, device, dtypes, preset, layers, repeats)
    if "modelscope" in sections:
        preset = SMALL_MODELSCOPE if args.small else bench_modelscope_unet.PRESETS["ms17b"]
        _run_section(report, "modelscope", modelscope, device, dtypes, preset, layers, repeats)
    if "demos" in sections:
        demo_dtype = args.demo_dtype or ("float16" if cuda else "float32")
        num_samples = args.num_samples or (2 if args.small else 16)
        steps = args.steps or (2 if args.small else None)
        for name, path in demos.items():
            _run_section(report, f"demo_{name}", demo, name, path, device, demo_dtype, num_samples, steps)
    report["seconds"] = time.perf_counter() - started
    report["ok"] = all(section["ok"] for section in report["sections"].values())
    report = _jsonable(report)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"\n{'all ok' if report['ok'] else 'FAILURES recorded'}; {report['seconds']:.0f} s; report: {args.output}")
    return report


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
