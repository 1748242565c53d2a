"""The Triton GroupNorm + scale-shift + SiLU kernels (genbench.kernels.groupnorm_silu)
against the reference (genbench.baselines.groupnorm_silu).

On the CPU the kernels run in the Triton interpreter (conftest sets TRITON_INTERPRET=1), in
fp32 on small odd shapes; fp16/bf16 and the U-Net sizes run only with CUDA. Every
comparison covers y and the gradients of <y, dy> with respect to x, weight, bias, scale and
shift (those present), for a random dy, against the reference run in float64 on the CPU.

Tolerances, (rtol, atol as a fraction of max|reference|) per dtype:
- fp32 (1e-5, 1e-5). The kernel computes in fp32: shifted statistics (x - K exact, mean
  and M2 of O(std) values), so even 1e4 + randn loses nothing to the offset; sums of n <=
  ~4000 terms in a tree/sequential order differ from float64 by ~sqrt(n) ulps of the sum
  (measured errors: 1e-7 to 4e-7 of the scale, at offsets 0, 100 and 1e4 alike). A naive
  E[x²] - E[x]² in fp32 at offset 1e4 would be off by ~1e-3 of the scale, an indexing or
  masking error by the scale itself. On CUDA the sigmoid is ex2.approx/rcp.approx (<= 2
  ulp each): within the same tolerance.
- fp16 (4e-3, 2e-3), bf16 (3e-2, 1.6e-2) (GPU): the kernel reads the same half-precision
  values the fp32 reference gets upcast; what differs is the final rounding of y, dx and
  the parameter gradients to the dtype (u = 2^-11 fp16, 2^-8 bf16): rtol ~ 4-8u, atol 2-4u.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from genbench.baselines.groupnorm_silu import group_norm_silu as reference
from genbench.errors import ConfigError
from genbench.kernels import groupnorm_silu as gn
from genbench.kernels.groupnorm_silu import GroupNormSiLU, group_norm_silu, triton_group_norm_silu


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
FP32_TOL = (1e-5, 1e-5)
HALF_TOL = {torch.float16: (4e-3, 2e-3), torch.bfloat16: (3e-2, 1.6e-2)}
NAMES = ("y", "dx", "dweight", "dbias", "dscale", "dshift")


def make_inputs(B, C, spatial, *, offset=0.0, affine=True, scale=True, shift=True, seed=0, layout="nchw",
                dtype=torch.float32, device=DEVICE):
    """x, weight, bias, scale, shift, dy (None where absent) on `device`; layout "nchw" or
    "channels_last" (channels the fastest axis, for any number of spatial dims)."""
    g = torch.Generator().manual_seed(seed)
    x = offset + torch.randn(B, C, *spatial, generator=g)
    w = 1.0 + 0.5 * torch.randn(C, generator=g)
    b = 0.5 * torch.randn(C, generator=g)
    s = 0.5 * torch.randn(B, C, generator=g)
    t = torch.randn(B, C, generator=g)
    dy = torch.randn(x.shape, generator=g)

    def place(v):
        v = v.to(device, dtype)
        if layout == "channels_last" and v.ndim > 2:
            v = v.movedim(1, -1).contiguous().movedim(-1, 1)
        return v

    return {"x": place(x), "weight": place(w) if affine else None, "bias": place(b) if affine else None,
            "scale": place(s) if scale else None, "shift": place(t) if shift else None, "dy": place(dy)}


def run(fn, inp, groups, activation="silu", eps=1e-5, cast=None, device=None, **kwargs):
    """{name: tensor} for y and the gradient of every input present (detached)."""
    names = ("x", "weight", "bias", "scale", "shift")
    leaves = {}
    for n in names:
        v = inp[n]
        if v is not None:
            v = v.detach().to(device=device or v.device, dtype=cast or v.dtype).clone().requires_grad_()
        leaves[n] = v
    y = fn(leaves["x"], groups, leaves["weight"], leaves["bias"], eps, leaves["scale"], leaves["shift"], activation,
           **kwargs)
    present = [n for n in names if leaves[n] is not None]
    dy = inp["dy"].to(device=y.device, dtype=y.dtype)
    grads = torch.autograd.grad(y, [leaves[n] for n in present], dy)
    out = {"y": y.detach()}
    out.update({"d" + n: g for n, g in zip(present, grads)})
    return out


def reference64(inp, groups, activation="silu", eps=1e-5):
    return run(reference, inp, groups, activation, eps, cast=torch.float64, device="cpu")


def assert_match(out, ref, tol=FP32_TOL):
    assert out.keys() == ref.keys()
    rtol, atol = tol
    for name, r in ref.items():
        a = out[name].detach().cpu().double()
        scale = float(r[torch.isfinite(r)].abs().max()) if torch.isfinite(r).any() else 1.0
        torch.testing.assert_close(a, r, rtol=rtol, atol=atol * max(scale, 1e-12), equal_nan=True,
                                   msg=lambda m, name=name: f"{name}: {m}")


# ----------------------------------------------------------------------------- against the reference, fp32

# (B, C, spatial, groups): batch 1, C not a multiple of 16, groups 1/3/4/32, spatial 1x1 and
# odd sizes, non-power-of-two channels per group (3, 12), groups not a multiple of the
# groups per program (3), 3-D and 5-D x, and one U-Net-like shape with no padding at all.
SHAPES = [
    (1, 12, (3, 5), 4),
    (2, 32, (1, 1), 8),
    (3, 20, (4, 4), 1),
    (2, 64, (5, 7), 32),
    (2, 96, (3, 3), 32),
    (2, 24, (8, 8), 3),
    (1, 48, (6, 6), 4),
    (2, 64, (16, 16), 32),
    (2, 9, (6,), 3),
    (2, 8, (2, 3, 4), 4),
]


@pytest.mark.parametrize("B, C, spatial, groups", SHAPES, ids=[f"{b}x{c}x{'x'.join(map(str, s))}-g{g}"
                                                               for b, c, s, g in SHAPES])
def test_matches_reference(B, C, spatial, groups):
    inp = make_inputs(B, C, spatial)
    out = run(triton_group_norm_silu, inp, groups)
    assert out["y"].dtype == torch.float32 and out["y"].shape == inp["x"].shape
    assert_match(out, reference64(inp, groups))


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no_affine"])
@pytest.mark.parametrize("scale, shift", [(True, True), (True, False), (False, True), (False, False)],
                         ids=["scale_shift", "scale_only", "shift_only", "plain"])
def test_optional_terms(affine, scale, shift):
    inp = make_inputs(2, 24, (5, 6), affine=affine, scale=scale, shift=shift, seed=3)
    assert_match(run(triton_group_norm_silu, inp, 4), reference64(inp, 4))


@pytest.mark.parametrize("scale_shift", [True, False])
def test_activation_none(scale_shift):
    inp = make_inputs(2, 24, (5, 6), scale=scale_shift, shift=scale_shift, seed=4)
    assert_match(run(triton_group_norm_silu, inp, 4, activation="none"), reference64(inp, 4, activation="none"))


@pytest.mark.parametrize("B, C, spatial, groups", [(2, 32, (5, 6), 8), (2, 64, (4, 4), 32), (2, 16, (2, 3, 4), 4),
                                                   (2, 12, (7,), 4)], ids=["4d", "4d-g32", "5d", "3d"])
def test_channels_last(B, C, spatial, groups):
    inp = make_inputs(B, C, spatial, layout="channels_last", seed=5)
    assert inp["x"].stride(1) == 1
    out = run(triton_group_norm_silu, inp, groups)
    assert out["y"].stride() == inp["x"].stride() and out["dx"].stride() == inp["x"].stride()
    if len(spatial) == 2:
        assert out["y"].is_contiguous(memory_format=torch.channels_last)
    assert_match(out, reference64(inp, groups))


# ----------------------------------------------------------------------------- numerics and paths

# (label, config): None = planned (one tile here); (groups/program, positions/tile, split).
PATHS = [("one_tile", None), ("looped", (2, 16, 1)), ("split", (4, 16, 3))]


@pytest.mark.parametrize("offset", [100.0, 1e4, -1e4])
@pytest.mark.parametrize("label, config", PATHS, ids=[p[0] for p in PATHS])
def test_offset_inputs_keep_precision(offset, label, config):
    """offset + randn: the statistics are shifted by the group's first element, so the fp32
    kernel matches a float64 reference as tightly as at offset 0 (a naive fp32 variance at
    1e4 would be off by ~1e-3)."""
    inp = make_inputs(2, 16, (7, 9), offset=offset, seed=6)
    out = run(triton_group_norm_silu, inp, 4, config=config)
    assert_match(out, reference64(inp, 4))


def test_saved_statistics_at_large_offset():
    """mean (kept as K + m) and rstd against float64, per (example, group)."""
    x = make_inputs(3, 16, (9, 11), offset=1e4, seed=7)["x"]
    _, mean, rstd = gn.group_norm_silu_forward(x, 4, None, None, 1e-5, None, None, "silu", (1, 16, 1))
    x64 = x.double().cpu().reshape(3, 4, -1)
    ref_mean = x64.mean(-1)
    ref_rstd = (x64.var(-1, unbiased=False) + 1e-5).rsqrt()
    got_mean = mean[..., 0].cpu().double() + mean[..., 1].cpu().double()
    assert (got_mean - ref_mean).abs().max() < 1e-6  # |mean| = 1e4: fp32 alone could hold it to 5e-4
    torch.testing.assert_close(rstd.cpu().double(), ref_rstd, rtol=1e-6, atol=0)


# (B, C, spatial, groups, config, layout): looped tiles with padding in S and channels, several
# groups per program with groups past G, splits of 2, 3 and 5 chunks, channels-last.
FORCED = [
    (2, 24, (5, 7), 4, (1, 8, 1), "nchw"),
    (2, 24, (5, 7), 3, (4, 8, 1), "nchw"),
    (1, 40, (6, 5), 5, (2, 8, 2), "nchw"),
    (1, 16, (9, 9), 4, (2, 8, 5), "nchw"),
    (2, 48, (5, 6), 4, (2, 8, 3), "channels_last"),
    (2, 32, (4, 8), 8, (8, 8, 2), "channels_last"),
    (2, 64, (8, 8), 32, (8, 32, 1), "nchw"),  # no padding: the mask-free (EVEN) loop
]


@pytest.mark.parametrize("B, C, spatial, groups, config, layout", FORCED,
                         ids=[f"{b}x{c}x{'x'.join(map(str, sp))}-g{g}-cfg{'.'.join(map(str, cfg))}-{lay}"
                              for b, c, sp, g, cfg, lay in FORCED])
def test_forced_paths(B, C, spatial, groups, config, layout):
    inp = make_inputs(B, C, spatial, layout=layout, offset=3.0, seed=8)
    assert_match(run(triton_group_norm_silu, inp, groups, config=config), reference64(inp, groups))


def test_split_path_is_deterministic():
    inp = make_inputs(1, 16, (6, 6), seed=9)
    first = run(triton_group_norm_silu, inp, 4, config=(4, 8, 3))
    second = run(triton_group_norm_silu, inp, 4, config=(4, 8, 3))
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_nan_propagates_to_its_group_only():
    inp = make_inputs(2, 16, (3, 4), seed=10)
    inp["x"][1, 5, 2, 1] = float("nan")  # example 1, group 1 (channels 4..7)
    out = run(triton_group_norm_silu, inp, 4)
    ref = reference64(inp, 4)
    y = out["y"]
    assert torch.isnan(y[1, 4:8]).all() and not torch.isnan(y[0]).any() and not torch.isnan(y[1, :4]).any()
    for name in ref:
        assert torch.equal(torch.isnan(out[name]).cpu(), torch.isnan(ref[name])), name
    assert_match(out, ref)


def test_non_contiguous_inputs_and_expanded_gradient():
    """x a channel slice, scale/shift the two halves of one embedding projection (strides
    (2C, 1)), dy expanded from a sum (strides 0), and x with spatial dims that do not merge
    (transposed H/W: copied)."""
    g = torch.Generator().manual_seed(11)
    big = torch.randn(2, 40, 5, 6, generator=g).to(DEVICE)
    emb = torch.randn(2, 48, generator=g).to(DEVICE)
    w, b = (torch.randn(24, generator=g).to(DEVICE) for _ in range(2))
    for x in (big[:, 8:32], big[:, 8:32].transpose(2, 3)):
        scale, shift = emb.chunk(2, dim=1)
        assert not x.is_contiguous() and not scale.is_contiguous()
        outs = []
        for fn, dtype in ((triton_group_norm_silu, torch.float32), (reference, torch.float64)):
            leaves = [t.detach().to("cpu" if dtype == torch.float64 else DEVICE, dtype).requires_grad_()
                      for t in (x, w, b, scale, shift)]
            y = fn(leaves[0], 4, leaves[1], leaves[2], 1e-5, leaves[3], leaves[4])
            grads = torch.autograd.grad(y.sum(), leaves)
            outs.append({"y": y.detach(), **{f"d{i}": g_ for i, g_ in enumerate(grads)}})
        assert_match(*outs)


def test_strided_views_are_read_in_place():
    """A channel slice of an NCHW tensor and a channels-last tensor are read without a copy."""
    big = torch.randn(2, 40, 5, 6, device=DEVICE)
    assert gn.bcs_strides(big[:, 8:32]) == (40 * 30, 30, 1)
    cl = big.contiguous(memory_format=torch.channels_last)
    assert gn.bcs_strides(cl) == (40 * 30, 1, 40)
    assert gn.bcs_strides(big.transpose(2, 3)) is None
    assert gn.bcs_strides(torch.ones(2, 3, 4, 5).expand(2, 3, 4, 5)) == (60, 20, 1)


def test_empty_batch():
    inp = make_inputs(0, 8, (3, 3), seed=12)
    out = run(triton_group_norm_silu, inp, 4)
    assert out["y"].shape == (0, 8, 3, 3)
    assert torch.equal(out["dweight"], torch.zeros(8, device=DEVICE))


def test_gradients_of_some_inputs_only():
    """x without grad (only the parameter kernel runs after the sums), and x alone."""
    inp = make_inputs(2, 24, (5, 6), seed=13)
    ref = reference64(inp, 4)
    w = inp["weight"].clone().requires_grad_()
    s = inp["scale"].clone().requires_grad_()
    y = triton_group_norm_silu(inp["x"], 4, w, inp["bias"], 1e-5, s, inp["shift"])
    dw, ds = torch.autograd.grad(y, (w, s), inp["dy"])
    assert_match({"dweight": dw, "dscale": ds}, {"dweight": ref["dweight"], "dscale": ref["dscale"]})
    x = inp["x"].clone().requires_grad_()
    y = triton_group_norm_silu(x, 4, inp["weight"], inp["bias"], 1e-5, inp["scale"], inp["shift"])
    (dx,) = torch.autograd.grad(y, (x,), inp["dy"])
    assert_match({"dx": dx}, {"dx": ref["dx"]})


def test_autograd_saves_inputs_and_statistics_only():
    inp = make_inputs(2, 16, (4, 4), seed=14)
    x = inp["x"].clone().requires_grad_()
    y = triton_group_norm_silu(x, 4, inp["weight"], inp["bias"], 1e-5, inp["scale"], inp["shift"])
    saved = [t for t in y.grad_fn.saved_tensors if t is not None]
    big = [t for t in saved if t.numel() == x.numel()]
    assert len(big) == 1 and big[0].data_ptr() == x.data_ptr()  # x itself; no normalised activation
    shapes = sorted(tuple(t.shape) for t in saved if t.numel() != x.numel())
    assert (2, 4) in shapes and (2, 4, 2) in shapes  # rstd, mean (K, m)
    with torch.no_grad():
        assert triton_group_norm_silu(x, 4, inp["weight"]).grad_fn is None


def test_layer_matches_torch_backend_and_nn_groupnorm_state():
    torch.manual_seed(0)
    layer = GroupNormSiLU(4, 24, backend="triton").to(DEVICE)
    with torch.no_grad():
        layer.weight.normal_(1.0, 0.3)
        layer.bias.normal_(0.0, 0.3)
    twin = GroupNormSiLU(4, 24, backend="torch").to(DEVICE)
    twin.load_state_dict(torch.nn.GroupNorm(4, 24).state_dict())  # same state as nn.GroupNorm
    twin.load_state_dict(layer.state_dict())
    inp = make_inputs(2, 24, (5, 6), seed=15)
    outs = []
    for m in (layer, twin):
        x = inp["x"].clone().requires_grad_()
        y = m(x, inp["scale"], inp["shift"])
        (y * inp["dy"]).sum().backward()
        outs.append({"y": y.detach(), "dx": x.grad, "dweight": m.weight.grad, "dbias": m.bias.grad})
    assert_match(outs[0], {k: v.double().cpu() for k, v in outs[1].items()}, tol=(1e-5, 1e-5))
    assert layer.resolved_backend(DEVICE) == "triton"
    assert GroupNormSiLU(4, 24).resolved_backend("cpu") == "torch"  # auto: reference on CPU
    plain = F.silu(F.group_norm(inp["x"], 4, layer.weight, layer.bias))
    torch.testing.assert_close(layer(inp["x"]).detach(), plain.detach(), rtol=1e-5, atol=1e-5)


def test_registered_with_a_triton_implementation():
    from genbench.registry import KERNELS

    assert KERNELS.get("group_norm_silu").triton is triton_group_norm_silu
    x = torch.randn(2, 8, 3, 3, device=DEVICE)
    torch.testing.assert_close(group_norm_silu(x, 4, backend="triton"), group_norm_silu(x, 4, backend="torch"),
                               rtol=1e-5, atol=1e-5)


def test_errors():
    x = torch.randn(2, 12, 3, 3, device=DEVICE)
    with pytest.raises(ConfigError, match="fp32/fp16/bf16"):
        triton_group_norm_silu(x.double(), 4)
    with pytest.raises(ConfigError, match="num_groups must divide C"):
        triton_group_norm_silu(x, 5)
    with pytest.raises(ConfigError, match=r"scale must have shape \(2, 12\)"):
        triton_group_norm_silu(x, 4, scale=torch.zeros(12, device=DEVICE))
    with pytest.raises(ConfigError, match="unknown activation"):
        triton_group_norm_silu(x, 4, activation="gelu")
    with pytest.raises(ConfigError, match="floating-point"):
        triton_group_norm_silu(x, 4, torch.ones(12, dtype=torch.int32, device=DEVICE))
    with pytest.raises(ConfigError, match="powers of two"):
        triton_group_norm_silu(x, 4, config=(3, 8, 1))
    with pytest.raises(ConfigError, match=r"expects x \(B, C, ...\)"):
        triton_group_norm_silu(torch.randn(12, device=DEVICE), 4)


# ----------------------------------------------------------------------------- launch plans (no kernel runs)


def test_plans_for_unet_sizes_read_x_once():
    """32 px DDPM U-Net GroupNorm(32) layers: every group fits one register tile in the
    forward and the backward (x, and dy, read once), NCHW and channels-last."""
    for B, C, H in ((128, 128, 32), (128, 256, 16), (128, 256, 8), (64, 256, 32)):
        g = gn.Geometry(B, C, H * H, 32)
        for kind in ("fwd", "bwd"):
            for channels_last in (False, True):
                p = gn.plan(kind, g, channels_last, 2, 132)
                assert p.split == 1 and 1 <= len(p.configs) <= 4
                best = p.configs[0]
                assert best.one_tile and best.even, (kind, B, C, H, channels_last, best)
                tile = best.block_g * (C // 32) * best.block_s
                assert tile <= gn.ONE_TILE_MAX[kind]
                if channels_last:  # rows of at least half a 32-byte sector
                    assert best.block_g * (C // 32) * 2 >= 16
                for c in p.configs:
                    assert c.block_g & (c.block_g - 1) == 0 and c.block_s & (c.block_s - 1) == 0


def test_plan_splits_large_groups_only_when_programs_are_few():
    big = gn.Geometry(2, 512, 64 * 64, 32)  # 16 channels x 64x64 = 65536 per group, 64 groups
    p = gn.plan("fwd", big, False, 2, 132)
    assert p.split > 1 and p.s_per_split % p.configs[0].block_s == 0
    assert triton_cdiv(4096, p.s_per_split) == p.split
    many = gn.Geometry(128, 512, 64 * 64, 32)  # 4096 groups: one program per group, looped
    q = gn.plan("fwd", many, False, 2, 132)
    assert q.split == 1 and not q.configs[0].one_tile


def triton_cdiv(a, b):
    return -(-a // b)


# ----------------------------------------------------------------------------- the benchmark's logic


def test_bench_counts_minimum_traffic_and_covers_the_unet_cases():
    from genbench.kernelbench import BENCHES
    from genbench.kernelbench.base import Case
    from genbench.kernelbench.groupnorm_silu import bytes_moved, cases

    bench = BENCHES.get("group_norm_silu")
    assert set(bench.providers) == {"triton", "eager", "compile"} and bench.modes == ("fwd", "bwd", "fwd_bwd")
    case = Case({"B": 2, "C": 4, "H": 3, "W": 3, "G": 2}, torch.bfloat16, "scale_shift")
    n, params = 2 * 4 * 9, 2 * 4 * 2 + 2 * 2 * 4 * 2
    assert bytes_moved(case, "fwd") == 2 * n * 2 + params  # read x, write y, parameters
    assert bytes_moved(case, "bwd") == 3 * n * 2 + 2 * params  # read x, dy; write dx; parameters and their grads
    assert bytes_moved(case, "fwd_bwd") == bytes_moved(case, "fwd") + bytes_moved(case, "bwd")
    plain = Case(case.shape, torch.bfloat16, "plain")
    assert bytes_moved(plain, "fwd") == 2 * n * 2 + 2 * 4 * 2
    listed = cases()
    assert {c.dtype for c in listed} == {torch.bfloat16, torch.float32}
    assert any("channels_last" in c.variant for c in listed)
    assert {c.variant.split(",")[0] for c in listed} == {"scale_shift", "plain"}
    assert {(c.shape["C"], c.shape["H"]) for c in listed} >= {(128, 32), (256, 16), (256, 8)}


@pytest.mark.parametrize("provider", ["triton", "eager"])
def test_bench_workload_runs_every_mode_on_a_tiny_case(provider):
    from genbench.kernelbench.base import Case
    from genbench.kernelbench.groupnorm_silu import workload

    case = Case({"B": 2, "C": 64, "H": 4, "W": 4, "G": 32}, torch.float32, "scale_shift,channels_last")
    w = workload(provider, device=DEVICE)(case)
    assert w.provenance["memory_format"] == "channels_last" and len(w.grad_to_none) == 5
    y = w.forward()
    assert y.shape == (2, 64, 4, 4) and y.stride(1) == 1
    w.backward()
    w.forward_backward()
    assert all(t.grad is not None for t in w.grad_to_none)


# ----------------------------------------------------------------------------- CUDA only


UNET_CASES = [(128, 128, 32, True, "nchw"), (128, 256, 16, True, "nchw"), (64, 256, 8, False, "nchw"),
              (64, 128, 32, True, "channels_last"), (32, 384, 32, True, "channels_last")]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("B, C, H, scale_shift, layout", UNET_CASES)
def test_half_precision_unet_sizes_on_cuda(dtype, B, C, H, scale_shift, layout):
    """fp16/bf16 kernel vs the fp32 reference on the same (rounded) inputs."""
    inp = make_inputs(B, C, (H, H), scale=scale_shift, shift=scale_shift, layout=layout, dtype=dtype, seed=20)
    out = run(triton_group_norm_silu, inp, 32)
    assert out["y"].dtype == dtype and out["y"].stride() == inp["x"].stride()
    ref = run(reference, inp, 32, cast=torch.float32)
    assert_match(out, {k: v.double().cpu() for k, v in ref.items()}, tol=HALF_TOL[dtype])


@pytest.mark.cuda
@pytest.mark.parametrize("B, C, H, groups", [(64, 128, 32, 32), (2, 256, 64, 16), (1, 512, 64, 32)],
                         ids=["unet", "split-16ch-64px", "split-b1"])
def test_fp32_on_cuda_against_float64(B, C, H, groups):
    """fp32 on the GPU (fast sigmoid, autotuned or split plans) vs float64, offset inputs."""
    inp = make_inputs(B, C, (H, H), offset=100.0, seed=21)
    out = run(triton_group_norm_silu, inp, groups)
    ref = run(reference, inp, groups, cast=torch.float64)
    assert_match(out, {k: v.cpu() for k, v in ref.items()})


@pytest.mark.cuda
def test_mixed_parameter_dtype_on_cuda():
    """bf16 activations with fp32 parameters (a bf16 model keeping fp32 norms): y in bf16,
    parameter gradients in fp32."""
    inp = make_inputs(16, 128, (16, 16), dtype=torch.bfloat16, seed=22)
    for name in ("weight", "bias", "scale", "shift"):
        inp[name] = inp[name].float()
    out = run(triton_group_norm_silu, inp, 32)
    assert out["y"].dtype == torch.bfloat16 and out["dweight"].dtype == torch.float32
    ref = run(reference, {**inp, "x": inp["x"].float()}, 32, cast=torch.float32)
    assert_match(out, {k: v.double().cpu() for k, v in ref.items()}, tol=HALF_TOL[torch.bfloat16])


@pytest.mark.cuda
def test_cuda_backward_is_deterministic():
    inp = make_inputs(4, 256, (64, 64), seed=23)
    first = run(triton_group_norm_silu, inp, 16)
    second = run(triton_group_norm_silu, inp, 16)
    for name in first:
        assert torch.equal(first[name], second[name]), name
