"""Stability signals of adversarial training, recorded at every evaluation interval.

Per interval (records `stability/<name>` at that step):
- quality of the current generator (the EMA copy when enabled), measured by the run's
  quality probe (TrainContext.quality_probe, built by the harness: genbench/metrics/monitor.py):
  modes captured and % high-quality samples on 2-D mixtures, FID and KID on images, none on
  1-D sequences (their snapshots are still drawn as line plots);
- oscillation: the standard deviation of the discriminator and generator losses over
  the steps since the previous interval.
Losses, gradient norms of D and G, and mean D(x) / D(G(z)) are logged as train/* at
every log step by the loop itself.

Collapse: the quality falls far from its best -- on mixtures fewer than half of the best
number of modes captured; on images an FID above twice the best FID so far and more
than COLLAPSE_FID_MARGIN points above it (at small N, FIDs near the floor fluctuate by
several points: a relative rule alone would flag noise). A mode count is only evidence
when enough samples are high-quality to fill the modes: an interval with fewer than
MIN_HQ_PER_MODE high-quality samples per mode of the data (80 of 1,000 on the 8-mode ring)
neither sets the best nor counts as a collapse -- 1-5% high-quality samples of 1,000 put a
handful of points on each mode, and which modes they land on is noise. Per run:
final and best quality, the step of the first collapse (time to collapse), and
`stability/failed` = diverged, or collapsed at the final evaluation.
"""

from __future__ import annotations

import statistics

import torch

from genbench.utils.figures import save_image_grid, save_point_panels, save_waveforms
from genbench.values import declare_values

COLLAPSE_FID_MARGIN = 20.0
MIN_HQ_PER_MODE = 10  # high-quality samples per mode of the data before a mode count is evidence
SNAPSHOT_IMAGES = 8  # images per evaluation in the samples-over-training figure (one row each)
SNAPSHOT_POINTS = 500
SNAPSHOT_SIGNALS = 4  # 1-D signals per evaluation (one row of line plots each)
OVER_TRAINING = "samples_over_training.png"  # the figure of those snapshots, in the run's folder

# What the monitor records (genbench/values.py); the quality it watches at each interval is
# recorded by the run's quality probe (stability/fid, ...: genbench/metrics/monitor.py).
declare_values("stability-monitor", {
    "stability/*_std": ("neither", "loss std over the interval", "oscillation: std of a loss since the last interval"),
    "stability/collapsed": ("lower", "bool", "1 when the quality fell far below its best at this interval"),
    "stability/final_fid": ("lower", "fid", "FID of the generator at the last interval"),
    "stability/best_fid": ("lower", "fid", "best FID over the intervals"),
    "stability/final_modes_captured": ("higher", "modes_captured", "modes captured at the last interval"),
    "stability/best_modes_captured": ("higher", "modes_captured", "most modes captured over the intervals"),
    "stability/collapse_step": ("neither", "step", "step of the first collapse (time to collapse); none: never"),
    "stability/failed": ("lower", "bool", "1 when the run diverged or was collapsed at the final evaluation"),
}, conditions=("rule", "quality"), outcomes=("reason",))


class StabilityMonitor:
    def __init__(self, ctx, every: int):
        self.ctx, self.every = ctx, every
        info = ctx.data.info
        self.points = info.kind == "points"
        self.sequences = info.kind == "sequence"
        self.signal: str | None = None  # the probe's quality ("modes_captured", "fid"), once it has measured one
        self.history: list[tuple[int, float]] = []  # (step, quality), higher is better
        self.countable: list[bool] = []  # per entry of history: whether it is evidence (MIN_HQ_PER_MODE)
        self.window: dict[str, list[float]] = {"d_loss": [], "g_loss": []}
        self.collapse_step: int | None = None
        self.final_collapsed = False
        self.snapshots: list[tuple[int, torch.Tensor]] = []  # fixed-noise samples per evaluation

    def after_step(self, step: int, scalars: dict[str, float]) -> None:
        for key in self.window:
            self.window[key].append(scalars[key])
        if step % self.every == 0 or step == self.ctx.config.steps:
            self.evaluate(step)

    def evaluate(self, step: int) -> None:
        emit = self.ctx.emit
        for key, values in self.window.items():
            if len(values) > 1:
                emit(f"stability/{key}_std", statistics.pstdev(values), "loss std over the interval", step)
            self.window[key] = []
        quality, name, countable = self.quality(step)
        if quality is None:  # no quality signal for this data (e.g. 2-D points without known modes)
            return
        best = max((q for (_, q), c in zip(self.history, self.countable) if c), default=None)
        self.history.append((step, quality))
        self.countable.append(countable)
        collapsed = countable and best is not None and collapsed_from(name, quality, best)
        if collapsed and self.collapse_step is None:
            self.collapse_step = step
        self.final_collapsed = collapsed
        emit("stability/collapsed", float(collapsed), "bool", step, rule=collapse_rule(self.signal), quality=name)

    def quality(self, step: int) -> tuple[float | None, str | None, bool]:
        """Evaluate the current generator: (quality, higher is better; name; whether it is
        evidence of collapse), or (None, None, False)."""
        model, ctx = self.ctx.model, self.ctx
        n = ctx.trainer_options.monitor_samples
        g = torch.Generator(device=ctx.device).manual_seed(ctx.config.seed + 7919)  # fixed noise every interval
        was_training = model.training
        model.eval()
        with torch.no_grad():
            samples = model.sample(n, g, draw="sample").cpu()
        model.train(was_training)
        keep = SNAPSHOT_POINTS if self.points else (SNAPSHOT_SIGNALS if self.sequences else SNAPSHOT_IMAGES)
        self.snapshots.append((step, samples[:keep]))
        quality, name, countable = self.ctx.quality_probe(samples, step)
        if name is not None:
            self.signal = name
        return quality, name, countable

    def save_snapshots(self) -> None:
        """One figure of fixed-noise samples at every evaluation (rows = steps)."""
        if not self.snapshots or self.ctx.run_dir is None:
            return
        path = self.ctx.run_dir / OVER_TRAINING
        if self.points:
            save_point_panels(self.snapshots, self.ctx.data.test.x, path)
        elif self.sequences:
            save_waveforms([(f"step {step}", x) for step, x in self.snapshots], path)
        else:
            save_image_grid(torch.cat([s for _, s in self.snapshots]), path, columns=SNAPSHOT_IMAGES)

    def finish(self, outcome) -> None:
        self.save_snapshots()
        emit = self.ctx.emit
        if self.history:
            name = self.signal  # the quality is higher-better: FIDs were negated (see the probe)
            sign = 1.0 if name == "modes_captured" else -1.0
            emit(f"stability/final_{name}", sign * self.history[-1][1], name, None)
            emit(f"stability/best_{name}", sign * max(q for _, q in self.history), name, None)
        emit("stability/collapse_step", self.collapse_step, "step", None, rule=collapse_rule(self.signal))
        failed = outcome.diverged or self.final_collapsed
        emit("stability/failed", float(failed), "bool", None,
             reason="diverged" if outcome.diverged else ("collapsed at the final evaluation" if failed else None))


def modes_countable(n_high_quality: int, n_modes: int) -> bool:
    """Whether a mode count from this many high-quality samples is evidence (module doc)."""
    return n_high_quality >= MIN_HQ_PER_MODE * n_modes


def collapsed_from(signal: str, quality: float, best: float) -> bool:
    """The collapse rule on a higher-is-better quality (FIDs negated) against its best so far."""
    if signal == "modes_captured":
        return quality < best / 2
    fid, best_fid = -quality, -best
    return fid > 2 * best_fid and fid > best_fid + COLLAPSE_FID_MARGIN


def collapse_rule(signal: str | None) -> str:
    if signal == "modes_captured":
        return (f"modes captured < half the best so far, both counted from >= {MIN_HQ_PER_MODE} high-quality "
                "samples per mode")
    return f"FID > 2 x the best FID so far and > best + {COLLAPSE_FID_MARGIN:g}"
