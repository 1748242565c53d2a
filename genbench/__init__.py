"""genbench: a benchmark and evaluation suite for deep generative models.

The map of the package is docs/architecture.md; the short version:
dataset -> model + objective -> trainer -> evaluator -> result records -> report.
"""

import importlib.machinery as _machinery
import sys as _sys
from pathlib import Path as _Path

__version__ = "0.1.0"


class _CheckoutFinder:
    """pyproject.toml installs the top-level kernels/ and baselines/ folders as genbench.kernels
    and genbench.baselines (their bare names are taken on PyPI). In a checkout that was copied
    but never installed (a GPU machine that receives the working tree and cannot pip), nothing
    maps them: this finder, consulted after every other one, finds them beside the package."""

    mapped = ("genbench.kernels", "genbench.baselines")
    root = str(_Path(__file__).resolve().parent.parent)

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return _machinery.PathFinder.find_spec(name, [cls.root]) if name in cls.mapped else None


if not any(isinstance(finder, type) and finder.__name__ == "_CheckoutFinder" for finder in _sys.meta_path):
    _sys.meta_path.append(_CheckoutFinder)
