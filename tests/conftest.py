"""Shared test fixtures: tiny real components, built in memory (no network, no files)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import torch

from diffusers_video.testing_utils import tiny_clip_text_models  # noqa: F401 (tests import it from here)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# `make test` runs two pytest-xdist workers on the two cores: one thread each, so they do not fight over the cores
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads()))


def load_script(path: Path):
    """Import a standalone script (a benchmark or a conversion script) as a module, by its file path.

    The module is registered in `sys.modules` under its file name (dataclasses look their module up there), and its
    folder is on `sys.path` while it loads, so it can import its siblings (the benchmarks' `_measure`).
    """
    path = Path(path)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow (or `make test PYTEST_ARGS=--runslow`)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


def tiny_sd21_unet2d_config(**overrides) -> dict:
    """A tiny UNet2DConditionModel config with Stable Diffusion 2.1's block structure and options."""
    config = dict(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(16, 32, 32, 32),
        layers_per_block=2,
        attention_head_dim=(2, 4, 4, 4),  # SD 2.1: (5, 10, 20, 20) heads of 64 channels
        cross_attention_dim=24,  # SD 2.1: 1024
        use_linear_projection=True,
        upcast_attention=True,
        norm_num_groups=8,
    )
    config.update(overrides)
    return config


@pytest.fixture
def unet2d():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    model = UNet2DConditionModel(**tiny_sd21_unet2d_config())
    # Random (not default-initialised) weights everywhere, so that parity tests exercise every parameter.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.eval()


def tiny_vae(**overrides):
    """A two-block `AutoencoderKL` (channels 8, 16; 2x downsampling; 4 latent channels), seeded, in eval mode."""
    from diffusers import AutoencoderKL

    config = dict(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4, norm_num_groups=4,
    )  # fmt: skip
    config.update(overrides)
    torch.manual_seed(0)
    return AutoencoderKL(**config).eval()


def read_train_log(folder) -> list[dict]:
    """The per-step lines of a training run's `train_log.jsonl`."""
    return [json.loads(line) for line in (Path(folder) / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture
def one_thread():
    """One torch thread for the test (faster on 2 busy cores), the previous count restored after it; modules use it
    for every test with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_thread_and_fresh_accelerate():
    """One thread (faster on 2 busy cores, and the same numerics as subprocesses) and no accelerate state left."""
    from accelerate.state import AcceleratorState

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    torch.set_num_threads(threads)


def assert_bfloat16_matches(low: torch.Tensor, reference: torch.Tensor) -> None:
    """Within 5% of the reference on average (a wrong computation is off by its whole size) and nowhere off by more
    than a fifth of its range: the tiny untrained models saturate DDIM's clipping at +-1, where a rounding step can
    move a value across the clip."""
    assert low.dtype == torch.bfloat16 and torch.isfinite(low.float()).all()
    difference = (low.float() - reference).abs()
    assert difference.mean().item() <= 0.05 * reference.abs().mean().item(), difference.mean().item()
    assert difference.max().item() <= 0.2 * reference.abs().max().item(), difference.max().item()
