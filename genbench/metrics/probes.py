"""Few-label classification probes on a representation: the semi-supervised use of an encoder.

An encoder trained without labels is useful downstream if a simple classifier fitted on its
codes of a few labelled examples generalises. We score two probes (as in the
semi-supervised VAE literature, e.g. Kingma et al. 2014, which compares with the same
classifier on raw pixels):

- linear probe: multinomial logistic regression (`fit_logistic`) on standardised features.
  Standardisation: per-feature mean and std over the WHOLE train split (unlabelled data,
  which a semi-supervised learner has), constant features (std < STD_FLOOR) left centred.
  L2 on the weights, not the bias, with sklearn's convention and C = 1:
      min_{W, b}  1/2 ||W||_F^2 + C sum_i CE(softmax(W x_i + b), y_i)
  solved by full-batch L-BFGS (torch, float64, strong-Wolfe line search, <= 500 iterations).
- k-NN: k = 1 nearest labelled neighbour by Euclidean distance on the raw (unstandardised)
  features. k = 1 because with 10 labels per class a majority over k > 1 neighbours
  reaches into other classes; raw distances because standardising would blow the
  near-constant (collapsed) units of a VAE mean up to unit scale and let their noise
  dominate the distance.

Labelled set: for each class, the train split's examples of that class are permuted once
with numpy `default_rng(seed)`; the first n of each class are the labelled set for n
labels per class (so the n = 10 set lies inside the n = 100 set). An n that some class
cannot supply is skipped and the result says so. Accuracy is on the whole test split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genbench.metrics.base import flat_finite
from genbench.utils.threads import one_thread

N_PER_CLASS = (10, 100)  # labelled examples per class
C_REGULARISATION = 1.0  # sklearn's C: inverse L2 strength on the summed loss
MAX_ITER = 500  # L-BFGS iterations
K_NEIGHBOURS = 1
STD_FLOOR = 1e-8  # features with a smaller std are constant: centred, not scaled


@dataclass(frozen=True)
class LinearClassifier:
    weight: torch.Tensor  # (K, D)
    bias: torch.Tensor  # (K,)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return (x.to(self.weight.dtype) @ self.weight.T + self.bias).argmax(1)  # (N,)


def fit_logistic(x: torch.Tensor, y: torch.Tensor, n_classes: int, C: float = C_REGULARISATION,
                 max_iter: int = MAX_ITER, dtype: torch.dtype = torch.float64) -> LinearClassifier:
    """Multinomial logistic regression with sklearn's L2 objective (see module docstring).

    Minimises the objective divided by n: mean CE + ||W||^2 / (2 C n), which has the same
    minimiser and keeps L-BFGS's tolerances independent of n. x (N, D), y (N,) in [0, K).
    Computed in `dtype` (float32 halves the time of a large fit, which is memory-bound).
    """
    x, y = x.to(dtype), y.to(torch.int64)
    if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
        raise ValueError(f"fit_logistic needs x (N, D) and y (N,) with N > 0; got {tuple(x.shape)}, {tuple(y.shape)}")
    if C <= 0:
        raise ValueError(f"C must be > 0; got {C}")
    weight = torch.zeros(n_classes, x.shape[1], dtype=dtype, requires_grad=True)  # (K, D)
    bias = torch.zeros(n_classes, dtype=dtype, requires_grad=True)  # (K,)
    l2 = 1.0 / (2.0 * C * x.shape[0])
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight.T + bias, y) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad(), one_thread():
        opt.step(closure)
    return LinearClassifier(weight.detach(), bias.detach())


def standardiser(reference: torch.Tensor):
    """x -> (x - mean) / std with the mean and std (ddof=0) of `reference` (N, D)."""
    mean = reference.mean(0)  # (D,)
    std = reference.std(0, unbiased=False)  # (D,)
    std = torch.where(std < STD_FLOOR, torch.ones_like(std), std)
    return lambda x: (x - mean) / std


def knn_predict(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, k: int = K_NEIGHBOURS,
                chunk: int = 1024) -> torch.Tensor:
    """Majority label of the k nearest train points by Euclidean distance, (M,).

    Ties between classes go to the class with the nearer neighbours (each vote is
    weighted 1 - 1e-6 * rank). train_x (N, D), test_x (M, D).
    """
    if not 1 <= k <= len(train_x):
        raise ValueError(f"k must lie in [1, {len(train_x)}] (the labelled examples); got {k}")
    n_classes = int(train_y.max()) + 1
    weights = 1.0 - 1e-6 * torch.arange(k, dtype=torch.float64)  # (k,)
    preds = []
    for part in test_x.split(chunk):
        nearest = torch.cdist(part, train_x).topk(k, dim=1, largest=False).indices  # (m, k), nearest first
        votes = torch.zeros(len(part), n_classes, dtype=torch.float64)  # (m, K)
        votes.scatter_add_(1, train_y[nearest], weights.expand(len(part), k).contiguous())
        preds.append(votes.argmax(1))
    return torch.cat(preds)  # (M,)


def labelled_indices(y: np.ndarray, n_classes: int, seed: int) -> list[np.ndarray]:
    """Per class, that class's indices in y in a fixed random order (the first n are labelled)."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(np.flatnonzero(y == c)) for c in range(n_classes)]


@dataclass(frozen=True)
class ProbeResult:
    n_per_class: int  # labelled train examples per class
    linear_accuracy: float | None  # None when skipped
    knn_accuracy: float | None
    n_labelled: int  # n_per_class * classes (0 when skipped)
    n_test: int
    n_features: int
    skipped: str | None = None  # why this n was skipped


def few_label_probes(train_x, train_y, test_x, test_y, n_classes: int, n_per_class=N_PER_CLASS, seed: int = 0,
                     k: int = K_NEIGHBOURS, C: float = C_REGULARISATION) -> list[ProbeResult]:
    """Linear-probe and k-NN test accuracy from n labels per class, for each n (module docstring).

    train_x, test_x: features (N, D) or images (N, C, H, W) (flattened); labels int (N,) in
    [0, n_classes).
    """
    xtr, xte = flat_finite(train_x, "train_x"), flat_finite(test_x, "test_x")  # (N, D), (M, D) float32
    ytr, yte = _labels(train_y, len(xtr), n_classes, "train_y"), _labels(test_y, len(xte), n_classes, "test_y")
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(f"train and test features differ in width: {xtr.shape[1]} vs {xte.shape[1]}")
    if len(xte) == 0:
        raise ValueError("the test split is empty")
    scale = standardiser(xtr)
    order = labelled_indices(ytr.numpy(), n_classes, seed)
    results = []
    for n in n_per_class:
        short = [c for c in range(n_classes) if len(order[c]) < n]
        if short:
            why = f"classes {short} have fewer than {n} train examples"
            results.append(ProbeResult(n, None, None, 0, len(xte), xtr.shape[1], why))
            continue
        idx = torch.from_numpy(np.concatenate([o[:n] for o in order]))  # (n * K,)
        clf = fit_logistic(scale(xtr[idx]), ytr[idx], n_classes, C)
        linear = (clf.predict(scale(xte)) == yte).double().mean().item()
        knn = (knn_predict(xtr[idx], ytr[idx], xte, k) == yte).double().mean().item()
        results.append(ProbeResult(n, linear, knn, len(idx), len(xte), xtr.shape[1]))
    return results


def _labels(y, n: int, n_classes: int, name: str) -> torch.Tensor:
    y = torch.as_tensor(y).to(torch.int64).cpu()
    if y.shape != (n,):
        raise ValueError(f"{name} must be ({n},) labels; got shape {tuple(y.shape)}")
    if n and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{name} must lie in [0, {n_classes}); got [{int(y.min())}, {int(y.max())}]")
    return y
