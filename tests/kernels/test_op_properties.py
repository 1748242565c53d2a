"""Properties every registered kernel op must have, over the calls it registers (KernelOp.examples).

Registering an op puts it under these tests with no edit here:
- the Triton backend matches the reference in its outputs and in the gradient of every
  differentiable input, for upstream gradients in every layout autograd can hand a backward:
  contiguous, expanded (stride 0: what `.sum()` gives), transposed, sliced with steps and
  channels-last;
- the float64 reference passes torch.autograd.gradcheck (the reference is the ground truth the
  kernels are held to, so its gradients are checked against finite differences);
- on CUDA, the same comparisons in fp16 and bf16.

Tolerances (per dtype, absolute and relative, on outputs and gradients):
- fp32: 2e-4 / 2e-4. The interpreter and the GPU's IEEE paths differ from the reference only
  in summation order; attention's online softmax and the GroupNorm statistics sum the most
  terms (up to ~300 here), so 2e-4 leaves a margin above the ~1e-5 seen, and a layout bug (wrong
  element read) gives O(1) errors.
- fp16 / bf16 (CUDA only): inputs rounded to the dtype on both sides, fp32 accumulation in the
  kernel against the reference's own half-precision ops: 2e-2 / 2e-2 for fp16, 6e-2 / 6e-2 for
  bf16 (8 mantissa bits: one ulp near 4 is 3e-2).
"""

from __future__ import annotations

import pytest
import torch

from genbench.kernels import OpExample
from genbench.registry import KERNELS

TOLERANCES = {torch.float32: (2e-4, 2e-4), torch.float16: (2e-2, 2e-2), torch.bfloat16: (6e-2, 6e-2)}
LAYOUTS = ("contiguous", "expanded", "transposed", "stepped", "channels_last")
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
pytestmark = pytest.mark.usefixtures("ieee_fp32")


def triton_ops() -> list[str]:
    import genbench.kernels  # noqa: F401  (registers the ops)

    return [name for name in KERNELS.names() if KERNELS.get(name).triton is not None]


def cases(dtype: torch.dtype) -> list[tuple[str, OpExample]]:
    generator = torch.Generator().manual_seed(0)
    return [(name, ex) for name in triton_ops() for ex in KERNELS.get(name).examples(dtype, DEVICE, generator)]


def case_id(case) -> str:
    return f"{case[0]}:{case[1].label}"


def upstream(shape: torch.Size, layout: str, dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor | None:
    """A gradient of `shape` with the layout's strides, or None where the layout does not apply."""
    def randn(*s):
        return torch.randn(*s, generator=generator).to(device=DEVICE, dtype=dtype)

    if layout == "contiguous":
        return randn(*shape)
    if layout == "expanded":  # what autograd passes back from out.sum(): one value, all strides 0
        return randn(()).expand(shape)
    if layout == "transposed":
        return randn(*reversed(shape)).permute(*reversed(range(len(shape)))) if len(shape) >= 2 else None
    if layout == "stepped":
        return randn(*shape[:-1], 2 * shape[-1])[..., ::2] if len(shape) >= 1 and shape[-1] > 0 else None
    if layout == "channels_last":
        return randn(*shape).contiguous(memory_format=torch.channels_last) if len(shape) == 4 else None
    raise ValueError(layout)


def outputs_of(result) -> tuple[torch.Tensor, ...]:
    return result if isinstance(result, tuple) else (result,)


def same_layout_copy(t: torch.Tensor) -> torch.Tensor:
    """A fresh leaf with t's values and t's strides (clone() makes a strided view contiguous)."""
    copy = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device)
    return copy.copy_(t.detach())


def run(op_name: str, example: OpExample, backend: str, grads: list[torch.Tensor | None] | None = None):
    """Outputs of one backend and, given upstream gradients, the input gradients (by name)."""
    kwargs = {k: same_layout_copy(v).requires_grad_(k in example.grad) if isinstance(v, torch.Tensor) else v
              for k, v in example.kwargs.items()}
    outputs = outputs_of(KERNELS.get(op_name).function(**kwargs, backend=backend))
    if grads is None:
        return outputs, {}
    pairs = [(o, g) for o, g in zip(outputs, grads) if g is not None]
    torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
    return outputs, {name: kwargs[name].grad for name in example.grad}


def assert_close(actual, expected, dtype, what):
    atol, rtol = TOLERANCES[dtype]
    if not expected.is_floating_point():
        assert torch.equal(actual, expected), what
        return
    torch.testing.assert_close(actual.float(), expected.float(), atol=atol, rtol=rtol, msg=lambda m: f"{what}: {m}")


def check_layout(op_name: str, example: OpExample, layout: str, dtype: torch.dtype) -> None:
    reference_out, _ = run(op_name, example, "torch")
    differentiable = [o.is_floating_point() and bool(example.grad) for o in reference_out]
    generator = torch.Generator().manual_seed(1)
    grads = [upstream(o.shape, layout, o.dtype, generator) if d else None for o, d in zip(reference_out, differentiable)]
    if example.grad and all(g is None for g in grads):
        pytest.skip(f"layout {layout} does not apply to outputs of shapes {[tuple(o.shape) for o in reference_out]}")
    expected, expected_grads = run(op_name, example, "torch", grads if example.grad else None)
    actual, actual_grads = run(op_name, example, "triton", grads if example.grad else None)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert_close(a.detach(), e.detach(), dtype, f"{op_name} [{example.label}] output {i}")
    for name in example.grad:
        assert_close(actual_grads[name], expected_grads[name], dtype,
                     f"{op_name} [{example.label}] d{name} with {layout} upstream gradients")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", cases(torch.float32), ids=case_id)
def test_triton_matches_reference_under_every_gradient_layout(case, layout):
    check_layout(*case, layout, torch.float32)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_half_precision_matches_reference_under_every_gradient_layout(dtype, layout):
    for op_name, example in cases(dtype):
        check_layout(op_name, example, layout, dtype)


@pytest.mark.parametrize("case", cases(torch.float64), ids=case_id)
def test_reference_gradients_pass_gradcheck(case):
    op_name, example = case
    if not example.grad:
        pytest.skip(f"{op_name} has no differentiable input")
    names = list(example.grad)
    fixed = {k: v for k, v in example.kwargs.items() if k not in names}
    inputs = tuple(example.kwargs[n].detach().clone().requires_grad_(True) for n in names)

    def reference(*tensors):
        return KERNELS.get(op_name).function(**fixed, **dict(zip(names, tensors)), backend="torch")

    assert torch.autograd.gradcheck(reference, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


def test_every_op_registers_examples_with_its_differentiable_inputs():
    """Each registered op gives at least one example, and its `grad` names are tensor arguments."""
    for name in KERNELS.names():
        examples = KERNELS.get(name).examples(torch.float32, DEVICE, torch.Generator().manual_seed(0))
        assert examples, name
        for ex in examples:
            assert set(ex.grad) <= {k for k, v in ex.kwargs.items() if isinstance(v, torch.Tensor)}, (name, ex.label)


def test_expanded_kl_gradient_regression():
    """Issue: reparam_kl's backward read dkl as contiguous; kl.sum() hands it a stride-0
    gradient, and the kernel read past its one element (gradients off by up to 1e18, or NaN)."""
    import genbench.kernels  # noqa: F401

    op = KERNELS.get("reparam_kl")
    grads = {}
    for backend in ("torch", "triton"):
        generator = torch.Generator().manual_seed(3)
        mu = torch.randn(64, 33, generator=generator).to(DEVICE).requires_grad_(True)
        logvar = torch.randn(64, 33, generator=generator).to(DEVICE).requires_grad_(True)
        eps = torch.randn(64, 33, generator=generator).to(DEVICE)
        z, kl = op.function(mu, logvar, eps=eps, backend=backend)
        (z.sum() + kl.sum()).backward()
        grads[backend] = (mu.grad, logvar.grad)
    for actual, expected in zip(grads["triton"], grads["torch"]):
        torch.testing.assert_close(actual, expected, atol=2e-5, rtol=2e-5)
