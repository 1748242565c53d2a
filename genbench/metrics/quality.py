"""Sample quality through torch-fidelity: FID, KID, Inception Score, precision/recall.

Pipeline (each stage named a_to_b, caching between them):
  images_to_uint8      generated and real images alike: [-1, 1] -> 8-bit levels (the one
                       quantisation every dataset already has), grayscale repeated to RGB
                       only if the extractor needs RGB -- the same path for both sets
  uint8_to_features    the registered torch-fidelity extractor, batched, on the run's device
  features_to_quality  torch-fidelity's own metric functions (FID statistics and the
                       Frechet distance, KID's unbiased MMD over subsets, IS, and
                       precision/recall with generated as input 1)
Reference features are cached on disk, keyed by dataset content hash + extractor weights
hash + split + N, under $GENBENCH_CACHE/reference/.

FID is biased by N: a suite fixes N (generated) and the reference split and N, and every
record states them. KID is unbiased and preferable for small N. FID needs more samples than
feature dimensions in both sets (check_fid_sizes; runs check it before training).

On a dataset without labels the genbench extractor is trained to predict rotations
(extractors.py): its features serve FID, KID and precision/recall, but its logits are
rotation predictions, not classes, so no Inception Score is computed and the records say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

from genbench.utils.pixels import images_to_uint8
from genbench.utils.hashing import tensor_hash
from genbench.errors import GenbenchError
from genbench.metrics.extractors import (CLASSIFIER, FEATURE_DIM, Extractor, build_module, cache_root, head_targets,
                                         wants_inception)

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000  # capped at the smaller set's size
ISC_SPLITS = 10
PRC_NEIGHBORHOOD = 3
FEATURE_BATCH = 500
INCEPTION_FEATURE_DIM = 2048  # torch-fidelity InceptionV3's pool features (its layer "2048")
# Provenance of extractor features and the reference set (Extractor.provenance,
# reference_features): conditions of comparability of every value computed from them.
FEATURE_CONDITIONS = ("extractor", "extractor_weights_hash", "extractor_weights_sha256", "extractor_task",
                      "feature_layer", "input", "preprocessing", "reference_split", "n_reference",
                      "reference_cache_key")
NO_INCEPTION_SCORE = ("not computed: the dataset has no labels, so the genbench extractor was trained on "
                      "rotation prediction and its logits are rotations, not classes")


@dataclass(frozen=True)
class QualitySettings:
    kid_subsets: int = KID_SUBSETS
    kid_subset_size: int = KID_SUBSET_SIZE
    isc_splits: int = ISC_SPLITS
    prc_neighborhood: int = PRC_NEIGHBORHOOD

    def provenance(self, n_gen: int, n_ref: int) -> dict[str, Any]:
        return {"kid_subsets": self.kid_subsets, "kid_subset_size": min(self.kid_subset_size, n_gen, n_ref),
                "isc_splits": self.isc_splits, "prc_neighborhood": self.prc_neighborhood}


def images_to_extractor_input(x: torch.Tensor, extractor: Extractor) -> torch.Tensor:
    """[-1, 1] float (N, C, H, W) -> uint8 as the extractor takes it."""
    u8 = images_to_uint8(x)  # (N, C, H, W) uint8
    if extractor.channels == 3 and u8.shape[1] == 1:
        u8 = u8.expand(-1, 3, -1, -1)
    return u8


@torch.no_grad()
def uint8_to_features(extractor: Extractor, u8: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    """Features and logits of uint8 images, batched, returned on the CPU in float64."""
    module = build_module(extractor, (extractor.feature_layer, extractor.logits_layer), device)
    parts: dict[str, list[torch.Tensor]] = {extractor.feature_layer: [], extractor.logits_layer: []}
    for batch in u8.split(FEATURE_BATCH):
        out = module.convert_features_tuple_to_dict(module(batch.to(device)))
        for name, value in out.items():
            parts[name].append(value.double().cpu())
    return {"features": torch.cat(parts[extractor.feature_layer]), "logits": torch.cat(parts[extractor.logits_layer])}


def images_to_features(x: torch.Tensor, extractor: Extractor, device: torch.device) -> dict[str, torch.Tensor]:
    return uint8_to_features(extractor, images_to_extractor_input(x, extractor), device)


def reference_features(dataset, split: str, n: int | None, extractor: Extractor,
                       device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Features of the first n images of a split (all if None), cached on disk. Split "heldout"
    (Dataset.heldout) is outside the content hash, so its key names its own hash too."""
    x = getattr(dataset, split).x
    n = len(x) if n is None else min(n, len(x))
    tag = split if split in ("train", "test") else f"{split}{tensor_hash(x[:n])}"
    key = f"{dataset.info.content_hash}-{extractor.weights_hash}-{tag}-n{n}"
    path = cache_root() / "reference" / f"{extractor.name}-{key}.pt"
    provenance = {"reference_split": split, "n_reference": n, "reference_cache_key": key}
    if path.is_file():
        return torch.load(path, weights_only=True), provenance
    features = images_to_features(x[:n], extractor, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(features, tmp)
    tmp.replace(path)
    return features, provenance


def fid_dims(feature_extractor: str, feature_weights: str | None) -> int:
    """Feature dimensions of the extractor a run's settings choose."""
    return INCEPTION_FEATURE_DIM if wants_inception(feature_extractor, feature_weights) else FEATURE_DIM


def check_fid_sizes(n_generated: int, n_reference: int, dims: int, setting: str = "eval_samples") -> None:
    """FID's covariances need more samples than feature dimensions in both sets, the reference
    set being the whole training split; `setting` names what sets n_generated."""
    needs = f"FID needs more samples than feature dimensions ({dims} for this feature extractor) in both its sets"
    if n_reference <= dims:
        raise GenbenchError(
            f"{needs}, but the training split, its reference set, has only {n_reference} examples. Use a dataset "
            f"with well over {dims} training images (more images; a larger limit=N; a larger n or n_train for "
            "generated data)."
        )
    if n_generated <= dims:
        raise GenbenchError(f"{needs}, but {setting} is {n_generated}: raise it to well over {dims} (FID is "
                            "biased at small N; e.g. 1000).")


def features_to_fid_kid(g: torch.Tensor, r: torch.Tensor, seed: int,
                        settings: QualitySettings = QualitySettings()) -> dict[str, float]:
    """FID and KID (mean, std over subsets) of generated vs reference features."""
    check_fid_sizes(len(g), len(r), g.shape[1])
    fid = fid_statistics_to_metric(fid_features_to_statistics(g), fid_features_to_statistics(r), verbose=False)
    kid = kid_features_to_metric(g, r, kid_subsets=settings.kid_subsets,
                                 kid_subset_size=min(settings.kid_subset_size, len(g), len(r)),
                                 rng_seed=seed, verbose=False)
    return {"fid": fid["frechet_inception_distance"], "kid": kid["kernel_inception_distance_mean"],
            "kid_std": kid["kernel_inception_distance_std"]}


def label_free(dataset, extractor: Extractor) -> bool:
    """True when the genbench extractor of this dataset learnt rotations (no labels or factors)."""
    return extractor.name == CLASSIFIER and head_targets(dataset.train) is None


def features_to_quality(gen: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], seed: int,
                        settings: QualitySettings = QualitySettings(),
                        inception_score: bool = True) -> dict[str, float]:
    """FID, KID (mean, std over subsets), IS (mean, std over splits; unless `inception_score`
    is False: the logits are not classes), precision, recall."""
    g, r = gen["features"], ref["features"]
    values = features_to_fid_kid(g, r, seed, settings)
    if inception_score:
        isc = isc_features_to_metric(gen["logits"], splits=settings.isc_splits, shuffle=True, rng_seed=seed)
        values.update({"is": isc["inception_score_mean"], "is_std": isc["inception_score_std"]})
    prc = prc_features_to_metric(g.float(), r.float(), prc_neighborhood=settings.prc_neighborhood,
                                 prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    return {**values, "precision": prc["precision"], "recall": prc["recall"]}
