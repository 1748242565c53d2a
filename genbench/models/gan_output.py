"""What a GAN discriminator returns: the contract between the networks (models/gan_nets.py),
the losses and regularisers (objectives/gan.py) and the adversarial trainer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

# What the discriminator's `score` means, which decides its output head:
#   "logit":     real-vs-fake logit (minimax, non-saturating, LSGAN, hinge, RaGAN, DRAGAN)
#   "critic":    unbounded critic value, higher = more real (WGAN, WGAN-GP)
#   "energy-l2": autoencoder discriminator, score = mean squared reconstruction error (EBGAN)
#   "energy-l1": autoencoder discriminator, score = mean absolute reconstruction error (BEGAN)
DiscOutputKind = Literal["logit", "critic", "energy-l2", "energy-l1"]


@dataclass
class DOutput:
    score: torch.Tensor  # (B,) see DiscOutputKind
    embedding: torch.Tensor | None = None  # (B, E) autoencoder discriminator's code (EBGAN pulling-away term)
    aux_logits: torch.Tensor | None = None  # (B, n_classes) ACGAN auxiliary classifier
    info_logits: torch.Tensor | None = None  # (B, n_categories) InfoGAN Q head, categorical code
    info_mean: torch.Tensor | None = None  # (B, n_continuous) InfoGAN Q head, continuous codes (fixed-variance Gaussian)

    def split(self, n: int) -> tuple["DOutput", "DOutput"]:
        """The first n examples and the rest (D run on a concatenated real+fake batch)."""
        parts = {k: (None, None) if v is None else (v[:n], v[n:]) for k, v in self.__dict__.items()}
        return DOutput(**{k: a for k, (a, _) in parts.items()}), DOutput(**{k: b for k, (_, b) in parts.items()})
