"""Known-answer tests for the few-label linear and k-NN probes."""

import numpy as np
import pytest
import torch

from genbench.data import load_dataset
from genbench.metrics.probes import (
    few_label_probes,
    fit_logistic,
    knn_predict,
    labelled_indices,
)


def clusters(n_per_class, n_classes=3, dims=5, spread=0.3, seed=0):
    """Gaussian blobs around well-separated centres: (N, dims) features, (N,) labels."""
    g = torch.Generator().manual_seed(seed)
    centres = 4.0 * torch.eye(n_classes, dims)  # (K, dims), pairwise distance 5.7
    y = torch.arange(n_classes).repeat_interleave(n_per_class)  # (N,)
    return centres[y] + spread * torch.randn(len(y), dims, generator=g), y


def test_separable_clusters_are_classified():
    xtr, ytr = clusters(150)
    xte, yte = clusters(100, seed=1)
    results = few_label_probes(xtr, ytr, xte, yte, n_classes=3, seed=0)
    assert [r.n_per_class for r in results] == [10, 100]
    for r in results:
        assert r.linear_accuracy > 0.99 and r.knn_accuracy > 0.99 and r.skipped is None
        assert (r.n_labelled, r.n_test, r.n_features) == (3 * r.n_per_class, 300, 5)


def test_random_labels_score_chance():
    g = torch.Generator().manual_seed(0)
    xtr, xte = torch.randn(1000, 8, generator=g), torch.randn(2000, 8, generator=g)
    ytr, yte = torch.randint(0, 4, (1000,), generator=g), torch.randint(0, 4, (2000,), generator=g)
    tol = 4 * np.sqrt(0.25 * 0.75 / 2000)  # 4 binomial standard errors around chance 1/4
    for r in few_label_probes(xtr, ytr, xte, yte, n_classes=4, seed=0):
        assert abs(r.linear_accuracy - 0.25) < tol and abs(r.knn_accuracy - 0.25) < tol


def test_n_a_class_cannot_supply_is_skipped():
    xtr, ytr = clusters(150)
    keep = torch.cat([torch.arange(0, 60), torch.arange(150, 450)])  # class 0 keeps 60 examples
    xte, yte = clusters(20, seed=1)
    small, large = few_label_probes(xtr[keep], ytr[keep], xte, yte, n_classes=3, seed=0)
    assert small.skipped is None and small.linear_accuracy > 0.99
    assert large.linear_accuracy is None and large.knn_accuracy is None and large.n_labelled == 0
    assert "[0]" in large.skipped and "100" in large.skipped


def test_pixel_baseline_on_digits():
    data = load_dataset("digits")
    r10, r100 = few_label_probes(data.train.x, data.train.y, data.test.x, data.test.y, n_classes=10, seed=0)
    assert r10.n_features == 256 and r10.n_test == 359
    assert 0.7 < r10.linear_accuracy <= r100.linear_accuracy and 0.7 < r10.knn_accuracy <= r100.knn_accuracy


def test_labelled_sets_are_nested_and_seeded():
    y = np.repeat(np.arange(3), 200)
    a, b = labelled_indices(y, 3, seed=0), labelled_indices(y, 3, seed=0)
    assert all((u == v).all() for u, v in zip(a, b))
    assert all((y[order] == c).all() and len(order) == 200 for c, order in enumerate(a))
    assert not all((u == v).all() for u, v in zip(a, labelled_indices(y, 3, seed=1)))


def test_logistic_regression_is_at_its_optimum():
    """The gradient of 1/2 ||W||^2 + C sum_i CE_i vanishes at the fitted (W, b)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=g, dtype=torch.float64)
    y = (x[:, :3].argmax(1) + (torch.rand(200, generator=g) < 0.2)) % 3  # noisy: not separable
    clf = fit_logistic(x, y, 3, C=0.5)
    w, b = clf.weight.clone().requires_grad_(), clf.bias.clone().requires_grad_()
    loss = 0.5 * w.pow(2).sum() + 0.5 * torch.nn.functional.cross_entropy(x @ w.T + b, y, reduction="sum")
    loss.backward()
    assert w.grad.abs().max() < 1e-4 and b.grad.abs().max() < 1e-4


def test_logistic_regression_matches_sklearn():
    linear_model = pytest.importorskip("sklearn.linear_model")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 10, generator=g, dtype=torch.float64)
    y = (x[:, :4].argmax(1) + (torch.rand(300, generator=g) < 0.3)) % 4
    ours = fit_logistic(x, y, 4, C=1.0)
    ref = linear_model.LogisticRegression(C=1.0, tol=1e-10, max_iter=2000).fit(x.numpy(), y.numpy())
    np.testing.assert_allclose(ours.weight.numpy(), ref.coef_, atol=1e-4)
    np.testing.assert_allclose(ours.bias.numpy(), ref.intercept_, atol=1e-4)


def test_knn_vote():
    train = torch.tensor([[0.0], [1.0], [1.1], [5.0]])
    labels = torch.tensor([0, 1, 1, 2])
    test = torch.tensor([[0.2], [4.0], [0.6]])
    assert knn_predict(train, labels, test, k=1).tolist() == [0, 2, 1]
    assert knn_predict(train, labels, test, k=3).tolist() == [1, 1, 1]
    # k = 2 at 0.45: one vote each for 0 (distance 0.45) and 1 (0.55): the nearer wins
    assert knn_predict(train, labels, torch.tensor([[0.45]]), k=2).tolist() == [0]


def test_bad_inputs():
    x, y = clusters(20)
    with pytest.raises(ValueError, match="labels"):
        few_label_probes(x, y[:-1], x, y, n_classes=3)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        few_label_probes(x, y, x, y, n_classes=2)
    with pytest.raises(ValueError, match="width"):
        few_label_probes(x, y, x[:, :3], y, n_classes=3)
    with pytest.raises(ValueError, match="NaN"):
        few_label_probes(x * float("nan"), y, x, y, n_classes=3)
    with pytest.raises(ValueError, match="k must"):
        knn_predict(x, y, x, k=0)
