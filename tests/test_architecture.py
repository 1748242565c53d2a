"""The layer map of docs/architecture.md, enforced: a module imports only from its own layer
or the layers below it, and no two packages import each other (directly or round a cycle).

Every `import` counts, at module level or inside a function: a function-level import that
reaches up a layer is the same dependency, only hidden.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Lowest first; a package may import its own layer and those before it. Keep in step with
# docs/architecture.md.
LAYERS = [
    ("registry", "errors", "utils", "values"),
    ("baselines",),
    ("kernels",),
    ("data",),
    ("models",),
    ("objectives",),
    ("train",),
    ("metrics",),
    ("harness",),
    ("reproduce",),
    ("report", "kernelbench"),
    ("cli", "catalog", "__main__", "__init__", "api"),
]
LAYER_OF = {package: i for i, names in enumerate(LAYERS) for package in names}


def package_of(path: Path, root: Path = REPO) -> str:
    """The top-level unit of a source file: genbench/<pkg>/..., genbench/<module>.py, kernels/, baselines/."""
    rel = path.relative_to(root)
    if rel.parts[0] in ("kernels", "baselines"):
        return rel.parts[0]
    return rel.parts[1].removesuffix(".py")


def imported_units(source: str) -> set[str]:
    """The genbench units a source file imports (genbench.<unit>...), anywhere in it."""
    units = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "genbench" else [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        units.update(name.split(".")[1] for name in names if name.startswith("genbench."))
    return units - {"__version__"}


def source_files(root: Path = REPO) -> list[Path]:
    return sorted(p for top in ("genbench", "kernels", "baselines") for p in root.joinpath(top).rglob("*.py"))


def dependencies(root: Path = REPO) -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> files that import it."""
    deps: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in source_files(root):
        unit = package_of(path, root)
        for other in imported_units(path.read_text()) - {unit}:
            deps[unit][other].append(str(path.relative_to(root)))
    return deps


def upward_imports(root: Path = REPO) -> list[str]:
    return [f"{unit} (layer {LAYER_OF[unit]}) imports {other} (layer {LAYER_OF[other]}) in {', '.join(files)}"
            for unit, others in dependencies(root).items() for other, files in others.items()
            if other in LAYER_OF and unit in LAYER_OF and LAYER_OF[other] > LAYER_OF[unit]]


def cycles(root: Path = REPO) -> list[str]:
    deps = {unit: set(others) for unit, others in dependencies(root).items()}
    found = set()

    def visit(path: list[str]) -> None:
        for other in sorted(deps.get(path[-1], ())):
            if other == path[0]:
                found.add(" -> ".join([*path, other]))
            elif other not in path:
                visit([*path, other])

    for unit in sorted(deps):
        visit([unit])
    return sorted(found)


def test_every_unit_has_a_layer():
    units = {package_of(p) for p in source_files()}
    assert units <= set(LAYER_OF), f"add to LAYERS (and docs/architecture.md): {sorted(units - set(LAYER_OF))}"


def test_no_module_imports_a_higher_layer():
    upward = upward_imports()
    assert not upward, "\n".join(upward)


def test_no_import_cycle_between_packages():
    found = cycles()
    assert not found, "\n".join(found)


def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path):
    """The checks must be able to fail: data importing the harness is both upward and, with the
    harness importing data, a cycle; a function-level import counts."""
    for name, code in {"genbench/data/probe.py": "def f():\n    from genbench.harness.runner import run_all\n",
                       "genbench/harness/runner.py": "from genbench.data import load_dataset\n"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(code)
    for top in ("kernels", "baselines"):
        (tmp_path / top).mkdir()
    assert upward_imports(tmp_path) == ["data (layer 3) imports harness (layer 8) in genbench/data/probe.py"]
    assert cycles(tmp_path) == ["data -> harness -> data", "harness -> data -> harness"]
