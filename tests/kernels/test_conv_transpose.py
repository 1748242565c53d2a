"""The Triton transposed convolution (genbench.kernels.conv_transpose) against the reference.

On the CPU the kernels run in the Triton interpreter (conftest sets TRITON_INTERPRET=1), in
fp32 on small odd shapes; fp16/bf16, TF32 and the benchmark's large shapes run only with
CUDA. Every comparison covers the output y and the gradients dx, dW, db of <y, dy> for a
random upstream gradient dy, each against genbench.baselines.conv_transpose (F.conv_transpose2d).

Tolerances, (rtol, atol as a fraction of max|reference|) per dtype:
- fp32 (1e-5, 1e-5). Both sides accumulate in IEEE fp32 (the interpreter always does; on
  CUDA the autouse fixture turns TF32 off for cuDNN, and the kernel follows that switch),
  in different orders. The sums here have n <= ~250 terms (C_in·taps for y, C_out·kH·kW
  for dx, B·H·W for dW); recursive summation is off by at most n·2^-24·sum|terms|, about
  1.5e-5 of sum|terms| at n = 250, and in practice by sqrt(n) ulps: measured errors are
  ~2e-7 of the scale. Any indexing or masking error is of the order of the scale itself.
- TF32 (GPU, kernel allow_tf32=True against the IEEE reference): (1e-3, 2e-3). Each
  product's inputs are rounded to 10 mantissa bits (relative error <= 2^-10 per product);
  random-sign sums of n terms put the error near sqrt(n)·2^-11·|term|, ~1e-4 of the scale.
- fp16 (2e-3, 5e-4), bf16 (1.6e-2, 4e-3): the kernel reads the same half-precision values
  the fp32 reference gets upcast, so products are exact and accumulation is fp32; what is
  left is the rounding of each result to the output dtype (<= u = 2^-11 fp16, 2^-8 bf16)
  and of dy' = dy·act'(y) before the weight gradient. rtol is 4u, atol u of the scale.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genbench.baselines.conv_transpose import conv_transpose2d as reference
from genbench.baselines.conv_transpose import fold_batchnorm, output_size
from genbench.errors import ConfigError
from genbench.kernels import conv_transpose as ct
from genbench.kernels.conv_transpose import ConvTranspose2d, conv_transpose2d, op_backend, triton_conv_transpose2d

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
FP32_TOL, TF32_TOL = (1e-5, 1e-5), (1e-3, 2e-3)
HALF_TOL = {torch.float16: (2e-3, 5e-4), torch.bfloat16: (1.6e-2, 4e-3)}
NAMES = ("y", "dx", "dW", "db")


# IEEE fp32 on both sides on CUDA (tests/conftest.py: ieee_fp32): cuDNN and cuBLAS without TF32,
# so references and SDPA in fp32 are exact fp32 and the kernel (allow_tf32=None) follows cuDNN.
pytestmark = pytest.mark.usefixtures("ieee_fp32")


def inputs(B, C_in, C_out, hw, kernel, bias=True, seed=0, dtype=torch.float32):
    """x (B, C_in, *hw), weight (C_in, C_out, *kernel), bias (C_out,) or None, on DEVICE."""
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C_in, *hw, generator=g)
    weight = torch.randn(C_in, C_out, *kernel, generator=g)
    b = torch.randn(C_out, generator=g) if bias else None
    return tuple(None if t is None else t.to(DEVICE, dtype) for t in (x, weight, b))


def random_upstream(seed=1):
    """dy for an output y: the same values for every implementation given the same seed."""
    def upstream(y):
        g = torch.Generator().manual_seed(seed)
        return torch.randn(y.shape, generator=g).to(y.device, y.dtype)
    return upstream


def output_and_grads(y, wrt, upstream):
    """(y, d<y, dy>/d t for t in wrt), all detached; dy = upstream(y)."""
    return (y.detach(), *torch.autograd.grad(y, wrt, upstream(y)))


def leaves(tensors, dtype=None):
    """Fresh leaves requiring grad (same values, same memory format), optionally cast."""
    return [None if t is None else t.detach().to(dtype or t.dtype).clone().requires_grad_() for t in tensors]


def run_both(x, weight, bias, *conv_args, upstream=None, reference_dtype=None, kernel_kwargs=None, **kwargs):
    """((y, dx, dW, db) from triton_conv_transpose2d, the same from the reference).

    conv_args: (stride, padding, output_padding, ...); kwargs go to both (activation, ...),
    kernel_kwargs to the kernel only. The reference runs on the same values (upcast to
    reference_dtype when given) with upstream(y) as dy; db is None without a bias.
    """
    upstream = upstream or random_upstream()
    results = []
    for fn, dtype, extra in ((triton_conv_transpose2d, None, kernel_kwargs or {}), (reference, reference_dtype, {})):
        args = leaves((x, weight, bias), dtype)
        y = fn(*args, *conv_args, **kwargs, **extra)
        out = output_and_grads(y, [t for t in args if t is not None], upstream)
        results.append(out if bias is not None else (*out, None))
    return results


def assert_match(got, want, tol=FP32_TOL, names=NAMES):
    """Each tensor of `got` against `want` (None against None): same shape, values within
    rtol·|want| + atol·max|want| (the tolerance tuples of the module docstring)."""
    rtol, atol = tol
    for name, a, e in zip(names, got, want):
        if e is None:
            assert a is None, name
            continue
        assert a.shape == e.shape, f"{name}: shape {tuple(a.shape)} != {tuple(e.shape)}"
        scale = float(e.abs().max()) if e.numel() else 0.0
        torch.testing.assert_close(a.float(), e.float(), rtol=rtol, atol=atol * scale,
                                   msg=lambda m, name=name: f"{name}: {m}")


def grid():
    """Every supported (stride, kernel, padding, output_padding) whose output on 5x3 is non-empty."""
    cases = []
    for s in (1, 2):
        for k in (3, 4, 5):
            for p in range(k):
                for op in range(s):
                    if min(output_size(n, k, s, p, op) for n in (5, 3)) >= 1:
                        cases.append((s, k, p, op))
    return cases


GRID = grid()


@pytest.mark.parametrize("stride, kernel, padding, output_padding", GRID,
                         ids=[f"s{s}-k{k}-p{p}-op{op}" for s, k, p, op in GRID])
def test_supported_grid_matches_reference(stride, kernel, padding, output_padding):
    """Odd 5x3 input, C_in 5 and C_out 7 (below one 16-wide tile); batch 1 on every other case."""
    batch = 1 + (stride + kernel + padding + output_padding) % 2
    x, weight, bias = inputs(batch, 5, 7, (5, 3), kernel, seed=kernel * 100 + padding * 10 + stride)
    assert_match(*run_both(x, weight, bias, stride, padding, output_padding))


def test_grid_covers_every_phase_and_tap_count():
    assert len(GRID) == 34  # 3+3+4 at stride 1 (k4 p3 and k5 p4 empty W = 3), 2·(3+4+5) at stride 2
    assert {(s, k) for s, k, _, _ in GRID} == {(s, k) for s in (1, 2) for k in (3, 4, 5)}


@pytest.mark.parametrize("activation, slope", [("none", 0.01), ("relu", 0.01), ("leaky_relu", 0.2),
                                               ("tanh", 0.01)])
def test_activations_with_gradients(activation, slope):
    """Gradients go through act' read from the saved output (no pre-activation kept)."""
    x, weight, bias = inputs(2, 5, 7, (5, 3), 3, seed=11)
    assert_match(*run_both(x, weight, bias, 2, 1, 1, activation=activation, negative_slope=slope))


def batchnorm(C, seed=12):
    """An eval-mode BatchNorm2d with non-trivial affine parameters and running statistics."""
    g = torch.Generator().manual_seed(seed)
    norm = nn.BatchNorm2d(C)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(C, generator=g) + 0.5)
        norm.bias.copy_(torch.randn(C, generator=g))
        norm.running_mean.copy_(3 * torch.randn(C, generator=g))
        norm.running_var.copy_(4 * torch.rand(C, generator=g) + 0.1)
    return norm.eval().to(DEVICE)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_fused_batchnorm_epilogue_in_inference(activation):
    x, weight, bias = inputs(2, 5, 7, (5, 3), 4, seed=13)
    norm = batchnorm(7)
    with torch.no_grad():
        scale, shift = fold_batchnorm(norm)
        y = triton_conv_transpose2d(x, weight, bias, 2, 1, 0, activation=activation, scale=scale, shift=shift)
        expected = reference(x, weight, bias, 2, 1, 0, activation=activation, scale=scale, shift=shift)
        eager = {"relu": F.relu, "tanh": torch.tanh}[activation](norm(F.conv_transpose2d(x, weight, bias, 2, 1, 0)))
    assert_match((y,), (expected,))
    assert_match((y,), (eager,), tol=(1e-5, 1e-5))  # BN's own (x - mean)·inv_std rounding


def test_fused_batchnorm_epilogue_refuses_gradients():
    x, weight, bias = inputs(1, 5, 7, (5, 3), 4, seed=14)
    with torch.no_grad():
        scale, shift = fold_batchnorm(batchnorm(7))
    with pytest.raises(ConfigError, match="inference"):
        triton_conv_transpose2d(x.requires_grad_(), weight, bias, 2, 1, 0, scale=scale, shift=shift)
    with torch.no_grad():  # the same call without gradients is fine
        triton_conv_transpose2d(x, weight, bias, 2, 1, 0, scale=scale, shift=shift)


@pytest.mark.parametrize("kernel, stride, padding, output_padding, hw",
                         [((3, 4), (2, 1), (1, 2), (1, 0), (5, 6)), ((5, 3), (1, 2), (3, 0), (0, 1), (7, 3))])
def test_rectangular_kernel_and_stride(kernel, stride, padding, output_padding, hw):
    x, weight, bias = inputs(2, 5, 7, hw, kernel, seed=15)
    assert_match(*run_both(x, weight, bias, stride, padding, output_padding, activation="leaky_relu",
                           negative_slope=0.1))


@pytest.mark.parametrize("layout", ["channels_last", "strided_slice"])
def test_non_contiguous_input(layout):
    """Channels-last input gives channels-last y and dx; any other strides give contiguous ones."""
    x, weight, bias = inputs(2, 5, 7, (5, 6), 4, seed=16)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    else:
        x = x[:, :, :, ::2]  # (2, 5, 5, 3), W stride 2
    assert not x.is_contiguous()
    kernel, ref = run_both(x, weight, bias, 2, 1, 1, activation="relu")
    assert_match(kernel, ref)
    channels_last = layout == "channels_last"
    for name, t in zip(("y", "dx"), kernel[:2]):
        assert t.is_contiguous(memory_format=torch.channels_last) == channels_last, name


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided_slice"])
def test_kernels_gather_channels_last_operands(layout, monkeypatch):
    """Whatever x's layout, the kernels read x and dy' and write y and dx channels-last (rows of
    channels: vector loads and stores); the caller gets y and dx in x's own layout."""
    reads = {}
    launch = ct.launch
    monkeypatch.setattr(ct, "launch", lambda kind, grid, args, meta, g, dtype: reads.setdefault(kind, args)
                        and launch(kind, grid, args, meta, g, dtype))
    x, weight, bias = inputs(2, 5, 7, (5, 6), 4, seed=21)
    x = {"nchw": x, "channels_last": x.to(memory_format=torch.channels_last), "strided_slice": x[:, :, :, ::2]}[layout]
    assert_match(*run_both(x, weight, bias, 2, 1, 1, activation="relu"))
    assert reads["fwd"][0].stride(1) == 1 and reads["wgrad"][0].stride(1) == 1  # x
    assert reads["dgrad"][0].stride(1) == 1 and reads["wgrad"][1].stride(1) == 1  # dy'
    assert reads["fwd"][4].stride(1) == 1 and reads["dgrad"][2].stride(1) == 1  # y and dx as written


@pytest.mark.parametrize("kind", ["expanded", "sliced"])
def test_non_contiguous_upstream_gradient(kind, monkeypatch):
    """dy as y.sum().backward() gives it (stride 0) or a strided view: laid out channels-last (channel
    stride 1) before the gradient kernels, which gather rows of channels."""
    seen = []
    dgrad = ct.conv_transpose_dgrad
    monkeypatch.setattr(ct, "conv_transpose_dgrad", lambda dy, *a: seen.append(dy.stride()) or dgrad(dy, *a))

    def upstream(y):
        if kind == "expanded":
            return torch.ones((), device=y.device, dtype=y.dtype).expand(y.shape)
        wide = random_upstream()(torch.empty(*y.shape[:3], 2 * y.shape[3], device=y.device, dtype=y.dtype))
        return wide[..., ::2]

    x, weight, bias = inputs(2, 5, 7, (5, 3), 4, seed=17)
    assert_match(*run_both(x, weight, bias, 2, 1, 1, upstream=upstream))  # no activation: dy reaches the kernels
    assert len(seen) == 1 and seen[0] == torch.empty(2, 7, 11, 7).to(memory_format=torch.channels_last).stride()


@pytest.mark.parametrize("C_in, C_out", [(17, 33), (33, 17)])
def test_channels_beyond_one_tile(C_in, C_out):
    """17 and 33 channels: two and three 16-wide blocks, the last one masked, on every GEMM axis."""
    x, weight, bias = inputs(1, C_in, C_out, (5, 3), 4, seed=18)
    assert_match(*run_both(x, weight, bias, 2, 1, 1, activation="relu"))


def test_forced_weight_gradient_splits():
    """R = B·H·W = 70 split in ranges of whole 16-wide interpreter blocks; the partials sum to dW."""
    x, weight, bias = inputs(2, 5, 7, (7, 5), 3, seed=19)
    if DEVICE == "cpu":
        geometry = ct.Geometry(2, 5, 7, (7, 5), (14, 10), (3, 3), (2, 2), (1, 1))
        assert [ct.wgrad_split(geometry, split) for split in (1, 3, 10)] == [(1, 80), (3, 32), (5, 16)]
    dws = {}
    for split in (1, 3, 10):
        kernel, ref = run_both(x, weight, bias, 2, 1, 1, kernel_kwargs={"wgrad_split": split})
        assert_match(kernel, ref)
        dws[split] = kernel[2]
    assert_match((dws[3], dws[10]), (dws[1], dws[1]), names=("dW split 3", "dW split 10"))


def test_dcgan_output_layer():
    """The generator's last layer: k4 s2 p1, 20 -> 3 channels (C_out far below a tile), tanh."""
    x, weight, bias = inputs(2, 20, 3, (4, 4), 4, seed=20)
    assert_match(*run_both(x, weight, bias, 2, 1, 0, activation="tanh"))


def test_empty_batch():
    x, weight, bias = inputs(0, 5, 7, (5, 3), 4, seed=21)
    kernel, ref = run_both(x, weight, bias, 2, 1, 1, activation="relu")
    assert kernel[0].shape == (0, 7, 11, 7)
    assert_match(kernel, ref)
    assert not kernel[2].any() and not kernel[3].any()


@pytest.mark.parametrize("activation", ["none", "relu", "leaky_relu", "tanh"])
def test_nan_input_propagates_through_the_epilogue(activation):
    """Divergence must show: every output the NaN reaches is NaN (relu must not turn it into 0)."""
    x, weight, bias = inputs(1, 5, 7, (5, 3), 3, seed=22)
    x[0, 2, 2, 1] = float("nan")
    with torch.no_grad():
        y = triton_conv_transpose2d(x, weight, bias, 2, 1, 0, activation=activation)
        expected = reference(x, weight, bias, 2, 1, 0, activation=activation)
    nan = torch.isnan(expected)
    assert nan[:, :, 3:6, 1:4].all() and nan.sum() == 7 * 3 * 3  # the 3x3 taps of input (2, 1), all channels
    assert torch.equal(torch.isnan(y), nan)
    assert_match((y.masked_fill(nan, 0),), (expected.masked_fill(nan, 0),))


# ----------------------------------------------------------------------------- errors and fallback

UNSUPPORTED = [  # (x shape, weight shape, stride, dilation, groups, what the message names)
    ((1, 4, 5, 3), (4, 3, 3, 3), 2, 1, 2, "groups=2"),
    ((1, 4, 5, 3), (4, 3, 3, 3), 2, 2, 1, "dilation=2"),
    ((1, 4, 5, 3), (4, 3, 3, 3), 3, 1, 1, r"stride=(3|\(3, 3\))"),
    ((1, 4, 5, 3), (4, 3, 2, 2), 2, 1, 1, r"kernel size \(2, 2\)"),
    ((1, 4, 5, 3), (4, 3, 7, 7), 2, 1, 1, r"kernel size \(7, 7\)"),
    ((1, 4, 5, 3), (4, 3, 3, 6), 1, 1, 1, r"kernel size \(3, 6\)"),
]


@pytest.mark.parametrize("x_shape, w_shape, stride, dilation, groups, cause", UNSUPPORTED,
                         ids=["groups2", "dilation2", "stride3", "kernel2", "kernel7", "kernel3x6"])
def test_unsupported_configuration_raises_or_falls_back(x_shape, w_shape, stride, dilation, groups, cause):
    """backend="triton" refuses, naming the cause; "auto" runs the reference and says "torch"."""
    g = torch.Generator().manual_seed(23)
    x, weight = (torch.randn(s, generator=g).to(DEVICE) for s in (x_shape, w_shape))
    args = (None, stride, 1, 0, groups, dilation)
    with pytest.raises(ConfigError, match=cause):
        triton_conv_transpose2d(x, weight, *args)
    with pytest.raises(ConfigError, match=cause):
        conv_transpose2d(x, weight, *args, backend="triton")
    with pytest.raises(ConfigError, match=cause):
        op_backend("triton", "cpu", w_shape, stride, 0, groups, dilation)
    for device in ("cpu", "cuda"):
        assert op_backend("auto", device, w_shape, stride, 0, groups, dilation) == "torch"
    y = conv_transpose2d(x, weight, *args, backend="auto", activation="relu")
    torch.testing.assert_close(y, F.relu(F.conv_transpose2d(x, weight, None, stride, 1, 0, groups, dilation)))


def test_supported_configuration_resolves_to_triton():
    w_shape = (5, 7, 4, 4)
    assert op_backend("auto", "cuda", w_shape, 2, 1) == "triton"
    assert op_backend("auto", "cuda", (5, 7, 3, 5), (1, 2), (0, 1)) == "triton"
    assert op_backend("auto", "cpu", w_shape, 2, 1) == "torch"
    assert op_backend("torch", "cuda", w_shape, 2, 1) == "torch"
    assert op_backend("triton", DEVICE, w_shape, 2, 1) == "triton"  # CUDA, or the interpreter on CPU


BAD_INPUTS = [  # (x shape, weight shape, bias length, keyword arguments, dtypes, message)
    ((5, 5, 3), (5, 7, 3, 3), 7, {}, None, r"expects x \(B, C_in, H, W\)"),
    ((1, 6, 5, 3), (5, 7, 3, 3), 7, {}, None, "C_in=6 channels but weight.shape"),
    ((1, 5, 5, 3), (5, 7, 3, 3), 6, {}, None, r"bias must have shape \(7,\)"),
    ((1, 5, 5, 3), (5, 7, 3, 3), 7, {"stride": 2, "output_padding": 2}, None, "output_padding .* smaller than"),
    ((1, 5, 5, 3), (5, 7, 3, 3), 7, {"output_padding": 1}, None, "output_padding .* smaller than"),
    ((1, 5, 5, 3), (5, 7, 3, 3), 7, {}, (torch.float32, torch.float64), "one dtype"),
    ((1, 5, 5, 3), (5, 7, 3, 3), 7, {}, (torch.float64, torch.float64), "one dtype"),
    ((1, 5, 5, 3), (5, 7, 3, 3), 7, {"padding": 5}, None, "output would be"),
    ((1, 5, 5, 3), (5, 7, 3, 3), 7, {"stride": 0}, None, "stride and dilation >= 1"),
    ((1, 5, 5, 3), (5, 7, 3, 3), 7, {"activation": "gelu"}, None, "unknown activation"),
    ((1, 5, 5, 3), (5, 7, 3, 3), 7, {"activation": "leaky_relu", "negative_slope": -0.1}, None, "negative_slope"),
    ((1, 5, 5, 3), (5, 7, 3, 3), 7, {"scale": torch.ones(7)}, None, "scale and shift together"),
]


@pytest.mark.parametrize("x_shape, w_shape, bias_len, kwargs, dtypes, message", BAD_INPUTS,
                         ids=["x3d", "c_in", "bias_len", "op_pad_s2", "op_pad_s1", "mixed_dtype", "fp64",
                              "empty_output", "stride0", "activation", "slope", "scale_alone"])
def test_bad_inputs_raise_config_error(x_shape, w_shape, bias_len, kwargs, dtypes, message):
    dtypes = dtypes or (torch.float32, torch.float32)
    x, weight = torch.randn(x_shape, dtype=dtypes[0]), torch.randn(w_shape, dtype=dtypes[1])
    kwargs = {k: v.to(DEVICE) if torch.is_tensor(v) else v for k, v in kwargs.items()}
    with pytest.raises(ConfigError, match=message):
        triton_conv_transpose2d(x.to(DEVICE), weight.to(DEVICE), torch.randn(bias_len).to(DEVICE), **kwargs)


# ----------------------------------------------------------------------------- the layer


def torch_layers(ours):
    """Plain nn.ConvTranspose2d (+ BatchNorm2d) loaded from `ours`' state dict, then the activation."""
    conv = nn.ConvTranspose2d(ours.in_channels, ours.out_channels, ours.kernel_size, ours.stride, ours.padding,
                              ours.output_padding).to(DEVICE)
    state = ours.state_dict()
    conv.load_state_dict({k: v for k, v in state.items() if not k.startswith("norm.")})
    layers = [conv]
    if ours.norm is not None:
        norm = nn.BatchNorm2d(ours.out_channels).to(DEVICE)
        norm.load_state_dict({k[len("norm."):]: v for k, v in state.items() if k.startswith("norm.")})
        layers.append(norm.train(ours.norm.training))
    act = {"none": nn.Identity(), "relu": nn.ReLU(), "leaky_relu": nn.LeakyReLU(ours.negative_slope),
           "tanh": nn.Tanh()}[ours.activation]
    return nn.Sequential(*layers, act)


def make_layer(activation="leaky_relu", norm=False, backend="triton", seed=24):
    torch.manual_seed(seed)
    return ConvTranspose2d(5, 7, 4, 2, 1, 1, norm=batchnorm(7) if norm else None, activation=activation,
                           negative_slope=0.2, backend=backend).to(DEVICE)


def layer_outputs(layer, x):
    """(y, dx, then the gradient of every parameter in order)."""
    x = x.detach().clone().requires_grad_()
    return output_and_grads(layer(x), [x, *layer.parameters()], random_upstream(25))


def test_layer_matches_torch_layers():
    layer = make_layer("leaky_relu")
    plain = torch_layers(layer)
    assert set(layer.state_dict()) == set(nn.ConvTranspose2d(5, 7, 4, 2, 1, 1).state_dict()) == {"weight", "bias"}
    assert layer.resolved_backend(DEVICE) == "triton"
    x = inputs(2, 5, 7, (5, 3), 4, seed=26)[0]
    assert_match(layer_outputs(layer, x), layer_outputs(plain, x), names=("y", "dx", "dW", "db"))


def test_layer_with_batchnorm_in_training():
    """Batch statistics: the kernel, then BatchNorm and the activation as torch ops; running stats move."""
    layer = make_layer("relu", norm=True)
    layer.train()
    plain = torch_layers(layer)
    x = inputs(2, 5, 7, (5, 3), 4, seed=27)[0]
    before = layer.norm.running_mean.clone()
    (y, dx, dw, db, *d_norm), (y_r, dx_r, dw_r, db_r, *d_norm_r) = layer_outputs(layer, x), layer_outputs(plain, x)
    assert_match((y, dx, dw, *d_norm), (y_r, dx_r, dw_r, *d_norm_r), names=("y", "dx", "dW", "d_gamma", "d_beta"))
    # The conv bias is removed with the batch mean: db is 0 exactly, and both sides return the
    # rounding noise of a sum over the same positions as dW's, far below dW's scale.
    for t in (db, db_r):
        assert t.abs().max() <= 1e-5 * dw_r.abs().max()
    assert not torch.equal(layer.norm.running_mean, before)
    assert_match((layer.norm.running_mean, layer.norm.running_var), (plain[1].running_mean, plain[1].running_var),
                 names=("running_mean", "running_var"))


def test_layer_folds_batchnorm_in_eval_without_gradients(monkeypatch):
    folds = []
    fold = ct.fold_batchnorm
    monkeypatch.setattr(ct, "fold_batchnorm", lambda norm: folds.append(norm) or fold(norm))
    layer = make_layer("tanh", norm=True).eval()
    plain = torch_layers(layer).eval()
    x = inputs(2, 5, 7, (5, 3), 4, seed=28)[0]
    with torch.no_grad():
        y, expected = layer(x), plain(x)
    assert len(folds) == 1  # one kernel with the BN folded into its epilogue
    assert_match((y,), (expected,))
    # With gradients (eval BN, e.g. fine-tuning a frozen-statistics layer): no folding, grads match.
    assert_match(layer_outputs(layer, x), layer_outputs(plain, x), names=("y", "dx", "dW", "db", "d_gamma", "d_beta"))
    assert len(folds) == 1


def test_layer_backends_and_options():
    assert make_layer(backend="torch").resolved_backend(DEVICE) == "torch"
    assert make_layer(backend="auto").resolved_backend("cpu") == "torch"
    assert make_layer(backend="auto").resolved_backend("cuda") == "triton"
    assert ConvTranspose2d(4, 3, 2, 2, backend="auto").resolved_backend("cuda") == "torch"  # kernel size 2
    with pytest.raises(ConfigError, match="kernel size"):
        ConvTranspose2d(4, 3, 2, 2, backend="triton").resolved_backend(DEVICE)
    with pytest.raises(ConfigError, match="backend"):
        ConvTranspose2d(4, 3, 3, backend="cudnn")
    with pytest.raises(ConfigError, match="activation"):
        ConvTranspose2d(4, 3, 3, activation="gelu")
    with pytest.raises(ConfigError, match="output_size"):
        make_layer()(torch.randn(1, 5, 5, 3, device=DEVICE), output_size=(11, 7))


def test_autocast_casts_like_the_reference():
    """Under autocast the kernel gets x and weight cast to the autocast dtype (bf16 values are not
    checked here: in the interpreter they are meaningless)."""
    x, weight, bias = inputs(1, 5, 7, (5, 3), 4, seed=29)
    with torch.autocast(DEVICE, dtype=torch.bfloat16), torch.no_grad():
        y = triton_conv_transpose2d(x, weight, bias, 2, 1, 1, activation="relu")
        expected = reference(x, weight, bias, 2, 1, 1, activation="relu")
    assert y.dtype == expected.dtype == torch.bfloat16 and y.shape == expected.shape


def test_autocast_leaves_fp64_alone_like_the_reference():
    """Autocast casts only fp32/fp16/bf16 tensors: fp64 stays fp64 (and the triton backend should
    refuse it, as it does without autocast), not silently run in bf16."""
    x, weight, bias = inputs(1, 5, 7, (5, 3), 4, seed=29, dtype=torch.float64)
    with torch.autocast(DEVICE, dtype=torch.bfloat16), torch.no_grad():
        expected = reference(x, weight, bias, 2, 1, 1)
        assert expected.dtype == torch.float64
        with pytest.raises(ConfigError, match="one dtype"):
            triton_conv_transpose2d(x, weight, bias, 2, 1, 1)


# ----------------------------------------------------------------------------- CUDA only

REALISTIC = (8, 64, 32, (16, 16))  # B, C_in, C_out, (H, W); k4 s2 p1
BENCHMARK_SHAPES = [(128, 512, 256, 8), (128, 128, 64, 32), (128, 64, 3, 32)]  # B, C_in, C_out, H = W


def half_vs_fp32_reference(B, C_in, C_out, hw, dtype, seed):
    """Kernel in fp16/bf16 against the fp32 reference on the same (upcast) values and dy."""
    x, weight, bias = inputs(B, C_in, C_out, hw, 4, seed=seed, dtype=dtype)

    def upstream(y):  # dy drawn once in `dtype`; the reference gets the same values upcast
        return random_upstream()(y.to(dtype)).to(y.dtype)

    kernel, ref = run_both(x, weight, bias, 2, 1, 0, activation="relu", upstream=upstream,
                           reference_dtype=torch.float32)
    for name, t in zip(NAMES, kernel):
        assert t.dtype == dtype, name
    assert_match(kernel, ref, tol=HALF_TOL[dtype])


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_cuda(dtype):
    B, C_in, C_out, hw = REALISTIC
    half_vs_fp32_reference(B, C_in, C_out, hw, dtype, seed=30)


@pytest.mark.cuda
@pytest.mark.parametrize("B, C_in, C_out, H", BENCHMARK_SHAPES,
                         ids=[f"B{b}-{i}to{o}-H{h}" for b, i, o, h in BENCHMARK_SHAPES])
def test_benchmark_shapes_on_cuda(B, C_in, C_out, H):
    half_vs_fp32_reference(B, C_in, C_out, (H, H), torch.bfloat16, seed=31)


@pytest.mark.cuda
def test_tf32_on_and_off_on_cuda():
    """allow_tf32=False is IEEE fp32; True is TF32 (looser, and visibly different); None follows cuDNN."""
    B, C_in, C_out, hw = REALISTIC
    x, weight, bias = inputs(B, C_in, C_out, hw, 4, seed=32)
    results = {}
    for allow in (False, True, None):
        results[allow], ref = run_both(x, weight, bias, 2, 1, 0, kernel_kwargs={"allow_tf32": allow})
    assert_match(results[False], ref, tol=FP32_TOL)
    assert_match(results[True], ref, tol=TF32_TOL)
    assert not torch.equal(results[True][0], results[False][0])
    for a, b in zip(results[None], results[False]):  # the fixture turned cudnn.allow_tf32 off
        assert torch.equal(a, b)


def test_tile_lists_follow_precision_and_the_gathered_channel_rows():
    """fp16/bf16 and TF32 on tensor cores, IEEE fp32 on FMA units; channel rows that are not whole
    16-byte vectors (x's C_in = 100 in bf16, the DCGAN's latent; dy's C_out = 3, its image) take the
    small-tile list, gathered one element at a time; the weight gradient keeps its list."""
    g = ct.Geometry(128, 100, 3, (1, 1), (4, 4), (4, 4), (1, 1), (0, 0))
    assert ct.dot_path("fwd", torch.bfloat16, "tf32", g) == "unaligned"  # 100 x 2 bytes
    assert ct.dot_path("fwd", torch.float32, "tf32", g) == "tf32"  # 100 x 4 bytes: whole vectors
    assert ct.dot_path("dgrad", torch.float32, "tf32", g) == "unaligned"  # C_out = 3
    assert ct.dot_path("wgrad", torch.bfloat16, "tf32", g) == "half"
    assert ct.dot_path("fwd", torch.float32, "ieee", g) == "ieee"
    assert all(k[2] <= 32 for k in ct.GEMM_CONFIGS["tf32"])  # fp32: the same 128-byte rows as bf16's 64
    assert all(k[0] * k[2] // (32 * k[3]) <= 16 for k in ct.GEMM_CONFIGS["unaligned"])  # gathered per thread
