"""Models' transposed convolutions go through genbench.kernels.conv_transpose2d with the
model's backend, and say so in kernel_backends().

- Same weights, backend="triton" (the interpreter on CPU) vs "torch": the DCGAN generator
  (BatchNorm and ReLU fused into the layer, tanh into the last; or ReLU alone with
  g_norm="none"), the conv VAE decoder and the VQ-VAE decoder give the same outputs (fp32,
  rtol 1e-5) and parameter gradients; in eval mode without gradients the generator's
  BatchNorm is folded into the kernel's epilogue and still matches.
- backend="torch" is exactly the eager model it replaces: the networks as they were built
  before (nn.ConvTranspose2d + BatchNorm2d + ReLU modules), rebuilt here from the same seed,
  have the same parameters, in the same order, and the same outputs and gradients, bit for bit.
Shapes are tiny (16x16 images, width 8, batch 2): the interpreter is slow. On a GPU the
backend comparisons run there, TF32 off (cuDNN's and the kernel's fp32 both IEEE).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from genbench.data.base import DatasetInfo
from genbench.errors import ConfigError
from genbench.harness.spec import resolve_all, run_config
from genbench.kernels.conv_transpose import ConvTranspose2d
from genbench.models.autoencoder import Autoencoder, AutoencoderOptions
from genbench.models.gan import GAN, GanOptions
from genbench.models.gan_nets import (
    GanNetOptions,
    Generator,
    ProjectedDecoder,
    _start,
    build_generator,
    dcgan_init,
    level_channels,
    norm2d,
    upsample_levels,
)
from genbench.models.nets import ConvDecoder, conv_levels, conv_transpose_backends
from genbench.models.nets import level_channels as ae_level_channels
from genbench.models.vae import VAE, VAEOptions
from genbench.models.vqvae import VQVAE, ConvVQDecoder, ResidualBlock, VQVAEOptions
from genbench.registry import LOSSES, MODELS
from genbench.utils.threads import one_thread

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SHAPE = (1, 16, 16)
LATENT = 8
OP = "conv_transpose2d"


def info(shape=SHAPE) -> DatasetInfo:
    return DatasetInfo(name="t", spec="t", kind="image", shape=shape, classes=None, content_hash="0",
                       source="test", split="none")


@pytest.fixture(autouse=True)
def _one_thread_no_tf32(ieee_fp32):
    with one_thread():  # tiny networks: threads cost more than they give on 2 cores
        yield


def gan(backend: str, objective: str = "non-saturating", **options) -> GAN:
    torch.manual_seed(0)
    return GAN(GanOptions(**{"arch": "dcgan", "width": 8, "latent_dim": LATENT, **options}), info(), backend,
               objective=LOSSES.get(objective)).to(DEVICE)


def forward_backward(net: nn.Module, inputs: tuple[torch.Tensor, ...]):
    """Training-mode output and parameter gradients of a fixed random projection of it."""
    net.train()
    y = net(*inputs)
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(2)).to(y.device)
    (y * weights).sum().backward()
    return y.detach(), {n: p.grad.clone() for n, p in net.named_parameters()}


def assert_backends_match(nets: dict[str, nn.Module], inputs: tuple[torch.Tensor, ...]) -> None:
    """Same state, same outputs and gradients (training mode), same BN statistics after."""
    t, r = nets["triton"], nets["torch"]
    r.load_state_dict(t.state_dict())  # same weights whatever the seeds gave
    (t_out, t_grads), (r_out, r_grads) = forward_backward(t, inputs), forward_backward(r, inputs)
    torch.testing.assert_close(t_out, r_out, rtol=1e-5, atol=1e-6)
    assert t_grads.keys() == r_grads.keys()
    for name in r_grads:  # each a sum over B·H·W positions
        torch.testing.assert_close(t_grads[name], r_grads[name], rtol=1e-5, atol=1e-5, msg=name)
    for (name, a), b in zip(t.named_buffers(), r.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)  # BN running statistics


# ----------------------------------------------------------------------------- triton vs torch


@pytest.mark.parametrize("g_norm", ["batch", "none"])
def test_dcgan_generator_matches_between_backends(g_norm):
    models = {b: gan(b, g_norm=g_norm) for b in ("triton", "torch")}
    for backend, model in models.items():
        assert model.kernel_backends() == {OP: backend}
    layers = [m for m in models["triton"].generator.modules() if isinstance(m, ConvTranspose2d)]
    assert [m.activation for m in layers] == ["relu", "tanh"]  # the BN (if any) and ReLU, then tanh
    assert isinstance(layers[0].norm, nn.BatchNorm2d) == (g_norm == "batch") and layers[1].norm is None
    assert not any(isinstance(m, nn.Tanh) for m in models["triton"].generator.modules())
    z = torch.randn(2, LATENT, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    generators = {b: m.generator for b, m in models.items()}
    assert_backends_match(generators, (z,))
    for g in generators.values():  # sampling: eval mode, no gradients (BN folded into the epilogue)
        g.eval()
    with torch.no_grad():
        t_out, r_out = generators["triton"](z), generators["torch"](z)
    torch.testing.assert_close(t_out, r_out, rtol=1e-5, atol=1e-6)
    assert t_out.abs().max() <= 1


def test_conv_vae_decoder_matches_between_backends():
    models = {}
    for backend in ("triton", "torch"):
        torch.manual_seed(0)
        models[backend] = VAE(VAEOptions(arch="conv", channels=8, latent_dim=4, likelihood="gaussian"), info(),
                              backend).to(DEVICE)
        assert models[backend].kernel_backends() == {"reparam_kl": backend, OP: backend}
    acts = [m.activation for m in models["triton"].decoder.modules() if isinstance(m, ConvTranspose2d)]
    assert acts == ["relu", "none"]  # 16x16: two levels, the output without activation
    z = torch.randn(2, 4, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    assert_backends_match({b: m.decoder for b, m in models.items()}, (z,))


def test_vqvae_decoder_matches_between_backends():
    models = {}
    for backend in ("triton", "torch"):
        torch.manual_seed(0)
        models[backend] = VQVAE(VQVAEOptions(codebook_size=16, code_dim=8, channels=8, res_blocks=1), info(),
                                backend).to(DEVICE)
        assert models[backend].kernel_backends() == {"vq_nearest": backend, OP: backend}
    z_q = torch.randn(2, 8, 4, 4, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    assert_backends_match({b: m.decoder for b, m in models.items()}, (z_q,))


# ----------------------------------------------------------------------------- what models report


def test_kernel_backends_name_the_op_only_where_a_layer_uses_it():
    assert gan("torch", arch="mlp").kernel_backends() == {}
    assert gan("torch", upsample="pixel-shuffle").kernel_backends() == {}
    assert gan("torch", arch="resnet").kernel_backends() == {OP: "torch"}
    assert VAE(VAEOptions(arch="mlp", hidden=16), info(), "torch").kernel_backends() == {"reparam_kl": "torch"}
    assert Autoencoder(AutoencoderOptions(arch="mlp", hidden=16), info(), "torch").kernel_backends() == {}
    conv_ae = Autoencoder(AutoencoderOptions(arch="conv", channels=8), info(), "triton").to(DEVICE)
    assert conv_ae.kernel_backends() == {OP: "triton"}
    vq = VQVAE(VQVAEOptions(arch="mlp", codebook_size=16, code_dim=8, hidden=16), info(), "torch")
    assert vq.kernel_backends() == {"vq_nearest": "torch"}


def test_energy_discriminator_decoder_is_counted_and_mixed_backends_are_joined():
    model = gan("triton", objective="ebgan", d_norm="none")
    d_layers = [m for m in model.discriminator.modules() if isinstance(m, ConvTranspose2d)]
    assert d_layers and all(m.backend == "triton" for m in d_layers)
    assert conv_transpose_backends(model.discriminator) == {OP: "triton"}
    d_layers[0].backend = "torch"
    assert model.kernel_backends() == {OP: "triton+torch"}


def test_auto_backend_on_the_cpu_is_torch():
    assert gan("auto").cpu().kernel_backends() == {OP: "torch"}
    vae = VAE(VAEOptions(arch="conv", channels=8), info())
    assert vae.kernel_backends() == {"reparam_kl": "torch", OP: "torch"}


@pytest.mark.parametrize("name, with_layer, without", [
    ("vae", {"arch": "conv"}, {"arch": "mlp"}),
    ("ae", {"arch": "conv"}, {"arch": "mlp"}),
    ("sparse-ae", {"arch": "conv"}, {"arch": "mlp"}),
    ("gumbel-vae", {"arch": "conv"}, {"arch": "mlp"}),
    ("vae-gan", {"arch": "conv"}, {"arch": "mlp"}),
    ("vq-vae", {"arch": "conv"}, {"arch": "mlp"}),
    ("gan", {"arch": "dcgan"}, {"arch": "dcgan", "upsample": "pixel-shuffle"}),
    ("gan", {"arch": "resnet"}, {"arch": "mlp"}),
])
def test_models_list_the_op_for_the_architectures_that_have_the_layer(name, with_layer, without):
    spec = MODELS.get(name)
    assert OP in spec.ops(spec.options(**with_layer))
    assert OP not in spec.ops(spec.options(**without))
    assert OP not in MODELS.get("hvae").ops(MODELS.get("hvae").options())  # MLP only


def test_triton_backend_on_cpu_refuses_only_models_that_call_the_op(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    if torch.cuda.is_available():
        pytest.skip("with CUDA, backend='triton' can run")
    resolve_all([run_config({"model": "ae", "device": "cpu", "backend": "triton",
                             "model_options": {"arch": "mlp"}}, "test")])  # no kernel op: nothing to refuse
    with pytest.raises(ConfigError, match="conv_transpose2d.*TRITON_INTERPRET=1"):
        resolve_all([run_config({"model": "ae", "device": "cpu", "backend": "triton",
                                 "model_options": {"arch": "conv"}}, "test")])


def test_triton_backend_without_cuda_or_interpreter_fails_at_resolve_time(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    if torch.cuda.is_available():
        pytest.skip("with CUDA, backend='triton' can run")
    with pytest.raises(ConfigError, match="conv_transpose2d.*TRITON_INTERPRET=1"):
        resolve_all([run_config({"model": "gan", "device": "cpu", "backend": "triton"}, "test")])


# ----------------------------------------------------------------------------- torch: the eager model, exactly


def old_dcgan_generator(in_dim: int, shape: tuple[int, ...], options: GanNetOptions) -> Generator:
    """The DCGAN generator as built before the kernel layer: separate nn modules."""
    chans = level_channels(options.width, upsample_levels(*shape[1:]))[::-1]
    norm, bias = options.g_norm, options.g_norm == "none"
    layers: list[nn.Module] = [norm2d(norm, chans[0]), nn.ReLU()]
    for c_in, c_out in itertools.pairwise(chans):
        layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=bias), norm2d(norm, c_out), nn.ReLU()]
    layers += [nn.ConvTranspose2d(chans[-1], shape[0], 4, stride=2, padding=1), nn.Tanh()]
    net = ProjectedDecoder(in_dim, _start(shape, chans[0]), nn.Sequential(*layers), bias)
    net.apply(dcgan_init)
    return Generator(net, in_dim, 0)


class OldConvDecoder(nn.Module):
    """nets.ConvDecoder as built before the kernel layer."""

    def __init__(self, latent_dim: int, shape: tuple[int, ...], out_channels: int, channels: int):
        super().__init__()
        levels = conv_levels(*shape[1:])
        chans = ae_level_channels(channels, levels)[::-1]
        self.start = (chans[0], shape[1] >> levels, shape[2] >> levels)
        self.project = nn.Linear(latent_dim, math.prod(self.start))
        layers: list[nn.Module] = [nn.ReLU()]
        for c_in, c_out in zip(chans, chans[1:] + [out_channels]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
        self.upsample = nn.Sequential(*layers[:-1])

    def forward(self, z):
        return self.upsample(self.project(z).view(z.shape[0], *self.start))


def old_vq_decoder(code_dim: int, out_channels: int, channels: int, res_blocks: int) -> nn.Module:
    half = max(1, channels // 2)
    return nn.Sequential(
        nn.Conv2d(code_dim, channels, 3, padding=1), *[ResidualBlock(channels) for _ in range(res_blocks)], nn.ReLU(),
        nn.ConvTranspose2d(channels, half, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(half, out_channels, 4, stride=2, padding=1))


def seeded(build):
    torch.manual_seed(0)
    return build()


@pytest.mark.parametrize("case", ["dcgan-batch", "dcgan-none", "dcgan-3x32", "conv-decoder", "vq-decoder"])
def test_torch_backend_is_the_old_eager_network_bit_for_bit(case):
    shape, inputs = SHAPE, (torch.randn(2, LATENT, generator=torch.Generator().manual_seed(1)),)
    if case.startswith("dcgan"):
        shape = (3, 32, 32) if case == "dcgan-3x32" else SHAPE
        options = GanNetOptions(width=8, g_norm="none" if case == "dcgan-none" else "batch")
        old = seeded(lambda: old_dcgan_generator(LATENT, shape, options))
        new = seeded(lambda: build_generator(options, shape, LATENT, backend="torch"))
    elif case == "conv-decoder":
        old = seeded(lambda: OldConvDecoder(LATENT, shape, 2, 8))
        new = seeded(lambda: ConvDecoder(LATENT, shape, 2, 8, backend="torch"))
    else:
        inputs = (torch.randn(2, 8, 4, 4, generator=torch.Generator().manual_seed(1)),)
        old = seeded(lambda: old_vq_decoder(8, 1, 8, 1))
        new = seeded(lambda: ConvVQDecoder(8, 1, 8, 1, backend="torch"))
    assert any(isinstance(m, ConvTranspose2d) for m in new.modules())
    old_params, new_params = list(old.parameters()), list(new.parameters())  # creation order and values
    assert len(old_params) == len(new_params) and all(torch.equal(a, b) for a, b in zip(old_params, new_params))
    (old_out, old_grads), (new_out, new_grads) = forward_backward(old, inputs), forward_backward(new, inputs)
    assert torch.equal(old_out, new_out)
    assert all(torch.equal(a, b) for a, b in zip(old_grads.values(), new_grads.values()))
    assert all(torch.equal(a, b) for a, b in zip(old.buffers(), new.buffers()))  # BN running statistics
    old.eval(), new.eval()
    with torch.no_grad():
        assert torch.equal(old(*inputs), new(*inputs))  # torch: the BatchNorm module, not a folded one
