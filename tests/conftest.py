"""Test-wide setup.

Without CUDA, every Triton kernel runs in the interpreter (fp32, small shapes; see
docs/kernels.md, Tests). TRITON_INTERPRET is read when @triton.jit decorates a kernel and
one process cannot mix modes, so it is set here, before any test module imports
genbench.kernels. Importing torch first is fine: it does not import our kernels.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` are skipped without a CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def digits():
    """The embedded `digits` dataset, loaded once per session (read-only in tests)."""
    from genbench.data import load_dataset  # after TRITON_INTERPRET is set, above

    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_images(digits):
    """(train images, test images) of `digits`: (1438, 1, 16, 16), (359, 1, 16, 16)."""
    return digits.train.x, digits.test.x


@pytest.fixture
def ieee_fp32():
    """No TF32 in torch's CUDA matmuls and convolutions for the test, restored after.

    A plain save/restore, not monkeypatch.setattr: torch's cuBLAS flags are properties of a
    module object, and monkeypatch's undo (delattr where the attribute is not in the
    instance's __dict__) fails on recent torch, leaving the flags -- and, through the
    failed undo, other patched state such as TRITON_INTERPRET -- wrong for later tests.
    """
    flags = ((torch.backends.cudnn, "allow_tf32"), (torch.backends.cuda.matmul, "allow_tf32"))
    saved = [getattr(owner, name) for owner, name in flags]
    for owner, name in flags:
        setattr(owner, name, False)
    try:
        yield
    finally:
        for (owner, name), value in zip(flags, saved):
            setattr(owner, name, value)
