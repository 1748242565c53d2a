"""VQ-VAE (van den Oord et al. 2017, "Neural Discrete Representation Learning").

The encoder maps x to M vectors z_e (B, M, D): a conv grid (16x16 -> 4x4, 32x32 -> 8x8;
M = h*w positions in row-major order) or, for arch="mlp", M = n_positions vectors. Each
vector is replaced by its nearest code in a codebook e (K, D),

    k(z) = argmin_j ||z - e_j||^2            (the kernel op genbench.kernels.vq_nearest)
    z_q  = z_e + sg[e_k(z_e) - z_e]          (straight-through: d loss/d z_e = d loss/d z_q)

and the decoder models p(x | z_q) (its transposed convolutions: genbench.kernels.conv_transpose2d,
with the run's backend, like vq_nearest). The training terms per example (summed over positions
and dimensions) are the reconstruction NLL, the codebook loss ||sg[z_e] - e||^2 and the
commitment loss ||z_e - sg[e]||^2; the objective (genbench/objectives/vqvae.py) weighs them.

Options from later work, each named where it is defined:
- ema: the codebook follows exponential moving averages of its assigned encoder outputs
  instead of the codebook loss (van den Oord et al. 2017, appendix A.1; Razavi et al.
  2019), with Laplace-smoothed cluster sizes as in Sonnet's VectorQuantizerEMA;
- revive_after: a code unused for that many training steps is re-initialised to a
  randomly chosen encoder output of the current batch (dead-code revival, as in
  Dhariwal et al. 2020, "Jukebox", and Zeghidour et al. 2021, "SoundStream").

Likelihood: during training the prior over codes is uniform and q(k|x) is a deterministic
one-hot, so KL(q || p) = log K per position and -log p(x) <= -log p(x | z_q(x)) + M log K,
which the paper states and `variational_bound_nll` reports. Samples decode codes drawn from
the prior: with prior="uniform" they are poor by design (reconstructions are the model's
strength); prior="pixelcnn" fits a gated PixelCNN to the training set's code grids after
training (the paper's §3.2; `prepare_sampling`), samples codes from it in raster order, and
the bound's KL term becomes that prior's NLL of the codes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from genbench.errors import ConfigError
from genbench.kernels import resolve_backend, vq_nearest
from genbench.kernels.conv_transpose import ConvTranspose2d
from genbench.models.autoencoder import make_likelihood
from genbench.models.base import Capabilities, GenerativeModel, register_model
from genbench.models.pixelcnn import CodePixelCNN
from genbench.models.nets import conv_transpose_backends, decoder_ops, mlp

DOWNSAMPLING = 4  # the conv encoder's two stride-2 convolutions


@dataclass(frozen=True)
class VQVAEOptions:
    arch: Literal["conv", "mlp"] = "conv"  # conv: strided convs to a grid of codes; mlp: n_positions codes
    codebook_size: int = 128  # K, codes in the codebook
    code_dim: int = 32  # D, size of each code vector
    channels: int = 64  # conv: channels of the strided convs and residual blocks
    res_blocks: int = 2  # conv: residual blocks (ReLU, 3x3 conv, ReLU, 1x1 conv) each side
    hidden: int = 512  # mlp: width of the encoder and decoder MLPs
    n_positions: int | None = None  # mlp: code vectors per example (None = 16); conv: set by the grid
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"  # p(x|z), see objectives/likelihood.py
    decoder_sigma: float | None = None  # gaussian: None = predicted per-dim sigma; a number fixes it
    ema: bool = False  # EMA codebook updates (van den Oord et al. 2017 app. A.1; Razavi et al. 2019)
    ema_decay: float = 0.99  # gamma of the moving averages (the paper's value)
    ema_epsilon: float = 1e-5  # Laplace smoothing of the EMA cluster sizes
    revive_after: int = 100  # steps a code may go unused before it is revived; 0 = never
    # Prior over codes for sampling and the bound: "uniform" (the paper's training-time prior),
    # or "pixelcnn": a gated PixelCNN over the code grid fitted after training on the codes of
    # the training set (van den Oord et al. 2017, §3.2; models/pixelcnn.py CodePixelCNN)
    prior: Literal["uniform", "pixelcnn"] = "uniform"
    prior_steps: int = 2000  # pixelcnn: Adam steps of the prior fit
    prior_batch: int = 64  # pixelcnn: examples' code grids per step
    prior_lr: float = 1e-3  # pixelcnn: Adam learning rate
    prior_hidden: int = 64  # pixelcnn: channels of the gated stacks
    prior_layers: int = 6  # pixelcnn: gated layers

    def __post_init__(self):
        for name in ("codebook_size", "code_dim", "channels", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.res_blocks < 0 or self.revive_after < 0:
            raise ValueError("res_blocks and revive_after must be >= 0 (revive_after=0 turns revival off)")
        if self.n_positions is not None and self.n_positions < 1:
            raise ValueError(f"n_positions must be >= 1; got {self.n_positions}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1); got {self.ema_decay}")
        if self.ema_epsilon <= 0:
            raise ValueError(f"ema_epsilon must be > 0; got {self.ema_epsilon}")
        if self.decoder_sigma is not None and self.decoder_sigma <= 0:
            raise ValueError("decoder_sigma must be > 0, or None for a predicted sigma")
        for name in ("prior_steps", "prior_batch", "prior_hidden", "prior_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.prior_lr <= 0:
            raise ValueError(f"prior_lr must be > 0; got {self.prior_lr}")
        self.check_combinations()

    def check_combinations(self) -> None:
        if self.n_positions is not None and self.arch == "conv":
            raise ConfigError("vq-vae: n_positions is for arch='mlp'; with arch='conv' the number of "
                              "codes is the encoder's grid (H/4 x W/4). Drop n_positions or use arch='mlp'.")
        if self.decoder_sigma is not None and self.likelihood != "gaussian":
            raise ConfigError("vq-vae: decoder_sigma applies to likelihood='gaussian' only; drop it, "
                              "or set likelihood='gaussian'.")

    @property
    def mlp_positions(self) -> int:
        return 16 if self.n_positions is None else self.n_positions


# ----------------------------------------------------------------------------- networks


class ResidualBlock(nn.Module):
    """x + conv1x1(relu(conv3x3(relu(x)))), the paper's residual block."""

    def __init__(self, channels: int):
        super().__init__()
        inner = max(1, channels // 2)
        self.net = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, inner, 3, padding=1),
                                 nn.ReLU(), nn.Conv2d(inner, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


def conv_grid(shape: tuple[int, ...]) -> tuple[int, int]:
    """The encoder's grid (H/4, W/4) for images (C, H, W), or ConfigError."""
    if len(shape) != 3:
        raise ConfigError(f"vq-vae arch='conv' needs images (C, H, W); this dataset's examples have "
                          f"shape {shape}. Use arch='mlp' for 2-D points.")
    _, h, w = shape
    if h % DOWNSAMPLING or w % DOWNSAMPLING:
        raise ConfigError(f"vq-vae arch='conv' halves the image twice, so its sides must be multiples of "
                          f"{DOWNSAMPLING}; got {h}x{w}. Resize the dataset (e.g. ?size=32) or use arch='mlp'.")
    return h // DOWNSAMPLING, w // DOWNSAMPLING


class ConvVQEncoder(nn.Module):
    """x (B, C, H, W) -> z_e (B, D, H/4, W/4): two stride-2 4x4 convs, a 3x3 conv,
    residual blocks, a 1x1 conv to D (the paper's encoder, narrower)."""

    def __init__(self, shape: tuple[int, ...], code_dim: int, channels: int, res_blocks: int):
        super().__init__()
        self.grid = conv_grid(shape)
        half = max(1, channels // 2)
        self.net = nn.Sequential(
            nn.Conv2d(shape[0], half, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(half, channels, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            *[ResidualBlock(channels) for _ in range(res_blocks)], nn.ReLU(),
            nn.Conv2d(channels, code_dim, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, D, h, w)


class ConvVQDecoder(nn.Module):
    """z_q (B, D, h, w) -> (B, out_channels, 4h, 4w): the encoder mirrored with
    stride-2 4x4 transposed convs (genbench.kernels.conv_transpose2d with `backend`, the
    first with its ReLU fused in)."""

    def __init__(self, code_dim: int, out_channels: int, channels: int, res_blocks: int, backend: str = "auto"):
        super().__init__()
        half = max(1, channels // 2)
        self.net = nn.Sequential(
            nn.Conv2d(code_dim, channels, 3, padding=1),
            *[ResidualBlock(channels) for _ in range(res_blocks)], nn.ReLU(),
            ConvTranspose2d(channels, half, 4, stride=2, padding=1, activation="relu", backend=backend),
            ConvTranspose2d(half, out_channels, 4, stride=2, padding=1, backend=backend),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)  # (B, out_channels, H, W)


class MLPVQEncoder(nn.Module):
    """x (B, *shape) -> z_e (B, M, D) through an MLP."""

    def __init__(self, shape: tuple[int, ...], positions: int, code_dim: int, hidden: int):
        super().__init__()
        self.latent = (positions, code_dim)
        self.net = mlp([math.prod(shape), hidden, hidden, positions * code_dim])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).view(x.shape[0], *self.latent)  # (B, M, D)


class MLPVQDecoder(nn.Module):
    """z_q (B, M, D) -> (B, out_channels, *spatial) through an MLP."""

    def __init__(self, shape: tuple[int, ...], positions: int, code_dim: int, out_channels: int, hidden: int):
        super().__init__()
        self.out_shape = (out_channels, *shape[1:])
        self.net = mlp([positions * code_dim, hidden, hidden, math.prod(self.out_shape)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.flatten(1)).view(z.shape[0], *self.out_shape)


def build_vq_nets(options: VQVAEOptions, shape: tuple[int, ...], out_channels: int, backend: str = "auto"):
    """(encoder, decoder, latent_shape): latent_shape is (D, h, w) for conv, (M, D) for mlp.
    backend: the kernel backend of the conv decoder's transposed convolutions."""
    d = options.code_dim
    if options.arch == "mlp":
        m = options.mlp_positions
        return (MLPVQEncoder(shape, m, d, options.hidden),
                MLPVQDecoder(shape, m, d, out_channels, options.hidden), (m, d))
    encoder = ConvVQEncoder(shape, d, options.channels, options.res_blocks)
    decoder = ConvVQDecoder(d, out_channels, options.channels, options.res_blocks, backend)
    return encoder, decoder, (d, *encoder.grid)


def to_vectors(z: torch.Tensor) -> torch.Tensor:
    """Latent (B, D, h, w) or (B, M, D) -> vectors (B, M, D), positions in row-major order."""
    return z.flatten(2).transpose(1, 2) if z.ndim == 4 else z


def from_vectors(v: torch.Tensor, latent_shape: tuple[int, ...]) -> torch.Tensor:
    """Vectors (B, M, D) -> the decoder's latent layout (B, *latent_shape)."""
    return v.transpose(1, 2).reshape(v.shape[0], *latent_shape) if len(latent_shape) == 3 else v


# ----------------------------------------------------------------------------- codebook


@dataclass
class VQTerms:
    """Per-example training terms (B,) in nats / squared distance, and batch code usage."""

    recon_nll: torch.Tensor  # -log p(x | z_q), (B,)
    codebook_loss: torch.Tensor  # ||sg[z_e] - e||^2 summed over positions and dims, (B,)
    commitment_loss: torch.Tensor  # ||z_e - sg[e]||^2, same value, gradient to the encoder, (B,)
    perplexity: torch.Tensor  # exp(H(mean one-hot)) over the batch's B*M assignments, ()
    usage: torch.Tensor  # fraction of the K codes used in the batch, ()
    revived: int  # codes revived at this step


def indices_to_counts(indices: torch.Tensor, k: int) -> torch.Tensor:
    """Code indices (any shape) -> assignments per code (K,)."""
    return torch.bincount(indices.flatten(), minlength=k)


def counts_to_perplexity(counts: torch.Tensor) -> torch.Tensor:
    """exp(H(p)), p = counts / sum(counts), natural log: 1 for one code, K for uniform use."""
    p = counts.double() / counts.sum()
    return torch.exp(-torch.special.xlogy(p, p).sum()).float()


def usage_stats(indices: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Code indices (any shape) -> (perplexity, fraction of the K codes used)."""
    counts = indices_to_counts(indices, k)  # (K,)
    return counts_to_perplexity(counts), (counts > 0).float().mean()


def ema_update(count: torch.Tensor, total: torch.Tensor, vectors: torch.Tensor, indices: torch.Tensor,
               decay: float, epsilon: float) -> torch.Tensor:
    """One EMA step of van den Oord et al. 2017, appendix A.1, in place; returns the codebook.

        N_i <- gamma N_i + (1 - gamma) n_i          n_i = #{j : k(z_j) = i}
        m_i <- gamma m_i + (1 - gamma) sum_{k(z_j) = i} z_j
        e_i  = m_i / N~_i,  N~_i = (N_i + eps) / (n + K eps) * n,  n = sum_i N_i  (Laplace)

    count (K,), total (K, D), vectors (N, D), indices (N,).
    """
    k = count.shape[0]
    n_i = torch.bincount(indices, minlength=k).to(count.dtype)  # (K,)
    sums = torch.zeros_like(total).index_add_(0, indices, vectors.to(total.dtype))  # (K, D)
    count.mul_(decay).add_(n_i, alpha=1 - decay)
    total.mul_(decay).add_(sums, alpha=1 - decay)
    n = count.sum()
    smoothed = (count + epsilon) / (n + k * epsilon) * n  # (K,)
    return total / smoothed.unsqueeze(1)  # (K, D)


# ----------------------------------------------------------------------------- model


@register_model("vq-vae", "vqvae", VQVAEOptions, "vqvae",
                "VQ-VAE (van den Oord et al. 2017): discrete codes, straight-through; EMA codebook "
                "and dead-code revival options; uniform prior over codes, or a PixelCNN prior fitted after training",
                kernel_ops=lambda o: ("vq_nearest", *decoder_ops(o)),
                batch_coupled="the codebook's EMA step and dead-code revival update it inside forward from each "
                              "rank's shard, not from the global batch")
class VQVAE(GenerativeModel):
    capabilities = Capabilities(samples=True, likelihood=True, nll="variational-bound", reconstructs=True,
                                prepares_sampling=True, latent_space=True, representation="pre-quantisation",
                                codebook=True)

    def __init__(self, options: VQVAEOptions, data_info, backend: str = "auto", objective=None):
        super().__init__()
        shape = data_info.shape
        self.backend = backend
        self.ema = options.ema
        self.ema_decay, self.ema_epsilon = options.ema_decay, options.ema_epsilon
        self.revive_after = options.revive_after
        self.likelihood = make_likelihood(options, data_info)
        self.encoder, self.decoder, self.latent_shape = build_vq_nets(
            options, shape, self.likelihood.out_channels(shape[0]), backend)
        self.init_codebook(options.codebook_size, options.code_dim)
        self.options = options
        self.prior = None if options.prior == "uniform" else CodePixelCNN(
            options.codebook_size, options.prior_hidden, options.prior_layers)
        self.prior_fitted = False

    @property
    def sample_description(self) -> str:
        if self.prior is None:
            return "decoder mean of p(x|z), codes drawn from a uniform prior"
        o = self.options
        return (f"decoder mean of p(x|z), codes drawn (raster order) from a PixelCNN prior over the {self.code_grid} "
                f"code grid fitted to the training set's codes after training ({o.prior_steps} Adam steps, batch "
                f"{o.prior_batch}, lr {o.prior_lr}, {o.prior_layers} gated layers of {o.prior_hidden} channels)")

    @property
    def code_grid(self) -> tuple[int, int]:
        """(h, w) of the codes as the prior sees them: the conv grid, or one row of M for mlp."""
        return tuple(self.latent_shape[1:]) if len(self.latent_shape) == 3 else (1, self.positions)

    def init_codebook(self, k: int, d: int) -> None:
        """e ~ U(-1/K, 1/K), the small init common in PyTorch ports of the paper's code: codes
        start near 0, so few win at first and revival spreads them. With ema the codebook is
        a buffer driven by the moving averages, started at N_i = 1, m_i = e_i."""
        codebook = torch.empty(k, d).uniform_(-1.0 / k, 1.0 / k)  # (K, D)
        if self.ema:
            self.register_buffer("codebook", codebook)
            self.register_buffer("ema_count", torch.ones(k))  # N_i
            self.register_buffer("ema_sum", codebook.clone())  # m_i
        else:
            self.codebook = nn.Parameter(codebook)
        self.register_buffer("steps_unused", torch.zeros(k, dtype=torch.long))
        self.register_buffer("revived_total", torch.zeros((), dtype=torch.long))

    @property
    def codebook_size(self) -> int:
        return self.codebook.shape[0]

    @property
    def positions(self) -> int:
        """M, code vectors per example."""
        return math.prod(self.latent_shape) // self.codebook.shape[1]

    def kernel_backends(self) -> dict[str, str]:
        return {"vq_nearest": resolve_backend("vq_nearest", self.backend, self.codebook.device),
                **conv_transpose_backends(self)}

    # -- encoding and quantisation

    def encode_vectors(self, x: torch.Tensor) -> torch.Tensor:
        return to_vectors(self.encoder(x))  # (B, M, D)

    def quantise(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Vectors (B, M, D) -> (indices (B, M), nearest codes e (B, M, D)); e carries the
        codebook's gradient, the search none."""
        b, m, d = z_e.shape
        indices = vq_nearest(z_e.detach().reshape(b * m, d), self.codebook, backend=self.backend)  # (B*M,)
        return indices.view(b, m), self.codebook[indices].view(b, m, d)

    def decode_vectors(self, z_q: torch.Tensor) -> torch.Tensor:
        return self.decoder(from_vectors(z_q, self.latent_shape))  # decoder output, (B, C', H, W)

    def vq_terms(self, x: torch.Tensor, generator: torch.Generator | None = None) -> VQTerms:
        """Training terms for prepared data x; in training mode also the codebook's EMA
        step and dead-code revival (no gradient), which change the codebook for the next
        step, not this one's terms."""
        z_e = self.encode_vectors(x)  # (B, M, D)
        indices, e = self.quantise(z_e)  # (B, M), (B, M, D)
        z_q = z_e + (e - z_e).detach()  # straight-through estimator
        recon_nll = self.likelihood.nll(self.decode_vectors(z_q), x)  # (B,)
        codebook_loss = (z_e.detach() - e).pow(2).sum((1, 2))  # (B,)
        commitment_loss = (z_e - e.detach()).pow(2).sum((1, 2))  # (B,)
        perplexity, usage = usage_stats(indices, self.codebook_size)
        revived = self.update_codebook(z_e.detach(), indices, generator) if self.training else 0
        return VQTerms(recon_nll, codebook_loss, commitment_loss, perplexity, usage, revived)

    @torch.no_grad()
    def update_codebook(self, z_e: torch.Tensor, indices: torch.Tensor,
                        generator: torch.Generator | None) -> int:
        """EMA step (ema=True), then dead-code bookkeeping; returns the codes revived."""
        vectors, flat = z_e.reshape(-1, z_e.shape[-1]).float(), indices.flatten()  # (N, D), (N,)
        if self.ema:
            self.codebook.copy_(ema_update(self.ema_count, self.ema_sum, vectors, flat,
                                           self.ema_decay, self.ema_epsilon))
        self.steps_unused.add_(1).index_fill_(0, flat, 0)
        if self.revive_after == 0:
            return 0
        return self.revive(torch.nonzero(self.steps_unused >= self.revive_after).flatten(), vectors, generator)

    @torch.no_grad()
    def revive(self, dead: torch.Tensor, vectors: torch.Tensor, generator: torch.Generator | None) -> int:
        """Re-initialise codes `dead` to randomly chosen rows of vectors (N, D) (distinct rows
        when there are enough). Without ema the optimiser's moments for those rows are kept."""
        if dead.numel() == 0:
            return 0
        n = vectors.shape[0]
        if dead.numel() <= n:
            pick = torch.randperm(n, generator=generator, device=vectors.device)[:dead.numel()]
        else:
            pick = torch.randint(n, (dead.numel(),), generator=generator, device=vectors.device)
        new = vectors[pick].to(self.codebook.dtype)  # (n_dead, D)
        self.codebook.index_copy_(0, dead, new)
        if self.ema:  # restart the averages at the new code: m_i / N_i = e_i
            self.ema_count.index_fill_(0, dead, 1.0)
            self.ema_sum.index_copy_(0, dead, new)
        self.steps_unused.index_fill_(0, dead, 0)
        self.revived_total.add_(dead.numel())
        return int(dead.numel())

    # -- capabilities (models/base.py)

    def reconstruct_output(self, x: torch.Tensor) -> torch.Tensor:
        _, e = self.quantise(self.encode_vectors(x))
        return self.decode_vectors(e)

    def variational_bound_nll(self, x: torch.Tensor) -> torch.Tensor:
        """-log p(x) <= -log p(x | z_q(x)) - log p(k(x)) nats, (B,): q(k|x) is one-hot, so
        KL(q || p) = -log p(k(x)), which is M log K under the uniform prior and the fitted
        PixelCNN's NLL of the codes once it is fitted."""
        indices, e = self.quantise(self.encode_vectors(x))
        recon_nll = self.likelihood.nll(self.decode_vectors(e), x)  # (B,)
        if self.prior is not None and self.prior_fitted:
            return recon_nll - self.prior.log_prob(self.as_grid(indices))
        return recon_nll + self.positions * math.log(self.codebook_size)

    def as_grid(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (B, M) -> (B, h, w), row-major as the positions are numbered."""
        return indices.view(indices.shape[0], *self.code_grid)

    def prepare_sampling(self, train_x: torch.Tensor) -> None:
        """pixelcnn prior: fit it by maximum likelihood to the codes of the training set
        (encoded once, in batches; the VQ-VAE stays frozen)."""
        if self.prior is None:
            return
        with torch.no_grad():
            codes = torch.cat([self.as_grid(self.code_indices(self.likelihood.prepare(chunk, None)))
                               for chunk in train_x.split(256)])  # (N, h, w)
        fit_code_prior(self.prior, codes, self.options)
        self.prior_fitted = True

    def code_indices(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantise(self.encode_vectors(x))[0]  # (B, M)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).flatten(1)  # (B, M*D), before quantisation

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """z_e before quantisation: (B, D, h, w) for conv, (B, M, D) for mlp."""
        return self.encoder(x)

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Quantise z (as encode_latent returns it), decode: the decoder mean in the data range."""
        _, e = self.quantise(to_vectors(z))
        return self.likelihood.mean(self.decode_vectors(e))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, draw: str = "mean") -> torch.Tensor:
        """Decode codes drawn from the prior: uniform, or the fitted PixelCNN."""
        if self.prior is not None:
            if not self.prior_fitted:
                raise RuntimeError("vq-vae prior='pixelcnn': call prepare_sampling(train_x) to fit the prior "
                                   "before sampling (the harness does so after training)")
            indices = self.prior.sample(n, *self.code_grid, generator).reshape(n, self.positions)
        else:
            indices = torch.randint(self.codebook_size, (n, self.positions), generator=generator,
                                    device=self.codebook.device)  # (n, M)
        out = self.decode_vectors(self.codebook[indices])
        return self.likelihood.decode(out, draw, generator)


def fit_code_prior(prior: nn.Module, codes: torch.Tensor, options: VQVAEOptions) -> None:
    """Adam on the prior's NLL of random batches of `codes` (N, h, w); the batches come from
    torch's global generator, which the harness seeds with the run's seed."""
    optimiser = torch.optim.Adam(prior.parameters(), lr=options.prior_lr)
    prior.train()
    with torch.enable_grad():
        for _ in range(options.prior_steps):
            batch = codes[torch.randint(codes.shape[0], (min(options.prior_batch, codes.shape[0]),),
                                        device=codes.device)]
            loss = -prior.log_prob(batch).mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    prior.eval()
