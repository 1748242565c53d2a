"""Feature extractors for sample-quality metrics, registered with torch-fidelity.

genbench-classifier: a small convolutional classifier that genbench trains on the image
dataset being evaluated (as the FID-on-MNIST literature does with LeNet). Its 64-d
penultimate layer ("features") feeds FID, KID and precision/recall, standardised by a
fixed affine map (per-dimension mean and std of the training set's features, stored
with the weights) so its scale is that of unit-variance features; its logits
("logits", the dataset's class head) feed the Inception Score. It sees images at their
native size (no resize). Datasets with known factors (shapes) train one head per
factor, so the features see position, scale and orientation as well as the class.
Datasets with neither labels nor factors (unlabelled folders and npz files) train it to
predict each image's rotation instead (ROTATION_TASK): its features still feed FID, KID
and precision/recall, but its logits are rotations, so no Inception Score is computed.

Weights are identified by a hash of their tensors. Weights for the embedded datasets'
default specs ship with genbench (genbench/metrics/weights/, listed in manifest.json
with their test accuracy) and are reproduced by

    python -m genbench.metrics.extractors digits shapes photos

Any other image dataset (other sizes, MNIST/CIFAR from disk, folders) gets its
extractor trained on first use, deterministically from seed 0, and cached under
$GENBENCH_CACHE (default ~/.cache/genbench)/extractors/, keyed by the dataset's content
hash. FIDs are comparable only with the same extractor and weights hash: every quality
record carries both.

genbench-inception-v3-compat: torch-fidelity's InceptionV3 ("inception-v3-compat", TF-FID
weights) for standard FID, from a local weights file given by the user; it resizes to 299 px
internally (TF-compatible bilinear), and grayscale images are repeated to 3 channels -- for
generated and real images alike. The file is untrusted input: it is read with
weights_only=True (no code in it runs), must hold exactly the architecture's tensors, and
its SHA-256 is recorded with whether it is torch-fidelity's published file. A valid state
dict from another file (a re-saved copy, other weights) is accepted with a warning and
`extractor_weights_published: false` in provenance: its numbers then compare only with runs
that used the same tensors (`extractor_weights_hash`). torch-fidelity's own class would
unpickle the path with weights_only=False, so genbench registers a subclass that builds the
network from the checked state dict instead.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity import register_feature_extractor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from genbench.errors import GenbenchError
from genbench.utils.hashing import tensor_hash

CLASSIFIER = "genbench-classifier"
INCEPTION = "genbench-inception-v3-compat"
FORMAT_VERSION = 1  # bump when the network or training recipe changes (new cache keys)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"
SHIPPED_SPECS = ("digits", "shapes", "photos")
FEATURE_DIM = 64
TRAIN_STEPS = 1500
TRAIN_BATCH = 64
TRAIN_LR = 2e-3
TRAIN_WEIGHT_DECAY = 1e-4  # keeps logits (and so the Inception Score) from saturating
INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")
# SHA-256 of that file (95,628,359 bytes); the name's suffix is its first 8 hex digits (torch.hub).
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_HELP = (
    f"Download torch-fidelity's InceptionV3 weights (the TF-FID weights converted for PyTorch) from "
    f"{INCEPTION_URL} on a machine with network access, copy the file here, and pass its path with "
    "--feature-weights PATH."
)


class FeatureNet(nn.Module):
    """Two conv stages (3x3, ReLU, 2x2 max-pool) -> 4x4 average pool -> 64-d features -> heads."""

    def __init__(self, in_channels: int, head_sizes: tuple[int, ...], feature_dim: int = FEATURE_DIM):
        super().__init__()
        self.config = {"in_channels": in_channels, "head_sizes": tuple(head_sizes), "feature_dim": feature_dim}
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        )
        self.features = nn.Linear(64 * 16, feature_dim)
        self.heads = nn.ModuleList(nn.Linear(feature_dim, k) for k in head_sizes)
        # Fixed standardisation of the returned features, set once after training.
        self.register_buffer("feature_mean", torch.zeros(feature_dim))
        self.register_buffer("feature_std", torch.ones(feature_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, C, H, W) in [-1, 1] -> standardised features (B, 64), logits per head."""
        features = self.features(self.body(x))  # (B, 64)
        logits = [head(F.relu(features)) for head in self.heads]
        return (features - self.feature_mean) / self.feature_std, logits

    @torch.no_grad()
    def fit_standardisation(self, x: torch.Tensor) -> None:
        raw = torch.cat([self.features(self.body(b)) for b in x.split(512)])  # (N, 64)
        self.feature_mean.copy_(raw.mean(0))
        self.feature_std.copy_(raw.std(0).clamp_min(1e-6))


@dataclass(frozen=True)
class Extractor:
    """What quality metrics need to know about the extractor they use."""

    name: str  # torch-fidelity registered name
    weights_path: Path
    weights_hash: str
    feature_layer: str  # for FID, KID, precision/recall
    logits_layer: str  # for the Inception Score
    input_note: str  # input size and resize path, for provenance
    channels: int | None  # channels the network needs (None: as the data has)
    file_sha256: str | None = None  # user-supplied weights: the file's SHA-256
    published: bool | None = None  # ... and whether that is the published file's

    def provenance(self) -> dict[str, Any]:
        prov = {"extractor": self.name, "extractor_weights_hash": self.weights_hash,
                "feature_layer": self.feature_layer, "input": self.input_note}
        if self.file_sha256 is not None:
            prov.update(extractor_weights_sha256=self.file_sha256, extractor_weights_published=self.published)
        return prov


# ----------------------------------------------------------------------------- torch-fidelity


class GenbenchClassifierExtractor(FeatureExtractorBase):
    """torch-fidelity wrapper: uint8 NCHW in, ("features", "logits") out."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise GenbenchError(f"{CLASSIFIER} needs feature_extractor_weights_path (see genbench.metrics.extractors).")
        self.net = load_checkpoint(Path(feature_extractor_weights_path))

    @staticmethod
    def get_provided_features_list():
        return ("features", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 1, 16, 16, dtype=torch.uint8)

    def forward(self, x: torch.Tensor):
        features, logits = self.net(x.float() / 127.5 - 1.0)  # the data's own mapping of levels
        out = {"features": features, "logits": logits[0]}
        return tuple(out[name] for name in self.features_list)


register_feature_extractor(CLASSIFIER, GenbenchClassifierExtractor)


class CheckedInceptionV3(FeatureExtractorInceptionV3):
    """torch-fidelity's InceptionV3, built from a state dict genbench has read safely and
    checked (read_inception_state): the user's file never reaches the parent's
    torch.load(weights_only=False). `weights_sha256`, when given, must match the file."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, weights_sha256=None, **kwargs):
        if feature_extractor_weights_path is None:
            raise GenbenchError(f"{INCEPTION} needs a local weights file. {INCEPTION_HELP}")
        path = Path(feature_extractor_weights_path)
        state, sha256 = read_inception_state(path)
        if weights_sha256 is not None and sha256 != weights_sha256:
            raise GenbenchError(f"InceptionV3 weights {path} changed while genbench was running (SHA-256 "
                                f"{weights_sha256[:12]}... then {sha256[:12]}...). Leave the file alone and rerun.")
        super().__init__(name, features_list, feature_extractor_weights_path=serialised(state), **kwargs)


register_feature_extractor(INCEPTION, CheckedInceptionV3)


def serialised(state: dict[str, torch.Tensor]) -> io.BytesIO:
    """`state` as torch.save bytes: only genbench's own, checked tensors are ever unpickled
    by FeatureExtractorInceptionV3.__init__."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


@functools.lru_cache(maxsize=1)
def inception_shapes() -> dict[str, tuple[int, ...]]:
    """Parameter and buffer names and shapes of torch-fidelity's InceptionV3, from its own
    constructor on the meta device (no weights loaded, no memory used)."""

    class Skeleton(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):
            return None

    with torch.device("meta"):
        net = Skeleton(INCEPTION, ["2048"], feature_extractor_weights_path=serialised({}))
    return {name: tuple(t.shape) for name, t in net.state_dict().items()}


def read_inception_state(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The InceptionV3 state dict in `path` and the file's SHA-256, read without running
    code from it (weights_only=True) and checked against torch-fidelity's architecture."""
    try:
        data = path.read_bytes()  # read once: the hash and the tensors are of the same bytes
    except OSError as exc:
        raise GenbenchError(f"Cannot read the InceptionV3 weights {path}: {exc.strerror or exc}. Make the file "
                            f"readable (e.g. `chmod u+r {path}`) or pass a readable copy with --feature-weights PATH."
                            ) from None
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # untrusted bytes: whatever fails to parse is the file's fault, not a bug
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [""]
        # torch's weights-only failure explains itself on one line among advice to load unsafely
        reason = next((line for line in lines if "WeightsUnpickler error" in line), lines[0]).split(" Please use")[0]
        raise GenbenchError(
            f"{path} is not a plain PyTorch state dict of tensors, so it was not loaded (it may hold code, "
            f"which genbench never runs): {type(exc).__name__}: {reason} {INCEPTION_HELP}") from None
    problem = inception_state_problem(state)
    if problem:
        raise GenbenchError(f"{path} does not hold torch-fidelity's InceptionV3 weights: {problem}. {INCEPTION_HELP}")
    return dict(state), hashlib.sha256(data).hexdigest()


def inception_state_problem(state: Any) -> str | None:
    """Why `state` is not a state dict of torch-fidelity's InceptionV3 (names, shapes,
    float tensors), or None. BatchNorm's num_batches_tracked may be absent: load_state_dict
    fills it in, and torch-fidelity's published file leaves it out."""
    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not a state dict"
    expected = inception_shapes()
    optional = {k for k in expected if k.endswith(".num_batches_tracked")}
    problems = []
    if missing := sorted(set(expected) - set(state) - optional):
        problems.append(f"{len(missing)} missing tensor(s), e.g. {', '.join(missing[:3])}")
    if unexpected := sorted(map(str, set(state) - set(expected))):
        problems.append(f"{len(unexpected)} unexpected entries, e.g. {', '.join(unexpected[:3])}")
    wrong = [f"{k} is {describe(v)}, expected shape {list(expected[k])}" for k, v in state.items()
             if k in expected and not (torch.is_tensor(v) and tuple(v.shape) == expected[k]
                                       and (k in optional or v.is_floating_point()))]
    if wrong:
        problems.append(f"{len(wrong)} wrong tensor(s), e.g. {'; '.join(wrong[:3])}")
    return "; ".join(problems) or None


def describe(value: Any) -> str:
    if torch.is_tensor(value):
        return f"a {value.dtype} tensor of shape {list(value.shape)}"
    return f"a {type(value).__name__}"


# ----------------------------------------------------------------------------- weights


def load_checkpoint(path: Path) -> FeatureNet:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        net = FeatureNet(**checkpoint["config"])
        net.load_state_dict(checkpoint["state_dict"])
    except (OSError, RuntimeError, KeyError, TypeError) as exc:
        raise GenbenchError(
            f"Feature extractor weights {path} could not be loaded ({type(exc).__name__}: {exc}). "
            "Delete the file to have it retrained, or reinstall genbench for the shipped weights."
        ) from None
    return net.eval().requires_grad_(False)


def weights_hash(net: FeatureNet) -> str:
    state = net.state_dict()
    return tensor_hash(*(state[k] for k in sorted(state)))


def cache_root() -> Path:
    return Path(os.environ.get("GENBENCH_CACHE", Path.home() / ".cache" / "genbench"))


def shipped_manifest() -> dict[str, Any]:
    return json.loads(MANIFEST.read_text()) if MANIFEST.is_file() else {}


ROTATION_TASK = ("rotation prediction (0/90/180/270 degrees; 0/180 for non-square images), self-supervised "
                 "(Gidaris et al. 2018): the dataset has no labels")


def head_targets(split) -> list[torch.Tensor] | None:
    """One target per head: every factor if the dataset has them, else the labels; None with
    neither (the extractor then learns to predict rotations: see task_batch)."""
    if split.factors is not None:
        return [split.y] + [split.factors[:, i] for i in range(1, split.factors.shape[1])] \
            if split.y is not None else list(split.factors.T)
    return None if split.y is None else [split.y]


def task_batch(x: torch.Tensor, targets: list[torch.Tensor] | None, idx: torch.Tensor,
               generator: torch.Generator | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Images x (rows idx of a split) and their targets: the split's `targets`, or, label-free
    (None), each image turned by a random number of quarter turns (every 4th, without a
    generator) and that number; non-square images by 0 or 2 quarter turns."""
    if targets is not None:
        return x, [t[idx] for t in targets]
    turns = torch.randint(4, (len(x),), generator=generator) if generator is not None else torch.arange(len(x)) % 4
    if x.shape[2] != x.shape[3]:
        turns = turns % 2 * 2  # a quarter turn would change the image's shape
    out = x.clone()
    for k in set(turns.tolist()) - {0}:
        out[turns == k] = torch.rot90(x[turns == k], k, dims=(2, 3))
    return out, [turns]


def train_classifier(dataset, seed: int = 0, steps: int | None = None, progress: bool = True) -> tuple[FeatureNet, dict]:
    """Train the extractor deterministically on the dataset's train split (TRAIN_STEPS steps by default)."""
    steps = steps or TRAIN_STEPS
    train = dataset.train
    targets = head_targets(train)
    torch.manual_seed(seed)
    net = FeatureNet(train.x.shape[1], (4,) if targets is None else tuple(int(t.max()) + 1 for t in targets))
    optimiser = torch.optim.AdamW(net.parameters(), lr=TRAIN_LR, weight_decay=TRAIN_WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    with deterministic():
        for step in range(steps):
            idx = torch.randint(len(train), (TRAIN_BATCH,), generator=generator)
            x, batch_targets = task_batch(train.x[idx], targets, idx, generator)
            _, logits = net(x)
            loss = sum(F.cross_entropy(lg, t) for lg, t in zip(logits, batch_targets))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            if progress and (step + 1) % 500 == 0:
                print(f"  extractor step {step + 1}/{steps}, loss {float(loss.detach()):.3f}", file=sys.stderr)
    net.eval().requires_grad_(False)
    net.fit_standardisation(train.x)
    test_x, test_targets = task_batch(dataset.test.x, head_targets(dataset.test), torch.arange(len(dataset.test)), None)
    info = {"seed": seed, "steps": steps, "batch": TRAIN_BATCH, "lr": TRAIN_LR, "optimiser": f"adamw(wd={TRAIN_WEIGHT_DECAY})+cosine",
            "train_seconds": round(time.perf_counter() - start, 1),
            "task": ROTATION_TASK if targets is None else "the dataset's labels (and factors)",
            "test_accuracy": test_accuracy(net, test_x, test_targets)}
    return net, info


def test_accuracy(net: FeatureNet, x: torch.Tensor, targets: list[torch.Tensor]) -> float:
    """Accuracy of the first head (the class, or the rotation) on held-out images x."""
    with torch.no_grad():
        logits = torch.cat([net(b)[1][0] for b in x.split(512)])
    return float((logits.argmax(1) == targets[0]).float().mean())


class deterministic:
    """torch.use_deterministic_algorithms for the block, restored after."""

    def __enter__(self):
        self.previous = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True)

    def __exit__(self, *exc):
        torch.use_deterministic_algorithms(self.previous)


def save_checkpoint(net: FeatureNet, info: dict, dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"format": FORMAT_VERSION, "config": net.config, "state_dict": net.state_dict(),
                "dataset": {"spec": dataset.info.spec, "content_hash": dataset.info.content_hash},
                "training": info}, tmp)
    tmp.replace(path)  # atomic: a killed training never leaves a half-written file


def classifier_for(dataset, progress: bool = True) -> Extractor:
    """The genbench classifier for this image dataset: shipped, cached, or trained now."""
    if dataset.info.kind != "image":
        raise GenbenchError(f"Sample-quality features need images; {dataset.info.spec} holds 2-D points.")
    entry = shipped_manifest().get(dataset.info.content_hash)
    if entry is not None:
        path = WEIGHTS_DIR / entry["file"]
    else:
        path = cache_root() / "extractors" / f"{CLASSIFIER}-v{FORMAT_VERSION}-{dataset.info.content_hash}.pt"
        if not path.is_file():
            if progress:
                print(f"training the genbench feature extractor for {dataset.info.spec} "
                      f"(once; cached at {path})", file=sys.stderr)
            net, info = train_classifier(dataset, progress=progress)
            save_checkpoint(net, info, dataset, path)
    net = load_checkpoint(path)
    c, h, w = dataset.info.shape
    return Extractor(CLASSIFIER, path, weights_hash(net), "features", "logits",
                     f"native {h}x{w}, {c} channel(s), no resize", None)


def wants_inception(feature_extractor: str, feature_weights: str | None) -> bool:
    """InceptionV3 when asked for by name, or by giving its weights with extractor "auto"."""
    return feature_extractor == "inception-v3" or (feature_extractor == "auto" and bool(feature_weights))


def check_inception_file(weights: str | Path) -> None:
    """Refuse a bad InceptionV3 weights file before any training (run settings call this):
    read and checked once per version of the file (path, size, modification time)."""
    path = Path(weights).resolve()
    stat = path.stat()
    checked_inception_file(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def checked_inception_file(path: Path, size: int, mtime_ns: int) -> None:
    read_inception_state(path)


def inception(weights: str | Path) -> Extractor:
    """torch-fidelity's InceptionV3 from a local weights file, checked (read_inception_state);
    a valid file that is not the published one is used with a warning and flagged in provenance."""
    path = Path(weights)
    if not path.is_file():
        raise GenbenchError(f"InceptionV3 weights not found at {path}. {INCEPTION_HELP}")
    state, sha256 = read_inception_state(path)
    published = sha256 == INCEPTION_SHA256
    if not published:
        warnings.warn(f"{path} holds valid InceptionV3 weights but is not torch-fidelity's published file "
                      f"(SHA-256 {sha256[:16]}..., published {INCEPTION_SHA256[:16]}...): its FIDs are recorded "
                      "with extractor_weights_published=false and compare only with runs that used the same "
                      "tensors (extractor_weights_hash), not with published numbers.", stacklevel=2)
    return Extractor(INCEPTION, path, tensor_hash(*(state[k] for k in sorted(state))), "2048", "logits_unbiased",
                     "torch-fidelity InceptionV3: resized to 299x299 (TF-compatible bilinear), grayscale repeated to RGB",
                     3, file_sha256=sha256, published=published)


@functools.lru_cache(maxsize=4)
def build_module(extractor: Extractor, features: tuple[str, ...], device: torch.device) -> FeatureExtractorBase:
    """The torch-fidelity module for an Extractor, on `device` (loaded once per process;
    frozen and in eval mode, so sharing it is safe)."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    cls = FEATURE_EXTRACTORS_REGISTRY[extractor.name]
    module = cls(extractor.name, list(features), feature_extractor_weights_path=str(extractor.weights_path),
                 weights_sha256=extractor.file_sha256, verbose=False)
    return module.eval().requires_grad_(False).to(device)


def main(argv: list[str]) -> int:
    """Retrain the shipped weights: python -m genbench.metrics.extractors digits shapes photos"""
    from genbench.data import load_dataset

    manifest = shipped_manifest()
    for spec in argv or SHIPPED_SPECS:
        dataset = load_dataset(spec)
        print(f"training {CLASSIFIER} on {dataset.info.spec} ({len(dataset.train)} images)", file=sys.stderr)
        net, info = train_classifier(dataset)
        file = f"{CLASSIFIER}-{dataset.info.name}.pt"
        save_checkpoint(net, info, dataset, WEIGHTS_DIR / file)
        manifest = {k: v for k, v in manifest.items() if v["spec"] != dataset.info.spec}
        manifest[dataset.info.content_hash] = {
            "spec": dataset.info.spec, "file": file, "weights_hash": weights_hash(net), **info,
            "command": "python -m genbench.metrics.extractors " + dataset.info.spec,
        }
        print(f"  test accuracy {info['test_accuracy']:.4f}, {info['train_seconds']} s", file=sys.stderr)
    MANIFEST.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
