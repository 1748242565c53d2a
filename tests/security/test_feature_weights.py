"""--feature-weights is untrusted input: no code in it runs, only torch-fidelity's
InceptionV3 state dict is accepted, the network genbench builds from it computes what
torch-fidelity's own class computes, and the file's SHA-256 is recorded."""

from __future__ import annotations

import ast
import hashlib
import warnings
from pathlib import Path

import pytest
import torch
import torch_fidelity.feature_extractor_inceptionv3 as tf_inception
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from genbench.errors import GenbenchError
from genbench.metrics.extractors import (
    INCEPTION,
    INCEPTION_SHA256,
    INCEPTION_URL,
    CheckedInceptionV3,
    build_module,
    inception,
)

CPU = torch.device("cpu")
LAYERS = ("2048", "logits_unbiased")


class WritesMarker:
    """Unpickling this creates `marker`: what a crafted .pth does with os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


@pytest.fixture(scope="module")
def random_state(tmp_path_factory) -> dict[str, torch.Tensor]:
    """torch-fidelity's InceptionV3 state dict with random weights and BatchNorm statistics
    (the published file cannot be downloaded here)."""

    class Untrained(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):
            return None

    empty = tmp_path_factory.mktemp("empty") / "empty.pth"
    torch.save({}, empty)
    torch.manual_seed(0)
    net = Untrained("untrained", ["2048"], feature_extractor_weights_path=str(empty))
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("conv.weight"):  # He init: the signal neither dies nor explodes over 94 layers
                torch.nn.init.kaiming_normal_(tensor, nonlinearity="relu")
            elif name.endswith(("bn.weight", "running_var")):
                tensor.uniform_(0.5, 1.5)
            elif name.endswith(("bn.bias", "running_mean")):
                tensor.uniform_(-0.1, 0.1)
    return {k: v.clone() for k, v in net.state_dict().items()}


def saved(state, path: Path) -> Path:
    torch.save(state, path)
    return path


def test_a_pickle_that_runs_code_is_refused_and_never_unpickled(tmp_path, random_state):
    marker = tmp_path / "code-ran"
    evil = saved({**random_state, "Conv2d_1a_3x3.conv.weight": WritesMarker(marker)}, tmp_path / "evil.pth")

    with pytest.raises(GenbenchError, match="not a plain PyTorch state dict.*never runs.*--feature-weights PATH"):
        inception(evil)
    with pytest.raises(GenbenchError, match="not a plain PyTorch state dict"):
        CheckedInceptionV3(INCEPTION, ["2048"], feature_extractor_weights_path=str(evil))
    assert not marker.exists()

    # The original failure: torch-fidelity's own class unpickles the path and runs the payload.
    with pytest.raises(Exception):
        FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(evil))
    assert marker.exists()


def missing_key(state):
    return {k: v for k, v in state.items() if k != "Mixed_7c.branch_pool.conv.weight"}


def extra_key(state):
    return {**state, "AuxLogits.fc.weight": torch.zeros(1000, 768)}


def wrong_shape(state):
    return {**state, "fc.weight": torch.zeros(1000, 2048)}


def not_a_tensor(state):
    return {**state, "fc.bias": [0.0] * 1008}


def integer_weights(state):
    return {**state, "fc.weight": torch.zeros(1008, 2048, dtype=torch.int64)}


@pytest.mark.parametrize("corrupt, named", [
    (missing_key, "missing tensor.*Mixed_7c.branch_pool.conv.weight"),
    (extra_key, "unexpected entr.*AuxLogits.fc.weight"),
    (wrong_shape, r"fc.weight is a torch.float32 tensor of shape \[1000, 2048\], expected shape \[1008, 2048\]"),
    (not_a_tensor, "fc.bias is a list"),
    (integer_weights, "fc.weight is a torch.int64 tensor"),
    (lambda state: list(state.values()), "holds a list, not a state dict"),
])
def test_wrong_names_or_shapes_are_refused(tmp_path, random_state, corrupt, named):
    path = saved(corrupt(random_state), tmp_path / "bad.pth")
    with pytest.raises(GenbenchError, match=f"does not hold torch-fidelity's InceptionV3 weights: .*{named}"):
        inception(path)
    with pytest.raises(GenbenchError, match=named):
        CheckedInceptionV3(INCEPTION, ["2048"], feature_extractor_weights_path=str(path))


def test_valid_state_dict_gives_torch_fidelitys_features(tmp_path, random_state):
    path = saved(random_state, tmp_path / "random-inception.pth")  # our own file: safe for torch-fidelity to unpickle
    reference = FeatureExtractorInceptionV3("inception-v3-compat", list(LAYERS),
                                            feature_extractor_weights_path=str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not the published file: covered below
        ours = build_module(inception(path), LAYERS, CPU)
    assert isinstance(ours, CheckedInceptionV3)
    u8 = torch.randint(0, 256, (2, 3, 40, 40), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    with torch.no_grad():
        expected, got = reference(u8), ours(u8)
    for layer, e, g in zip(LAYERS, expected, got):
        assert e.shape == g.shape == (2, {"2048": 2048, "logits_unbiased": 1008}[layer])
        assert torch.isfinite(e).all() and (e[0] - e[1]).abs().max() > 1e-2 * e.abs().max()  # depends on the image
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-6)


def test_published_file_layout_without_num_batches_tracked_loads(tmp_path, random_state):
    state = {k: v for k, v in random_state.items() if not k.endswith("num_batches_tracked")}
    path = saved(state, tmp_path / "no-counters.pth")
    net = CheckedInceptionV3(INCEPTION, ["2048"], feature_extractor_weights_path=str(path))
    torch.testing.assert_close(net.fc.weight, random_state["fc.weight"], rtol=0, atol=0)


def test_file_hash_is_reported_and_other_files_are_flagged(tmp_path, random_state, monkeypatch):
    path = saved(random_state, tmp_path / "random-inception.pth")
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()

    with pytest.warns(UserWarning, match="not torch-fidelity's published file"):
        other = inception(path)
    prov = other.provenance()
    assert prov["extractor_weights_sha256"] == sha256 and prov["extractor_weights_published"] is False

    monkeypatch.setattr("genbench.metrics.extractors.INCEPTION_SHA256", sha256)  # as if it were the published file
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        published = inception(path)
    assert published.provenance()["extractor_weights_published"] is True
    assert published.weights_hash == other.weights_hash  # same tensors, same tensor hash


def test_published_hash_matches_torch_fidelitys_url():
    """The torch.hub convention: the name's suffix is the first hex digits of the file's SHA-256."""
    assert INCEPTION_URL == tf_inception.URL_INCEPTION_V3
    suffix = torch.hub.HASH_REGEX.search(INCEPTION_URL.rsplit("/", 1)[1]).group(1)
    assert len(INCEPTION_SHA256) == 64 and INCEPTION_SHA256.startswith(suffix)


def test_a_file_changed_after_checking_is_refused(tmp_path, random_state):
    path = saved(random_state, tmp_path / "random-inception.pth")
    with pytest.raises(GenbenchError, match="changed while genbench was running"):
        CheckedInceptionV3(INCEPTION, ["2048"], feature_extractor_weights_path=str(path), weights_sha256="0" * 64)


def test_every_torch_load_in_genbench_is_weights_only():
    root = Path(__file__).resolve().parents[2] / "genbench"
    calls = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                           for k in node.keywords)
                calls.append((f"{path.name}:{node.lineno}", safe))
    assert calls and all(safe for _, safe in calls), calls
