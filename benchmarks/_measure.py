"""Memory helpers shared by the benchmarks: resident-set fields and the peak memory of one call."""

from __future__ import annotations

from collections.abc import Callable


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
