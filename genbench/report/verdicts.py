"""Which runs failed, and by which rule: the one judgement every table, summary.csv and the
headline read. A run fails when any rule fires; each rule names the numbers that made it.

- diverged: the loss or a gradient went NaN/Inf (the `run/diverged` record).
- exploded: the likelihood is beyond a bound no working model crosses -- on 8-bit images
  held-out bits/dim above log2(256) = 8, the bits/dim of uniform noise over the levels; on
  2-D points a held-out NLL more than EXPLODED_NATS_PER_DIM nats per dimension above a
  Gaussian fitted to the training points (genbench/metrics/references.py).
- degenerate: the samples are (near) one point -- on 2-D mixtures every high-quality sample
  sits on one mode and they are at least DEGENERATE_HQ_PCT % of all samples (a BEGAN grid
  seed with all 2,500 samples on one point scores 100 % high quality); on images the mean
  pairwise MS-SSIM of the samples is at least DEGENERATE_MS_SSIM (real digits: 0.10).
- collapsed: the quality at the last training interval fell far from its best
  (train/stability.py's rule, re-judged here from the per-interval records so that older
  records get the noise-aware rule: a mode count is evidence only with enough high-quality
  samples per mode).
- never learned: the family's headline metric does not beat the trivial models without
  structure (report/references.py: the uniform box, the mean image, per-pixel noise, the
  per-pixel histogram). Not beating the best trivial model (a fitted Gaussian included) is
  the "not learned" mark, shown beside the failures but not itself one.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from genbench.harness.store import DIVERGED_METRIC
from genbench.report.base import binarised
from genbench.report.references import BPD_HEADLINE as BPD, COVERAGE_HEADLINE as COVERAGE, judged_runs, \
    points_nll_reference
from genbench.train.stability import collapse_rule, collapsed_from, modes_countable

RULES = ("diverged", "exploded", "degenerate", "collapsed", "never learned")
EXPLODED_BPD = 8.0  # bits/dim of a uniform distribution over 256 levels
EXPLODED_NATS_PER_DIM = 2.0
DEGENERATE_HQ_PCT = 10.0
DEGENERATE_MS_SSIM = 0.8
NLL, MS_SSIM = "test/nll", "ms-ssim/ms_ssim"
FAILURE_NOTE = ("`failed`: runs for which a failure rule fired -- diverged (NaN/Inf), exploded (held-out bits/dim "
                f"above {EXPLODED_BPD:g}, or a 2-D NLL {EXPLODED_NATS_PER_DIM:g} nats per dimension above a fitted "
                f"Gaussian's), degenerate (all high-quality samples on one mode, >= {DEGENERATE_HQ_PCT:g} % of them; "
                f"image samples with mean pairwise MS-SSIM >= {DEGENERATE_MS_SSIM:g}), collapsed at the last training "
                "interval, or never learned (no better than the uniform box, the mean image, per-pixel noise or the "
                "per-pixel histogram); `rules` counts each.")
NOT_LEARNED_NOTE = ("`not learned`: runs whose headline metric does not beat the best trivial model (the References "
                    "section), a fitted Gaussian included.")


@dataclass(frozen=True)
class Verdict:
    fired: tuple[tuple[str, str], ...] = ()  # (rule, what it saw), in RULES order
    not_learned: bool | None = None  # does not beat the best trivial model; None where no reference applies

    @property
    def failed(self) -> bool:
        return bool(self.fired)

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(rule for rule, _ in self.fired)


def run_verdicts(frame: pd.DataFrame) -> dict[str, Verdict]:
    """run id -> its verdict, for every run in `frame` (all records, per-step ones included)."""
    final = frame[frame["step"].isna()]
    steps = frame[frame["step"].notna() & frame["metric"].str.startswith("stability/")]
    learned = judged_runs(final)
    per_step = dict(tuple(steps.groupby("run_id")))
    verdicts = {}
    for run_id, records in final.groupby("run_id"):
        values = {m: (v, p) for m, v, p in zip(records["metric"], records["value"], records["provenance"])}
        dataset = records["dataset"].iloc[0]
        judged = learned.get(run_id)
        found = [("diverged", diverged(values)), ("exploded", exploded(values, dataset)),
                 ("degenerate", degenerate(values)), ("collapsed", collapsed(per_step.get(run_id))),
                 ("never learned", judged.never_detail if judged and judged.never_learned else None)]
        verdicts[run_id] = Verdict(tuple((rule, seen) for rule, seen in found if seen),
                                   judged.not_learned if judged else None)
    return verdicts


def diverged(values: dict) -> str | None:
    value, prov = values.get(DIVERGED_METRIC, (0.0, {}))
    if not value:
        return None
    where = f" at step {prov['at_step']}" if prov.get("at_step") is not None else ""
    return f"non-finite{where}" + (f": {prov['reason']}" if prov.get("reason") else "")


def exploded(values: dict, dataset: str) -> str | None:
    bpd = values.get(BPD)
    if bpd is not None and not binarised(bpd[1]) and not bpd[0] <= EXPLODED_BPD:
        return f"held-out {bpd[0]:.4g} bits/dim > {EXPLODED_BPD:g} (uniform noise over 256 levels)"
    nll = values.get(NLL)
    if nll is not None and bpd is None:
        reference = points_nll_reference(dataset)
        if reference is not None:
            bound = reference.nats + EXPLODED_NATS_PER_DIM * reference.dims
            if not nll[0] <= bound:
                return (f"held-out NLL {nll[0]:.4g} nats > {bound:.3g} (fitted Gaussian {reference.nats:.3g} "
                        f"+ {EXPLODED_NATS_PER_DIM:g} per dimension)")
    return None


def degenerate(values: dict) -> str | None:
    coverage = values.get(COVERAGE)
    if coverage is not None:
        pct, prov = coverage
        counts = prov.get("counts") or []
        if pct >= DEGENERATE_HQ_PCT and sum(1 for c in counts if c) == 1:
            return f"all {sum(counts):,} high-quality samples ({pct:.3g} % of {prov['n_samples']:,}) on one mode"
    ms_ssim = values.get(MS_SSIM)
    if ms_ssim is not None and ms_ssim[0] >= DEGENERATE_MS_SSIM:
        return f"samples nearly identical: mean pairwise MS-SSIM {ms_ssim[0]:.3g} >= {DEGENERATE_MS_SSIM:g}"
    return None


def collapsed(steps: pd.DataFrame | None) -> str | None:
    """The collapse rule on the per-interval quality records (stability/modes_captured with
    its stability/high_quality_pct, or stability/fid), at the last interval."""
    if steps is None:
        return None
    signal, series = interval_quality(steps)
    if len(series) < 2:
        return None
    evidence = [(step, q) for step, q, countable in series if countable]
    last_step, last, last_countable = series[-1]
    earlier = [q for step, q in evidence if step < last_step]
    if not last_countable or not earlier or not collapsed_from(signal, last, max(earlier)):
        return None
    shown = (lambda q: f"{q:g} modes") if signal == "modes_captured" else (lambda q: f"FID {-q:.4g}")
    return f"{shown(last)} at step {last_step:g} against the best {shown(max(earlier))} ({collapse_rule(signal)})"


def interval_quality(steps: pd.DataFrame) -> tuple[str, list[tuple[float, float, bool]]]:
    """The signal ("modes_captured" or "fid") and, per training interval, (step,
    higher-is-better quality, whether it is evidence)."""
    modes = steps[steps["metric"] == "stability/modes_captured"]
    if len(modes):
        hq = dict(zip(steps.loc[steps["metric"] == "stability/high_quality_pct", "step"],
                      steps.loc[steps["metric"] == "stability/high_quality_pct", "value"]))
        out = []
        for step, value, unit, prov in zip(modes["step"], modes["value"], modes["unit"], modes["provenance"]):
            n_modes, n = int(unit.rsplit(" ", 1)[-1]), prov.get("n_samples")
            n_hq = round(hq[step] * n / 100) if n and step in hq else 0
            out.append((step, float(value), modes_countable(n_hq, n_modes)))
        return "modes_captured", sorted(out)
    fid = steps[steps["metric"] == "stability/fid"]
    return "fid", sorted((step, -float(value), True) for step, value in zip(fid["step"], fid["value"]))


def group_failures(final: pd.DataFrame, verdicts: dict[str, Verdict], by: list[str]) -> dict[tuple, dict]:
    """Per group of `by`: "failed" k/n, "rules" (those that fired, with their counts) and "not
    learned" k/n over the runs a reference judges ("" where none does)."""
    out = {}
    for group, runs in final.drop_duplicates("run_id").groupby(by, sort=True):
        judged = [verdicts[r] for r in runs["run_id"] if r in verdicts]
        fired: dict[str, int] = {}
        for verdict in judged:
            for rule in verdict.rules:
                fired[rule] = fired.get(rule, 0) + 1
        marked = [v.not_learned for v in judged if v.not_learned is not None]
        out[group] = {"failed": f"{sum(v.failed for v in judged)}/{len(judged)}",
                      "rules": ", ".join(f"{rule} {fired[rule]}" for rule in RULES if rule in fired),
                      "not learned": f"{sum(marked)}/{len(marked)}" if marked else ""}
    return out


def verdict_cell(run_ids, verdicts: dict[str, Verdict]) -> str:
    """A table cell for the runs of one row: "failed k/n (rules); not learned k/n", the parts
    that are not zero ("" when every run passed every rule and beat the references)."""
    judged = [verdicts[r] for r in dict.fromkeys(run_ids) if r in verdicts]
    failed = [v for v in judged if v.failed]
    marked = [v for v in judged if v.not_learned is not None]
    parts = []
    if failed:
        rules = sorted({rule for v in failed for rule in v.rules}, key=RULES.index)
        parts.append(f"failed {len(failed)}/{len(judged)} ({', '.join(rules)})")
    if any(v.not_learned for v in marked):
        parts.append(f"not learned {sum(v.not_learned for v in marked)}/{len(marked)}")
    return "; ".join(parts)
