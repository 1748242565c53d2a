"""genbench: a benchmark and evaluation suite for deep generative models.

The map of the package is ../shared/DESIGN.md; the short version:
dataset -> model + objective -> trainer -> evaluator -> result records -> report.
"""

__version__ = "0.1.0"
