"""What a reproduction is, and how its results become records.

A reproduction checks genbench against a published result: it names the paper and the table
or figure, the setup it uses (and where that differs from the paper's), and for each claim
it tests the published figure or statement, what genbench measured, and a verdict:

- reproduced: the measured quantity is within the stated tolerance of the published one,
  or the qualitative claim holds;
- not reproduced: it does not, at a budget where the paper says it should;
- inconclusive: the budget (e.g. the CPU profile) is too small to decide; the reason says
  what would decide it.

Its records are ordinary genbench records (suite "reproduce"): a run/complete marker per
reproduction, its measured curves and values, and one `reproduce/claim` record per claim
whose provenance carries the paper, the published and measured figures and the verdict --
so `genbench report` shows paper and genbench side by side and `genbench compare` works.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

Verdict = Literal["reproduced", "not reproduced", "inconclusive"]
VERDICTS: tuple[Verdict, ...] = ("reproduced", "not reproduced", "inconclusive")
PROFILES = ("cpu", "gpu")
CLAIM_METRIC = "reproduce/claim"


@dataclass(frozen=True)
class Check:
    """One claim, checked."""

    claim: str  # the paper's statement or figure, in a line
    published: str  # the published figure or behaviour
    measured: str  # what genbench measured, with its numbers
    verdict: Verdict
    reason: str = ""  # why: the tolerance or test applied, or what would decide an inconclusive one


@dataclass(frozen=True)
class Measurement:
    """What a reproduction's run returns: its checks and the curves and values behind them."""

    checks: list[Check]
    curves: dict[str, tuple[str, list[tuple[int, float]]]] = field(default_factory=dict)  # metric -> (unit, points)
    values: dict[str, tuple[float, str]] = field(default_factory=dict)  # metric -> (value, unit)
    config: dict = field(default_factory=dict)  # the settings it ran with, for the record


@dataclass(frozen=True)
class Reproduction:
    name: str
    paper: str  # authors, year, title
    where: str  # section, table or figure
    setup: str  # what genbench runs, and where it differs from the paper
    run: Callable[[str], Measurement]  # run(profile) -> Measurement
    budget: dict[str, str]  # profile -> the budget in words ("2,000 steps, seconds on a CPU")

    @property
    def summary(self) -> str:
        """One line for `genbench list reproductions -v`."""
        return f"{self.paper}; {self.where}"

    def __post_init__(self):
        missing = [p for p in PROFILES if p not in self.budget]
        if missing:
            raise ValueError(f"reproduction {self.name!r} states no budget for profile(s) {', '.join(missing)}")
