"""GAN generators and discriminators: shapes, ranges, options, heads and one training step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from genbench.errors import ConfigError
from genbench.models.gan_nets import (
    GanNetOptions,
    build_discriminator,
    build_generator,
    count_parameters,
)

IMAGES = [(1, 16, 16), (1, 28, 28), (3, 32, 32), (1, 64, 64)]
ARCHS = ["mlp", "dcgan", "resnet"]
UPSAMPLES = ["transposed", "pixel-shuffle", "nearest-conv"]
OUTPUTS = ["logit", "critic", "energy-l2", "energy-l1"]
LATENT = 8


def opts(**kw) -> GanNetOptions:
    kw.setdefault("width", 8)
    kw.setdefault("mlp_layers", 2)
    return GanNetOptions(**kw)


def d_norm_for(output: str) -> str:
    return "instance" if output == "critic" else "batch"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These nets are tiny: one thread is faster, and immune to OpenMP spinning on a busy 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("shape", IMAGES)
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("upsample", UPSAMPLES)
def test_generator_maps_latents_to_images_in_range(shape, arch, upsample):
    g = build_generator(opts(arch=arch, upsample=upsample), shape, LATENT, cond_dim=3)
    x = g(torch.randn(2, LATENT) * 5, F.one_hot(torch.tensor([0, 2]), 3).float())
    assert x.shape == (2, *shape)
    assert x.min() >= -1 and x.max() <= 1


def test_point_generator_has_a_linear_output():
    g = build_generator(opts(arch="mlp", width=16), (2,), LATENT)
    assert g(torch.randn(5, LATENT)).shape == (5, 2)
    assert isinstance(g.net.net[0][-1], nn.Linear) and not any(isinstance(m, nn.Tanh) for m in g.modules())


# upsampling only shapes the energy discriminators' decoders
OUTPUT_UPSAMPLES = [("logit", "transposed"), ("critic", "transposed")] + [
    (o, u) for o in ("energy-l2", "energy-l1") for u in UPSAMPLES]


@pytest.mark.parametrize("shape", IMAGES)
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("output, upsample", OUTPUT_UPSAMPLES)
def test_discriminator_outputs_one_score_per_example(shape, arch, output, upsample):
    d = build_discriminator(opts(arch=arch, upsample=upsample, d_norm=d_norm_for(output)), shape, output)
    out = d(torch.rand(3, *shape) * 2 - 1)
    assert out.score.shape == (3,)
    assert out.aux_logits is None and out.info_logits is None and out.info_mean is None
    if output.startswith("energy"):
        assert out.embedding.shape == (3, 8)
    else:
        assert out.embedding is None


@pytest.mark.parametrize("output", OUTPUTS)
def test_points_discriminator(output):
    d = build_discriminator(opts(arch="mlp", width=16), (2,), output)
    out = d(torch.randn(4, 2))
    assert out.score.shape == (4,)


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_conv_archs_reject_points_and_tiny_images(arch):
    with pytest.raises(ValueError, match="arch='mlp'"):
        build_generator(opts(arch=arch), (2,), LATENT)
    with pytest.raises(ConfigError, match="arch='mlp'"):
        build_discriminator(opts(arch=arch), (1, 6, 6), "logit")


def test_dcgan_channels_follow_radford_and_cap_at_512():
    g = build_generator(GanNetOptions(width=64), (3, 64, 64), 100)
    assert g.net.start == (512, 4, 4)
    convs = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [m.out_channels for m in convs] == [256, 128, 64, 3]
    assert build_generator(GanNetOptions(width=64), (1, 28, 28), 100).net.start == (128, 7, 7)
    assert build_generator(GanNetOptions(width=256), (1, 32, 32), 100).net.start == (512, 4, 4)
    d = build_discriminator(GanNetOptions(width=64), (3, 64, 64), "logit")
    assert [m.out_channels for m in d.modules() if isinstance(m, nn.Conv2d)] == [64, 128, 256, 512]


# ----------------------------------------------------------------------------- options


@pytest.mark.parametrize("bad", [{"arch": "vgg"}, {"upsample": "bilinear"}, {"d_norm": "layer"},
                                 {"g_norm": "instance"}, {"width": 0}, {"mlp_layers": -1},
                                 {"width": True}, {"spectral_norm": "yes"}])
def test_options_are_validated(bad):
    with pytest.raises(ValueError):
        GanNetOptions(**bad)


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_critic_with_batch_norm_is_refused_with_the_fix(arch):
    with pytest.raises(ValueError, match="d_norm='instance' or d_norm='none'"):
        build_discriminator(opts(arch=arch, d_norm="batch"), (1, 16, 16), "critic")
    build_discriminator(opts(arch="mlp", d_norm="batch"), (1, 16, 16), "critic")  # no norm in the MLP


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_d_norm_choices(arch):
    def kinds(norm):
        d = build_discriminator(opts(arch=arch, d_norm=norm), (1, 16, 16), "logit")
        return {type(m) for m in d.modules()}
    assert nn.BatchNorm2d in kinds("batch") and nn.InstanceNorm2d not in kinds("batch")
    assert nn.InstanceNorm2d in kinds("instance") and nn.BatchNorm2d not in kinds("instance")
    assert not {nn.BatchNorm2d, nn.InstanceNorm2d} & kinds("none")


def test_dcgan_d_has_no_norm_on_its_first_layer():
    d = build_discriminator(opts(), (1, 16, 16), "logit")
    assert isinstance(d.body[1], nn.Identity) and isinstance(d.body[4], nn.BatchNorm2d)


@pytest.mark.parametrize("upsample", UPSAMPLES)
@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_upsampling_choice_decides_transposed_convs(arch, upsample):
    g = build_generator(opts(arch=arch, upsample=upsample), (1, 16, 16), LATENT)
    d = build_discriminator(opts(arch=arch, upsample=upsample), (1, 16, 16), "energy-l2")
    for net in (g, d):
        has = any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())
        assert has == (upsample == "transposed")
    if upsample == "pixel-shuffle":
        assert any(isinstance(m, nn.PixelShuffle) for m in g.modules())


# ----------------------------------------------------------------------------- spectral norm


@pytest.mark.parametrize("arch", ARCHS)
def test_spectral_norm_wraps_every_layer_and_bounds_it(arch):
    d = build_discriminator(opts(arch=arch, spectral_norm=True, d_norm="none", width=16), (1, 16, 16),
                            "critic", n_classes=3, info_categories=2)
    layers = [m for m in d.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
    d.train()
    x = torch.randn(8, 1, 16, 16)
    opt = torch.optim.Adam(d.parameters(), lr=2e-4)  # DCGAN's learning rate
    d(x).score.mean().backward()
    opt.step()  # move the weights away from the normalised ones
    with torch.no_grad():
        for _ in range(5):  # one power iteration per training-mode forward (Miyato et al. 2018)
            d(x)
        d.eval()  # read the weights without a further power iteration
        for m in layers:
            sigma = torch.linalg.matrix_norm(m.weight.flatten(1), ord=2)
            assert abs(float(sigma) - 1) < 0.02


def test_no_spectral_norm_by_default():
    d = build_discriminator(opts(), (1, 16, 16), "logit")
    assert not any(parametrize.is_parametrized(m) for m in d.modules())


# ----------------------------------------------------------------------------- energy


@pytest.mark.parametrize("arch, shape", [("mlp", (2,)), ("mlp", (1, 16, 16)), ("dcgan", (1, 16, 16)),
                                         ("resnet", (3, 32, 32))])
def test_energy_score_is_the_reconstruction_error(arch, shape):
    x = torch.randn(4, *shape)
    for output, err in (("energy-l2", lambda r: (r - x) ** 2), ("energy-l1", lambda r: (r - x).abs())):
        d = build_discriminator(opts(arch=arch), shape, output).eval()
        out = d(x)
        recon = d.reconstruct(x)
        assert recon.shape == x.shape
        assert torch.allclose(d.head.decoder(out.embedding), recon)
        assert (out.score >= 0).all()
        assert torch.allclose(out.score, err(recon).flatten(1).mean(1), atol=1e-6)


# ----------------------------------------------------------------------------- conditioning


@pytest.mark.parametrize("arch, shape", [("mlp", (2,)), ("dcgan", (1, 16, 16)), ("resnet", (1, 16, 16))])
def test_cgan_discriminator_depends_on_the_label(arch, shape):
    d = build_discriminator(opts(arch=arch), shape, "logit", n_classes=3, cond_channels=3).eval()
    x = torch.randn(4, *shape)
    a, b = d(x, torch.tensor([0, 0, 0, 0])), d(x, torch.tensor([1, 2, 1, 2]))
    assert a.aux_logits is None
    assert not torch.allclose(a.score, b.score)
    with pytest.raises(ValueError, match="labels"):
        d(x)


@pytest.mark.parametrize("arch, shape", [("mlp", (2,)), ("dcgan", (1, 28, 28)), ("resnet", (3, 32, 32))])
@pytest.mark.parametrize("output", ["logit", "energy-l2"])
def test_acgan_and_infogan_heads(arch, shape, output):
    d = build_discriminator(opts(arch=arch), shape, output, n_classes=5, info_categories=4, info_continuous=2)
    out = d(torch.randn(3, *shape))
    assert out.aux_logits.shape == (3, 5)
    assert out.info_logits.shape == (3, 4) and out.info_mean.shape == (3, 2)
    only_cont = build_discriminator(opts(arch=arch), shape, output, info_continuous=2)(torch.randn(3, *shape))
    assert only_cont.info_logits is None and only_cont.aux_logits is None
    assert only_cont.info_mean.shape == (3, 2)


def test_generator_checks_its_condition():
    g = build_generator(opts(arch="mlp"), (2,), LATENT, cond_dim=3)
    with pytest.raises(ValueError):
        g(torch.randn(2, LATENT))
    with pytest.raises(ValueError):
        build_generator(opts(arch="mlp"), (2,), LATENT)(torch.randn(2, LATENT), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="n_classes"):
        build_discriminator(opts(), (1, 16, 16), "logit", cond_channels=2)


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("arch, shape", [("mlp", (2,)), ("mlp", (1, 16, 16)), ("dcgan", (1, 16, 16)),
                                         ("resnet", (1, 16, 16))])
@pytest.mark.parametrize("output", ["logit", "energy-l1"])
def test_one_adam_step_trains_every_parameter(arch, shape, output):
    o = opts(arch=arch, spectral_norm=arch == "resnet")
    g = build_generator(o, shape, LATENT, cond_dim=3)
    d = build_discriminator(o, shape, output, n_classes=3, info_categories=2, info_continuous=1)
    opt_g, opt_d = torch.optim.Adam(g.parameters(), 1e-3), torch.optim.Adam(d.parameters(), 1e-3)
    y = torch.randint(0, 3, (4,))
    fake = g(torch.randn(4, LATENT), F.one_hot(y, 3).float())
    real, out = d(torch.randn(4, *shape)), d(fake)
    loss = (F.softplus(-real.score) + F.softplus(out.score)).mean() + F.cross_entropy(out.aux_logits, y) \
        + F.cross_entropy(out.info_logits, y % 2) + out.info_mean.pow(2).mean()
    opt_g.zero_grad(), opt_d.zero_grad()
    loss.backward()
    for net in (g, d):
        for name, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    before = [p.detach().clone() for p in g.parameters()]
    opt_d.step(), opt_g.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, g.parameters()))
    assert torch.isfinite(d(g(torch.randn(4, LATENT), F.one_hot(y, 3).float())).score).all()


def test_count_parameters():
    lin = nn.Linear(3, 4)
    assert count_parameters(lin) == 16
    g = build_generator(GanNetOptions(), (1, 16, 16), 100)
    assert count_parameters(g) == sum(p.numel() for p in g.parameters()) > 0
