"""The 2016 project's headline workload end to end through the Airflow DAG, local mode, this machine.

Run by hand::

    python benchmarks/dag.py                                   # 500,000 x 100 symbols, K=10, F=20, 10 iterations
    python benchmarks/dag.py --sequences 2000 --iterations 6   # the fixed cost of a step (tiny data)
    python benchmarks/dag.py --plain-jvm                       # steps without the local-mode JVM options

The 2016 Zalando Hack Week project (``shared/seed/2016-pyspark-hmm.txt``) trained a categorical
HMM on 500,000 sequences in 6.4 minutes on 15 EMR nodes (hmmlearn alone: 91.6 minutes). Here the
same workload (categorical K=10 states, F=20 symbols, T=100 symbols per sequence drawn from a
random 10-state model, ``benchmarks/spark.py``'s data, written once into ``--cache``) trains
through the ``hmm_training`` DAG exactly as ``make demo`` runs it (:mod:`infra.local.dag_runner`):
a real Airflow 3 under ``dag.test()``, every step a python process on the DAG run's Spark Connect
server (``start_spark``; before, each step was its own ``spark-submit --master local[*]``),
a ``file://`` store, ``tol`` 0 and ``max_iter`` 10 so that all 10 iterations run (a DAG run has 6
iteration slots: the continuation run does the last 4 and publishes the model).

Not timed: writing the data, creating the Airflow home (``airflow db migrate``, loading the
DAG). Timed: from the first DAG run's start to the last one's end. Where each iteration's time
goes comes from three clocks that see the same instants (all wall-clock time of this machine):

* Airflow's task instances (start, end) of ``iteration_i`` and ``wait_i``, and the task before;
* the step's process, timed around ``hmm.orchestration.tasks.run_command`` in this process (spark-submit
  started, exited);
* the step's COMMIT: ``launch_seconds`` (spark-submit's JVM until the Python job starts),
  ``startup_seconds`` (the job's Python start-up: imports and ``spark_session_seconds``), the
  load, E-step and M-step, ``committed_at`` (when the commit starts) and the COMMIT file's
  modification time (when it ends).

The first step's E-step is the first Spark action of the run's server: it includes starting the
Python workers (which import hmm) and compiling the plan; later steps find them running. After the
training a probe (not part of the training time: a python process on a Spark Connect server of its
own, started and reached as the DAG's steps do) splits a warm E-step of the same data into the
Spark job alone (its tasks empty), the tasks reading their splits with pyarrow, and
the E-step proper, median of 3.

Output: Markdown tables on stdout and everything measured as JSON (``--json``, default
``<cache>/dag-<N>.json``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JOBS_DIR = ROOT / "jobs"
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

# Before anything imports numpy, numba or Spark: importing benchmarks/spark.py sets the
# environment (one thread per process, loopback, Spark workers on this interpreter and checkout).
from benchmarks.spark import (  # noqa: E402
    LENGTH,
    N_COMPONENTS,
    N_FEATURES,
    checkout,
    cpu_model,
    ensure_parquet,
    log,
    split_passes,
)

#: The 2016 project's result for this workload: 500,000 sequences on 15 m4.2xlarge nodes.
MINUTES_2016 = 6.4
NODES_2016 = 15
DAG_ID = "hmm_training"
#: Rows of the per-iteration table: (key, label), in the order time passes in an iteration.
PHASES = (
    ("gap_before_task", "Airflow: gap before the iteration task"),
    ("task_to_submit", "Airflow: task start to the step's process (spark-submit or python)"),
    ("launch", "launcher until the Python job starts (spark-submit's JVM; none on the run's server)"),
    ("python_startup", "Python start-up and imports (hmm, pyspark)"),
    ("spark_session", "Spark session (a JVM, or a Connect session on the run's server)"),
    ("load", "params and history load"),
    ("estep", "Parquet read + E-step (the step's first Spark action)"),
    ("mstep", "M-step"),
    ("commit", "commit (parameters, then COMMIT)"),
    ("exit", "process exit (with spark-submit: Spark stop and JVM exit)"),
    ("task_after_job", "Airflow: task end after the job"),
    ("sensor", "Airflow: sensor (gap and poke)"),
)
AIRFLOW_PHASES = ("gap_before_task", "task_to_submit", "task_after_job", "sensor")
JOB_FIXED_PHASES = ("launch", "python_startup", "spark_session", "load", "commit", "exit")


# ------------------------------------------------------------------ the training


def training_conf(data: Path, store: Path, n_sequences: int, iterations: int) -> dict[str, Any]:
    return {
        "model": "categorical",
        "n_components": N_COMPONENTS,
        "data": data.as_uri(),
        "store": store.as_uri(),
        "id_col": "id",
        "tol": 0.0,  # the log-likelihood always gains: all max_iter iterations run
        "max_iter": iterations,
        "seed": 0,
        "model_args": {"n_features": N_FEATURES},
        "mode": "local",
        "engine": "spark",
        "training_id": f"bench-{n_sequences}-{datetime.now().strftime('%Y%m%dT%H%M%S')}",
    }


class StepClock:
    """Times every step process the DAG's tasks start (``hmm.orchestration.tasks.run_command``)."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def install(self) -> None:
        from hmm.orchestration import tasks as airflow_tasks

        real = airflow_tasks.run_command

        def timed(argv: list[str], env: Any) -> None:
            step: dict[str, Any] = {"argv": argv, "started": time.time()}
            if "--iteration" in argv:
                step["iteration"] = int(argv[argv.index("--iteration") + 1])
            self.steps.append(step)
            try:
                real(argv, env)
            finally:
                step["ended"] = time.time()

        airflow_tasks.run_command = timed


def plain_jvm() -> None:
    """Steps as before the local-mode JVM settings: no C1-only JIT, no class data sharing archive."""
    from hmm.orchestration import decisions as orchestration
    from hmm.orchestration import tasks as airflow_tasks

    orchestration.LOCAL_JAVA_OPTIONS = ()
    airflow_tasks.class_archive_options = lambda archive: ([], None)


def iteration_rows(
    store: Path, training_id: str, steps: list[dict[str, Any]], instances: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per iteration: the seconds of each of :data:`PHASES`, from the three clocks."""
    from hmm.training.commits import Training
    from hmm.training.store import open_store

    training = Training(open_store(store.as_uri()), training_id)
    by_task = {(ti["run_id"], ti["task_id"]): ti for ti in instances if ti["start"] is not None}
    rows = []
    for step in (s for s in steps if "iteration" in s):
        k = step["iteration"]
        record = training.record(k)
        timings = record["timings"]
        # The task that ran the step: the iteration_i whose span holds the process.
        task = next(
            ti
            for ti in by_task.values()
            if ti["task_id"].startswith("iteration_") and ti["start"] <= step["started"] and step["ended"] <= ti["end"]
        )
        slot = int(task["task_id"].rsplit("_", 1)[1])
        previous = by_task[(task["run_id"], f"wait_{slot - 1}" if slot > 1 else "init")]
        sensor = by_task[(task["run_id"], f"wait_{slot}")]
        committed = datetime.fromisoformat(record["committed_at"]).timestamp()
        commit_file = store / "trainings" / training_id / "iterations" / str(k) / "COMMIT"
        commit_end = commit_file.stat().st_mtime
        step_seconds = timings["load_seconds"] + timings["estep_seconds"] + timings["mstep_seconds"]
        python_started = committed - step_seconds - timings["startup_seconds"]
        phases = {
            "gap_before_task": task["start"] - previous["end"],
            "task_to_submit": step["started"] - task["start"],
            # spark-submit execs its JVM in the process it started, so this is the COMMIT's
            # launch_seconds too (the JVM's age when the job started), from outside.
            "launch": python_started - step["started"],
            "python_startup": timings["startup_seconds"] - timings.get("spark_session_seconds", 0.0),
            "spark_session": timings.get("spark_session_seconds", 0.0),
            "load": timings["load_seconds"],
            "estep": timings["estep_seconds"],
            "mstep": timings["mstep_seconds"],
            "commit": commit_end - committed,
            "exit": step["ended"] - commit_end,
            "task_after_job": task["end"] - step["ended"],
            "sensor": sensor["end"] - task["end"],
        }
        rows.append(
            {
                "iteration": k,
                "run_id": task["run_id"],
                "slot": slot,
                "total": sensor["end"] - previous["end"],
                "job": step["ended"] - step["started"],
                "phases": phases,
                "log_likelihood": record["log_likelihood"],
            }
        )
    return rows


# ------------------------------------------------------------------ the E-step probe


def probe_child(data: Path, model_file: str, repeats: int, remote: str) -> dict[str, Any]:
    """In one python process on the Spark Connect server ``remote``: the step's Spark job doing more and more,
    cold then warm, interleaved."""
    from pyspark.sql import SparkSession

    import hmm
    from hmm.distributed.sources import ParquetSequences, task_groups
    from hmm.distributed.spark import default_parallelism

    spark = SparkSession.builder.remote(remote).getOrCreate()
    model = hmm.load(str(model_file))
    source = ParquetSequences(data.as_uri(), id_col="id", engine="spark", spark=spark)
    passes = split_passes(spark, source, model)
    del passes["validate"]
    cold = {}
    for name, function in passes.items():  # first of each: what a fresh step pays
        started = time.perf_counter()
        function()
        cold[name] = time.perf_counter() - started
    warm: dict[str, list[float]] = {name: [] for name in passes}
    for _ in range(repeats):
        for name, function in passes.items():
            started = time.perf_counter()
            function()
            warm[name].append(time.perf_counter() - started)
    result = {
        "splits": len(source.splits()),
        "tasks": len(task_groups(list(enumerate(source.splits())), default_parallelism(spark))),
        "cold": cold,
        "warm": {name: statistics.median(values) for name, values in warm.items()},
    }
    spark.stop()
    return result


def run_probe(data: Path, model_file: str, repeats: int) -> dict[str, Any]:
    """:func:`probe_child` as a DAG run's steps run: a python process (``--remote``) on a Spark Connect server
    started as the run's ``start_spark`` starts it (same command, Spark and JVM settings, environment),
    one of its own (fresh: its Python workers start on the first pass), stopped afterwards."""
    from hmm.orchestration import tasks as airflow_tasks

    plan = {"mode": "local", "engine": "spark", "training_id": "probe"}
    server = airflow_tasks.start_spark(plan, str(JOBS_DIR))
    try:
        argv = [sys.executable, __file__, "--probe-child", str(data), "--model", model_file]
        argv += ["--repeats", str(repeats), "--remote", server["url"]]
        env = airflow_tasks.local_environment(str(JOBS_DIR))
        output = subprocess.run(argv, check=True, stdout=subprocess.PIPE, text=True, env=env).stdout
    finally:
        airflow_tasks.stop_spark(server)
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------------ report


def machine() -> str:
    cpu = cpu_model()
    import pyspark

    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    return (
        f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, {java}, "
        f"Spark {pyspark.__version__} local[*], {checkout()}"
    )


def seconds(value: float) -> str:
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def print_report(result: dict[str, Any]) -> None:
    rows = result["iterations"]
    print(f"Machine: {result['machine']}\n")
    print(f"Load average (1, 5, 15 min) at start and end: {result['load']}\n")
    print(
        f"Workload: {result['sequences']:,} categorical sequences x {LENGTH} symbols, K={N_COMPONENTS}, "
        f"F={N_FEATURES}, {result['iterations_requested']} EM iterations, each its own step (a python process on "
        "the run's Spark Connect server, started by start_spark); "
        f"JVM settings: {result['jvm']}; class archive {result['class_archive']}.\n"
    )
    training = result["training_seconds"]
    print("| | seconds | minutes |\n|---|---:|---:|")
    print(f"| training through the DAG ({len(result['runs'])} DAG runs) | {training:.1f} | {training / 60:.2f} |")
    print(f"| 2016 project, {NODES_2016} m4.2xlarge nodes | {MINUTES_2016 * 60:.0f} | {MINUTES_2016:.1f} |")
    print(f"| ratio (2016 / this machine) | {MINUTES_2016 * 60 / training:.2f}x | |")
    for label, key in (
        ("not timed: writing the data", "data_seconds"),
        ("not timed: Airflow home (db migrate, DAG load)", "airflow_start_seconds"),
    ):
        print(f"| {label} | {result[key]:.1f} | |")
    iterations = sum(r["total"] for r in rows)
    print(f"| of the training: the {len(rows)} iterations (task before to sensor done) | {iterations:.1f} | |")
    print(
        f"| of the training: everything else (validate, init, finalize, between runs) | {training - iterations:.1f} | |"
    )
    for step in result["other_steps"]:
        print(f"| of which the {step['kind']} step's process | {step['seconds']:.1f} | |")
    for task_id in ("start_spark", "stop_spark"):
        spans = [t["end"] - t["start"] for t in result["task_instances"] if t["task_id"] == task_id and t["start"]]
        if spans and result["task_instances"]:
            states = {t["state"] for t in result["task_instances"] if t["task_id"] == task_id}
            what = "starting the run's Spark Connect server" if task_id == "start_spark" else "stopping it"
            print(f"| of which {task_id} ({what}; {', '.join(sorted(states))}), per run | {seconds(max(spans))} | |")

    print("\nPer iteration, seconds (median and sum over the iterations in the last columns):\n")
    header = " | ".join(str(r["iteration"]) for r in rows)
    print(f"| phase | {header} | median | sum |")
    print("|---|" + "---:|" * (len(rows) + 2))
    for key, label in PHASES:
        values = [r["phases"][key] for r in rows]
        cells = " | ".join(seconds(v) for v in values)
        print(f"| {label} | {cells} | {seconds(statistics.median(values))} | {seconds(sum(values))} |")
    for label, keys in (
        ("= Airflow overhead", AIRFLOW_PHASES),
        ("= job fixed cost (all but E-step and M-step)", JOB_FIXED_PHASES),
        ("= E-step and M-step", ("estep", "mstep")),
    ):
        values = [sum(r["phases"][k] for k in keys) for r in rows]
        cells = " | ".join(seconds(v) for v in values)
        print(f"| **{label}** | {cells} | {seconds(statistics.median(values))} | {seconds(sum(values))} |")
    totals = [r["total"] for r in rows]
    cells = " | ".join(seconds(v) for v in totals)
    print(f"| **iteration total** | {cells} | {seconds(statistics.median(totals))} | {seconds(sum(totals))} |")

    probe = result.get("probe")
    if probe:
        estep = statistics.median(r["phases"]["estep"] for r in rows)
        warm, cold = probe["warm"], probe["cold"]
        print(
            f"\nThe E-step, split (probe: a python process on a fresh Spark Connect server, same data, "
            f"{probe['splits']} splits in {probe['tasks']} tasks; warm = median of 3 in a session that has run "
            "each pass once):\n"
        )
        print("| pass | first on a fresh server | warm |\n|---|---:|---:|")
        print(f"| Spark job, its tasks empty | {seconds(cold['empty tasks'])} | {seconds(warm['empty tasks'])} |")
        print(f"| + each task reads its splits with pyarrow | {seconds(cold['read'])} | {seconds(warm['read'])} |")
        print(f"| + E-step in the workers (hmm-em) | {seconds(cold['estep'])} | {seconds(warm['estep'])} |")
        first_action = seconds(estep - warm["estep"])
        print(
            f"\nA step's E-step (median {seconds(estep)} s) is {first_action} s more than the probe's warm one "
            "(it is the step's first Spark action: its plan; on a run's first step, also the Python workers "
            "starting and importing hmm)."
        )
    print(f"\nJSON: {result['json']}")


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=500_000, help="number of sequences N (default 500,000)")
    parser.add_argument("--iterations", type=int, default=10, help="EM iterations, max_iter (default 10)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/hmm-em-bench"), help="data and run folders")
    parser.add_argument("--plain-jvm", action="store_true", help="steps without the local-mode JVM options")
    parser.add_argument("--no-probe", action="store_true", help="skip the E-step split")
    parser.add_argument("--repeats", type=int, default=3, help="warm passes of the probe (median)")
    parser.add_argument("--json", type=Path, help="where to write the results (default <cache>/dag-<N>.json)")
    parser.add_argument("--probe-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--remote", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe_child:
        print(json.dumps(probe_child(args.probe_child, args.model, args.repeats, args.remote)))
        return

    from infra.local.dag_runner import LocalAirflow

    load_start = os.getloadavg()
    started = time.perf_counter()
    data = ensure_parquet(args.cache, args.sequences)
    data_seconds = time.perf_counter() - started
    work = args.cache / f"dag-run-{datetime.now().strftime('%Y%m%dT%H%M%S')}"
    store = work / "store"
    airflow = LocalAirflow(work / "airflow", log_file=work / "airflow.log")
    started = time.perf_counter()
    airflow.start()
    airflow_start_seconds = time.perf_counter() - started
    log(f"Airflow home {airflow.home} ready in {airflow_start_seconds:.1f} s; log {airflow.log_file}")

    from hmm.orchestration import tasks as airflow_tasks

    spark_submit = airflow_tasks.spark_submit_path()
    assert spark_submit, "spark-submit not found"
    archive = airflow_tasks.spark_class_archive(spark_submit)
    archive_state = (
        "not used (--plain-jvm)" if args.plain_jvm else ("present" if archive.exists() else "written by init")
    )
    if args.plain_jvm:
        plain_jvm()
    clock = StepClock()
    clock.install()
    conf = training_conf(data, store, args.sequences, args.iterations)
    log(f"training {conf['training_id']}: {args.sequences:,} sequences, {args.iterations} iterations")
    started = time.perf_counter()
    # A date of its own: dag.test() clears the task instances of the run's logical date.
    runs = airflow.train(conf, logical_date=datetime.now(UTC))
    training_seconds = time.perf_counter() - started
    log(f"trained in {training_seconds:.1f} s ({len(runs.runs)} DAG runs)")

    instances = airflow.task_instances([run_id for run_id, _, _ in runs.runs])
    json_path = args.json or args.cache / f"dag-{args.sequences}.json"
    raw = {"runs": runs.runs, "steps": clock.steps, "task_instances": instances, "training_id": conf["training_id"]}
    json_path.write_text(json.dumps(raw, indent=1, default=str))  # kept if the analysis below fails
    rows = iteration_rows(store, conf["training_id"], clock.steps, instances)
    other = [
        {"kind": Path(next(a for a in s["argv"] if a.endswith(".py"))).stem, "seconds": s["ended"] - s["started"]}
        for s in clock.steps
        if "iteration" not in s
    ]
    probe = None
    if not args.no_probe and runs.published:
        log("probe: the E-step split")
        # The published model (model/<iteration>/model.npz of the file:// store): the PUBLISHED marker names it.
        probe = run_probe(data, runs.published["model"].removeprefix("file://"), args.repeats)
    from hmm.orchestration import decisions as orchestration

    result = {
        "machine": machine(),
        "load": " / ".join(" ".join(f"{x:.1f}" for x in v) for v in (load_start, os.getloadavg())),
        "sequences": args.sequences,
        "iterations_requested": args.iterations,
        "jvm": "plain" if args.plain_jvm else " ".join(orchestration.LOCAL_JAVA_OPTIONS) + " + class archive",
        "class_archive": archive_state,
        "data_seconds": data_seconds,
        "airflow_start_seconds": airflow_start_seconds,
        "training_seconds": training_seconds,
        "runs": runs.runs,
        "iterations": rows,
        "other_steps": other,
        "task_instances": instances,
        "steps": clock.steps,
        "probe": probe,
        "json": str(json_path),
    }
    Path(result["json"]).write_text(json.dumps(result, indent=1, default=str))
    print_report(result)


if __name__ == "__main__":
    main()
