"""WaveNet (van den Oord et al. 2016, "WaveNet: A Generative Model for Raw Audio").

An autoregressive model of 1-D signals quantised to 256 mu-law codes c_1..c_L:
p(c) = prod_t p(c_t | c_<t), each factor a 256-way softmax (paper, sec. 2.2).

Network (paper, sec. 2.1-2.4, fig. 4):
- input: the previous codes through a learned embedding (equivalent to the paper's one-hot
  input followed by a 1x1 convolution without bias), shifted right by one sample with a
  zero vector at t = 0, so the output at t sees c_<t only;
- `stacks` repeats of `layers` residual blocks with dilations 1, 2, ..., 2^(layers-1)
  (sec. 2.1); each block: a causal dilated convolution of kernel 2 (left zero padding),
  the gated activation tanh(W_f * h) * sigmoid(W_g * h) (eq. 2), then two 1x1
  convolutions: one back to the residual stream (h + res, sec. 2.4) and one to the skip
  connections;
- output head: the sum of the skips -> ReLU -> 1x1 -> ReLU -> 1x1 -> 256 logits (fig. 4).
Optional global conditioning on the class label (eq. 2 with h the class: a learned
per-block bias V^T h on the filter and the gate), as the paper conditions on speaker id.

Receptive field: output t depends on c_(t-R) .. c_(t-1) with
R = stacks * (2^layers - 1) + 1 samples (the kernel-2 layers add their dilations, the shift
adds one).

Sampling is ancestral, one code per step. Two samplers return identical codes for the
same generator (the same draws in the same order, by the Gumbel-max trick on 256 uniforms
per step; the network outputs agree up to float rounding, which flips a draw with
probability ~1e-6 per sample):
- "naive": re-runs the whole network over the prefix for every new sample, O(L^2 * layers);
- "cached": Fast WaveNet (Paine et al. 2016, "Fast Wavenet Generation Algorithm"): every
  layer keeps a queue of its last `dilation` inputs, so one step is a single 1-sample pass
  per layer, O(L * layers).

The likelihood is exact (ExactDiscrete): the data's float values are decoded mu-law
levels (genbench.data.waves), encoded back to their codes losslessly; NLL in nats per
signal and bits per sample (= bits/dim over L samples).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genbench.data.waves import LEVELS, QUANTISATION, mu_law_decode, mu_law_encode
from genbench.errors import ConfigError
from genbench.models.base import Capabilities, GenerativeModel, register_model
from genbench.models.gumbel import gumbel_noise
from genbench.models.nets import gate
from genbench.models.likelihood import ExactDiscrete


@dataclass(frozen=True)
class WaveNetOptions:
    residual_channels: int = 32  # channels of the residual stream and of the code embedding
    dilation_channels: int = 32  # channels of the gated activation (filter and gate each)
    skip_channels: int = 64  # channels of the skip connections and of the output head
    layers: int = 6  # dilated blocks per stack: dilations 1, 2, ..., 2^(layers-1) (sec. 2.1)
    stacks: int = 2  # repeats of the dilation cycle; receptive field stacks*(2^layers-1)+1
    class_conditional: bool = False  # global conditioning on the class label (eq. 2)
    sampler: Literal["naive", "cached"] = "cached"  # sample(): Fast WaveNet queues, or re-run the prefix

    def __post_init__(self):
        for name in ("residual_channels", "dilation_channels", "skip_channels", "stacks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not 1 <= self.layers <= 16:
            raise ValueError(f"layers must be between 1 and 16 (dilations up to 2^15); got {self.layers}")


def receptive_field(layers: int, stacks: int) -> int:
    """Samples c_(t-R) .. c_(t-1) that output t depends on: the kernel-2 layers reach back
    sum(dilations) = stacks (2^layers - 1) samples and the input shift one more."""
    return stacks * (2 ** layers - 1) + 1


def tap_matrix(conv: nn.Conv1d, tap: int) -> torch.Tensor:
    """One kernel tap of a convolution as a contiguous (C_in, C_out) matrix, so a 1-sample
    step is h @ W (one addmm) rather than a convolution call."""
    return conv.weight[:, :, tap].t().contiguous()


@dataclass(frozen=True)
class StepWeights:
    """A residual block's weights as matrices for Fast WaveNet steps, made once per sampling
    call (the per-step cost on a CPU is mostly per-op overhead, so each step is 2 addmm for
    the dilated convolution and 1 for the residual and skip 1x1 convolutions side by side)."""

    past: torch.Tensor  # (R, 2D) the tap multiplying h[t - d]
    now: torch.Tensor  # (R, 2D) the tap multiplying h[t]
    bias: torch.Tensor  # (2D,) or (B, 2D): the convolution's bias plus any class conditioning
    out: torch.Tensor  # (D, R + S) residual then skip 1x1 convolutions
    out_bias: torch.Tensor  # (R + S,)


class ResidualBlock(nn.Module):
    """Dilated causal convolution (kernel 2) -> gated activation -> 1x1 residual and skip."""

    def __init__(self, residual: int, dilation_channels: int, skip: int, dilation: int, n_classes: int):
        super().__init__()
        self.dilation = dilation
        self.dilated = nn.Conv1d(residual, 2 * dilation_channels, kernel_size=2, dilation=dilation)
        self.condition = nn.Embedding(n_classes, 2 * dilation_channels) if n_classes else None
        self.residual = nn.Conv1d(dilation_channels, residual, 1)
        self.skip = nn.Conv1d(dilation_channels, skip, 1)

    def conditioning(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        """The global conditioning V^T h of eq. 2 for labels (B,): (B, 2D), or None."""
        if self.condition is None:
            return None
        return self.condition(labels)

    def forward(self, h: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """h (B, R, L) -> (next residual stream (B, R, L), skip (B, S, L)); causal: left padding."""
        z = self.dilated(F.pad(h, (self.dilation, 0)))  # (B, 2D, L): taps at t - d and t
        if cond is not None:
            z = z + cond[:, :, None]
        out = gate(z)  # (B, D, L)
        return h + self.residual(out), self.skip(out)

    def step_weights(self, cond: torch.Tensor | None) -> StepWeights:
        """This block's StepWeights, with the conditioning cond (B, 2D) folded into the bias."""
        bias = self.dilated.bias if cond is None else self.dilated.bias + cond
        out = torch.cat([tap_matrix(self.residual, 0), tap_matrix(self.skip, 0)], dim=1)  # (D, R + S)
        return StepWeights(tap_matrix(self.dilated, 0), tap_matrix(self.dilated, 1), bias, out,
                           torch.cat([self.residual.bias, self.skip.bias]))

    @staticmethod
    def step(h: torch.Tensor, past: torch.Tensor, w: StepWeights) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step: h (B, R) the input now, past (B, R) the input `dilation` steps ago
        -> (next residual (B, R), skip (B, S)). The arithmetic of forward at one t."""
        z = torch.addmm(w.bias, h, w.now).addmm_(past, w.past)  # (B, 2D)
        out = torch.addmm(w.out_bias, gate(z), w.out)  # (B, R + S)
        return h + out[:, :h.shape[1]], out[:, h.shape[1]:]


class DilationQueue:
    """Fast WaveNet's per-layer queue (Paine et al. 2016): the layer's last `dilation` inputs
    in a ring buffer; each step pops the input from `dilation` steps ago and pushes the
    current one. It starts as zeros: the left zero padding of the convolution."""

    def __init__(self, dilation: int, like: torch.Tensor):
        self.buffer = like.new_zeros(dilation, *like.shape)  # (d, B, R)
        self.t = 0

    def pop_push(self, h: torch.Tensor) -> torch.Tensor:
        slot = self.t % self.buffer.shape[0]
        past = self.buffer[slot].clone()  # (B, R) the input at t - d
        self.buffer[slot] = h
        self.t += 1
        return past


class FastWaveNet:
    """Generation state of Fast WaveNet (Paine et al. 2016) for one batch: every layer's
    queue and step matrices. `step(e)` takes the input vector at t (the embedded code
    t - 1; zeros at t = 0) and returns the logits of p(c_t | c_<t), pushing each layer's
    input into its queue: one 1-sample pass per layer."""

    def __init__(self, model: WaveNet, n: int, labels: torch.Tensor | None):
        like = model.embed.weight.new_zeros(n, model.options.residual_channels)  # (n, R)
        self.queues = [DilationQueue(block.dilation, like) for block in model.blocks]
        self.weights = [block.step_weights(cond) for block, cond in zip(model.blocks, model.conditions(labels))]
        self.hidden = (tap_matrix(model.hidden, 0), model.hidden.bias)  # (S, S), (S,)
        self.output = (tap_matrix(model.output, 0), model.output.bias)  # (S, 256), (256,)

    def step(self, e: torch.Tensor) -> torch.Tensor:
        """e (n, R) -> logits (n, 256)."""
        h, skip = e, 0
        for queue, w in zip(self.queues, self.weights):
            h, s = ResidualBlock.step(h, queue.pop_push(h), w)  # (n, R), (n, S)
            skip = skip + s
        hidden = torch.addmm(self.hidden[1], F.relu(skip), self.hidden[0]).relu_()  # (n, S)
        return torch.addmm(self.output[1], hidden, self.output[0])  # (n, 256)


def draw_codes(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One code per row from softmax(logits) (B, 256) -> (B,) by the Gumbel-max trick:
    argmax(logits + Gumbel noise) with 256 fresh uniforms per row, so both samplers draw
    the same way and consume the generator identically."""
    return torch.argmax(logits + gumbel_noise(logits.shape, generator, logits.device), dim=1)


@register_model("wavenet", "likelihood", WaveNetOptions, "nll",
                "WaveNet (van den Oord et al. 2016): causal dilated convolutions, gated residual blocks, "
                "256-way softmax over mu-law codes; naive and Fast WaveNet (cached) samplers",
                kernel_ops=())
class WaveNet(GenerativeModel):
    capabilities = Capabilities(samples=True, likelihood=True, nll="exact", ar_samplers=True)
    sampler_names = ("naive", "cached")

    def __init__(self, options: WaveNetOptions, data_info, backend: str = "auto", objective=None):
        super().__init__()
        check_data(options, data_info)
        self.options = options
        self.length = int(data_info.shape[-1])  # samples per generated signal
        self.class_conditional = options.class_conditional
        self.n_classes = len(data_info.classes) if options.class_conditional else 0
        self.receptive_field = receptive_field(options.layers, options.stacks)
        o = options
        self.embed = nn.Embedding(LEVELS, o.residual_channels)  # one-hot input @ 1x1 conv
        self.blocks = nn.ModuleList(
            ResidualBlock(o.residual_channels, o.dilation_channels, o.skip_channels, 2 ** i, self.n_classes)
            for _ in range(o.stacks) for i in range(o.layers))
        self.hidden = nn.Conv1d(o.skip_channels, o.skip_channels, 1)
        self.output = nn.Conv1d(o.skip_channels, LEVELS, 1)
        self.likelihood = ExactDiscrete("256-way softmax over mu-law codes")

    def kernel_backends(self) -> dict[str, str]:
        return {}  # plain PyTorch convolutions: no genbench kernel ops

    @property
    def sample_description(self) -> str:
        return (f"ancestral draws from the 256-way softmax, one mu-law code per step ({self.options.sampler} "
                f"sampler; receptive field {self.receptive_field} samples), decoded to mu-law levels; "
                "`draw` is ignored: an autoregressive model has no decoder mean, every sample is a draw"
                + ("; class labels drawn uniformly" if self.class_conditional else ""))

    # -- the network

    def conditions(self, labels: torch.Tensor | None) -> list[torch.Tensor | None]:
        """Per-block conditioning biases (B, 2D) for labels (B,), or Nones when unconditional."""
        if self.class_conditional and labels is None:
            raise ValueError("a class-conditional WaveNet needs the examples' labels")
        return [block.conditioning(labels) for block in self.blocks]

    def embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """int64 codes (B, L) -> their input vectors (B, R, L), not yet shifted."""
        return self.embed(codes).transpose(1, 2)

    def logits_from_embedding(self, e: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Embedded codes e (B, R, L) -> logits (B, 256, L) of p(c_t | c_<t): position t
        sees e[..., :t] only (the shift puts zeros at t = 0)."""
        h = F.pad(e, (1, 0))[:, :, :-1]  # (B, R, L): h[t] = e[t - 1]
        skip = 0
        for block, cond in zip(self.blocks, self.conditions(labels)):
            h, s = block(h, cond)
            skip = skip + s  # (B, S, L)
        return self.output(F.relu(self.hidden(F.relu(skip))))  # (B, 256, L)

    def logits(self, codes: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """int64 codes (B, L) -> logits (B, 256, L)."""
        return self.logits_from_embedding(self.embed_codes(codes), labels)

    # -- likelihood

    def exact_nll(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """-log p(x) in nats per signal (B,) for x (B, 1, L) mu-law levels."""
        codes = mu_law_encode(x[:, 0])  # (B, L) int64, lossless for the dataset's levels
        logits = self.logits(codes, labels)  # (B, 256, L)
        return F.cross_entropy(logits, codes, reduction="none").sum(1)  # (B,)

    # -- sampling

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, draw: str = "mean",
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """n ancestral samples (n, 1, L) in [-1, 1] with the options' sampler; `draw` is
        accepted for the model protocol and ignored (see sample_description)."""
        return self.sample_with(n, generator, self.options.sampler, labels)

    @torch.no_grad()
    def sample_with(self, n: int, generator: torch.Generator | None, sampler: str,
                    labels: torch.Tensor | None = None) -> torch.Tensor:
        """n samples (n, 1, L) with the named sampler ("naive" or "cached"); both give the
        same signals for the same generator state. Labels (n,) of a class-conditional
        model are drawn uniformly (first, from the generator) unless given."""
        if sampler not in self.sampler_names:
            raise ValueError(f"unknown sampler {sampler!r}; expected one of {self.sampler_names}")
        device = self.embed.weight.device
        if self.class_conditional and labels is None:
            labels = torch.randint(self.n_classes, (n,), generator=generator, device=device)
        codes = self.naive_codes(n, generator, labels) if sampler == "naive" else \
            self.cached_codes(n, generator, labels)  # (n, L)
        return mu_law_decode(codes).unsqueeze(1)  # (n, 1, L)

    def naive_codes(self, n: int, generator: torch.Generator | None, labels: torch.Tensor | None) -> torch.Tensor:
        """Codes (n, L), re-running the network over the whole prefix at every step."""
        codes = torch.zeros(n, self.length, dtype=torch.int64, device=self.embed.weight.device)
        for t in range(self.length):
            logits = self.logits(codes[:, :t + 1], labels)[:, :, t]  # (n, 256): sees codes[:, :t]
            codes[:, t] = draw_codes(logits, generator)
        return codes

    def cached_codes(self, n: int, generator: torch.Generator | None, labels: torch.Tensor | None) -> torch.Tensor:
        """Codes (n, L) by Fast WaveNet: one 1-sample pass per layer and step."""
        device = self.embed.weight.device
        fast = FastWaveNet(self, n, labels)
        e = torch.zeros(n, self.options.residual_channels, device=device)  # (n, R) the zero input at t = 0
        codes = torch.zeros(n, self.length, dtype=torch.int64, device=device)
        for t in range(self.length):
            codes[:, t] = draw_codes(fast.step(e), generator)
            e = self.embed(codes[:, t])  # (n, R) the next step's input
        return codes


def check_data(options: WaveNetOptions, info) -> None:
    """WaveNet models one channel of mu-law codes; refuse other data with cause and fix."""
    if info.kind != "sequence":
        raise ConfigError(f"wavenet models 1-D signals (dataset kind 'sequence'), but dataset {info.name!r} is "
                          f"kind {info.kind!r}. Use a sequence dataset such as 'waves' "
                          "(see `genbench list datasets`), or a model made for this kind of data.")
    if info.shape[0] != 1:
        raise ConfigError(f"wavenet models single-channel signals; dataset {info.name!r} has {info.shape[0]} "
                          "channels per example. Use a one-channel sequence dataset such as 'waves'.")
    if info.extras.get("quantisation") != QUANTISATION:
        raise ConfigError(f"wavenet's softmax is over {QUANTISATION} codes, but dataset {info.name!r} is "
                          f"quantised as {info.extras.get('quantisation')!r}. Use a mu-law dataset such as 'waves'.")
    if options.class_conditional and not info.classes:
        raise ConfigError(f"wavenet class_conditional=true needs class labels; dataset {info.name!r} has none. "
                          "Use a labelled dataset such as 'waves', or set class_conditional=false.")
