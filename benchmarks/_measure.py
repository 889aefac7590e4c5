"""Helpers shared by the benchmarks: resident-set fields, the peak memory and time of one call, comparisons run in
worker processes, and writing a result file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def rss_kb(field: str) -> int:
    """A field of `/proc/self/status` in KiB, e.g. `"VmRSS"` (resident set now) or `"VmHWM"` (its peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(field)


def peak_bytes(fn: Callable[[], object], device: str) -> int:
    """Peak memory of one call of `fn` beyond what was allocated before it.

    On CUDA it is `torch.cuda.max_memory_allocated` minus the memory allocated before the call. On CPU it is the peak
    resident set during the call (VmHWM, reset just before it) minus the resident set before it; run the process with
    `MALLOC_MMAP_THRESHOLD_` fixed (e.g. 65536) so that freed tensors go back to the OS at once and the resident set
    follows live memory.

    Args:
        fn (`Callable[[], object]`): The call to measure.
        device (`str`): `"cuda"` or a CPU device.

    Returns:
        `int`: The peak in bytes.
    """
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    import gc

    gc.collect()
    before = rss_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM, the peak resident set
    fn()
    return (rss_kb("VmHWM") - before) * 1024


def run_worker(script: str, kind: str, what: str, argv: list[str], env: dict[str, str] | None = None) -> dict:
    """Run `script --_worker KIND --_what WHAT ARGV...` in a fresh process and return the JSON it prints last.

    A "memory" worker runs with `MALLOC_MMAP_THRESHOLD_` fixed, so that freed tensors go back to the OS at once and the
    resident set follows live memory (see `peak_bytes`).
    """
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, **(env or {}))
    if what == "memory":
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    out = subprocess.run(
        [sys.executable, script, "--_worker", kind, "--_what", what, *argv],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def median_seconds(fn: Callable[[], object], repeats: int, device: str) -> float:
    """Median wall time of `repeats` calls of `fn` (synchronising CUDA around each); warm up before calling this."""
    import statistics
    import time

    import torch

    def sync():
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()

    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_pipeline_call(
    call: Callable[[], object], what: str, device: str, repeats: int, frames: str | None
) -> dict:
    """The body of a pipeline-comparison worker: `what="memory"`, the peak memory of the first call (its output saved
    to `frames` as .npy when given); `what="time"`, the median of `repeats` calls after a warm-up call."""
    import numpy as np

    if what == "memory":
        outputs = []
        peak_mb = peak_bytes(lambda: outputs.append(call()), device) / 2**20
        if frames:
            np.save(frames, np.asarray(outputs[0]))
        return {"peak_mb": peak_mb}
    call()  # warm-up
    return {"seconds": median_seconds(call, repeats, device)}


def compare_in_workers(script: str, argv: list[str], folder: str, rounds: int) -> dict:
    """Peer against ours, each in fresh workers of `script`: first the peak memory and frames of one call each, then
    `rounds` alternations of the timing workers, keeping each one's best time (to even out machine noise).

    Returns:
        `dict`: per kind ("peer", "ours"): `peak_mb`, `seconds` and `frames` (the first call's output).
    """
    from pathlib import Path

    import numpy as np

    results = {}
    for kind in ("peer", "ours"):
        frames_file = str(Path(folder) / f"{kind}.npy")
        results[kind] = run_worker(script, kind, "memory", [*argv, "--_frames", frames_file])
        results[kind]["frames"] = np.load(frames_file)
    for _ in range(rounds):
        for kind in ("peer", "ours"):
            seconds = run_worker(script, kind, "time", argv)["seconds"]
            results[kind]["seconds"] = min(results[kind].get("seconds", float("inf")), seconds)
    return results


def ratio_line(name: str, ratio: float, target: float) -> str:
    """`ratio NAME: 0.73x (target <= 0.80x: meets it)`."""
    verdict = "meets" if ratio <= target else "misses"
    return f"ratio {name}: {ratio:.2f}x (target <= {target:.2f}x: {verdict} it)"


def write_result(path: str | Path, result: dict) -> None:
    """Write a benchmark's figures as indented JSON to `path`, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
