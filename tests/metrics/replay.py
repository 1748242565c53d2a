"""A stand-in generator for metric tests: it samples given images in order."""

from __future__ import annotations

import torch

from genbench.models.base import Capabilities


class Replay:
    """Samples the given images in order, as a model's sample() would return them."""

    capabilities = Capabilities(samples=True)
    sample_description = "replayed real images"

    def __init__(self, images: torch.Tensor):
        self.images, self.drawn = images, 0

    def sample(self, n, generator, draw="mean"):
        out = self.images[self.drawn:self.drawn + n]
        self.drawn += n
        return out
