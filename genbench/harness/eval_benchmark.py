"""Benchmark of the evaluation itself: every sample metric on N generated images.

    python -m genbench.harness.eval_benchmark [--n 10000] [--dataset digits] [--device cpu|cuda]

"Generated" images are training images drawn with replacement plus Gaussian noise
(std 0.05), replayed through a stand-in sampler: the cost of the metrics does not depend
on which model made the images. The reference cache starts cold (a fresh temporary
GENBENCH_CACHE), so reference feature extraction is included. Prints one line per stage
and writes the timings as records (harness/store.py schema) to
results/eval-bench/<host>/<stamp>.jsonl.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from tabulate import tabulate

from genbench.data import load_dataset
from genbench.harness.recorder import environment_fields, make_record
from genbench.harness.store import append_records
from genbench.metrics.base import EvalContext, applicable_metrics
from genbench.models.base import Capabilities, GenerativeModel
from genbench.values import declare_values

# Its records' names are the stages it times ("time/metric quality", "time/total", ...): the
# runner declares its own phases by exact name, which come first.
declare_values("eval-benchmark", {"time/*": ("lower", "s", "wall time of one stage of the evaluation benchmark")},
               conditions=("n_generated", "torch_threads"))


class ReplaySampler(GenerativeModel):
    """Returns stored images in order: a model stand-in for timing the metrics."""

    capabilities = Capabilities(samples=True)

    def __init__(self, images: torch.Tensor):
        super().__init__()
        self.images, self.cursor = images, 0

    def sample(self, n: int, generator=None, draw: str = "mean") -> torch.Tensor:
        out = self.images[self.cursor:self.cursor + n]
        self.cursor += n
        return out


def fake_samples(dataset, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = dataset.train.x[torch.randint(len(dataset.train), (n,), generator=g)]
    return (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run(n: int, spec: str, device: torch.device) -> list[tuple[str, float]]:
    dataset = load_dataset(spec)
    ctx = EvalContext(ReplaySampler(fake_samples(dataset, n)), dataset, device, batch_size=500, eval_samples=n)
    stages = []
    _, t = timed(lambda: ctx.samples)
    stages.append(("replay samples", t))
    _, t = timed(lambda: ctx.extractor)
    stages.append(("load extractor", t))
    _, t = timed(lambda: ctx.reference)
    stages.append((f"reference features ({len(dataset.train)} images, cold cache)", t))
    _, t = timed(lambda: ctx.generated_features)
    stages.append((f"generated features ({n} images)", t))
    for metric in applicable_metrics(ctx.model, dataset.info):
        _, t = timed(lambda: metric.evaluate(ctx))
        stages.append((f"metric {metric.name}", t))
    return stages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("results") / "eval-bench")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as cache:
        previous = os.environ.get("GENBENCH_CACHE")
        os.environ["GENBENCH_CACHE"] = cache
        try:
            total_start = time.perf_counter()
            stages = run(args.n, args.dataset, device)
            total = time.perf_counter() - total_start
        finally:
            if previous is None:
                os.environ.pop("GENBENCH_CACHE")
            else:
                os.environ["GENBENCH_CACHE"] = previous
    stages.append(("total", total))
    print(tabulate(stages, headers=["stage", "seconds"], tablefmt="github", floatfmt=".2f"))
    common = {**environment_fields(device), "run_id": f"eval-bench-{args.dataset}-{args.n}", "attempt": "0",
              "suite": "eval-bench", "model": "replay", "objective": "none", "dataset": args.dataset, "seed": 0,
              "backend": "none", "precision": "fp32"}
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = args.out / socket.gethostname() / f"{stamp}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    append_records(path, [make_record(common, f"time/{name}", seconds, "s", None,
                                      {"n_generated": args.n, "torch_threads": torch.get_num_threads()})
                          for name, seconds in stages])
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
