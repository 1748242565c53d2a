"""Hierarchical VAE with ladder inference (Sønderby et al. 2016, "Ladder Variational
Autoencoders"): L >= 2 Gaussian latent layers z_1 (bottom) .. z_L (top), MLP networks.

Generative model (top-down):
    p(z_L) = N(0, I),  p(z_i | z_{i+1}) = N(mu_p_i, var_p_i) from an MLP on z_{i+1},
    p(x | z_1) from an MLP decoder (Bernoulli or Gaussian, see objectives/likelihood.py).
Inference: a deterministic bottom-up path d_1 = MLP(x), d_i = MLP(d_{i-1}) gives
(mu_hat_i, var_hat_i) per layer; the posterior is then formed top-down, sharing the
generative path (Sønderby et al. eqs. 17-19):
    q(z_L | x) = N(mu_hat_L, var_hat_L),
    q(z_i | z_{i+1}, x) = N(mu_q, var_q),  var_q = 1 / (1/var_hat_i + 1/var_p_i),
                                           mu_q = (mu_hat_i/var_hat_i + mu_p_i/var_p_i) · var_q,
the precision-weighted combination of the bottom-up estimate and the top-down prior.

Every layer's reparameterisation and KL run through the fused op
genbench.kernels.reparameterize_kl, which knows only KL(N(mu, var) || N(0, I)). A lower
layer's prior is N(mu_p, var_p), so the op gets the posterior in the prior's standardised
coordinates (`standardise`), mu' = (mu_q - mu_p)/sigma_p, logvar' = logvar_q - logvar_p:
  - KL: per dimension
        KL(N(mu_q, var_q) || N(mu_p, var_p)) = ½[var_q/var_p + (mu_q - mu_p)²/var_p - 1 - log(var_q/var_p)]
                                            = ½[exp(logvar') + mu'² - 1 - logvar']
                                            = KL(N(mu', var') || N(0, 1)),
    exactly: the KL is invariant under the affine map u -> (u - mu_p)/sigma_p applied to
    both distributions. So beta and per-dimension free bits apply to the true KL(q || p).
  - sample: the op returns z' = mu' + sigma'·eps, and z = mu_p + sigma_p·z'
    = mu_q + sigma_q·eps is a reparameterised draw from q with the same eps.
  - densities (for IWAE): log p(z|·) - log q(z|·) = sum_d [log N(z'; 0, 1) - log N(eps; 0, 1)
    + ½ logvar'] (the Jacobians 1/sigma_p cancel). logvar' uses the op's clamp
    (baselines/reparam_kl.py), so the densities are those of the q the op sampled from.
The top layer's prior is N(0, I) already and goes to the op directly.

Simplifications against the paper: no batch normalisation, ReLU instead of leaky ReLU,
log-variances instead of softplus variances; KL warm-up, which the paper relies on, is
the objective's business (the "elbo" objective's options).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import nn

from genbench.baselines.reparam_kl import LOGVAR_LIMIT
from genbench.kernels import reparameterize_kl, resolve_backend
from genbench.models.autoencoder import make_likelihood
from genbench.models.base import Capabilities, GenerativeModel, register_model
from genbench.models.nets import build_decoder, mlp
from genbench.models.vae import standard_normal_log_prob


@dataclass(frozen=True)
class HVAEOptions:
    latent_dims: tuple[int, ...] = (32, 16)  # sizes of z_1..z_L, bottom -> top (paper, MNIST: 64,32,16,8,4)
    hidden_dims: tuple[int, ...] = (512, 256)  # width of d_i and of p(z_i|z_{i+1})'s MLP (paper: 512..32)
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"  # p(x|z_1), see objectives/likelihood.py
    decoder_sigma: float | None = None  # gaussian: None = predicted per-dim sigma; a number fixes it

    def __post_init__(self):
        if len(self.latent_dims) < 2:
            raise ValueError("latent_dims needs at least two layers (bottom -> top); use model 'vae' for one")
        if len(self.hidden_dims) != len(self.latent_dims):
            raise ValueError("hidden_dims needs one width per latent layer, like latent_dims")
        if min(self.latent_dims) < 1 or min(self.hidden_dims) < 1:
            raise ValueError("latent_dims and hidden_dims must be >= 1")
        if self.decoder_sigma is not None and self.decoder_sigma <= 0:
            raise ValueError("decoder_sigma must be > 0, or None for a predicted sigma")


class LayerDraw(NamedTuple):
    """One latent layer of a top-down pass; the op's inputs and outputs are kept."""

    z: torch.Tensor  # (N, d) the sample of z_i
    z_std: torch.Tensor  # (N, d) z' = (z - mu_p)/sigma_p, the op's output
    eps: torch.Tensor  # (N, d) the standard-normal noise
    mu_std: torch.Tensor  # (N, d) mu' = (mu_q - mu_p)/sigma_p
    logvar_std: torch.Tensor  # (N, d) logvar' = logvar_q - logvar_p
    kl: torch.Tensor  # (N,) the op's KL: beta · sum_d max(KL_d, free_bits)


def precision_weighted(mu_hat, logvar_hat, mu_p, logvar_p) -> tuple[torch.Tensor, torch.Tensor]:
    """var_q = 1/(1/var_hat + 1/var_p), mu_q = (mu_hat/var_hat + mu_p/var_p)·var_q
    (Sønderby et al. 2016, eqs. 17-18), in log space: logvar_q = -logaddexp(-logvar_hat,
    -logvar_p) and mu_q = w·mu_hat + (1 - w)·mu_p with w = var_p/(var_hat + var_p)."""
    w = torch.sigmoid(logvar_p - logvar_hat)  # (N, d)
    return w * mu_hat + (1 - w) * mu_p, -torch.logaddexp(-logvar_hat, -logvar_p)


def standardise(mu_q, logvar_q, mu_p, logvar_p) -> tuple[torch.Tensor, torch.Tensor]:
    """q in the prior's standard coordinates: ((mu_q - mu_p)/sigma_p, logvar_q - logvar_p)."""
    return (mu_q - mu_p) * torch.exp(-0.5 * logvar_p), logvar_q - logvar_p


def log_prior_minus_log_q(draw: LayerDraw) -> torch.Tensor:
    """log p(z_i | z_{i+1}) - log q(z_i | ·) for one layer's draw, (N,) (module docstring)."""
    logvar = draw.logvar_std.clamp(-LOGVAR_LIMIT, LOGVAR_LIMIT)
    return (standard_normal_log_prob(draw.z_std) - standard_normal_log_prob(draw.eps) + 0.5 * logvar).sum(-1)


def expand_samples(t: torch.Tensor, k: int) -> torch.Tensor:
    """(B, ...) -> (k·B, ...), sample-major."""
    return t.expand(k, *t.shape).flatten(0, 1)


@register_model("hvae", "vae", HVAEOptions, "elbo",
                "hierarchical VAE with ladder inference (Sønderby et al. 2016), MLP",
                kernel_ops=("reparam_kl",))
class HVAE(GenerativeModel):
    capabilities = Capabilities(samples=True, likelihood=True, nll="iwae", elbo=True, reconstructs=True,
                                latent_space=True, representation="gaussian-mean")

    def __init__(self, options: HVAEOptions, data_info, backend: str = "auto", objective=None):
        super().__init__()
        shape, dims, widths = data_info.shape, options.latent_dims, options.hidden_dims
        self.latent_dims = dims
        self.backend = backend
        self.likelihood = make_likelihood(options, data_info)
        inputs = [math.prod(shape), *widths[:-1]]
        self.up = nn.ModuleList(nn.Sequential(mlp([n, h, h]), nn.ReLU()) for n, h in zip(inputs, widths))  # d_i
        self.up_heads = nn.ModuleList(nn.Linear(h, 2 * d) for h, d in zip(widths, dims))  # (mu_hat, logvar_hat)
        self.down = nn.ModuleList(mlp([dims[i + 1], widths[i], widths[i], 2 * dims[i]])  # p(z_i | z_{i+1})
                                  for i in range(len(dims) - 1))
        self.decoder = build_decoder("mlp", shape, dims[0], self.likelihood.out_channels(shape[0]), widths[0], 1,
                                     backend)  # MLP: no transposed convolution, no conv_transpose2d

    def kernel_backends(self) -> dict[str, str]:
        device = next(self.parameters()).device
        return {"reparam_kl": resolve_backend("reparam_kl", self.backend, device)}

    # --- the two passes -------------------------------------------------------------

    def bottom_up(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """x -> [(mu_hat_i, logvar_hat_i)] for i = 1..L (bottom -> top), each (B, d_i)."""
        h, hats = x.flatten(1), []
        for block, head in zip(self.up, self.up_heads):
            h = block(h)  # (B, hidden_i)
            hats.append(head(h).chunk(2, dim=1))
        return hats

    def prior(self, i: int, z_above: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu_p, logvar_p) of p(z_i | z_{i+1}), i 0-based from the bottom: (N, d_i) each."""
        return self.down[i](z_above).chunk(2, dim=1)

    def top_down(self, hats, eps: list[torch.Tensor], beta: float = 1.0, free_bits: float = 0.0) -> list[LayerDraw]:
        """Sample z_L, ..., z_1 from q top-down through the op; returns bottom -> top."""
        draws: list[LayerDraw] = []
        for i in reversed(range(len(hats))):
            if draws:  # q(z_i | z_{i+1}, x), standardised against p(z_i | z_{i+1})
                mu_p, logvar_p = self.prior(i, draws[-1].z)
                mu_s, logvar_s = standardise(*precision_weighted(*hats[i], mu_p, logvar_p), mu_p, logvar_p)
            else:  # q(z_L | x) against N(0, I): standard already
                (mu_s, logvar_s), mu_p, logvar_p = hats[i], None, None
            z_std, kl = reparameterize_kl(mu_s, logvar_s, eps[i], beta=beta, free_bits=free_bits, backend=self.backend)
            z = z_std if mu_p is None else mu_p + torch.exp(0.5 * logvar_p) * z_std  # (N, d_i)
            draws.append(LayerDraw(z, z_std, eps[i], mu_s, logvar_s, kl))
        return draws[::-1]

    def draw_eps(self, n: int, generator: torch.Generator | None, device) -> list[torch.Tensor]:
        """Standard-normal noise per layer, drawn top layer first: [(n, d_i)] bottom -> top."""
        eps = {i: torch.randn(n, self.latent_dims[i], generator=generator, device=device)
               for i in reversed(range(len(self.latent_dims)))}
        return [eps[i] for i in range(len(self.latent_dims))]

    def posterior_draws(self, x, generator, beta: float = 1.0, free_bits: float = 0.0) -> list[LayerDraw]:
        return self.top_down(self.bottom_up(x), self.draw_eps(x.shape[0], generator, x.device), beta, free_bits)

    def mean_pass(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Posterior means top-down, each layer's prior fed the mean of the layer above
        (not a sample): [mu_q_i] bottom -> top, (B, d_i) each."""
        hats = self.bottom_up(x)
        means = [hats[-1][0]]
        for i in reversed(range(len(hats) - 1)):
            means.append(precision_weighted(*hats[i], *self.prior(i, means[-1]))[0])
        return means[::-1]

    # --- capabilities (see models/base.py) ------------------------------------------

    def elbo_terms(self, x: torch.Tensor, generator: torch.Generator | None = None,
                   beta: float = 1.0, free_bits: float = 0.0):
        """Per-example (recon_nll, kl, kl_objective) in nats, one top-down sample each.

        kl = sum_i KL(q(z_i|z_{i+1}, x) || p(z_i|z_{i+1})) at the sampled z_{i+1} (the
        single-sample estimate of the hierarchical KL, analytic per layer); kl_objective
        is the op's beta-weighted, free-bits version, summed over layers.
        """
        draws = self.posterior_draws(x, generator, beta, free_bits)
        recon_nll = self.likelihood.nll(self.decoder(draws[0].z), x)  # (B,)
        kl_objective = torch.stack([d.kl for d in draws]).sum(0)  # (B,)
        if beta == 1.0 and free_bits == 0.0:
            return recon_nll, kl_objective, kl_objective
        with torch.no_grad():
            kl = sum(reparameterize_kl(d.mu_std, d.logvar_std, d.eps, backend=self.backend)[1] for d in draws)
        return recon_nll, kl, kl_objective

    def layer_kls(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-layer KL(q(z_i|·) || p(z_i|·)), (L, B) bottom -> top; with the same
        generator state its sum over layers is elbo_terms' kl."""
        return torch.stack([d.kl for d in self.posterior_draws(x, generator)])

    def importance_log_weights(self, x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """log p(x, z_1..z_L) - log q(z_1..z_L | x) for k top-down draws: (k, B), nats.

        = log p(x|z_1) + sum_i [log p(z_i|z_{i+1}) - log q(z_i|z_{i+1}, x)], p(z_L) = N(0, I).
        """
        hats = [(expand_samples(m, k), expand_samples(v, k)) for m, v in self.bottom_up(x)]  # (k·B, d_i)
        draws = self.top_down(hats, self.draw_eps(k * x.shape[0], generator, x.device))
        log_lik = -self.likelihood.nll(self.decoder(draws[0].z), expand_samples(x, k))  # (k·B,)
        log_w = log_lik + torch.stack([log_prior_minus_log_q(d) for d in draws]).sum(0)
        return log_w.view(k, x.shape[0])

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior means of all layers from the deterministic mean pass (`mean_pass`:
        top-down with means in place of samples), bottom -> top concatenated: (B, sum_i d_i).

        The top block is E_q[z_L|x] exactly; a lower block is the mean of q(z_i | z_{i+1}, x)
        at z_{i+1} = the mean above, which approximates E_q[z_i|x] (exact when q(z_i|·)'s
        mean is affine in z_{i+1}).
        """
        return torch.cat(self.mean_pass(x), dim=1)

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """The top layer's posterior mean mu_hat_L: (B, d_L)."""
        return self.bottom_up(x)[-1][0]

    def decode_latent(self, z_top: torch.Tensor) -> torch.Tensor:
        """z_L -> prior means down to z_1 -> the decoder mean in the data range."""
        return self.likelihood.mean(self.decoder(self.prior_means(z_top)))

    def prior_means(self, z_top: torch.Tensor) -> torch.Tensor:
        """z_1 = mu_p_1(... mu_p_{L-1}(z_L)): the top-down path through prior means."""
        z = z_top
        for i in reversed(range(len(self.latent_dims) - 1)):
            z = self.prior(i, z)[0]
        return z

    def reconstruct_output(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder output at z_1 = the mean pass's bottom mean."""
        return self.decoder(self.mean_pass(x)[0])

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, draw: str = "mean") -> torch.Tensor:
        """Ancestral: z_L ~ N(0, I), z_i ~ p(z_i | z_{i+1}), then the decoder mean or x ~ p(x|z_1)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dims[-1], generator=generator, device=device)
        for i in reversed(range(len(self.latent_dims) - 1)):
            mu_p, logvar_p = self.prior(i, z)
            z = mu_p + torch.exp(0.5 * logvar_p) * torch.randn(mu_p.shape, generator=generator, device=device)
        return self.likelihood.decode(self.decoder(z), draw, generator)
