"""Embedded datasets: layout, determinism and the properties their docs promise."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from genbench.data import load_dataset, mode_centres
from genbench.data import photos as photos_module
from genbench.data import shapes as shapes_module
from genbench.data.base import holdout_split
from genbench.errors import ConfigError
from genbench.utils.hashing import tensor_hash
from genbench.utils.pixels import float01_to_images, images_to_uint8


def assert_image_layout(split, shape, n_classes=None):
    assert split.x.dtype == torch.float32
    assert tuple(split.x.shape[1:]) == shape
    assert split.x.min() >= -1 and split.x.max() <= 1
    # 8-bit quantisation: every value is u / 127.5 - 1 for an integer u
    u = (split.x + 1) * 127.5
    assert torch.allclose(u, u.round(), atol=1e-3)
    if n_classes is not None:
        assert split.y.dtype == torch.int64 and len(split.y) == len(split.x)
        assert split.y.min() >= 0 and split.y.max() < n_classes


# ---------------------------------------------------------------- toy2d

@pytest.fixture(scope="module")
def ring():
    return load_dataset("toy2d-ring8")


@pytest.fixture(scope="module")
def grid():
    return load_dataset("toy2d-grid25")


def test_toy2d_mode_centres():
    ring = mode_centres("toy2d-ring8")
    assert ring.shape == (8, 2)
    assert torch.allclose(ring.norm(dim=1), torch.ones(8))
    angles = torch.atan2(ring[:, 1], ring[:, 0]) % (2 * math.pi)
    assert torch.allclose(angles, torch.arange(8) * (2 * math.pi / 8), atol=1e-5)
    grid = mode_centres("toy2d-grid25")
    assert grid.shape == (25, 2)
    expected = {(x, y) for x in (-4.0, -2.0, 0.0, 2.0, 4.0) for y in (-4.0, -2.0, 0.0, 2.0, 4.0)}
    assert {tuple(p) for p in grid.tolist()} == expected
    with pytest.raises(ValueError):
        mode_centres("toy2d-nope")


@pytest.mark.parametrize("name, n_modes, sigma", [("ring", 8, 0.01), ("grid", 25, 0.05)])
def test_toy2d_layout_and_modes(name, n_modes, sigma, ring, grid):
    data = {"ring": ring, "grid": grid}[name]
    info = data.info
    assert info.kind == "points" and info.shape == (2,)
    assert len(data.train) == 10000 and len(data.test) == 2500
    assert info.extras["mode_sigma"] == sigma
    centres = torch.tensor(info.extras["modes"])
    assert torch.equal(centres, mode_centres(info.name))
    for split in (data.train, data.test):
        assert split.x.dtype == torch.float32 and split.x.shape[1] == 2
        assert split.y.dtype == torch.int64 and 0 <= split.y.min() and split.y.max() < n_modes
        # 2-D isotropic Gaussian: distance to the centre is Rayleigh, mean sigma*sqrt(pi/2)
        dist = (split.x - centres[split.y]).norm(dim=1)
        assert dist.mean().item() == pytest.approx(sigma * math.sqrt(math.pi / 2), rel=0.05)
        # each point is nearest to the mode it was drawn from
        nearest = torch.cdist(split.x, centres).argmin(dim=1)
        assert torch.equal(nearest, split.y)
    counts = torch.bincount(data.train.y, minlength=n_modes).float()
    assert counts.min() > 0.8 * counts.mean()  # modes are equally likely


def test_toy2d_ring_radius(ring):
    assert ring.info.extras["radius"] == 1.0
    assert ring.train.x.norm(dim=1).mean().item() == pytest.approx(1.0, abs=0.01)


def test_toy2d_determinism(ring):
    again = load_dataset("toy2d-ring8")
    assert again.info.content_hash == ring.info.content_hash
    assert load_dataset("toy2d-ring8?seed=1").info.content_hash != ring.info.content_hash
    # the test set is its own stream: it does not depend on n_train
    small = load_dataset("toy2d-ring8", n_train=10)
    assert torch.equal(small.test.x, ring.test.x)
    assert not torch.equal(ring.train.x[:2500], ring.test.x)


# ---------------------------------------------------------------- digits

def test_digits_layout(digits):
    assert digits.info.kind == "image" and digits.info.shape == (1, 16, 16)
    assert digits.info.classes == tuple("0123456789")
    assert len(digits.train) == 1438 and len(digits.test) == 359  # 20% holdout of 1797
    for split in (digits.train, digits.test):
        assert_image_layout(split, (1, 16, 16), n_classes=10)
    assert set(digits.train.y.tolist()) == set(range(10))
    assert "holdout" in digits.info.split and "seed=0" in digits.info.split


def test_digits_sizes_and_values(digits):
    from sklearn.datasets import load_digits

    native = load_dataset("digits?size=8")
    big = load_dataset("digits", size=32)
    assert big.info.shape == (1, 32, 32) and native.info.shape == (1, 8, 8)
    assert_image_layout(big.train, (1, 32, 32), n_classes=10)
    assert len(big.train) == len(digits.train)
    # native size: exactly value / 16 quantised to 8 bits, in the holdout order
    source = load_digits()
    everything = torch.cat([native.train.x, native.test.x])
    labels = torch.cat([native.train.y, native.test.y])
    order = torch.cat(holdout_split(1797, 0.2, 0))  # train indices, then test indices
    expected = torch.round(torch.from_numpy(source.images[order.numpy()]) / 16 * 255)
    assert torch.equal(images_to_uint8(everything)[:, 0].double(), expected)
    assert torch.equal(labels, torch.from_numpy(source.target[order.numpy()]))


def test_digits_deterministic(digits):
    assert load_dataset("digits").info.content_hash == digits.info.content_hash


# ---------------------------------------------------------------- shapes

@pytest.fixture(scope="module")
def shapes():
    return load_dataset("shapes")


def test_shapes_layout(shapes):
    info = shapes.info
    assert info.kind == "image" and info.shape == (1, 32, 32)
    assert info.classes == ("square", "ellipse", "heart")
    assert len(shapes.train) + len(shapes.test) == 16384
    assert len(shapes.test) == round(16384 * 0.2)
    assert info.extras["factor_names"] == ("shape", "scale", "orientation", "pos_x", "pos_y")
    values = info.extras["factor_values"]
    assert [len(values[k]) for k in info.extras["factor_names"]] == [3, 6, 40, 32, 32]
    assert values["scale"][0] == 0.5 and values["scale"][-1] == 1.0
    assert values["orientation"][0] == 0 and values["orientation"][-1] < 2 * math.pi
    assert values["orientation"][1] == pytest.approx(2 * math.pi / 40)
    for split in (shapes.train, shapes.test):
        assert split.x.dtype == torch.float32
        assert set(split.x.unique().tolist()) == {-1.0, 1.0}  # binary, exactly
        f = split.factors
        assert f.dtype == torch.int64 and f.shape == (len(split), 5)
        assert (f >= 0).all() and (f < torch.tensor([3, 6, 40, 32, 32])).all()
        assert torch.equal(split.y, f[:, 0])
        # shapes stay inside the canvas: the border is always off
        im = split.x[:, 0]  # (N, H, W)
        assert (im[:, [0, -1], :] == -1).all() and (im[:, :, [0, -1]] == -1).all()
    all_f = torch.cat([shapes.train.factors, shapes.test.factors])
    for column, count in enumerate([3, 6, 40, 32, 32]):  # every value is used
        assert len(all_f[:, column].unique()) == count


def test_shapes_factors_change_the_image():
    base = np.array([[0, 5, 0, 16, 16]])
    variants = np.repeat(base, 3, axis=0)
    variants[:, 0] = [0, 1, 2]
    images = shapes_module.render(variants, 32)
    assert not np.array_equal(images[0], images[1]) and not np.array_equal(images[1], images[2])
    # area follows the shape: square (4) > heart (~2.9) > ellipse (pi/2)
    areas = images.reshape(3, -1).sum(1)
    assert areas[0] > areas[2] > areas[1]
    # pos_x moves the shape right, pos_y moves it down, scale grows it
    moved = np.array([[0, 5, 0, 0, 0], [0, 5, 0, 31, 0], [0, 5, 0, 0, 31], [0, 0, 0, 0, 0]])
    images = shapes_module.render(moved, 32)
    cols = [np.nonzero(im)[1].mean() for im in images]
    rows = [np.nonzero(im)[0].mean() for im in images]
    assert cols[1] > cols[0] + 10 and rows[2] > rows[0] + 10
    assert images[3].sum() < images[0].sum() / 3  # scale 0.5: a quarter of the area
    # orientation: the ellipse is wide at angle 0 and tall after a quarter turn (index 10)
    flat, tall = shapes_module.render(np.array([[1, 5, 0, 16, 16], [1, 5, 10, 16, 16]]), 32)
    assert flat.any(0).sum() > 1.5 * flat.any(1).sum()
    assert tall.any(1).sum() > 1.5 * tall.any(0).sum()


def test_shapes_determinism_and_size64(shapes):
    again = load_dataset("shapes")
    assert again.info.content_hash == shapes.info.content_hash
    other = load_dataset("shapes?seed=1&n=512")
    assert other.info.content_hash != load_dataset("shapes?n=512").info.content_hash
    big = load_dataset("shapes?size=64&n=256")
    assert big.info.shape == (1, 64, 64) and len(big.train) + len(big.test) == 256
    assert set(big.train.x.unique().tolist()) == {-1.0, 1.0}
    # the factors do not depend on the size
    small = load_dataset("shapes?n=256")
    assert torch.equal(small.train.factors, big.train.factors)


def test_shapes_generation_is_fast():
    start = time.perf_counter()
    factors = shapes_module.sample_factors(16384, np.random.default_rng(0))
    shapes_module.render(factors, 32)
    assert time.perf_counter() - start < 2.0


# ---------------------------------------------------------------- photos

@pytest.fixture(scope="module")
def photos():
    return load_dataset("photos")


def test_photos_layout(photos):
    info = photos.info
    assert info.kind == "image" and info.shape == (3, 32, 32)
    assert len(info.classes) == 8 and info.classes[0] == "astronaut"
    assert len(photos.train) == 8 * 1024 and len(photos.test) == 8 * 128
    for split, n in ((photos.train, 1024), (photos.test, 128)):
        assert_image_layout(split, (3, 32, 32), n_classes=8)
        assert torch.equal(torch.bincount(split.y), torch.full((8,), n))
    # crops differ: not all the same picture
    assert photos.train.x.std(dim=0).mean() > 0.1


def test_photos_train_and_test_rows_are_disjoint(photos):
    for bands in photos.info.extras["row_bands"].values():
        train_rows, test_rows = bands["train_rows"], bands["test_rows"]
        assert train_rows[1] <= test_rows[0] and test_rows[1] == 128
        assert test_rows[1] - test_rows[0] >= 32 and train_rows[1] - train_rows[0] >= 32
    # every crop lies wholly in its band: crop an image whose pixels hold their row index
    image = torch.arange(128.0).view(1, 128, 1).expand(3, 128, 200)
    train_band, test_band = photos_module.row_bands(128, 32)
    rng = np.random.default_rng(0)
    for band in (train_band, test_band):
        crops = photos_module.random_crops(image, band, 500, 32, rng)
        assert crops.min() >= band[0] and crops.max() < band[1]
    # and no test crop equals a train crop
    train_keys = {bytes(c.numpy().tobytes()) for c in images_to_uint8(photos.train.x)}
    assert not any(bytes(c.numpy().tobytes()) in train_keys for c in images_to_uint8(photos.test.x))


# Recorded with the code before the held-out split was added (issue 20): adding it must not
# change the train and test crops, nor the content hash the shipped extractor is keyed by.
PHOTOS_HASHES = {
    "photos": ("83ad9c66c5b36c88", "38d92e8d0ac520b4", "bef02b6a654b49ef"),
    "photos?n_train=64&n_test=16&seed=3": ("b4ec5fa15e00b4f4", "bf12194369c1a9d7", "2c079da3e87e9c0a"),
}


def photos_hashes(data):
    return data.info.content_hash, tensor_hash(data.train.x, data.train.y), tensor_hash(data.test.x, data.test.y)


def test_photos_train_test_and_hash_unchanged_by_the_heldout_split(photos):
    assert photos_hashes(photos) == PHOTOS_HASHES["photos"]
    small = "photos?n_train=64&n_test=16&seed=3"
    assert photos_hashes(load_dataset(small)) == PHOTOS_HASHES[small]
    assert photos_hashes(load_dataset(small + "&n_heldout=5")) == PHOTOS_HASHES[small]  # any n_heldout


def test_photos_heldout_comes_from_the_train_band(photos):
    heldout = photos.heldout
    assert len(heldout) == 8 * 128 and photos.provenance()["n_heldout"] == 8 * 128
    assert_image_layout(heldout, (3, 32, 32), n_classes=8)
    assert torch.equal(heldout.y, torch.arange(8).repeat_interleave(128))  # photograph by photograph
    # the crops lie in the train band: crop an image whose pixels hold their row index, with
    # the loader's own stream for held-out crops
    image = torch.arange(128.0).view(1, 128, 1).expand(3, 128, 200)
    train_band, _ = photos_module.row_bands(128, 32)
    rng = np.random.default_rng([0, 0, photos_module.HELDOUT])
    crops = photos_module.random_crops(image, train_band, 128, 32, rng)
    assert crops.min() >= train_band[0] and crops.max() < train_band[1]
    # same stream as the loader: the first photograph's held-out crops are these positions
    astronaut = photos_module.resize_short_side(photos_module.read_photo("astronaut"))
    expected = photos_module.random_crops(astronaut, train_band, 128, 32,
                                          np.random.default_rng([0, 0, photos_module.HELDOUT]))
    assert torch.equal(heldout.x[:128], float01_to_images(expected))
    # a stream of its own: not the training crops, nor the test crops
    assert not torch.equal(heldout.x[:128], photos.train.x[:128])
    test_keys = {bytes(c.numpy().tobytes()) for c in images_to_uint8(photos.test.x)}
    assert not any(bytes(c.numpy().tobytes()) in test_keys for c in images_to_uint8(heldout.x))
    assert len(load_dataset("photos?n_train=8&n_test=4&n_heldout=3").heldout) == 24
    with pytest.raises(ConfigError, match="n_heldout"):
        load_dataset("photos?n_heldout=0")


def test_other_sources_have_no_heldout_split(digits):
    assert digits.heldout is None and "n_heldout" not in digits.provenance()


def test_photos_determinism():
    a = load_dataset("photos?n_train=8&n_test=4")
    assert a.info.content_hash == load_dataset("photos?n_train=8&n_test=4").info.content_hash
    assert a.info.content_hash != load_dataset("photos?n_train=8&n_test=4&seed=1").info.content_hash
    assert len(a.train) == 64 and len(a.test) == 32
