"""`FlowTemporalUpsampler`: exact warping, the frames it keeps, its initial identity, gradients and saving.

References are independent of the implementation: warping by an integer flow is compared with slicing a larger
canvas, and a translated frame pair is built by cropping the same canvas at shifted windows, so the middle frame is
known exactly.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from diffusers_video.models.flow_upsampler import (
    FlowTemporalUpsampler,
    backward_warp,
    check_temporal_upsampling,
    upsampled_frame_count,
)

pytestmark = pytest.mark.usefixtures("one_thread")

C, H, W = 4, 16, 16


def _perturb(model, seed=0, scale=0.1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model


def _canvas(seed=0, margin=4):
    """Random content with an empty `margin` around it: `(C, H + 2 margin, W + 2 margin)`."""
    g = torch.Generator().manual_seed(seed)
    canvas = torch.zeros(C, H + 2 * margin, W + 2 * margin)
    canvas[:, 2 * margin : H, 2 * margin : W] = torch.randn(C, H - 2 * margin, W - 2 * margin, generator=g)
    return canvas


def _window(canvas, dx, dy, margin=4):
    """The `H x W` view of `canvas` whose pixel p shows canvas point p + (dx, dy) (content moved by (-dx, -dy))."""
    return canvas[:, margin + dy : margin + dy + H, margin + dx : margin + dx + W]


@pytest.mark.parametrize("dx, dy", [(1, 0), (-2, 3), (0, -1), (3, 2)])
def test_backward_warp_by_an_integer_flow_equals_slicing_the_canvas(dx, dy):
    canvas = _canvas()
    frame = _window(canvas, 0, 0)[None]
    flow = torch.zeros(1, 2, H, W)
    flow[:, 0], flow[:, 1] = dx, dy
    assert torch.equal(backward_warp(frame, flow), _window(canvas, dx, dy)[None])  # bit for bit


@pytest.mark.parametrize("sx, sy", [(1, 0), (2, -1), (0, 2), (-3, -3)])
def test_the_true_flows_reproduce_the_middle_frame_of_a_translated_pair_exactly(sx, sy):
    """Content moving by (2 sx, 2 sy) per frame: frame 0 shows it at -s from the middle, frame 1 at +s."""
    canvas = _canvas(seed=1)
    frame0, middle, frame1 = _window(canvas, sx, sy), _window(canvas, 0, 0), _window(canvas, -sx, -sy)
    video = torch.stack([frame0, frame1], dim=1)[None]  # (1, C, 2, H, W)
    flows = torch.zeros(1, 4, 1, H, W)
    flows[:, 0], flows[:, 1], flows[:, 2], flows[:, 3] = -sx, -sy, sx, sy  # flow_t0 = -s, flow_t1 = +s
    model = FlowTemporalUpsampler(in_channels=C, block_out_channels=(8, 16), refine_channels=8).eval()
    with torch.no_grad():
        out = model(video, flows=flows)
    assert torch.equal(out.middle[0, :, 0], middle)  # a fresh model: mask 1/2, no residual
    assert torch.equal(out.sample[0, :, 1], middle) and torch.equal(out.sample[0, :, ::2], video[0])
    # any mask: both warps are the middle frame, so any blend of them is (up to rounding)
    with torch.no_grad():
        model.refine_out.weight[0].normal_()
        model.refine_out.bias[0] = 0.7
        blended = model(video, flows=flows)
    assert blended.mask.std() > 0.01
    torch.testing.assert_close(blended.middle[0, :, 0], middle, rtol=0, atol=1e-6)
    # the wrong flows do not
    assert (model(video, flows=-flows).middle[0, :, 0] - middle).abs().max() > 0.1


def test_a_fresh_model_is_linear_blending_and_estimates_zero_flow():
    g = torch.Generator().manual_seed(2)
    video = torch.randn(2, C, 3, H, W, generator=g)
    model = FlowTemporalUpsampler(in_channels=C, block_out_channels=(8, 16), refine_channels=8)
    with torch.no_grad():
        out = model(video)
    assert torch.equal(out.middle, (video[:, :, :-1] + video[:, :, 1:]) / 2)
    assert not out.flows.any() and torch.equal(out.mask, torch.full_like(out.mask, 0.5)) and not out.residual.any()


@pytest.mark.parametrize("factor, frames", [(1, 3), (2, 5), (4, 9), (8, 17)])
def test_upsampling_keeps_the_given_frames_at_their_indices(factor, frames):
    g = torch.Generator().manual_seed(3)
    video = torch.randn(2, C, 3, 8, 12, generator=g)  # not square, not a power of two wide
    model = _perturb(FlowTemporalUpsampler(in_channels=C, block_out_channels=(8, 16, 16), refine_channels=8)).eval()
    with torch.no_grad():
        out = model.upsample(video, factor)
        once = model(video)
    assert out.shape == (2, C, frames, 8, 12) and frames == upsampled_frame_count(3, factor)
    assert torch.equal(out[:, :, ::factor], video)  # every round keeps the frames it was given
    assert once.sample.shape == (2, C, 5, 8, 12) and once.flows.shape == (2, 4, 2, 8, 12)
    assert once.mask.shape == (2, 1, 2, 8, 12) and ((once.mask > 0) & (once.mask < 1)).all()
    assert torch.equal(once.sample[:, :, 1::2], once.middle)
    # pairs are independent: changing the last frame leaves the first made frame alone
    changed = video.clone()
    changed[:, :, 2] += 1.0
    with torch.no_grad():
        other = model(changed)
    assert torch.equal(other.middle[:, :, 0], once.middle[:, :, 0])
    assert (other.middle[:, :, 1] - once.middle[:, :, 1]).abs().max() > 1e-3


def test_gradients_reach_every_parameter_and_the_zero_initialised_flow_head():
    g = torch.Generator().manual_seed(4)
    video = torch.randn(1, C, 3, H, W, generator=g)
    target = torch.randn(1, C, 2, H, W, generator=g)
    fresh = FlowTemporalUpsampler(in_channels=C, block_out_channels=(8, 16), refine_channels=8)
    (fresh(video).middle - target).abs().mean().backward()
    assert fresh.flow_out.weight.grad.abs().sum() > 0  # zero flow at init still learns: warping is differentiable
    assert fresh.refine_out.weight.grad.abs().sum() > 0
    model = _perturb(FlowTemporalUpsampler(in_channels=C, block_out_channels=(8, 16), refine_channels=8))
    (model(video).middle - target).abs().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_save_and_load_round_trip(tmp_path):
    g = torch.Generator().manual_seed(5)
    video = torch.randn(1, C, 4, 8, 8, generator=g)
    model = _perturb(FlowTemporalUpsampler(in_channels=C, block_out_channels=(8, 16), refine_channels=8)).eval()
    model.save_pretrained(tmp_path / "flow")
    assert (tmp_path / "flow" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = FlowTemporalUpsampler.from_pretrained(tmp_path / "flow").eval()
    assert loaded.config.block_out_channels == [8, 16] or tuple(loaded.config.block_out_channels) == (8, 16)
    with torch.no_grad():
        assert torch.equal(loaded.upsample(video, 4), model.upsample(video, 4))
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    # strict: a weight missing from the file is an error naming it (not a head left at zero)
    weights = tmp_path / "flow" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    del state["refine_out.bias"]
    save_file(state, weights)
    with pytest.raises(ValueError, match="FlowTemporalUpsampler config: missing keys `refine_out.bias`"):
        FlowTemporalUpsampler.from_pretrained(tmp_path / "flow")


def test_bad_input_names_the_argument_and_value():
    model = FlowTemporalUpsampler(in_channels=C, block_out_channels=(8,), refine_channels=8)
    for factor in (3, 16, 0, 2.0, True):
        with pytest.raises(ValueError, match=f"`factor` must be a power of two up to 8 .* but is {factor!r}"):
            model.upsample(torch.zeros(1, C, 2, 8, 8), factor)
    assert [check_temporal_upsampling(f) for f in (1, 2, 4, 8)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"`sample` must be a latent video \(batch, 4, frames >= 2"):
        model(torch.zeros(1, 3, 2, 8, 8))
    with pytest.raises(ValueError, match=r"`sample` must be .* but has shape \(1, 4, 1, 8, 8\)"):
        model(torch.zeros(1, C, 1, 8, 8))
    with pytest.raises(ValueError, match=r"`flows` must have shape \(1, 4, 1, 8, 8\)"):
        model(torch.zeros(1, C, 2, 8, 8), flows=torch.zeros(1, 2, 1, 8, 8))
    with pytest.raises(ValueError, match="`padding_mode` must be one of"):
        FlowTemporalUpsampler(padding_mode="circular")
