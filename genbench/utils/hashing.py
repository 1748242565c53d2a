"""Content hashes used for provenance and cache keys."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

HASH_CHARS = 16  # hex characters kept: 64 bits, plenty to tell datasets and weights apart


def tensor_hash(*tensors: torch.Tensor | None) -> str:
    """Hash of the tensors' dtypes, shapes and bytes (None entries hash as a marker)."""
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"<none>")
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-dim too
    return h.hexdigest()[:HASH_CHARS]


def json_hash(obj: Any) -> str:
    """Hash of a JSON-serialisable object, independent of dict key order."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]
