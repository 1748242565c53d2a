"""Gumbel-softmax (concrete) VAE: n_latent categorical latents with n_classes each.

Jang, Gu & Poole 2017, "Categorical Reparameterization with Gumbel-Softmax"; Maddison,
Mnih & Teh 2017, "The Concrete Distribution". The encoder gives logits l (B, N, K) of
q(c|x) = prod_i Cat(c_i; softmax(l_i)); the prior is uniform, p(c_i = k) = 1/K; the
decoder maps the one-hot codes, flattened to (B, N·K), to p(x|c).

A categorical sample has no reparameterisation gradient, so training replaces it with
the Gumbel-softmax relaxation at temperature tau,

    y = softmax((l + g) / tau),   g = -log(-log u),  u ~ U(0, 1)   (B, N, K)

which tends to the Gumbel-max sample one_hot(argmax(l + g)) ~ q(c|x) as tau -> 0.
`hard=True` is the straight-through Gumbel-softmax (Jang et al. sec. 2.2): the forward
value is the one-hot argmax, the backward gradient that of the relaxed y.
The temperature follows the paper's schedule tau(t) = max(tau_min, tau0·exp(-r·t)) at
training step t (Jang et al. sec. 4: r in {1e-5, 1e-4}, tau_min = 0.5, over ~100k steps).
genbench runs are short, so the default r = 1e-3 reaches tau_min = 0.5 at step
ln 2 / r ≈ 693; set anneal_rate=1e-4 for the paper's rate.

Evaluation (step=None) scores the discrete model itself: c is a Gumbel-max one-hot
draw from q, so the reported ELBO and IWAE bounds are bounds on the log-likelihood of
p(c) p(x|c). The KL is analytic in both cases:
KL(q(c|x) || uniform) = sum_i sum_k q_ik log(q_ik · K).

Kernels: there is no Gaussian latent, so no reparameterisation + Gaussian KL op runs
here; the conv decoder's transposed convolutions run through
genbench.kernels.conv_transpose2d with the run's backend, and kernel_backends() reports
that op for arch="conv" (it is empty for the MLP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from genbench.models.autoencoder import make_likelihood
from genbench.models.base import Capabilities, GenerativeModel, register_model
from genbench.models.nets import (
    build_decoder,
    build_encoder,
    conv_transpose_backends,
    decoder_ops,
)


@dataclass(frozen=True)
class GumbelVAEOptions:
    arch: Literal["mlp", "conv"] = "mlp"  # encoder/decoder networks (see models/nets.py)
    n_latent: int = 20  # categorical latent variables (Jang et al. use 30 on MNIST; fewer for small data)
    n_classes: int = 10  # classes per variable (Jang et al.: 10)
    hidden: int = 512  # MLP width
    channels: int = 32  # conv: channels after the first downsampling (doubling, max 256)
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"  # p(x|c), see objectives/likelihood.py
    decoder_sigma: float | None = None  # gaussian: None = predicted per-dim sigma; a number fixes it
    tau0: float = 1.0  # initial Gumbel-softmax temperature (Jang et al. 2017)
    tau_min: float = 0.5  # temperature floor (Jang et al. 2017)
    anneal_rate: float = 1e-3  # r in tau = max(tau_min, tau0·exp(-r·step)); paper: 1e-5..1e-4
    hard: bool = False  # straight-through: one-hot forward, relaxed gradient backward (Jang et al. 2.2)

    def __post_init__(self):
        if self.n_latent < 1 or self.hidden < 1 or self.channels < 1:
            raise ValueError("n_latent, hidden and channels must be >= 1")
        if self.n_classes < 2:
            raise ValueError("n_classes must be >= 2 (one class carries no information)")
        if not 0 < self.tau_min <= self.tau0:
            raise ValueError("temperatures must satisfy 0 < tau_min <= tau0")
        if self.anneal_rate < 0:
            raise ValueError("anneal_rate must be >= 0 (0 keeps tau = tau0)")
        if self.decoder_sigma is not None and self.decoder_sigma <= 0:
            raise ValueError("decoder_sigma must be > 0, or None for a predicted sigma")


def gumbel_noise(shape: tuple[int, ...], generator: torch.Generator | None, device) -> torch.Tensor:
    """g = -log(-log u), u ~ U(0, 1): standard Gumbel noise."""
    u = torch.rand(shape, generator=generator, device=device)
    return -torch.log(-torch.log(u.clamp_min(torch.finfo(u.dtype).tiny)))


def gumbel_softmax(logits: torch.Tensor, noise: torch.Tensor, tau: float, hard: bool) -> torch.Tensor:
    """softmax((l + g) / tau) over the last axis; hard: its one-hot argmax forward,
    the relaxed sample's gradient backward (straight-through)."""
    soft = torch.softmax((logits + noise) / tau, dim=-1)
    if not hard:
        return soft
    return one_hot_argmax(soft) - soft.detach() + soft


def one_hot_argmax(scores: torch.Tensor) -> torch.Tensor:
    """One-hot of the argmax over the last axis, in scores' dtype."""
    return F.one_hot(scores.argmax(-1), scores.shape[-1]).to(scores.dtype)


def categorical_kl_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(Cat(softmax(l)) || uniform over K) = sum_k q_k (log q_k + log K), per variable:
    logits (..., K) -> (...)."""
    log_q = torch.log_softmax(logits, dim=-1)
    return (log_q.exp() * (log_q + math.log(logits.shape[-1]))).sum(-1)


@register_model("gumbel-vae", "gumbel-vae", GumbelVAEOptions, "gumbel-elbo",
                "Gumbel-softmax VAE with categorical latents (Jang et al. 2017), MLP or conv",
                kernel_ops=decoder_ops)
class GumbelVAE(GenerativeModel):
    capabilities = Capabilities(samples=True, likelihood=True, nll="iwae", elbo=True, reconstructs=True,
                                latent_space=True, representation="categorical-probs")

    def __init__(self, options: GumbelVAEOptions, data_info, backend: str = "auto", objective=None):
        super().__init__()
        shape = data_info.shape
        self.options = options
        self.n_latent, self.n_classes = options.n_latent, options.n_classes
        code = options.n_latent * options.n_classes
        self.likelihood = make_likelihood(options, data_info)
        self.encoder = build_encoder(options.arch, shape, code, options.hidden, options.channels)
        self.decoder = build_decoder(options.arch, shape, code, self.likelihood.out_channels(shape[0]),
                                     options.hidden, options.channels, backend)

    def kernel_backends(self) -> dict[str, str]:
        # categorical latents: the Gaussian reparam_kl op does not apply
        return conv_transpose_backends(self)

    def temperature(self, step: int) -> float:
        """tau(step) = max(tau_min, tau0·exp(-anneal_rate·step)) (Jang et al. 2017, sec. 4)."""
        o = self.options
        return max(o.tau_min, o.tau0 * math.exp(-o.anneal_rate * step))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).view(x.shape[0], self.n_latent, self.n_classes)  # (B, N, K)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(soft) one-hot codes (B, N, K) or (B, N·K) -> raw decoder output."""
        return self.decoder(codes.reshape(codes.shape[0], -1))

    def latent_sample(self, logits: torch.Tensor, generator, step: int | None) -> torch.Tensor:
        """Training (step given): the relaxed or straight-through sample at tau(step);
        evaluation (step=None): the Gumbel-max one-hot, an exact draw from q(c|x)."""
        noise = gumbel_noise(logits.shape, generator, logits.device)  # (B, N, K)
        if step is None:
            return one_hot_argmax(logits + noise)
        return gumbel_softmax(logits, noise, self.temperature(step), self.options.hard)

    def elbo_terms(self, x: torch.Tensor, generator: torch.Generator | None = None,
                   beta: float = 1.0, free_bits: float = 0.0, step: int | None = None):
        """Per-example (recon_nll, kl, kl_objective) in nats, one latent sample each.

        kl = sum_i KL(q(c_i|x) || uniform), analytic; kl_objective = beta · sum_i
        max(KL_i, free_bits) (free bits per categorical variable, Kingma et al. 2016).
        """
        logits = self.logits(x)  # (B, N, K)
        codes = self.latent_sample(logits, generator, step)  # (B, N, K)
        recon_nll = self.likelihood.nll(self.decode(codes), x)  # (B,)
        kl_i = categorical_kl_uniform(logits)  # (B, N)
        kl_objective = beta * kl_i.clamp_min(free_bits).sum(-1)  # (B,)
        return recon_nll, kl_i.sum(-1), kl_objective

    def importance_log_weights(self, x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """log p(x, c_j) - log q(c_j | x) for k Gumbel-max draws c_j ~ q(c|x): (k, B).

        log p(c) = -N log K (uniform prior); log q(c|x) = sum_i log softmax(l_i)[c_i].
        """
        logits = self.logits(x)  # (B, N, K)
        noise = gumbel_noise((k, *logits.shape), generator, logits.device)  # (k, B, N, K)
        classes = (logits + noise).argmax(-1)  # (k, B, N): Gumbel-max draws
        log_probs = torch.log_softmax(logits, -1).expand(k, *logits.shape)  # (k, B, N, K)
        log_q = log_probs.gather(-1, classes[..., None]).squeeze(-1).sum(-1)  # (k, B)
        codes = F.one_hot(classes, self.n_classes).to(logits.dtype)  # (k, B, N, K)
        log_prior = -self.n_latent * math.log(self.n_classes)
        target = x.expand(k, *x.shape).flatten(0, 1)
        log_lik = -self.likelihood.nll(self.decode(codes.flatten(0, 1)), target).view(k, -1)  # (k, B)
        return log_lik + log_prior - log_q

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """q(c|x) as probabilities (B, N, K)."""
        return torch.softmax(self.logits(x), dim=-1)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """The probabilities of q(c|x), flattened: (B, N·K)."""
        return self.encode_latent(x).flatten(1)

    def decode_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """(soft) one-hots (B, N, K) -> the decoder mean in the data range."""
        return self.likelihood.mean(self.decode(codes))

    def reconstruct_output(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder output for the most probable code, one_hot(argmax q(c|x))."""
        return self.decode(one_hot_argmax(self.logits(x)))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, draw: str = "mean") -> torch.Tensor:
        """c ~ uniform prior (one-hot), then the decoder mean or a draw from p(x|c)."""
        device = next(self.parameters()).device
        classes = torch.randint(self.n_classes, (n, self.n_latent), generator=generator, device=device)
        codes = F.one_hot(classes, self.n_classes).float()  # (n, N, K)
        return self.likelihood.decode(self.decode(codes), draw, generator)
