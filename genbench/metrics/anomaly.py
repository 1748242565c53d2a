"""Likelihood-based anomaly (out-of-distribution) detection.

The protocol of Nalisnick et al. 2019, "Do Deep Generative Models Know What They Don't
Know?" (ICLR): score every example by the model's NLL in bits/dim (higher = more
anomalous) and report the AUROC of in-distribution test examples (negatives) against
the test split of another dataset (positives). Their finding is that likelihood models
often fail this test, assigning *higher* likelihood to simpler OOD data (SVHN under a
CIFAR-10 model): AUROC < 0.5. That failure is a result, so every record states it
(`assigns_higher_likelihood_to_ood`: mean OOD bits/dim < mean in-distribution bits/dim).

In-distribution: the run's test split exactly as the `likelihood` metric prepares and
scores it (the model's convention, the same fixed-seed noise), so `anomaly/id_bpd`
equals `test/nll_bpd`. OOD: the test split of every other embedded image dataset in the
DATASETS registry (default options), a seeded subset no larger than the
in-distribution test split (photos' test crops are ordered photograph by photograph,
so a first-N cut would be a few photographs only), converted to the in-distribution
example shape by `convert_images` and re-quantised to 8-bit levels so the likelihood
conventions (binarisation, dequantisation, discrete NLL) stay valid, then prepared by
the model's own convention with the evaluation seed.

Applies to unconditional models with a likelihood estimator on an embedded image
dataset. Class-conditional models are left out: OOD data have no meaningful labels, and
-log p(x | y) with an arbitrary y is not an anomaly score (marginalising over classes
would cost one likelihood evaluation per class).

Cost: one likelihood evaluation of the test split (the same as the `likelihood` metric)
plus one of at most that many examples per OOD dataset; IWAE models use ctx.iwae_k.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from genbench.data import load_dataset  # the package: registers every dataset source
from genbench.utils.pixels import float01_to_images
from genbench.metrics.base import EVAL_SEED, EvalContext, MetricValue, register_metric
from genbench.metrics.likelihood import applies as likelihood_applies
from genbench.metrics.likelihood import ESTIMATOR_CONDITIONS, estimator_provenance, nll_per_example
from genbench.registry import DATASETS

PROTOCOL = ("Nalisnick et al. 2019: score = NLL per example, in-distribution test = negatives, "
            "OOD test = positives; AUROC = Mann-Whitney U / (n_id n_ood), ties count half")


def auroc(negatives: torch.Tensor, positives: torch.Tensor) -> float:
    """Area under the ROC curve for scores where positives should score higher
    (sklearn.metrics.roc_auc_score): the Mann-Whitney U statistic of the positives divided
    by n_pos * n_neg, with tied pairs counted half (Hanley & McNeil 1982). 1.0 = every
    positive above every negative, 0.0 = the reverse, 0.5 = no separation. The area
    depends on the scores' order alone, so they go in as ranks (tied scores share one):
    an infinite NLL then ranks last instead of being refused as a non-finite score."""
    neg = torch.as_tensor(negatives, dtype=torch.float64).flatten().cpu()
    pos = torch.as_tensor(positives, dtype=torch.float64).flatten().cpu()
    if neg.numel() == 0 or pos.numel() == 0:
        raise ValueError("AUROC needs at least one negative and one positive score")
    scores = torch.cat([neg, pos])  # (n_neg + n_pos,)
    if torch.isnan(scores).any():
        raise ValueError("AUROC scores contain NaN")
    ranks = torch.unique(scores, sorted=True, return_inverse=True)[1]  # (n_neg + n_pos,)
    labels = np.concatenate([np.zeros(neg.numel()), np.ones(pos.numel())])
    return float(roc_auc_score(labels, ranks.numpy()))


def match_channels(x: torch.Tensor, channels: int) -> tuple[torch.Tensor, str | None]:
    """(N, C, H, W) -> (N, channels, H, W): colour -> gray by the mean over channels, gray ->
    colour by repetition; returns the rule applied (None if none was needed)."""
    have = x.shape[1]
    if have == channels:
        return x, None
    if channels == 1:
        return x.mean(dim=1, keepdim=True), f"{have} channels -> gray by the mean over channels"
    if have == 1:
        return x.expand(-1, channels, -1, -1), f"gray -> {channels} channels by repetition"
    raise ValueError(f"cannot convert {have}-channel images to {channels} channels")


def match_size(x: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, str | None]:
    """(N, C, H, W) -> (N, C, *size): area averaging when shrinking (each output pixel the mean
    of the input pixels it covers), bilinear when enlarging (align_corners=False, as
    `digits` itself is upsampled); a shape shrunk on one side and enlarged on the other
    uses antialiased bilinear. Returns the rule applied (None if none was needed)."""
    have = tuple(x.shape[2:])
    if have == tuple(size):
        return x, None
    what = f"{have[0]}x{have[1]} -> {size[0]}x{size[1]}"
    if all(t <= h for t, h in zip(size, have)):
        return F.interpolate(x, size=size, mode="area"), f"{what} by area averaging"
    if all(t >= h for t, h in zip(size, have)):
        return (F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False),
                f"{what} by bilinear interpolation")
    return (F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True),
            f"{what} by antialiased bilinear interpolation")


def convert_images(x: torch.Tensor, shape: tuple[int, int, int]) -> tuple[torch.Tensor, str]:
    """Images (N, C, H, W) in [-1, 1] -> (N, *shape) in [-1, 1] on the 8-bit levels, and
    the conversion as a sentence. Channel mean and resizing are linear, so their order
    does not matter; the result is re-quantised (float01_to_images) because every
    likelihood convention assumes 8-bit data."""
    x, channel_rule = match_channels(x, shape[0])
    x, size_rule = match_size(x, tuple(shape[1:]))
    steps = [rule for rule in (channel_rule, size_rule) if rule is not None]
    steps.append("re-quantised to 8-bit levels")
    return float01_to_images((x + 1) / 2), "; ".join(steps)  # (N, *shape)


def subset_indices(n_total: int, n: int) -> torch.Tensor | None:
    """A seeded subset of n of n_total examples (sorted, seed EVAL_SEED), or None to take all."""
    if n_total <= n:
        return None
    perm = torch.randperm(n_total, generator=torch.Generator().manual_seed(EVAL_SEED))
    return perm[:n].sort().values  # (n,)


@dataclass(frozen=True)
class OODSet:
    """The test split of one embedded image dataset (default options), kept on the CPU."""

    name: str
    spec: str
    content_hash: str
    x: torch.Tensor  # (N, C, H, W) in [-1, 1]


@functools.lru_cache(maxsize=None)
def embedded_test_split(name: str) -> OODSet | None:
    """The test split of embedded dataset `name` if it holds images, else None. Loaded once
    per process (shapes renders 16k images); only the test split is kept."""
    data = load_dataset(name)
    if data.info.kind != "image":
        return None
    return OODSet(name, data.info.spec, data.info.content_hash, data.test.x)


def embedded(name: str) -> bool:
    """A registered dataset that ships with genbench (no path on disk needed)."""
    return name in DATASETS and not DATASETS.get(name).needs_path


def ood_sets(own: str) -> list[OODSet]:
    """Every embedded image dataset in the registry other than the run's own (by name)."""
    names = [n for n in DATASETS.names() if n != own and embedded(n)]
    return [s for s in map(embedded_test_split, names) if s is not None]


def applies(model, info) -> bool:
    return (info.kind == "image" and embedded(info.name) and likelihood_applies(model, info)
            and not model.class_conditional)


@dataclass(frozen=True)
class Scale:
    """Bits/dim when the model's convention defines them, else nats per example. Both
    example sets have the same D, so the AUROC is the same on either scale."""

    key: str  # "bpd" | "nll": the record-name suffix
    unit: str

    @staticmethod
    def of(model, nll: torch.Tensor, dims: int) -> tuple["Scale", torch.Tensor]:
        bpd = model.likelihood.bits_per_dim(nll, dims)
        if bpd is None:
            return Scale("nll", "nats/example"), nll
        return Scale("bpd", "bits/dim"), bpd


def ood_scores(ctx: EvalContext, ood: OODSet, n_id: int) -> tuple[torch.Tensor, dict]:
    """NLL (N,) in nats of up to n_id converted, prepared OOD test examples, with the
    provenance of the set they came from."""
    idx = subset_indices(len(ood.x), n_id)
    x, conversion = convert_images(ood.x if idx is None else ood.x[idx], ctx.dataset.info.shape)
    prepared = ctx.model.likelihood.prepare(x.to(ctx.device), ctx.generator())
    nll = nll_per_example(ctx.model, prepared, None, ctx.batch_size, ctx.iwae_k, ctx.generator())
    subset = (f"all {len(ood.x)} test examples" if idx is None else
              f"seeded subset: torch.randperm({len(ood.x)}, seed {EVAL_SEED})[:{n_id}], in source order")
    return nll, {"ood_dataset": ood.spec, "ood_content_hash": ood.content_hash, "n_ood": int(nll.numel()),
                 "ood_subset": subset, "conversion": conversion}


def ood_values(ctx: EvalContext, ood: OODSet, id_scores: torch.Tensor, base: dict) -> list[MetricValue]:
    nll, ood_prov = ood_scores(ctx, ood, int(id_scores.numel()))
    scale, scores = Scale.of(ctx.model, nll, ctx.dataset.info.dims)
    try:
        area = auroc(id_scores, scores)
    except ValueError as exc:
        raise ValueError(f"anomaly vs {ood.name}: {exc}") from None
    mean_ood = float(scores.mean())
    prov = {**base, **ood_prov, "assigns_higher_likelihood_to_ood": mean_ood < float(id_scores.mean())}
    return [MetricValue(f"anomaly/auroc@{ood.name}", area, "AUROC", prov),
            MetricValue(f"anomaly/ood_{scale.key}@{ood.name}", mean_ood, scale.unit, prov)]


ANOMALY_VALUES = {
    "anomaly/auroc@*": ("higher", "AUROC", "AUROC of the NLL telling the other dataset (name after @) from the "
                                           "test split; below 0.5 it gets the higher likelihood"),
    "anomaly/id_bpd": ("lower", "bits/dim", "mean score of the model's own test split (equals test/nll_bpd)"),
    "anomaly/id_nll": ("lower", "nats/example", "mean score of the model's own test split (equals test/nll)"),
    "anomaly/ood_*@*": ("neither", "*", "mean score of the other dataset: it should be high, not low"),
}


@register_metric("anomaly", applies,
                 "likelihood OOD detection: AUROC of test NLL vs other embedded image datasets "
                 "(Nalisnick et al. 2019; unconditional models)",
                 values=ANOMALY_VALUES, section="Anomaly detection by likelihood",
                 conditions=(*ESTIMATOR_CONDITIONS, "n_id", "n_ood", "split", "score", "protocol", "ood_dataset",
                             "ood_content_hash", "ood_subset", "conversion"),
                 outcomes=("assigns_higher_likelihood_to_ood",))
@torch.no_grad()
def anomaly(ctx: EvalContext) -> list[MetricValue]:
    model, info = ctx.model, ctx.dataset.info
    id_nll = ctx.test_nll
    scale, id_scores = Scale.of(model, id_nll, info.dims)
    base = {**estimator_provenance(model, ctx.iwae_k), "n_id": int(id_nll.numel()), "split": "test",
            "score": scale.unit, "protocol": PROTOCOL}
    values = [MetricValue(f"anomaly/id_{scale.key}", float(id_scores.mean()), scale.unit, base)]
    for ood in ood_sets(info.name):
        values += ood_values(ctx, ood, id_scores, base)
    return values
