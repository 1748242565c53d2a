"""Thread-count control for work made of many tiny torch ops."""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def one_thread():
    """Run torch ops on one thread. L-BFGS makes thousands of tiny vector ops (its two-loop
    recursion) where intra-op threads' synchronisation costs more than it saves: up to
    100x slower on a busy 2-core host; even its large (memory-bound) passes gain little."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
