"""CI runs exactly the README's test command, from scratch."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_test_command():
    test_command = next(c for c in readme_commands() if c.endswith("&& pytest"))
    assert test_command.startswith("pip install -e")
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_command in [line.strip() for line in ci]


def test_readme_main_job_command_runs_bench_py():
    assert any(c.endswith("&& python bench.py") and c.startswith("pip install -e") for c in readme_commands())


def test_ci_installs_into_a_new_virtual_environment():
    """CI tests what a newcomer's fresh install resolves, not the machine's packages: it makes a
    new venv (--clear) and activates it before the README's install command."""
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    make = next(i for i, line in enumerate(ci) if line.startswith("python3 -m venv --clear"))
    activate = next(i for i, line in enumerate(ci) if line.startswith(". ") and line.endswith("bin/activate"))
    install = next(i for i, line in enumerate(ci) if line.startswith("pip install -e"))
    assert make < activate < install
