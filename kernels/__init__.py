"""genbench's kernel ops (installed as `genbench.kernels`), with explicit backends.

The dispatch machinery (KernelOp, backends, resolve_backend, dispatch) is in
kernels/dispatch.py; each op module registers its KernelOp when imported, below.
"""

from genbench.kernels.attention import attention  # (each import registers its op)
from genbench.kernels.conv_transpose import conv_transpose2d
from genbench.kernels.dispatch import BACKENDS, KernelOp, OpExample, dispatch, example_randn, resolve_backend
from genbench.kernels.groupnorm_silu import group_norm_silu
from genbench.kernels.reparam_kl import reparameterize_kl
from genbench.kernels.vq import vq_nearest

__all__ = ["BACKENDS", "KernelOp", "OpExample", "attention", "conv_transpose2d", "dispatch", "example_randn",
           "group_norm_silu", "reparameterize_kl", "resolve_backend", "vq_nearest"]
