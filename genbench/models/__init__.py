"""Model families; importing this package registers them in MODELS."""

from genbench.models import autoencoder, diffusion, flow, gan, gumbel, hvae, pixelcnn, vae, vaegan, vqvae, wavenet  # noqa: F401
from genbench.models.base import ModelSpec, build_model, register_model  # noqa: F401
