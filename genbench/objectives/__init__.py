"""Objectives (registered in LOSSES) and the likelihood terms they use."""

from genbench.objectives import autoencoding  # noqa: F401  (registers recon, elbo)
from genbench.objectives import diffusion, exact, gan, gumbel, vaegan, vqvae  # noqa: F401
from genbench.objectives.base import Objective, LossTerms, objective_for  # noqa: F401
