"""The diffusion U-Net (Ho et al. 2020) and the points MLP: shapes at 16 and 32 px, the
default layouts, attention at the chosen resolutions, the kernel ops it runs through, the
time embedding's formula, option errors, and backend agreement."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import genbench.models.unet as unet_module
from genbench.errors import ConfigError
from genbench.kernels.groupnorm_silu import GroupNormSiLU
from genbench.models.unet import (
    MLPDenoiser,
    ResBlock,
    UNet,
    UNetOptions,
    default_channel_mult,
    resolve_layout,
    timestep_embedding,
)
from genbench.registry import KERNELS

TINY = dict(channels=8, groups=4, num_res_blocks=1, dropout=0.0)


def randomise(net: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter drawn at random (the zero-initialised output layers too)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return net


def test_timestep_embedding_is_ho_et_al_sinusoid():
    t = torch.tensor([0, 1, 7, 999])
    dim = 10
    emb = timestep_embedding(t, dim)
    half = dim // 2
    for row, step in enumerate(t.tolist()):
        for i in range(half):
            w = math.exp(-math.log(10000) * i / (half - 1))
            assert emb[row, i].item() == pytest.approx(math.sin(step * w), abs=1e-4)
            assert emb[row, half + i].item() == pytest.approx(math.cos(step * w), abs=1e-4)
    odd = timestep_embedding(t, 11)
    assert odd.shape == (4, 11) and torch.equal(odd[:, :10], emb) and torch.all(odd[:, 10] == 0)


@pytest.mark.parametrize("size, mult", [(32, (1, 2, 2, 2)), (16, (1, 2, 2)), (64, (1, 2, 3, 4)), (28, (1, 2, 2)),
                                        (8, (1, 2))])
def test_default_channel_multipliers_follow_the_image_size(size, mult):
    assert default_channel_mult(size) == mult
    layout = resolve_layout(UNetOptions(), size)
    assert layout.channel_mult == mult and layout.time_embed_dim == 4 * 64
    assert layout.attention_sides == ((16,) if 16 in layout.sides else ())


@pytest.mark.parametrize("channels, size", [(1, 16), (3, 32)])
def test_unet_maps_images_to_their_shape_with_the_default_layout(channels, size):
    net = UNet(UNetOptions(channels=32), channels, size)
    x, t = torch.randn(2, channels, size, size), torch.tensor([0, 999])
    out = net(x, t)
    assert out.shape == x.shape
    assert torch.all(out == 0)  # zero-initialised output conv: the untrained net predicts eps = 0
    # attention at 16x16 on both paths (2 down + 3 up blocks at num_res_blocks=2) and the middle block
    assert net.attention_sides() == [16, 16, size // 2 ** (len(default_channel_mult(size)) - 1), 16, 16, 16]


def test_attention_sits_at_the_chosen_resolutions_and_runs_through_the_kernel_op(monkeypatch):
    calls, real = [], unet_module.attention

    def counting(q, k, v, scale=None, backend="auto"):
        calls.append((tuple(q.shape), backend))
        return real(q, k, v, scale, backend)

    monkeypatch.setattr(unet_module, "attention", counting)
    net = UNet(UNetOptions(**TINY, channel_mult=(1, 2, 2), attention_resolutions=(16, 8), num_heads=2), 1, 16,
               backend="torch")
    # down: 16 (1 block), 8 (1); middle: 4; up: 8 (2 blocks), 16 (2)
    assert net.attention_sides() == [16, 8, 4, 8, 8, 16, 16]
    net(torch.randn(3, 1, 16, 16), torch.tensor([1, 2, 3]))
    assert [shape for shape, _ in calls] == [(3, 2, 256, 4), (3, 2, 64, 8), (3, 2, 16, 8), (3, 2, 64, 8),
                                             (3, 2, 64, 8), (3, 2, 256, 4), (3, 2, 256, 4)]
    assert {backend for _, backend in calls} == {"torch"}
    none = UNet(UNetOptions(**TINY, channel_mult=(1, 2), attention_resolutions=()), 1, 16)
    assert none.attention_sides() == [8]  # the middle block always attends


def test_head_dim_sets_the_number_of_heads():
    net = UNet(UNetOptions(channels=32, groups=8, num_res_blocks=1, channel_mult=(1, 2), head_dim=16), 1, 16)
    heads = {m.side: m.heads for m in net.modules() if isinstance(m, unet_module.AttentionBlock)}
    assert heads == {16: 2, 8: 4}


def test_every_group_norm_is_the_fused_kernel_layer_with_the_models_backend():
    net = UNet(UNetOptions(**TINY, channel_mult=(1, 2)), 1, 8, backend="torch")
    norms = [m for m in net.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and all(isinstance(m, GroupNormSiLU) and m.backend == "torch" for m in norms)
    assert not any(isinstance(m, nn.SiLU) for m in net.modules() if m is not net.time_embed.mlp[1])
    assert net.kernel_backends() == {"group_norm_silu": "torch", "attention": "torch"}


def test_scale_shift_conditions_through_the_second_norm():
    block = ResBlock(8, 8, temb_dim=16, dropout=0.0, groups=4, scale_shift=True, backend="torch")
    assert block.temb_proj.out_features == 16  # scale and shift per channel
    net = randomise(UNet(UNetOptions(**TINY, channel_mult=(1, 2), scale_shift=True), 1, 8))
    x = torch.randn(1, 1, 8, 8).expand(2, -1, -1, -1)
    out = net(x, torch.tensor([3, 700]))
    assert out.shape == (2, 1, 8, 8) and not torch.allclose(out[0], out[1])  # t matters


def test_time_conditioning_reaches_the_output():
    net = randomise(UNet(UNetOptions(**TINY, channel_mult=(1, 2)), 1, 8))
    x = torch.randn(1, 1, 8, 8).expand(2, -1, -1, -1)
    out = net(x, torch.tensor([0, 500]))
    assert not torch.allclose(out[0], out[1])


def test_gradients_reach_every_parameter():
    net = randomise(UNet(UNetOptions(**TINY, channel_mult=(1, 2), scale_shift=True), 1, 8))
    net(torch.randn(2, 1, 8, 8), torch.tensor([1, 2])).square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("options, size, match", [
    (dict(channels=48), 32, "groups=32 does not divide"),
    (dict(channel_mult=(1, 2, 2, 2)), 20, "not divisible by 8"),
    (dict(attention_resolutions=(32,)), 16, "does not have"),
    (dict(channels=32, groups=8, num_heads=3), 16, "whole heads"),
    (dict(channels=32, groups=8, head_dim=24), 16, "whole heads"),
])
def test_options_that_do_not_fit_the_image_are_config_errors(options, size, match):
    with pytest.raises(ConfigError, match=match):
        UNet(UNetOptions(**options), 1, size)


@pytest.mark.parametrize("bad", [dict(dropout=1.0), dict(channels=0), dict(channel_mult=()), dict(head_dim=0),
                                 dict(attention_resolutions=(0,))])
def test_invalid_options_are_rejected(bad):
    with pytest.raises(ValueError):
        UNetOptions(**bad)


def test_mlp_denoiser_maps_points_to_their_shape_and_depends_on_t():
    net = randomise(MLPDenoiser(2, hidden=16, blocks=2))
    x = torch.randn(1, 2).expand(2, -1)
    out = net(x, torch.tensor([0, 900]))
    assert out.shape == (2, 2) and not torch.allclose(out[0], out[1])
    assert net.kernel_backends() == {}


def triton_ready() -> bool:
    return all(KERNELS.get(op).triton is not None for op in unet_module.UNET_OPS)


@pytest.mark.skipif(not triton_ready(), reason="the group_norm_silu / attention Triton kernels have not landed")
def test_torch_and_triton_backends_agree_on_a_tiny_unet():
    torch.manual_seed(0)
    options = UNetOptions(**TINY, channel_mult=(1, 2), attention_resolutions=(8,), scale_shift=True)
    ref = randomise(UNet(options, 1, 8, backend="torch"))
    tri = UNet(options, 1, 8, backend="triton")
    tri.load_state_dict(ref.state_dict())
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([5, 600])
    assert tri.kernel_backends() == {"group_norm_silu": "triton", "attention": "triton"}
    torch.testing.assert_close(tri(x, t), ref(x, t), rtol=1e-4, atol=1e-4)
