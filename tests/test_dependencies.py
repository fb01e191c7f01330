"""Every third-party import is declared: by the core dependencies or by the extra its package needs.

Each layer package has its extra in pyproject.toml (``spark``: hmm.distributed, ``training``:
hmm.training, ``airflow``: hmm.orchestration and dags/); a few training modules also use the extra of
what they reach (an s3:// store, the report's figures, the Spark engine's session). Every import
statement counts, at module level or inside a function (the lazy imports are exactly the ones
that fail late on a machine without the extra), except those only a type checker sees.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
#: Module (or package) -> the extras its imports may come from, besides the core dependencies.
#: The longest matching prefix applies.
EXTRAS_OF = {
    "hmm": (),
    "hmm.core": (),
    "hmm.distributed": ("spark",),
    "hmm.training": ("training",),
    "hmm.training.store": ("training", "aws"),
    "hmm.training.report": ("training", "report"),
    "hmm.training.steps": ("training", "spark"),  # engine="spark": the SparkSession's DataFrame reader
    "hmm.training.cli": ("training", "spark"),  # --engine spark starts the session
    "hmm.training.decode": ("training", "spark"),  # the parts are Parquet written with pyarrow
    "hmm.orchestration": ("airflow",),
    "dags": ("airflow",),
    "jobs": (),
}
SOURCES = sorted([*(ROOT / "hmm").rglob("*.py"), *(ROOT / "dags").glob("*.py"), *(ROOT / "jobs").glob("*.py")])


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[str]) -> set[str]:
    """Distribution names of requirements; ``hmm-em[a,b]`` stands for those extras' requirements."""
    names = set()
    for requirement in requirements:
        name, _, rest = re.match(r"([A-Za-z0-9._-]+)(\[([^\]]*)\])?", requirement).group(1, 2, 3)
        if normalize(name) == "hmm-em":
            names |= declared(tuple(extra.strip() for extra in rest.split(",")))
        else:
            names.add(normalize(name))
    return names


def declared(extras: tuple[str, ...]) -> set[str]:
    """The distributions the core dependencies and ``extras`` install by name."""
    names = requirement_names(PYPROJECT["dependencies"])
    for extra in extras:
        names |= requirement_names(PYPROJECT["optional-dependencies"][extra])
    return names


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def extras_of(module: str) -> tuple[str, ...]:
    prefixes = [p for p in EXTRAS_OF if module == p or module.startswith(p + ".")]
    return EXTRAS_OF[max(prefixes, key=len)]


def third_party_imports(source: str) -> dict[str, int]:
    """Top-level name -> first line of every import of a module outside the standard library and hmm."""
    tree = ast.parse(source)
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top not in ("hmm", "infra", "tests"):
                found.setdefault(top, node.lineno)
    return found


DISTRIBUTIONS = importlib.metadata.packages_distributions()


def undeclared(module: str, source: str) -> list[str]:
    allowed = declared(extras_of(module))
    problems = []
    for top, line in sorted(third_party_imports(source).items()):
        providers = {normalize(d) for d in DISTRIBUTIONS.get(top, [])}
        if not providers:
            problems.append(f"line {line}: {top} (no installed distribution provides it)")
        elif not providers & allowed:
            problems.append(
                f"line {line}: {top} ({', '.join(sorted(providers))} is not in {extras_of(module) or 'core'})"
            )
    return problems


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_import_is_declared_by_the_core_or_the_packages_extra(path):
    module = module_name(path)
    assert undeclared(module, path.read_text()) == [], f"{module} imports undeclared distributions"


def test_the_layer_extras_exist_and_all_installs_each():
    extras = PYPROJECT["optional-dependencies"]
    for names in EXTRAS_OF.values():
        assert set(names) <= set(extras)
    layer_extras = {name for names in EXTRAS_OF.values() for name in names}
    assert declared(("all",)) >= declared(tuple(layer_extras))


def test_an_emr_node_gets_what_its_steps_import():
    """EMR brings Spark (pyspark) itself; the ``emr`` extra must bring everything else the steps use."""
    steps = ("hmm.core", "hmm.distributed", "hmm.training", "hmm.training.store", "hmm.training.report", "jobs")
    needed = set().union(*(declared(extras_of(m)) for m in steps)) - {"pyspark"}
    assert needed - declared(("emr",)) == set()


def test_the_checker_sees_an_undeclared_import_even_inside_a_function():
    lazy = "def f():\n    import boto3\n"
    assert undeclared("hmm.core.probe", lazy) == ["line 2: boto3 (boto3 is not in core)"]
    assert undeclared("hmm.training.store", lazy) == []
    assert undeclared("hmm.core.probe", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import boto3\n") == []
    assert undeclared("hmm.distributed.probe", "import matplotlib.pyplot") == [
        "line 1: matplotlib (matplotlib is not in ('spark',))"
    ]
