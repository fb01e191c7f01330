"""The layers of hmm import only downwards and never in a circle.

core (0) <- distributed (1) <- training (2) <- orchestration (3); the package facade
``hmm/__init__.py`` sits on top and may name any layer. Every import statement counts, at module
level or inside a function (a lazy import is still a dependency), except those only a type
checker sees (``if TYPE_CHECKING:``), which may point anywhere a layer may.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HMM = Path(__file__).resolve().parents[1] / "hmm"
LAYERS = {"core": 0, "distributed": 1, "training": 2, "orchestration": 3}
#: What a module of any layer may import from the package root: the version (hmm/_version.py).
ROOT_NAMES = {"__version__"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(HMM.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def imports(path: Path) -> list[tuple[str, int, set[str]]]:
    """(imported hmm module, line, names) of every import a running program can execute."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno, set()) for a in node.names if a.name.split(".")[0] == "hmm"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "hmm":
                continue
            names = {a.name for a in node.names}
            # "from hmm.training import steps" imports the module hmm.training.steps
            submodules = {n for n in names if (HMM.parent / target.replace(".", "/") / f"{n}.py").exists()}
            found += [(f"{target}.{n}", node.lineno, set()) for n in submodules]
            if names - submodules:
                found.append((target, node.lineno, names - submodules))
    return found


MODULES = sorted(HMM.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(HMM.parent)))
def test_imports_point_down(path):
    source = module_name(path)
    mine = layer(source)
    if source == "hmm":
        return  # the facade may name every layer
    upward = []
    for target, line, names in imports(path):
        if target in ("hmm", "hmm._version"):
            if target == "hmm" and not names <= ROOT_NAMES:
                upward.append(f"line {line}: {target} ({sorted(names)})")
            continue
        theirs = layer(target)
        if theirs is None or mine is None or theirs > mine:
            upward.append(f"line {line}: {target}")
    assert upward == [], f"{source} imports upward or outside the layers: {upward}"


def test_every_module_is_in_a_layer():
    outside = [module_name(p) for p in MODULES if layer(module_name(p)) is None]
    assert sorted(outside) == ["hmm", "hmm._version"] or sorted(outside) == ["hmm"], outside


def test_no_import_cycles():
    graph = {module_name(p): {t for t, _, _ in imports(p) if t not in ("hmm", "hmm._version")} for p in MODULES}
    graph = {m: {t for t in targets if t in graph and t != m} for m, targets in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_checker_sees_an_upward_import():
    """The rule can fail: an import of the training layer from the core is reported."""
    fake = HMM / "core" / "_upward_probe.py"
    fake.write_text("def f():\n    from hmm.training import store\n")
    try:
        with pytest.raises(AssertionError, match=r"hmm.core._upward_probe imports upward .*hmm.training.store"):
            test_imports_point_down(fake)
    finally:
        fake.unlink()
