"""What importing costs a process: ``import hmm``, and parsing the DAG file over Airflow's own imports.

    .venv/bin/python benchmarks/imports.py [--runs 5]

Every Airflow task process parses ``dags/hmm_training.py`` before running its
task, so what that file imports is paid by every task. Each case runs in a
fresh interpreter, the cases interleaved (a loaded machine slows them alike);
printed: median wall seconds and median CPU seconds (user + system) of the
whole process, then ``python -X importtime``'s view of what the DAG file adds.
"""

from __future__ import annotations

import argparse
import ast
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAG_FILE = ROOT / "dags" / "hmm_training.py"


def dag_airflow_imports() -> str:
    """``import ...`` of the Airflow modules the DAG file imports: the baseline it adds to."""
    names = set()
    for node in ast.walk(ast.parse(DAG_FILE.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return "import " + ", ".join(sorted(name for name in names if name.split(".")[0] == "airflow"))


def run(code: str, env: dict[str, str], *options: str) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds and stderr of a fresh ``python -c code``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *options, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"{code!r} failed:\n{done.stderr[-3000:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, done.stderr


def added_imports(code: str, marker: str, env: dict[str, str]) -> list[tuple[int, int, str]]:
    """(cumulative microseconds, depth, module) of every import after ``marker`` is printed to stderr."""
    _, _, stderr = run(code, env, "-X", "importtime")
    found = []
    for line in stderr.split(marker, 1)[1].splitlines():
        fields = line.split("|")
        if line.startswith("import time:") and len(fields) == 3 and fields[1].strip().isdigit():
            name = fields[2]
            found.append((int(fields[1]), (len(name) - len(name.lstrip())) // 2, name.strip()))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
        env.setdefault("AIRFLOW_HOME", home)
        airflow = dag_airflow_imports()
        parse = f"import runpy; runpy.run_path({str(DAG_FILE)!r})"
        cases = {
            "python -c pass": "pass",
            "import hmm": "import hmm",
            "Airflow's imports of the DAG": airflow,
            "... + parse the DAG file": f"{airflow}; {parse}",
        }
        results: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label in cases}
        for _ in range(args.runs):
            for label, code in cases.items():
                wall, cpu, _ = run(code, env)
                results[label][0].append(wall)
                results[label][1].append(cpu)
        print(f"median of {args.runs} fresh processes        wall s   CPU s")
        for label, (walls, cpus) in results.items():
            print(f"  {label:36s} {statistics.median(walls):6.2f}  {statistics.median(cpus):6.2f}")
        walls, cpus = results["... + parse the DAG file"]
        base_walls, base_cpus = results["Airflow's imports of the DAG"]
        print(
            f"  {'the DAG file adds':36s} {statistics.median(walls) - statistics.median(base_walls):6.2f}  "
            f"{statistics.median(cpus) - statistics.median(base_cpus):6.2f}"
        )
        marker = "--- the DAG file ---"
        code = f"{airflow}; import sys; print({marker!r}, file=sys.stderr); {parse}"
        imports = added_imports(code, marker, env)
        print("what the DAG file adds (python -X importtime, cumulative ms): its own imports,")
        for microseconds, _, name in sorted((i for i in imports if i[1] == 0), reverse=True)[: args.top]:
            print(f"  {microseconds / 1000:8.1f}  {name}")
        print("and the largest packages loaded on the way:")
        packages = sorted((i for i in imports if "." not in i[2] and i[1] > 0), reverse=True)
        for microseconds, _, name in packages[: args.top]:
            print(f"  {microseconds / 1000:8.1f}  {name}")


if __name__ == "__main__":
    main()
