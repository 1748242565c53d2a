"""Dirac-GAN (issue 21, reproduction 1), in full: the paper's convergence claims hold for
genbench's registered losses and regularisers, and the trajectories match the paper's update
equations written out independently here."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

import genbench.objectives  # noqa: F401  the registered losses and regularisers
from genbench.reproduce import dirac_gan, run_reproduction
from genbench.harness.store import read_records


def sigmoid(t: float) -> float:
    return 1.0 / (1.0 + math.exp(-t))


def paper_dynamics(steps: int, h: float, gamma: float = 0.0) -> list[float]:
    """Simultaneous gradient descent on the paper's L(theta, psi) = f(psi theta) + f(0),
    f(t) = -log(1 + exp(-t)): D ascends L, G descends it, with the R1 penalty gamma/2 psi^2
    (grad_x of psi x is psi) on D. Their D is genbench's with psi negated."""
    theta, psi = 1.0, -1.0
    out = [math.hypot(theta, psi)]
    for _ in range(steps):
        f_prime = sigmoid(-psi * theta)  # f'(t) = 1 / (1 + e^t)
        d_psi = f_prime * theta - gamma * psi
        d_theta = f_prime * psi
        psi, theta = psi + h * d_psi, theta - h * d_theta
        out.append(math.hypot(theta, psi))
    return out


@pytest.mark.parametrize("variant, gamma", [("gan-simultaneous", 0.0), ("gan-r1", 1.0)])
def test_the_trajectory_is_the_papers_update_equations(variant, gamma):
    ours = dirac_gan.train(variant, 300)
    assert ours == pytest.approx(paper_dynamics(300, 0.1, gamma), rel=1e-9, abs=1e-12)


def test_simultaneous_descent_spirals_out_at_the_linearised_rate():
    # near the equilibrium the map's eigenvalues are 1 +- i h f'(0): |lambda| = sqrt(1 + h^2 / 4)
    distances = dirac_gan.train("gan-simultaneous", 2000)
    assert distances[-1] > distances[0]


def test_every_claim_of_the_paper_is_reproduced_in_full(tmp_path):
    checks = run_reproduction("dirac-gan", "cpu", tmp_path)
    assert {c.claim.split(":")[0]: c.verdict for c in checks} == {v: "reproduced" for v in dirac_gan.VARIANTS}
    claims = [r for r in read_records(tmp_path / "results.jsonl") if r["metric"] == "reproduce/claim"]
    assert len(claims) == 7 and all(r["value"] == 1.0 and "Mescheder" in r["provenance"]["paper"] for r in claims)
    assert run_reproduction("dirac-gan", "cpu", tmp_path) is None  # complete there: a rerun skips it


def test_the_command_lists_and_refuses_unknown_names():
    listed = subprocess.run([sys.executable, "-m", "genbench", "reproduce", "list"], capture_output=True, text=True)
    names = [line.split("\t")[0] for line in listed.stdout.splitlines()]
    assert listed.returncode == 0 and "dirac-gan" in names and "dirac-gan\tMescheder" in listed.stdout
    unknown = subprocess.run([sys.executable, "-m", "genbench", "reproduce", "dirac"], capture_output=True, text=True)
    assert unknown.returncode == 2 and "dirac-gan" in unknown.stderr and "Traceback" not in unknown.stderr
