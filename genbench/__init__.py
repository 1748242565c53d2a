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
    maps them: this finder finds them beside the package. It goes first, so a copy never picks
    up another checkout's kernels through that checkout's editable install, and it is only
    installed when this package sits in a checkout (pyproject.toml beside it)."""

    mapped = ("genbench.kernels", "genbench.baselines")
    root = _Path(__file__).resolve().parent.parent

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return _machinery.PathFinder.find_spec(name, [str(cls.root)]) if name in cls.mapped else None


_in_checkout = (_CheckoutFinder.root / "pyproject.toml").is_file() and (_CheckoutFinder.root / "kernels").is_dir()
if _in_checkout and not any(getattr(f, "__name__", "") == "_CheckoutFinder" for f in _sys.meta_path):
    _sys.meta_path.insert(0, _CheckoutFinder)
