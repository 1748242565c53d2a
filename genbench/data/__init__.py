"""Datasets: one module per source; importing this package registers them all.

The layout every loader returns and the spec grammar are documented in
`genbench.data.base`; each source's module docstring documents that dataset.
"""

from genbench.data import digits, files, photos, shapes, toy2d, waves  # noqa: F401  (registers)
from genbench.data.base import Dataset, DatasetInfo, Split, load_dataset
from genbench.data.toy2d import mode_centres

__all__ = ["Dataset", "DatasetInfo", "Split", "load_dataset", "mode_centres"]
