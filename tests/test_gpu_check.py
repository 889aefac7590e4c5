"""`benchmarks/gpu_check.py` on the CPU (`--small`): every section runs, the report holds what was measured (parameter
counts of the models built, the ratios it prints, parity of the converted ModelScope UNet, the demos' verdicts), and a
section that fails is recorded with its error while the others still run."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import load_script

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    return load_script(SCRIPT)


@pytest.fixture(scope="module")
def run(gpu_check, tmp_path_factory):
    """One `--device cpu --small` run of every section, with a third demo whose folder does not exist."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    output = tmp_path_factory.mktemp("gpu_check") / "report.json"
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            report = gpu_check.main(
                ["--device", "cpu", "--small", "--output", str(output),
                 "--demo", "videofusion=pipelines/videofusion/demo",
                 "--demo", "imagen_video=pipelines/imagen_video/demo",
                 "--demo", f"missing={output.parent / 'no_such_demo'}"]
            )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return report, json.loads(output.read_text()), printed.getvalue()


def test_the_report_is_written_and_names_every_section(run):
    report, written, _ = run
    assert written == report  # the file holds what main returned
    assert report["device"] == "cpu" and report["small"] is True
    assert report["dtypes"] == ["float32", "bfloat16"] and report["repeats"] == 2
    assert set(report["sections"]) == {
        "unet_vs_peer", "modelscope", "demo_videofusion", "demo_imagen_video", "demo_missing",
    }  # fmt: skip
    assert report["torch"] == torch.__version__
    assert 0 < report["seconds"] < 120
    assert all(section["seconds"] >= 0 for section in report["sections"].values())


def test_a_failed_section_is_recorded_with_its_error_and_the_others_still_run(run):
    report, _, printed = run
    missing = report["sections"]["demo_missing"]
    assert missing["ok"] is False
    assert missing["error"].startswith("FileNotFoundError") and "no_such_demo" in missing["error"]
    assert "Traceback" in missing["traceback"]
    assert report["ok"] is False  # one failure fails the report...
    others = {name: s for name, s in report["sections"].items() if name != "demo_missing"}
    assert all(section["ok"] for section in others.values())  # ...and the others ran to the end
    assert "[demo_missing] FAILED: FileNotFoundError" in printed


def test_unet_rows_hold_the_models_real_parameter_counts_and_positive_times(run, gpu_check):
    bench_unet3d = sys.modules["bench_unet3d"]
    section = run[0]["sections"]["unet_vs_peer"]
    assert section["preset"] == json.loads(json.dumps(gpu_check.SMALL_UNET)) and section["layers"] == 1
    expected = {
        kind: sum(p.numel() for p in bench_unet3d._build(kind, gpu_check.SMALL_UNET, 1).parameters())
        for kind in ("peer", "ours")
    }
    assert expected["ours"] != expected["peer"]  # the two designs differ, so a swapped row would show
    rows = section["rows"]
    assert [(r["dtype"], r["kind"]) for r in rows] == [
        (d, k) for d in ("float32", "bfloat16") for k in ("peer", "ours")
    ]
    preset = gpu_check.SMALL_UNET
    for row in rows:
        assert row["ok"] and row["attention"] == "sdpa"  # xformers: CUDA only
        assert row["params"] == expected[row["kind"]]
        assert row["seconds"] > 0 and row["peak_mib"] >= 0 and row["finite"] is True
        assert row["output_shape"] == [1, 4, preset["frames"], preset["size"], preset["size"]]
        assert "AttnProcessor2_0" in row["processors"]
    assert all("TemporalAttnProcessor2_0" in r["processors"] for r in rows if r["kind"] == "ours")


def test_ratios_are_ours_over_peer_as_printed(run):
    report, _, printed = run
    section = report["sections"]["unet_vs_peer"]
    by_key = {(r["dtype"], r["kind"]): r for r in section["rows"]}
    assert [r["dtype"] for r in section["ratios"]] == ["float32", "bfloat16"]
    for ratio in section["ratios"]:
        ours, peer = by_key[ratio["dtype"], "ours"], by_key[ratio["dtype"], "peer"]
        assert ratio["time"] == pytest.approx(ours["seconds"] / peer["seconds"], rel=1e-12)
        assert ratio["params"] == pytest.approx(ours["params"] / peer["params"], rel=1e-12)
        expected_memory = ours["peak_mib"] / peer["peak_mib"] if peer["peak_mib"] > 0 else None
        assert ratio["memory"] == (pytest.approx(expected_memory) if expected_memory is not None else None)
        match = re.search(rf"unet_vs_peer ratio ours/peer {ratio['dtype']} sdpa: forward time ([0-9.]+)x", printed)
        assert match and float(match.group(1)) == round(ratio["time"], 2)


def test_the_converted_modelscope_unet_has_the_peers_parameters_and_output(run, gpu_check):
    section = run[0]["sections"]["modelscope"]
    assert section["batch"] == 2 and section["preset"] == json.loads(json.dumps(gpu_check.SMALL_MODELSCOPE))
    rows = {(r["dtype"], r["kind"]): r for r in section["rows"]}
    for dtype in ("float32", "bfloat16"):
        assert rows[dtype, "ours"]["params"] == rows[dtype, "peer"]["params"] > 0  # the same weights, renamed
        assert all(rows[dtype, kind]["seconds"] > 0 for kind in ("peer", "ours"))
    comparisons = {c["dtype"]: c for c in section["comparisons"]}
    assert comparisons["float32"]["max_abs_diff"] < 1e-4  # the same computation
    assert 0 <= comparisons["bfloat16"]["relative_diff"] < 0.1  # the same up to bfloat16 rounding
    for dtype, comparison in comparisons.items():
        ours, peer = rows[dtype, "ours"], rows[dtype, "peer"]
        assert comparison["time"] == pytest.approx(ours["seconds"] / peer["seconds"], rel=1e-12)


@pytest.mark.parametrize("name, frames", [("videofusion", 8), ("imagen_video", 16)])
def test_each_demo_is_checked_for_non_finite_values_and_scored(run, gpu_check, name, frames):
    section = run[0]["sections"][f"demo_{name}"]
    assert section["ok"] and section["dtype"] == "float32" and section["num_inference_steps"] == 2
    assert section["frames_finite"] is True
    assert section["frames_shape"][:2] == [1, frames] and section["frames_shape"][-1] == 3
    # every model of the pipeline ran (the VAE through `decode`), none gave a non-finite output
    assert section["component_calls"] and all(calls > 0 for calls in section["component_calls"].values())
    assert set(section["nonfinite_component_calls"]) == set(section["component_calls"])
    assert not any(section["nonfinite_component_calls"].values())
    accuracy = section["all_correct"]
    assert accuracy["n"] == 2 and 0 <= accuracy["correct"] <= 2
    assert accuracy["accuracy"] == accuracy["correct"] / 2
    reference = gpu_check.DEMOS[name]["cpu_reference"]
    assert section["cpu_reference"] == reference
    assert section["cpu_reference_within_ci"] == (
        accuracy["ci_low"] <= reference["all_correct"] <= accuracy["ci_high"]
    )
    assert section["seconds_per_video"] > 0


def test_non_finite_outputs_of_a_component_are_counted(gpu_check):
    class Decoder(torch.nn.Module):
        def forward(self, x):
            return x * 2

        def decode(self, z):
            return (z / 0,)  # inf

    class Pipe:
        components = {"model": torch.nn.Linear(2, 2), "vae": Decoder(), "tokenizer": object()}

    pipe = Pipe()
    counts, calls, remove = gpu_check._count_nonfinite_outputs(pipe)
    pipe.components["model"](torch.ones(1, 2))
    pipe.components["model"](torch.full((1, 2), float("nan")))
    pipe.components["vae"].decode(torch.ones(1))
    pipe.components["vae"](torch.ones(1))
    assert calls == {"model": 2, "vae": 2} and counts == {"model": 1, "vae": 1}
    remove()
    pipe.components["model"](torch.full((1, 2), float("nan")))
    pipe.components["vae"].decode(torch.ones(1))
    assert calls == {"model": 2, "vae": 2}  # no longer instrumented
    assert "decode" not in vars(pipe.components["vae"])  # the class's method is back


def test_the_script_exits_with_status_1_when_a_section_failed(tmp_path):
    """As a script (benchmarks/ on sys.path from its own folder): only a missing demo, so it is quick."""
    output = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--small", "--sections", "demos", "--demo",
         f"gone={tmp_path / 'gone'}", "--output", str(output)],
        capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    report = json.loads(output.read_text())
    assert list(report["sections"]) == ["demo_gone"] and report["ok"] is False
    assert report["sections"]["demo_gone"]["error"].startswith("FileNotFoundError")
    assert "FAILURES recorded" in result.stdout
    assert math.isfinite(report["seconds"])
