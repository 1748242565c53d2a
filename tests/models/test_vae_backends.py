"""A VAE training step is the same computation whichever kernel backend runs it.

backend="triton" runs the fused kernel (the interpreter on CPU); backend="torch" the
reference. Same weights, batch and noise: the loss matches to fp32 rounding (rtol 1e-5,
the KL's summation order differs) and every parameter gradient to rtol 1e-4, atol 1e-6
(the differences propagate through the decoder and encoder).
"""

from __future__ import annotations

import pytest
import torch

from genbench.data import load_dataset
from genbench.models.vae import VAE, VAEOptions
from genbench.objectives.autoencoding import ElboOptions, elbo_loss


@pytest.mark.parametrize("arch, likelihood", [("mlp", "bernoulli"), ("conv", "gaussian")])
@pytest.mark.parametrize("objective", [ElboOptions(), ElboOptions(beta=4.0, free_bits=0.1)])
def test_training_step_matches_between_backends(arch, likelihood, objective):
    data = load_dataset("digits")
    x = data.train.x[:8]
    results = {}
    for backend in ("triton", "torch"):
        torch.manual_seed(0)
        model = VAE(VAEOptions(arch=arch, likelihood=likelihood, hidden=64, channels=8), data.info, backend)
        conv_ops = {"conv_transpose2d": backend} if arch == "conv" else {}
        assert model.kernel_backends() == {"reparam_kl": backend, **conv_ops}
        terms = elbo_loss(model, x, objective, torch.Generator().manual_seed(1))
        terms["loss"].backward()
        results[backend] = (terms, {n: p.grad.clone() for n, p in model.named_parameters()})
    (t_terms, t_grads), (r_terms, r_grads) = results["triton"], results["torch"]
    for key in ("loss", "kl", "recon_nll"):
        torch.testing.assert_close(t_terms[key], r_terms[key], rtol=1e-5, atol=1e-5)
    for name in r_grads:
        torch.testing.assert_close(t_grads[name], r_grads[name], rtol=1e-4, atol=1e-6, msg=name)
