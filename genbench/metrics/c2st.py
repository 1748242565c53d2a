"""Classifier two-sample test (C2ST; Lopez-Paz & Oquab 2017), an automated real-vs-fake study.

Stands in for a human study of "can you tell generated from real?": a classifier is
trained to tell the two sets apart and its held-out accuracy is the score.

Definition and settings:
- Inputs: real and generated sets as features (N, F) or images (N, C, H, W), flattened.
- Equal classes: each set is subsampled without replacement to n = min(n_real, n_gen).
- Split: 50/50 train/test, stratified by class (sklearn train_test_split,
  random_state = `seed`; the subsampling uses numpy default_rng(`seed`)).
- Standardisation: per-feature mean and std fitted on the TRAIN half only (StandardScaler;
  constant features are left centred), then applied to both halves: no test leakage.
- Classifier: sklearn LogisticRegression, L2, C = 1.0, lbfgs, max_iter = 1000.
- Reported: held-out accuracy a (0.5 = indistinguishable, 1.0 = trivially separable); its
  binomial standard error sqrt(a (1 - a) / n_test) and the null one 0.5 / sqrt(n_test);
  the one-sided p-value of the number correct against Binomial(n_test, 0.5)
  (scipy.stats.binomtest, alternative "greater"); all the counts.

A linear classifier on raw pixels sees only differences of the mean image and of linear
statistics: zero-mean noise that is not clipped, or a changed variance, can go unnoticed.
Feed features of a trained extractor for a sharper test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import binomtest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from genbench.metrics.base import flat_finite

C_REGULARISATION = 1.0
MAX_ITER = 1000
MIN_PER_CLASS = 10


@dataclass(frozen=True)
class C2STResult:
    accuracy: float  # held-out accuracy
    std_error: float  # sqrt(acc (1 - acc) / n_test)
    null_std_error: float  # 0.5 / sqrt(n_test): the spread of the accuracy under H0
    p_value: float  # one-sided binomial test of n_correct against p = 0.5
    n_correct: int
    n_test: int
    n_train: int
    n_per_class: int  # min(n_real, n_generated): each set subsampled to this
    n_real: int
    n_generated: int
    n_features: int
    classifier: str
    C: float
    max_iter: int
    seed: int


def _matrix(x, name: str) -> np.ndarray:
    return flat_finite(x, name, torch.float64).numpy()  # (N, F)


def c2st(real, generated, seed: int = 0, C: float = C_REGULARISATION, max_iter: int = MAX_ITER) -> C2STResult:
    """Held-out accuracy of a logistic-regression real-vs-generated classifier."""
    xr, xg = _matrix(real, "real"), _matrix(generated, "generated")
    if xr.shape[1] != xg.shape[1]:
        raise ValueError(f"real and generated differ in features per example: {xr.shape[1]} vs {xg.shape[1]}")
    n = min(len(xr), len(xg))
    if n < MIN_PER_CLASS:
        raise ValueError(f"C2ST needs >= {MIN_PER_CLASS} examples per set; got {len(xr)} real, {len(xg)} generated")
    rng = np.random.default_rng(seed)
    x = np.concatenate([xr[rng.choice(len(xr), n, replace=False)],
                        xg[rng.choice(len(xg), n, replace=False)]])  # (2n, F)
    y = np.repeat([1, 0], n)  # (2n,) 1 = real
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.5, stratify=y, random_state=seed)
    scaler = StandardScaler().fit(x_tr)
    clf = LogisticRegression(C=C, max_iter=max_iter).fit(scaler.transform(x_tr), y_tr)
    n_correct = int((clf.predict(scaler.transform(x_te)) == y_te).sum())
    n_test = len(y_te)
    acc = n_correct / n_test
    return C2STResult(
        accuracy=acc, std_error=math.sqrt(acc * (1 - acc) / n_test), null_std_error=0.5 / math.sqrt(n_test),
        p_value=float(binomtest(n_correct, n_test, 0.5, alternative="greater").pvalue), n_correct=n_correct,
        n_test=n_test, n_train=len(y_tr), n_per_class=n, n_real=len(xr), n_generated=len(xg),
        n_features=x.shape[1], classifier="sklearn LogisticRegression (L2, lbfgs)", C=C, max_iter=max_iter,
        seed=seed,
    )
