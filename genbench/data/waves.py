"""`waves`: procedural 1-D signals in five classes, mu-law companded to 256 levels.

A small, embedded stand-in for speech/music waveforms (the data WaveNet was built for,
van den Oord et al. 2016): periodic structure at several time scales, transients, and
8-bit mu-law quantisation, so autoregressive models over quantised audio can be
benchmarked on the CPU without a download.

Specification. Time is the sample index t = 0 .. L-1 (L = `length`); frequencies are in
cycles per sample. "logU[a, b]" is log-uniform on [a, b], "U[a, b)" uniform, phases are
U[0, 2 pi), F_LO = 1/64 and F_HI = 1/8 (periods of 8 to 64 samples). Every example draws
its class uniformly from

    y  class     clean signal s(t)
    0  sines     sum of K ~ U{1, 2, 3} sinusoids a_k sin(2 pi f_k t + phi_k),
                 f_k ~ logU[F_LO, F_HI], a_k ~ U[0.2, 1)
    1  chirp     sin(phase(t) + phi), the instantaneous frequency sweeping from f0 at t = 0
                 to f1 at t = L, f0, f1 ~ logU[F_LO, F_HI] independently (up or down),
                 linearly or exponentially in t (a fair coin)
    2  am        (1 + m sin(2 pi f_m t + phi_m)) sin(2 pi f_c t + phi_c): an amplitude-
                 modulated tone, f_c ~ logU[F_LO, F_HI], f_m ~ logU[1/L, 4/L] (1 to 4
                 envelope cycles), depth m ~ U[0.5, 1)
    3  damped    exp(-u / tau) sin(2 pi f u + phi) for u = t - t0 >= 0, zero before the onset
                 t0 ~ U{0 .. L/4}; tau ~ logU[L/16, L/2], f ~ logU[F_LO, F_HI]
    4  pulses    a decaying pulse train: every P ~ U{16 .. 64} samples (first pulse at
                 t0 ~ U{0 .. P-1}, silence before) a pulse excites a resonance,
                 u = (t - t0) mod P, s = exp(-t / T) exp(-u / tau) sin(2 pi f u),
                 f ~ logU[1/16, 1/4], tau ~ logU[2, P/2], T ~ logU[L/2, 4L]

then s is normalised to peak 1, scaled by a gain g ~ U[0.5, 1), Gaussian noise of standard
deviation `noise` is added, and the result is divided by max(1, its peak) so that
|x| <= 1 without clipping. Finally x is mu-law companded (mu = 255, ITU-T G.711 style,
as WaveNet does), F(x) = sign(x) ln(1 + mu |x|) / ln(1 + mu), quantised to the code
c = round((F(x) + 1) / 2 * 255) in {0 .. 255}, and stored as the *decoded* level
mu_law_decode(c) (float32), so that `mu_law_encode` recovers c exactly: re-quantising is
lossless and a model of the codes scores exactly these values.

Layout: x float32 (N, 1, L) in [-1, 1] (kind "sequence"), y int64 (N,) the class index,
`info.classes` = CLASSES. `info.extras`: "quantisation" (QUANTISATION, the statement models
check), "mu" (255), "levels" (256), "length" (L), "sample_rate_hz" (a nominal 8 kHz for
plots and for reading frequencies in Hz: F_LO..F_HI is 125 Hz..1 kHz; the recipe itself is
in samples), "noise", "frequency_range" ([F_LO, F_HI] cycles/sample).

Options: `n_train` (2048), `n_test` (512), each 1..MAX_EXAMPLES, `length` (256 samples: long enough for several
periods of the slowest tone and for dilations up to 128, short enough that a WaveNet trains
and samples on a CPU in seconds), `noise` (0.01; mu-law makes low-amplitude noise cost many
codes, so quiet stretches are the hard part, as in real audio) and `seed` (0). The train and
test sets are independent draws from two random streams derived from `seed`
(numpy SeedSequence([seed, stream]), train stream 0, test stream 1), so the test set does not
change when `n_train` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from genbench.data.base import MAX_EXAMPLES, Header, Split, register_source

CLASSES = ("sines", "chirp", "am", "damped", "pulses")
MU = 255  # mu-law parameter (G.711, WaveNet)
LEVELS = MU + 1  # 256 codes
QUANTISATION = f"mu-law mu={MU}, {LEVELS} levels"
F_LO, F_HI = 1 / 64, 1 / 8  # frequency band of the tones, cycles/sample
SAMPLE_RATE_HZ = 8000  # nominal, for plots and Hz read-outs only
GAIN_RANGE = (0.5, 1.0)  # peak amplitude of the clean signal before noise


@dataclass(frozen=True)
class WavesOptions:
    n_train: int = 2048  # number of training signals
    n_test: int = 512  # number of test signals (an independent draw)
    length: int = 256  # samples per signal (L)
    noise: float = 0.01  # standard deviation of the additive Gaussian noise (signal peak <= 1)
    seed: int = 0  # seed of the sampling streams

    def __post_init__(self):
        if not (1 <= self.n_train <= MAX_EXAMPLES and 1 <= self.n_test <= MAX_EXAMPLES):
            raise ValueError(f"n_train and n_test must be between 1 and {MAX_EXAMPLES:,}")
        if not 64 <= self.length <= 65536:
            raise ValueError(f"length must be between 64 and 65536 samples; got {self.length}")
        if not 0.0 <= self.noise <= 1.0 or math.isnan(self.noise):
            raise ValueError(f"noise must be a standard deviation in [0, 1]; got {self.noise}")
        if self.seed < 0:
            raise ValueError("seed must be >= 0")


# --- mu-law -----------------------------------------------------------------------------


def mu_law_encode(x: torch.Tensor) -> torch.Tensor:
    """Values in [-1, 1] (clamped) -> int64 mu-law codes in [0, 255], same shape.

    F(x) = sign(x) ln(1 + mu|x|) / ln(1 + mu), then c = round((F + 1) / 2 * 255); computed
    in float64 so that decoded float32 levels map back to their own code."""
    x = torch.as_tensor(x).to(torch.float64).clamp(-1.0, 1.0)
    companded = torch.sign(x) * torch.log1p(MU * x.abs()) / math.log1p(MU)  # in [-1, 1]
    return torch.round((companded + 1.0) * (MU / 2)).to(torch.int64)


def mu_law_decode(codes: torch.Tensor) -> torch.Tensor:
    """int codes in [0, 255] -> float32 levels in [-1, 1]: the inverse of the companding at
    the code's centre, x = sign(y) ((1 + mu)^|y| - 1) / mu with y = 2c/255 - 1."""
    y = torch.as_tensor(codes).to(torch.float64) * (2.0 / MU) - 1.0
    return (torch.sign(y) * torch.expm1(y.abs() * math.log1p(MU)) / MU).to(torch.float32)


# --- the signal classes (numpy float64, t: (L,), each returns (n, L)) ----------------------


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return np.exp(rng.uniform(math.log(lo), math.log(hi), n))  # (n,)


def _phase(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(0.0, 2 * math.pi, (n, 1))  # (n, 1)


def _sines(rng: np.random.Generator, n: int, t: np.ndarray) -> np.ndarray:
    k = rng.integers(1, 4, n)  # (n,) number of components
    f = _log_uniform(rng, F_LO, F_HI, 3 * n).reshape(n, 3, 1)  # (n, 3, 1)
    a = rng.uniform(0.2, 1.0, (n, 3, 1)) * (np.arange(3)[None, :, None] < k[:, None, None])  # (n, 3, 1)
    phi = rng.uniform(0.0, 2 * math.pi, (n, 3, 1))
    return (a * np.sin(2 * math.pi * f * t + phi)).sum(1)  # (n, L)


def _chirp(rng: np.random.Generator, n: int, t: np.ndarray) -> np.ndarray:
    length = len(t)
    f0 = _log_uniform(rng, F_LO, F_HI, n)[:, None]  # (n, 1)
    f1 = _log_uniform(rng, F_LO, F_HI, n)[:, None]
    exponential = rng.random(n)[:, None] < 0.5  # (n, 1)
    phi = _phase(rng, n)
    linear_phase = 2 * math.pi * (f0 * t + (f1 - f0) * t * t / (2 * length))  # (n, L)
    log_ratio = np.log(f1 / f0)  # (n, 1)
    safe = np.where(np.abs(log_ratio) < 1e-9, 1e-9, log_ratio)  # f0 == f1: the limit is f0 t
    exp_phase = 2 * math.pi * f0 * length * np.expm1(safe * t / length) / safe  # (n, L)
    return np.sin(np.where(exponential, exp_phase, linear_phase) + phi)


def _am(rng: np.random.Generator, n: int, t: np.ndarray) -> np.ndarray:
    length = len(t)
    fc = _log_uniform(rng, F_LO, F_HI, n)[:, None]  # (n, 1) carrier
    fm = _log_uniform(rng, 1 / length, 4 / length, n)[:, None]  # (n, 1) envelope
    m = rng.uniform(0.5, 1.0, (n, 1))
    envelope = 1 + m * np.sin(2 * math.pi * fm * t + _phase(rng, n))  # (n, L)
    return envelope * np.sin(2 * math.pi * fc * t + _phase(rng, n))


def _damped(rng: np.random.Generator, n: int, t: np.ndarray) -> np.ndarray:
    length = len(t)
    t0 = rng.integers(0, length // 4 + 1, (n, 1))  # (n, 1) onset
    tau = _log_uniform(rng, length / 16, length / 2, n)[:, None]
    f = _log_uniform(rng, F_LO, F_HI, n)[:, None]
    u = t - t0  # (n, L)
    ringing = np.exp(-np.maximum(u, 0) / tau) * np.sin(2 * math.pi * f * u + _phase(rng, n))
    return np.where(u >= 0, ringing, 0.0)


def _pulses(rng: np.random.Generator, n: int, t: np.ndarray) -> np.ndarray:
    length = len(t)
    period = rng.integers(16, 65, (n, 1))  # (n, 1)
    t0 = np.floor(rng.random((n, 1)) * period)  # (n, 1) first pulse in [0, P)
    f = _log_uniform(rng, 1 / 16, 1 / 4, n)[:, None]
    tau = np.exp(rng.uniform(math.log(2), np.log(period / 2)))  # (n, 1) per-pulse decay
    overall = _log_uniform(rng, length / 2, 4 * length, n)[:, None]  # decay across pulses
    u = np.mod(t - t0, period)  # (n, L) time since the last pulse
    train = np.exp(-t / overall) * np.exp(-u / tau) * np.sin(2 * math.pi * f * u)
    return np.where(t >= t0, train, 0.0)


# the clean-signal generator of each class, in CLASSES order
GENERATORS: tuple[Callable[[np.random.Generator, int, np.ndarray], np.ndarray], ...] = (
    _sines, _chirp, _am, _damped, _pulses)


def clean_signals(y: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """Noise-free signals of classes y (n,) normalised to peak 1: float64 (n, L). Classes
    are drawn in CLASSES order, each from the same stream, so a seed fixes every signal."""
    t = np.arange(length, dtype=np.float64)  # (L,)
    s = np.zeros((len(y), length))
    for k, generate in enumerate(GENERATORS):
        idx = np.flatnonzero(y == k)
        if len(idx):
            s[idx] = generate(rng, len(idx), t)
    peak = np.abs(s).max(1, keepdims=True)  # (n, 1), > 0 for every class
    return s / peak


def sample_waves(n: int, options: WavesOptions, rng: np.random.Generator) -> Split:
    """n signals of the recipe in the module docstring: x (n, 1, L) mu-law levels, y (n,)."""
    y = rng.integers(0, len(CLASSES), n)  # (n,)
    s = clean_signals(y, options.length, rng)  # (n, L)
    gain = rng.uniform(*GAIN_RANGE, (n, 1))
    x = gain * s + options.noise * rng.standard_normal(s.shape)  # (n, L)
    x = x / np.maximum(1.0, np.abs(x).max(1, keepdims=True))  # peak <= 1 without clipping
    codes = mu_law_encode(torch.from_numpy(x))  # (n, L) int64
    return Split(x=mu_law_decode(codes).unsqueeze(1), y=torch.from_numpy(y).to(torch.int64))  # x: (n, 1, L)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def probe_waves(options: WavesOptions, path: str | None) -> Header:
    return Header("sequence", options.n_train, options.n_test, (1, options.length))


@register_source("waves", WavesOptions, needs_path=False, probe=probe_waves,
                 summary="procedural 1-D signals (sines, chirps, AM, damped, pulse trains), mu-law 8-bit")
def load_waves(options: WavesOptions, path: str | None):
    train = sample_waves(options.n_train, options, _rng(options.seed, 0))
    test = sample_waves(options.n_test, options, _rng(options.seed, 1))
    extras: dict[str, Any] = {
        "quantisation": QUANTISATION, "mu": MU, "levels": LEVELS, "length": options.length,
        "sample_rate_hz": SAMPLE_RATE_HZ, "noise": options.noise, "frequency_range": [F_LO, F_HI],
    }
    facts = {
        "kind": "sequence",
        "classes": CLASSES,
        "source": f"embedded: generated by genbench.data.waves (seed {options.seed})",
        "split": f"independent draws from seed {options.seed}: train stream 0, test stream 1",
        "extras": extras,
    }
    return train, test, facts
