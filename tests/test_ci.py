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
