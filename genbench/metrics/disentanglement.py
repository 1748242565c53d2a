"""Disentanglement scores of a representation against known generative factors.

Pure functions on a precomputed representation matrix reps (N, d), one row per example,
and the examples' factor indices (N, F), with a numpy Generator for the sampling. They
follow disentanglement_lib (Locatello et al. 2019) unless stated:

- beta-VAE metric (Higgins et al. 2017): accuracy of a linear classifier that predicts
  which factor was held fixed from the mean |r1 - r2| over L pairs sharing that factor.
- FactorVAE metric (Kim & Mnih 2018): accuracy of a majority-vote classifier from "the
  dimension of least normalised variance" to the factor held fixed over L examples.
- MIG (Chen et al. 2018): the gap in mutual information between the two dims most
  informative about each factor, normalised by the factor's entropy, averaged.

Conditional sampling by lookup. These metrics need examples that share one factor's value
with the other factors free. disentanglement_lib renders fresh images from the factor
grid; here every dataset example draws each factor independently and uniformly (as
`shapes` does), so the examples with factor k at value v are exact samples of
p(x | v_k = v): we draw them (with replacement) from the dataset's own examples and look
their codes up in reps, so each example is encoded once. The fixed value itself is the
factor of a uniformly drawn example (its marginal). For data whose factors are not drawn
independently this would not hold.

Factors that take a single value over the data cannot be held fixed or predicted: they
are skipped, and each result lists them in `factors_skipped`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genbench.metrics.probes import fit_logistic, standardiser

BETA_VAE_BATCH = 64  # L: pairs averaged per point (disentanglement_lib)
BETA_VAE_TRAIN = 10000  # training points of the linear classifier
BETA_VAE_EVAL = 5000  # held-out points: the score is the accuracy on these
BETA_VAE_C = 1.0  # L2 of the logistic regression, sklearn's C (disentanglement_lib: sklearn's default)
BETA_VAE_MAX_ITER = 100  # L-BFGS iterations (sklearn's default, which disentanglement_lib runs)
FACTOR_VAE_BATCH = 100  # L: examples per vote (Kim & Mnih 2018; disentanglement_lib uses 64)
FACTOR_VAE_TRAIN = 10000  # votes that train the majority-vote classifier
FACTOR_VAE_EVAL = 5000  # held-out votes: the score is the accuracy on these
FACTOR_VAE_PRUNE_STD = 0.05  # dims with std below this over the data are collapsed (dropped)
MIG_BINS = 20  # equal-width bins per dim between its min and max (disentanglement_lib)
CHUNK_VALUES = 1 << 19  # gathered code values per chunk (2 MB of float32: stays in cache)


class FactorSampler:
    """Draws dataset examples that share a factor's value, by index lookup (module docstring)."""

    def __init__(self, factors: np.ndarray):
        self.factors = factors  # (N, F) int
        self.used = tuple(k for k in range(factors.shape[1]) if len(np.unique(factors[:, k])) > 1)
        self.skipped = tuple(k for k in range(factors.shape[1]) if k not in self.used)
        self._order = {k: np.argsort(factors[:, k], kind="stable") for k in self.used}  # (N,) grouped by value
        self._counts = {k: np.bincount(factors[:, k]) for k in self.used}  # (V_k,) examples per value
        self._starts = {k: np.cumsum(self._counts[k]) - self._counts[k] for k in self.used}  # (V_k,)

    def choose(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n factors to hold fixed, uniform over the used factors: (n,)."""
        return rng.choice(np.asarray(self.used), n)

    def same_value(self, ks: np.ndarray, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """For each anchor example (n, L), a uniform example with the same value of factor ks[i]."""
        out = np.empty_like(anchors)
        for k in self.used:
            rows = np.flatnonzero(ks == k)
            v = self.factors[anchors[rows], k]  # (r, L) the values to share
            pick = (rng.random(v.shape) * self._counts[k][v]).astype(np.int64)  # (r, L) rank in the group
            out[rows] = self._order[k][self._starts[k][v] + pick]
        return out


def check_inputs(reps, factors) -> tuple[np.ndarray, np.ndarray]:
    """reps (N, d) finite floats and factors (N, F) non-negative ints, as numpy, or ValueError."""
    reps = np.ascontiguousarray(torch.as_tensor(reps).detach().cpu(), dtype=np.float32)  # rows gathered fast
    factors = np.asarray(torch.as_tensor(factors).detach().cpu())
    if reps.ndim != 2 or factors.ndim != 2 or len(reps) != len(factors):
        raise ValueError(f"need reps (N, d) and factors (N, F) with the same N; got {reps.shape}, {factors.shape}")
    if len(reps) < 2 or reps.shape[1] == 0:
        raise ValueError(f"need at least 2 examples and 1 dim; got reps {reps.shape}")
    if not np.isfinite(reps).all():
        raise ValueError("the representation contains NaN or Inf values")
    if not np.issubdtype(factors.dtype, np.integer) or factors.min() < 0:
        raise ValueError("factors must be non-negative integer indices")
    return reps, factors.astype(np.int64)


def _sampler(factors: np.ndarray) -> FactorSampler:
    sampler = FactorSampler(factors)
    if not sampler.used:
        raise ValueError("every factor takes a single value over the data: nothing to disentangle")
    return sampler


# --- beta-VAE metric --------------------------------------------------------------------


@dataclass(frozen=True)
class BetaVAEResult:
    score: float  # accuracy on the eval points
    train_accuracy: float
    batch: int
    n_train: int
    n_eval: int
    C: float
    max_iter: int
    factors_used: tuple[int, ...]
    factors_skipped: tuple[int, ...]


def beta_vae_points(reps: np.ndarray, sampler: FactorSampler, n: int, batch: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n points z_diff = mean_l |r(x1_l) - r(x2_l)|, each over `batch` pairs sharing factor k.

    Each pair: x1 a uniform example, x2 a uniform example with the same value of factor k
    (k uniform over the used factors, fixed per point). Returns ((n, d), labels k (n,)).
    """
    ks = sampler.choose(n, rng)  # (n,)
    first = rng.integers(0, len(reps), (n, batch))  # (n, L) uniform examples
    second = sampler.same_value(ks, first, rng)  # (n, L) each sharing its partner's value of k
    out = np.empty((n, reps.shape[1]), dtype=np.float32)  # (n, d)
    for rows, a, b in _gathered(reps, first, second):  # a, b: (c, L, d)
        np.subtract(a, b, out=a)
        np.abs(a, out=a).sum(1, out=out[rows])
    return out / batch, ks


def _gathered(reps: np.ndarray, *indices: np.ndarray):
    """Yield (rows, reps[idx[rows]] for each idx) over chunks of rows of the (n, L) index arrays.

    The gathered (c, L, d) blocks reuse two preallocated buffers of about CHUNK_VALUES
    values each (cache-sized: gathering everything at once is several times slower).
    """
    n, batch = indices[0].shape
    per_chunk = max(1, CHUNK_VALUES // (batch * reps.shape[1]))
    buffers = [np.empty((per_chunk, batch, reps.shape[1]), reps.dtype) for _ in indices]
    for s in range(0, n, per_chunk):
        rows = slice(s, min(n, s + per_chunk))
        c = rows.stop - s
        # mode="clip" skips take's buffered bounds check: the indices are valid by construction
        yield rows, *(np.take(reps, idx[rows], axis=0, out=buf[:c], mode="clip") for idx, buf in zip(indices, buffers))


def beta_vae_score(reps, factors, rng: np.random.Generator, batch: int = BETA_VAE_BATCH, n_train: int = BETA_VAE_TRAIN,
                   n_eval: int = BETA_VAE_EVAL, C: float = BETA_VAE_C, max_iter: int = BETA_VAE_MAX_ITER) -> BetaVAEResult:
    """beta-VAE metric (Higgins et al. 2017), as disentanglement_lib computes it.

    Each point: pick a factor k uniformly; draw L = `batch` pairs (x1, x2) that share the
    value of k (each pair its own value; other factors free); the point is
    z_diff = (1/L) sum_l |r(x1_l) - r(x2_l)|  (d,), labelled k. A multinomial logistic
    regression (`probes.fit_logistic`, L2 with sklearn's C) is fitted on n_train points,
    standardised with the train points' mean and std (so the score does not depend on the
    code's scale; disentanglement_lib fits on the raw points), with at most max_iter L-BFGS
    iterations (sklearn's default, so a large code may stop short of the optimum as it
    does in disentanglement_lib), in float32; score = its accuracy on n_eval fresh points. Chance is
    1 / (number of used factors).
    """
    reps, factors = check_inputs(reps, factors)
    sampler = _sampler(factors)
    x_tr, k_tr = beta_vae_points(reps, sampler, n_train, batch, rng)  # (n_train, d), (n_train,)
    x_ev, k_ev = beta_vae_points(reps, sampler, n_eval, batch, rng)
    x_tr, x_ev = torch.from_numpy(x_tr), torch.from_numpy(x_ev)  # float32
    y_tr, y_ev = (torch.from_numpy(np.searchsorted(sampler.used, k)) for k in (k_tr, k_ev))  # in [0, F_used)
    scale = standardiser(x_tr)
    clf = fit_logistic(scale(x_tr), y_tr, len(sampler.used), C, max_iter, torch.float32)
    acc_tr = (clf.predict(scale(x_tr)) == y_tr).double().mean().item()
    acc_ev = (clf.predict(scale(x_ev)) == y_ev).double().mean().item()
    return BetaVAEResult(acc_ev, acc_tr, batch, n_train, n_eval, C, max_iter, sampler.used, sampler.skipped)


# --- FactorVAE metric -------------------------------------------------------------------


@dataclass(frozen=True)
class FactorVAEResult:
    score: float  # accuracy on the eval votes (0 when every dim is collapsed)
    train_accuracy: float
    batch: int
    n_train: int
    n_eval: int
    prune_std: float
    n_active_dims: int
    factors_used: tuple[int, ...]
    factors_skipped: tuple[int, ...]


def factor_vae_votes(normed: np.ndarray, sampler: FactorSampler, n: int, batch: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n votes (argmin dim (n,), factor k (n,)): the dim of least variance over `batch`
    examples sharing one value of factor k. normed: (N, d_active) normalised codes."""
    ks = sampler.choose(n, rng)  # (n,)
    anchors = np.repeat(rng.integers(0, len(normed), (n, 1)), batch, axis=1)  # (n, L): one value per vote
    idx = sampler.same_value(ks, anchors, rng)  # (n, L) examples sharing the anchor's value of k
    dims = np.empty(n, dtype=np.int64)
    for rows, block in _gathered(normed, idx):  # block: (c, L, d)
        block -= block.mean(1, keepdims=True)
        np.square(block, out=block)
        dims[rows] = block.sum(1).argmin(1)  # least variance (times L - 1): (c,)
    return dims, ks


def factor_vae_score(reps, factors, rng: np.random.Generator, batch: int = FACTOR_VAE_BATCH,
                     n_train: int = FACTOR_VAE_TRAIN, n_eval: int = FACTOR_VAE_EVAL,
                     prune_std: float = FACTOR_VAE_PRUNE_STD) -> FactorVAEResult:
    """FactorVAE metric (Kim & Mnih 2018), as disentanglement_lib computes it.

    Each dim is divided by its std s_j over all N examples (ddof=1; disentanglement_lib
    estimates it from 10,000 random examples); dims with s_j < prune_std are collapsed and
    dropped. Each vote: pick a factor k uniformly, fix its value, draw L = `batch` examples;
    the active dim with the least variance of the normalised codes over them votes for k
    (ddof does not change the argmin). The classifier maps each dim to the factor it got
    most of the n_train votes for (ties: the lower factor index); score = the share of
    n_eval fresh votes it gets right. Chance is 1 / (number of used factors); with no active
    dim the score is 0 (as in disentanglement_lib).
    """
    reps, factors = check_inputs(reps, factors)
    sampler = _sampler(factors)
    std = reps.std(0, ddof=1)  # (d,)
    active = np.flatnonzero(std >= prune_std)
    if len(active) == 0:
        return FactorVAEResult(0.0, 0.0, batch, n_train, n_eval, prune_std, 0, sampler.used, sampler.skipped)
    normed = np.ascontiguousarray((reps[:, active] - reps[:, active].mean(0)) / std[active])  # (N, d_active)
    votes = []
    for n in (n_train, n_eval):
        dims, ks = factor_vae_votes(normed, sampler, n, batch, rng)
        table = np.zeros((len(active), len(sampler.used)), dtype=np.int64)  # (d_active, F_used)
        np.add.at(table, (dims, np.searchsorted(sampler.used, ks)), 1)
        votes.append(table)
    classifier = votes[0].argmax(1)  # (d_active,) factor column per dim
    rows = np.arange(len(active))
    acc_tr, acc_ev = (v[rows, classifier].sum() / v.sum() for v in votes)
    return FactorVAEResult(float(acc_ev), float(acc_tr), batch, n_train, n_eval, prune_std, len(active),
                           sampler.used, sampler.skipped)


# --- MIG --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MIGResult:
    score: float  # mean over used factors of the normalised gap
    per_factor: tuple[float, ...]  # normalised gap per used factor
    entropies: tuple[float, ...]  # H(v_k) in nats per used factor
    bins: int
    n_examples: int
    factors_used: tuple[int, ...]
    factors_skipped: tuple[int, ...]


def discretise(reps: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bins between each dim's min and max: (N, d) -> int (N, d) in [0, bins).

    The same bins as disentanglement_lib's np.histogram/np.digitize (the max falls in the
    last bin); a constant dim lands in bin 0.
    """
    lo, hi = reps.min(0), reps.max(0)  # (d,)
    width = np.where(hi > lo, (hi - lo) / bins, 1.0)  # (d,)
    return np.minimum(((reps - lo) / width).astype(np.int64), bins - 1)  # >= 0 as reps >= lo


def entropy(v: np.ndarray) -> float:
    """Plug-in entropy of discrete values (N,) in nats."""
    p = np.bincount(v) / len(v)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def mutual_information(codes: np.ndarray, factors: np.ndarray, bins: int) -> np.ndarray:
    """Plug-in I(z_j; v_k) in nats for every discretised dim j and factor k: (d, F).

    codes (N, d) in [0, bins), factors (N, F) int. From the joint counts of each (z_j, v_k):
    I = sum_{a,b} p(a,b) log(p(a,b) / (p(a) p(b))).
    """
    n, d = codes.shape
    n_values = int(factors.max()) + 1
    cell = (np.arange(d) * bins + codes) * n_values  # (N, d) joint-table offset of (j, z_j)
    out = np.empty((d, factors.shape[1]))
    for k in range(factors.shape[1]):
        flat = (cell + factors[:, k, None]).ravel()  # (N * d,)
        joint = np.bincount(flat, minlength=d * bins * n_values).reshape(d, bins, n_values) / n
        pa, pb = joint.sum(2, keepdims=True), joint.sum(1, keepdims=True)  # (d, B, 1), (d, 1, V)
        ratio = np.where(joint > 0, joint / np.maximum(pa * pb, 1e-300), 1.0)
        out[:, k] = (joint * np.log(ratio)).sum((1, 2))  # (d,)
    return out


def mig_score(reps, factors, bins: int = MIG_BINS) -> MIGResult:
    """Mutual information gap (Chen et al. 2018), as disentanglement_lib computes it.

    Each dim is discretised into `bins` equal-width bins over all N examples; for each used
    factor k, I(z_j; v_k) (plug-in, from counts) for every dim j, and
        MIG_k = (I_(1) - I_(2)) / H(v_k)
    with I_(1) >= I_(2) the two largest over dims (I_(2) = 0 for a one-dim code); the score
    is the mean over used factors. Deterministic: it uses all N examples, where
    disentanglement_lib samples 10,000. Notes: a factor with more values than bins cannot
    reach 1 even for a perfect code (the bins merge its values: ~0.8 for 32-40 values in 20
    bins); the plug-in MI of independent variables is biased up by about
    (bins - 1)(V_k - 1) / (2N) nats, small at N = 16,384.
    """
    reps, factors = check_inputs(reps, factors)
    sampler = _sampler(factors)
    used = list(sampler.used)
    mi_all = mutual_information(discretise(reps, bins), factors[:, used], bins)  # (d, F_used)
    gaps, ents = [], []
    for i, k in enumerate(used):
        mi = np.sort(mi_all[:, i])[::-1]  # (d,) descending
        h = entropy(factors[:, k])
        second = mi[1] if len(mi) > 1 else 0.0
        gaps.append(float((mi[0] - second) / h))
        ents.append(h)
    return MIGResult(float(np.mean(gaps)), tuple(gaps), tuple(ents), bins, len(reps),
                     sampler.used, sampler.skipped)
