"""Seconds per EM iteration on Spark local[2]: hmm-em's E-step against the 2016 design.

Run by hand (``python benchmarks/spark.py [--quick | --sizes 10000,100000] [--full-2016]``);
prints Markdown tables. Categorical HMM, K=10 states, F=20 symbols, sequences of
T=100 symbols drawn from a random K=10 model, read from Parquet (columns ``id
long, sequence array<int>``), generated once per size into ``--cache`` in chunks
of 50,000 sequences (one file each, at least 4 files), so generation memory does
not grow with N. Every EM run starts from the same random initial model.

For each number of sequences N:

(a) hmm-em as its ``em_iteration`` job runs the E-step:
    ``hmm.distributed.sources.ParquetSequences(uri, engine="spark").statistics(model)`` (one
    Spark task per Parquet split, the executors read their split with pyarrow,
    one compiled E-step and one statistics record per Arrow batch) +
    ``model._m_step``; median of 5 timed iterations after three warm-up
    iterations (the JVM compiles the job's path meanwhile).
(b) the 2016 design (Zalando Hack Week, ``shared/seed/2016-pyspark-hmm.txt``):
    parameters broadcast, ``df.rdd.map`` of a per-sequence Python function around
    hmmlearn 0.3.3's compiled forward-backward, the results turned into a
    DataFrame and summed with ``groupBy().agg(array(sum(...)...))``, M-step on the
    driver; one timed iteration after a warm-up on 1,000 rows. Above 100,000
    sequences it is extrapolated linearly from the largest measured size unless
    ``--full-2016`` is given.
(c) the in-memory library on one thread, same data, same initial model
    (``model._e_step`` + ``model._m_step``, median of 3, wall and CPU seconds), in a fresh child process
    run before Spark starts; "x 2 cores" is half its time, the ideal for local[2].
(d) peak resident memory of the Spark process tree (the JVM and every Python
    worker under it) plus the driver, sampled every 0.2 s during (a)'s timed
    iterations. Each N runs in a fresh driver process with its own JVM (a JVM
    never gives heap back, so one JVM for all N would carry the largest peak
    forward). Forked workers share pages, so the sum over-counts a little.

To show where hmm-em's time goes: the CPU seconds of the driver, the JVM and
the Python workers during (a)'s iterations (psutil), and the same Spark job
doing less work (empty tasks; reading the splits; unpacking and validation
without the E-step), next to the DataFrame path that ``fit`` on a Spark
DataFrame takes (``hmm.distributed.spark.e_step``: the JVM reads the Parquet and
``mapInArrow`` hands Arrow batches to Python), over the Parquet and over a
persisted DataFrame, interleaved.

The executors' split cache (``hmm.distributed.split_cache``) is on, as in a
training: the first warm-up iteration decodes the Parquet and writes the cache
(unless an earlier run did), the timed ones memory-map it;
``--compare-split-cache`` also times hmm-em's iterations with it off, in a
fresh driver and JVM.

Spark keeps its defaults apart from driver memory (4g), 10,000 rows per Arrow
batch and the JVM: it runs with the JVM options of hmm-em's local-mode steps and
Spark Connect server (``hmm.orchestration.decisions.LOCAL_JAVA_OPTIONS``, C1 JIT
only), as a training runs it; ``--java-defaults`` runs Java's defaults instead.
Measured at 1M (2026-11-30): with C2, the JVM spends 0.13 CPU-s per iteration
from the 4th to the 13th iteration (C2 compiling Spark's code 0.07 of it, on the
cores the Python workers need), 0.05 from the 31st to the 40th; with C1 only,
0.03 from the 4th. The 2016 design runs in the same JVM as hmm-em for each N.
hmm-em groups the Parquet files (4 at 10,000 sequences, 20 at
1,000,000) into one task per core, as ``hmm.distributed.sources.task_groups`` does for any
data under 128 MB per core; the 2016 design and the DataFrame path read the
Spark DataFrame, which packs the files into 2 partitions (one per core). The 2016
design's ``createDataFrame`` skips Python-side schema verification
(``verifySchema=False``), which only makes it faster.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Before numpy / numba / Spark start: one thread per process, loopback, and
# Python workers that run this interpreter and import this checkout's hmm.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_variable] = "1"
os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import psutil  # noqa: E402

import hmm  # noqa: E402
from benchmarks.library import checkout  # noqa: E402
from hmm.core.stats import SufficientStats  # noqa: E402

N_COMPONENTS = 10
N_FEATURES = 20
LENGTH = 100
SEQUENCES_PER_FILE = 50_000
MIN_FILES = 4
BATCH_ROWS = 10_000  # spark.sql.execution.arrow.maxRecordsPerBatch
WARM_UP_ITERATIONS = 3  # hmm-em iterations before the timed ones
LARGEST_2016 = 100_000  # above this the 2016 design is extrapolated unless --full-2016
WARM_UP_2016_ROWS = 1_000
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ models and data


def true_parameters() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model the data is drawn from: sticky states, peaked emissions."""
    rng = np.random.default_rng(2016)
    startprob = rng.dirichlet(np.ones(N_COMPONENTS))
    transmat = rng.dirichlet(np.ones(N_COMPONENTS), size=N_COMPONENTS) + 4 * np.eye(N_COMPONENTS)
    transmat /= transmat.sum(axis=1, keepdims=True)
    emissionprob = rng.dirichlet(np.full(N_FEATURES, 0.3), size=N_COMPONENTS)
    return startprob, transmat, emissionprob


def initial_model() -> hmm.CategoricalHMM:
    """The random model every EM run starts from (the same in every process)."""
    rng = np.random.default_rng(1)
    model = hmm.CategoricalHMM(N_COMPONENTS, n_features=N_FEATURES, init_params="", tol=-np.inf)
    model.startprob_ = rng.dirichlet(np.ones(N_COMPONENTS))
    model.transmat_ = rng.dirichlet(np.ones(N_COMPONENTS), size=N_COMPONENTS)
    model.emissionprob_ = rng.dirichlet(np.ones(N_FEATURES), size=N_COMPONENTS)
    model._check()
    return model


def _first_above(u: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    """Index of the first cdf entry >= u, row by row (inverse-CDF sampling)."""
    return np.minimum((u[:, None] > cdf).sum(axis=1), cdf.shape[1] - 1)


def draw_symbols(rng: np.random.Generator, n_sequences: int) -> np.ndarray:
    """(n_sequences, LENGTH) int32 symbols from the true model, all chains stepped together."""
    startprob, transmat, emissionprob = true_parameters()
    transition_cdf = np.cumsum(transmat, axis=1)
    emission_cdf = np.cumsum(emissionprob, axis=1)
    symbols = np.empty((n_sequences, LENGTH), dtype=np.int32)
    state = _first_above(rng.random(n_sequences), np.broadcast_to(np.cumsum(startprob), (n_sequences, N_COMPONENTS)))
    for t in range(LENGTH):
        if t:
            state = _first_above(rng.random(n_sequences), transition_cdf[state])
        symbols[:, t] = _first_above(rng.random(n_sequences), emission_cdf[state])
    return symbols


def parquet_path(cache: Path, n_sequences: int) -> Path:
    return cache / f"parquet-{n_sequences}"


def ensure_parquet(cache: Path, n_sequences: int) -> Path:
    """The data set of ``n_sequences`` rows, written once (file by file, then renamed into place)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    final = parquet_path(cache, n_sequences)
    if (final / "_SUCCESS").exists():
        return final
    started = time.perf_counter()
    partial = cache / f"parquet-{n_sequences}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    n_files = max(MIN_FILES, -(-n_sequences // SEQUENCES_PER_FILE))
    bounds = np.linspace(0, n_sequences, n_files + 1).astype(np.int64)
    for index, (first, stop) in enumerate(itertools.pairwise(bounds)):
        rng = np.random.default_rng([2016, n_sequences, index])
        symbols = draw_symbols(rng, int(stop - first))
        offsets = pa.array(np.arange(0, symbols.size + 1, LENGTH, dtype=np.int32))
        sequences = pa.ListArray.from_arrays(offsets, pa.array(symbols.ravel()))
        table = pa.table({"id": pa.array(np.arange(first, stop, dtype=np.int64)), "sequence": sequences})
        pq.write_table(table, partial / f"part-{index:05d}.parquet")
    (partial / "_SUCCESS").touch()
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    log(f"wrote {final} ({n_files} files) in {time.perf_counter() - started:.1f} s")
    return final


def directory_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.iterdir()) / 2**20


# ------------------------------------------------------------ (c) in-memory library


def library_child(path: Path, repeats: int) -> dict[str, Any]:
    """Runs in a fresh process: load all sequences, time ``_e_step`` + ``_m_step``."""
    import pyarrow.parquet as pq

    from hmm.distributed.arrow import arrow_sequences

    table = pq.read_table(path, columns=["sequence"])
    X, offsets = arrow_sequences(table.column("sequence"), symbols=True)
    del table
    model = initial_model()
    # the symbols as fit hands them to the E-steps (uint8 below 256 symbols)
    X = model._fit_observations(model._as_observations(X))
    model._e_step(X[: 10 * LENGTH], offsets[:11])  # numba: compile or load the cache
    seconds, cpu = [], []
    first: SufficientStats | None = None
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        stats = model._e_step(X, offsets)
        model._m_step(stats)
        seconds.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
        if first is None:
            first = stats
    assert first is not None
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "first_stats": first.to_bytes().hex(),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_library(path: Path, repeats: int) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, __file__, "--library-child", str(path), "--repeats", str(repeats)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    result = json.loads(output.strip().splitlines()[-1])
    result["first_stats"] = SufficientStats.from_bytes(bytes.fromhex(result["first_stats"]))
    return result


# ------------------------------------------------------------------ Spark


def start_spark(java_defaults: bool = False) -> Any:
    """The local[2] session, its JVM with the JVM options of hmm-em's local-mode steps and Spark Connect
    server (``hmm.orchestration.decisions.LOCAL_JAVA_OPTIONS``: C1 JIT only), or with Java's defaults."""
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master("local[2]")
        .appName("hmm-em-benchmark")
        .config("spark.driver.memory", "4g")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(BATCH_ROWS))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
    )
    if not java_defaults:
        from hmm.orchestration.decisions import LOCAL_JAVA_OPTIONS

        builder = builder.config("spark.driver.extraJavaOptions", " ".join(LOCAL_JAVA_OPTIONS))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def jvm_process(spark: Any) -> psutil.Process | None:
    gateway = spark.sparkContext._gateway
    for name in ("java_process", "proc"):
        process = getattr(gateway, name, None)
        if process is not None and getattr(process, "pid", None):
            return psutil.Process(process.pid)
    javas = [p for p in psutil.Process().children(recursive=True) if "java" in p.name()]
    return javas[0] if javas else None


@dataclass
class MemoryPeak:
    """Peak RSS of the driver + the JVM + everything under the JVM, sampled in a thread."""

    jvm: psutil.Process | None
    interval: float = 0.2
    total_mb: float = 0.0
    parts_mb: dict[str, float] = field(default_factory=dict)  # each part's own peak
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        parts = {"driver": 0.0, "jvm": 0.0, "python workers": 0.0}
        processes = [("driver", psutil.Process())]
        if self.jvm is not None:
            processes.append(("jvm", self.jvm))
            with contextlib.suppress(psutil.Error):
                processes += [("python workers", p) for p in self.jvm.children(recursive=True)]
        for part, process in processes:
            with contextlib.suppress(psutil.Error):  # a worker that just exited
                parts[part] += process.memory_info().rss / 2**20
        self.total_mb = max(self.total_mb, sum(parts.values()))
        for part, value in parts.items():
            self.parts_mb[part] = max(self.parts_mb.get(part, 0.0), value)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> MemoryPeak:
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()


def timed(function: Any) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


# ------------------------------------------------------------- (b) the 2016 design


def e_step_2016(spark: Any, model: hmm.CategoricalHMM, df: Any) -> SufficientStats:
    """One E-step as the 2016 Hack Week text does it (hmmlearn 0.3.3's kernel names)."""
    from pyspark.sql.functions import array, col
    from pyspark.sql.functions import sum as sum_
    from pyspark.sql.types import ArrayType, DoubleType, StructField, StructType

    n_components, n_features = model.n_components, model.n_features
    # 1. The parameters are broadcast.
    transmat_broadcast = spark.sparkContext.broadcast(model.transmat_)
    emissionprob_broadcast = spark.sparkContext.broadcast(model.emissionprob_)
    startprob_broadcast = spark.sparkContext.broadcast(model.startprob_)

    # 2. The E-step, one sequence at a time.
    def _process_sequence(X: list[int]) -> list[Any]:
        import numpy as np
        from hmmlearn import _hmmc
        from hmmlearn.utils import log_normalize

        X = np.asarray(X)
        startprob = startprob_broadcast.value
        transmat = transmat_broadcast.value
        framelogprob = np.log(emissionprob_broadcast.value)[:, X].T
        n_samples, n_components = framelogprob.shape
        # forward and backward lattices
        logprob, fwdlattice = _hmmc.forward_log(startprob, transmat, framelogprob)
        bwdlattice = _hmmc.backward_log(startprob, transmat, framelogprob)
        # posteriors
        log_gamma = fwdlattice + bwdlattice
        log_normalize(log_gamma, axis=1)
        posteriors = np.exp(log_gamma)
        # sufficient statistics
        start = posteriors[0]
        if n_samples > 1:
            trans = np.exp(_hmmc.compute_log_xi_sum(fwdlattice, transmat, bwdlattice, framelogprob))
        else:
            trans = np.zeros((n_components, n_components))
        obs = np.zeros((n_components, n_features))
        for t, symbol in enumerate(X):
            obs[:, symbol] += posteriors[t]
        return [start.tolist(), trans.tolist(), obs.tolist(), float(logprob)]

    partial_rdd = df.select("sequence").rdd.map(lambda row: _process_sequence(row["sequence"]))
    matrix = ArrayType(ArrayType(DoubleType(), False), False)
    schema = StructType(
        [
            StructField("start", ArrayType(DoubleType(), False), False),
            StructField("trans", matrix, False),
            StructField("obs", matrix, False),
            StructField("logprob", DoubleType(), False),
        ]
    )
    partial_df = spark.createDataFrame(partial_rdd, schema, verifySchema=False)
    # Aggregate the partial results.
    aggregation = (
        partial_df.groupBy()
        .agg(
            array(*[sum_(col("start").getItem(i)) for i in range(n_components)]).alias("start"),
            array(
                *[
                    array(*[sum_(col("trans").getItem(i).getItem(j)) for j in range(n_components)])
                    for i in range(n_components)
                ]
            ).alias("trans"),
            array(
                *[
                    array(*[sum_(col("obs").getItem(i).getItem(j)) for j in range(n_features)])
                    for i in range(n_components)
                ]
            ).alias("obs"),
            sum_("logprob").alias("logprob"),
        )
        .collect()[0]
    )
    for broadcast in (transmat_broadcast, emissionprob_broadcast, startprob_broadcast):
        broadcast.unpersist()
    return SufficientStats(
        start=np.array(aggregation["start"]),
        trans=np.array(aggregation["trans"]),
        emission={"obs": np.array(aggregation["obs"])},
        log_likelihood=float(aggregation["logprob"]),
    )


# ------------------------------------------------------------------ one size


def relative_difference(a: SufficientStats, b: SufficientStats) -> float:
    """Largest relative difference between two statistics (arrays and log-likelihood)."""
    pairs = [(a.start, b.start), (a.trans, b.trans), (a["obs"], b["obs"])]
    worst = max(float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(y))), 1e-300)) for x, y in pairs)
    return max(worst, abs(a.log_likelihood - b.log_likelihood) / abs(b.log_likelihood))


def cpu_seconds(jvm: psutil.Process | None) -> dict[str, float]:
    """CPU seconds used so far by the driver, the JVM and the processes under it (the Python workers)."""

    def used(process: psutil.Process) -> float:
        with contextlib.suppress(psutil.Error):  # a worker that just exited
            t = process.cpu_times()  # children_*: workers the daemon has already reaped
            return t.user + t.system + t.children_user + t.children_system
        return 0.0

    seconds = {"driver": used(psutil.Process()), "jvm": 0.0, "python workers": 0.0}
    if jvm is not None:
        seconds["jvm"] = used(jvm)
        with contextlib.suppress(psutil.Error):
            seconds["python workers"] = sum(used(p) for p in jvm.children(recursive=True))
    return seconds


def split_passes(spark: Any, source: Any, model: hmm.CategoricalHMM) -> dict[str, Any]:
    """The training job's Spark job over ``source``'s splits, doing more and more of the work."""
    from hmm.distributed.sources import read_split, task_groups
    from hmm.distributed.spark import freeze_worker_heap, is_connect

    filesystem_spec = source.filesystem_spec
    passes: dict[str, Any] = {}
    if is_connect(spark):
        # A Connect session has no RDDs: the same tasks through the DataFrame API, as its E-step runs them.
        indexed = list(enumerate(source.splits()))

        def empty_split(group: Any) -> Any:
            yield {"partition": group[0][0], "batch": 0}

        def read_split_rows(group: Any) -> Any:
            filesystem = filesystem_spec.open()
            for index, split in group:
                rows = sum(batch.num_rows for batch in read_split(filesystem, split, ["sequence"], "sequence"))
                yield {"partition": index, "batch": 0, "rows": rows}

        passes["empty tasks"] = lambda: source.map_splits(empty_split, indexed)
        passes["read"] = lambda: source.map_splits(read_split_rows, indexed)
    else:
        context = spark.sparkContext
        groups = task_groups(list(enumerate(source.splits())), context.defaultParallelism)

        def empty_task(group: Any) -> Any:
            freeze_worker_heap()  # as the E-step's tasks do
            yield len(group)

        def read_batches(group: Any) -> Any:
            freeze_worker_heap()
            filesystem = filesystem_spec.open()
            for _, split in group:
                yield sum(batch.num_rows for batch in read_split(filesystem, split, ["sequence"], "sequence"))

        passes["empty tasks"] = lambda: context.parallelize(groups, len(groups)).flatMap(empty_task).collect()
        passes["read"] = lambda: context.parallelize(groups, len(groups)).flatMap(read_batches).collect()
    passes["validate"] = lambda: source.records(model, statistics=False)
    passes["estep"] = lambda: source.records(model, statistics=True)
    return passes


def run_size(
    path: Path,
    n_sequences: int,
    repeats: int,
    full_2016: bool,
    hmm_em_only: bool = False,
    java_defaults: bool = False,
) -> dict[str, Any]:
    """Everything measured on Spark for one N, in a fresh driver and JVM (see ``run_spark``); only
    hmm-em's iterations with ``hmm_em_only``."""
    from pyspark import StorageLevel

    from hmm.distributed.sources import ParquetSequences, task_groups
    from hmm.distributed.spark import e_step

    log(f"N={n_sequences}: starting Spark")
    spark = start_spark(java_defaults)
    try:
        jvm = jvm_process(spark)
        row: dict[str, Any] = {"n": n_sequences, "parquet_mb": directory_mb(path), "machine": machine(spark)}
        source = ParquetSequences(f"file://{path}", engine="spark", spark=spark)
        splits = source.splits()
        row["splits"] = len(splits)
        row["tasks"] = len(task_groups(list(enumerate(splits)), spark.sparkContext.defaultParallelism))
        df = spark.read.parquet(f"file://{path}")
        row["partitions"] = df.rdd.getNumPartitions()

        # (a) hmm-em as an em_iteration job runs it: Spark tasks over the Parquet splits.
        model = initial_model()
        log(f"N={n_sequences}: hmm-em warm-up iterations ({row['splits']} splits)")
        first_stats = source.statistics(model)
        model._m_step(first_stats)
        row["first_stats"] = first_stats.to_bytes().hex()

        def iteration() -> None:
            model._m_step(source.statistics(model))

        # A training runs many iterations of the same job: time them once the JVM has compiled
        # its path (its first iterations run interpreted code), as they run in the rest of a fit.
        for _ in range(WARM_UP_ITERATIONS - 1):
            iteration()

        cpu_before = cpu_seconds(jvm)
        with MemoryPeak(jvm) as memory:
            row["hmm-em all"] = [timed(iteration) for _ in range(repeats)]
        row["cpu"] = {k: (v - cpu_before[k]) / repeats for k, v in cpu_seconds(jvm).items()}
        row["hmm-em"] = statistics.median(row["hmm-em all"])
        row["memory"] = {"total": memory.total_mb, **memory.parts_mb}
        log(f"N={n_sequences}: hmm-em {row['hmm-em']:.3f} s/iter")
        if hmm_em_only:
            return row

        # (b) the 2016 design, from the same initial model as hmm-em's warm-up iteration.
        if n_sequences <= LARGEST_2016 or full_2016:
            log(f"N={n_sequences}: 2016 design warm-up on {WARM_UP_2016_ROWS} rows")
            e_step_2016(spark, initial_model(), df.limit(WARM_UP_2016_ROWS))
            model_2016 = initial_model()
            stats_2016: list[SufficientStats] = []

            def iteration_2016() -> None:
                stats_2016.append(e_step_2016(spark, model_2016, df))
                model_2016._m_step(stats_2016[-1])

            cpu_before = cpu_seconds(jvm)
            with MemoryPeak(jvm) as memory_2016:
                row["2016"] = timed(iteration_2016)
            row["2016 cpu"] = {k: v - cpu_before[k] for k, v in cpu_seconds(jvm).items()}
            row["2016 memory"] = memory_2016.total_mb
            row["2016 vs hmm-em"] = relative_difference(stats_2016[0], first_stats)
            log(f"N={n_sequences}: 2016 design {row['2016']:.1f} s/iter")

        # Where hmm-em's time goes: the same Spark job doing less work, and the DataFrame path
        # (``fit`` on a DataFrame: mapInArrow) over the Parquet and over a persisted DataFrame;
        # interleaved, so that a noisy neighbour slows them all alike.
        persisted = df.select("sequence").persist(StorageLevel.MEMORY_AND_DISK)
        persisted.count()
        e_step(model, df, "sequence")
        e_step(model, persisted, "sequence")
        job = split_passes(spark, source, model)
        row["batches"] = len(job["validate"]())
        passes = {
            "empty tasks": job["empty tasks"],
            "read": job["read"],
            "validate": job["validate"],
            "dataframe": lambda: model._m_step(e_step(model, df, "sequence")),
            "persisted": lambda: model._m_step(e_step(model, persisted, "sequence")),
        }
        walls: dict[str, list[float]] = {name: [] for name in passes}
        for _ in range(repeats):
            for name, function in passes.items():
                walls[name].append(timed(function))
        row.update({name: statistics.median(values) for name, values in walls.items()})
        persisted.unpersist(blocking=True)
        log(f"N={n_sequences}: breakdown done")
        return row
    finally:
        spark.stop()


def run_spark(
    path: Path,
    n_sequences: int,
    repeats: int,
    full_2016: bool,
    split_cache: bool = True,
    java_defaults: bool = False,
) -> dict[str, Any]:
    """``run_size`` in a fresh process, so that each N has its own JVM and its own memory peak.

    ``split_cache=False``: only hmm-em's iterations, with the executors' split cache off
    (``HMM_EM_SPLIT_CACHE=off``, inherited by the JVM and its Python workers), each iteration
    decoding the Parquet as before the cache.
    """
    from hmm.distributed.split_cache import ENVIRONMENT, cache_folder

    command = [sys.executable, __file__, "--spark-child", str(path), "--sizes", str(n_sequences)]
    command += ["--repeats", str(repeats)] + (["--full-2016"] if full_2016 else [])
    command += ["--java-defaults"] if java_defaults else []
    environment = dict(os.environ)
    if not split_cache:
        command.append("--hmm-em-only")
        environment[ENVIRONMENT] = "off"
    output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True, env=environment).stdout
    row = json.loads(output.strip().splitlines()[-1])
    row["first_stats"] = SufficientStats.from_bytes(bytes.fromhex(row["first_stats"]))
    row["split cache"] = (cache_folder() or "off") if split_cache else "off"
    return row


# ------------------------------------------------------------------ report


def cpu_model() -> str:
    """The CPU's model name (Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine(spark: Any) -> str:
    cpu = cpu_model()
    import hmmlearn
    import numba
    import pyarrow

    java = spark.sparkContext._jvm.java.lang.System.getProperty("java.version")
    # pyspark's launcher puts its own --add-opens in extraJavaOptions: name only the JIT setting.
    options = spark.sparkContext.getConf().get("spark.driver.extraJavaOptions", "").split()
    jit = [option for option in options if option.startswith("-XX:TieredStopAtLevel")]
    return (
        f"{cpu}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GB RAM; "
        f"Python {platform.python_version()}, Java {java}, Spark {spark.version} local[2] "
        f"(driver memory 4g, {BATCH_ROWS} rows per Arrow batch, JIT: {' '.join(jit) or 'Java defaults'}), "
        f"pyarrow {pyarrow.__version__}, "
        f"numpy {np.__version__}, numba {numba.__version__}, hmmlearn {hmmlearn.__version__}, "
        f"{checkout()}"
    )


def seconds(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def print_report(
    rows: list[dict[str, Any]],
    libraries: dict[int, dict[str, Any]],
    load: str,
    uncached: dict[int, dict[str, Any]] | None = None,
) -> None:
    # The 2016 design above LARGEST_2016 without --full-2016: linear in N from the largest measured size.
    measured = [r for r in rows if "2016" in r]
    for row in rows:
        if "2016" not in row and measured:
            reference = max(measured, key=lambda r: r["n"])
            row["2016 extrapolated"] = reference["2016"] * row["n"] / reference["n"]
            row["2016 reference"] = reference["n"]
        row["library"] = statistics.median(libraries[row["n"]]["seconds"])
        row["library cpu"] = statistics.median(libraries[row["n"]]["cpu_seconds"])

    print(f"Machine: {rows[0]['machine']}\n")
    print(f"Load average (1, 5, 15 min) at start and end: {load}\n")
    print(
        f"Seconds per EM iteration, categorical HMM K={N_COMPONENTS} F={N_FEATURES}, "
        f"T={LENGTH} symbols per sequence, read from Parquet:\n"
    )
    print(
        "| N | hmm-em s/iter | 2016 design s/iter | speed-up | library 1-thread s/iter "
        "| library x 2 cores | hmm-em / (library x 2 cores) | peak RSS MB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        ours = row["hmm-em"]
        if "2016" in row:
            old, speed_up = seconds(row["2016"]), f"{row['2016'] / ours:.0f}x"
        elif "2016 extrapolated" in row:
            old = f"~{seconds(row['2016 extrapolated'])} (extrapolated)"
            speed_up = f"~{row['2016 extrapolated'] / ours:.0f}x"
        else:
            old, speed_up = "not measured", "-"
        print(
            f"| {row['n']:,} | {seconds(ours)} | {old} | {speed_up} | {seconds(row['library'])} "
            f"| {seconds(row['library'] / 2)} | {ours / (row['library'] / 2):.2f} | {row['memory']['total']:.0f} |"
        )
    notes = [
        f"{r['n']:,} extrapolated linearly from {r['2016 reference']:,} (pass --full-2016 to measure)"
        for r in rows
        if "2016 extrapolated" in r
    ]
    if notes:
        print(f"\n2016 design: {'; '.join(notes)}.")

    print(
        "\nWhere hmm-em's time goes. Wall seconds of the same Spark job (the same tasks) doing more "
        "and more of the work, and of the DataFrame path (`fit` on a DataFrame: the JVM reads the Parquet, "
        "`mapInArrow` hands Arrow batches to Python) over the Parquet and over a persisted DataFrame; the "
        "passes interleaved, median of the same repeats. Then the CPU seconds per timed hmm-em iteration of "
        "each process (2 cores: at most 2 CPU seconds per second), next to the library's single-thread "
        "seconds (wall and CPU) for the same E-step and M-step, and the ratio of all of hmm-em's CPU seconds "
        "(JVM, workers, driver) to the library's: 1.25 or less is what the wall-time target of 1.25x the "
        "library x 2 cores needs, and it moves less than the wall times with a shared machine's load:\n"
    )
    print(
        "| N | Parquet MB | splits / tasks / Arrow batches | empty tasks | + read with pyarrow | + unpack and validate "
        "| + E-step and M-step (hmm-em) | DataFrame path | DataFrame path, persisted "
        "| CPU s: JVM | CPU s: Python workers | CPU s: driver | library 1-thread | library 1-thread CPU s "
        "| CPU s: hmm-em / library |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        cpu = row["cpu"]
        print(
            f"| {row['n']:,} | {row['parquet_mb']:.1f} | {row['splits']} / {row['tasks']} / {row['batches']} "
            f"| {seconds(row['empty tasks'])} | {seconds(row['read'])} | {seconds(row['validate'])} "
            f"| {seconds(row['hmm-em'])} | {seconds(row['dataframe'])} | {seconds(row['persisted'])} "
            f"| {seconds(cpu['jvm'])} | {seconds(cpu['python workers'])} | {seconds(cpu['driver'])} "
            f"| {seconds(row['library'])} | {seconds(row['library cpu'])} "
            f"| {sum(cpu.values()) / row['library cpu']:.2f} |"
        )
    for row in rows:
        if "2016 cpu" in row:
            cpu = row["2016 cpu"]
            print(
                f"\n2016 design, N={row['n']:,}: {seconds(row['2016'])} s wall, CPU seconds: JVM "
                f"{seconds(cpu['jvm'])}, Python workers {seconds(cpu['python workers'])}, "
                f"driver {seconds(cpu['driver'])}."
            )

    print(
        "\nPeak RSS in MB during the timed iterations, each N in a fresh driver and JVM (a part's own peak; "
        "the total is the peak of the simultaneous sum; forked workers' shared pages count once per process):\n"
    )
    print("| N | hmm-em total | driver | JVM | Python workers | 2016 design total | library, all data in memory |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        memory = row["memory"]
        old = f"{row['2016 memory']:.0f}" if "2016 memory" in row else "-"
        print(
            f"| {row['n']:,} | {memory['total']:.0f} | {memory['driver']:.0f} | {memory['jvm']:.0f} "
            f"| {memory['python workers']:.0f} | {old} | {libraries[row['n']]['peak_mb']:.0f} |"
        )

    print(f"\nThe executors' split cache (hmm.distributed.split_cache): {rows[0]['split cache']}.")
    if uncached:
        print(
            "\nhmm-em without the split cache (HMM_EM_SPLIT_CACHE=off: every iteration decodes the Parquet), "
            "in a fresh driver and JVM after the runs above:\n"
        )
        print(
            "| N | s/iter, cache | s/iter, no cache | hmm-em / (library x 2 cores), no cache "
            "| CPU s without the cache: JVM / Python workers / driver | CPU s: hmm-em / library, no cache |"
        )
        print("|---:|---:|---:|---:|---:|---:|")
        identical = []
        for row in rows:
            other = uncached[row["n"]]
            cpu = other["cpu"]
            print(
                f"| {row['n']:,} | {seconds(row['hmm-em'])} | {seconds(other['hmm-em'])} "
                f"| {other['hmm-em'] / (row['library'] / 2):.2f} "
                f"| {seconds(cpu['jvm'])} / {seconds(cpu['python workers'])} / {seconds(cpu['driver'])} "
                f"| {sum(cpu.values()) / row['library cpu']:.2f} |"
            )
            if other["first_stats"].to_bytes() == row["first_stats"].to_bytes():
                identical.append(f"{row['n']:,}")

        print(
            "\nFirst iteration's statistics bit-identical with and without the cache at N = "
            f"{', '.join(identical) or 'none'}."
        )

    print("\nChecks (first iteration's statistics from the same initial model, largest relative difference):\n")
    for row in rows:
        library_check = relative_difference(libraries[row["n"]]["first_stats"], row["first_stats"])
        checks = [f"library vs hmm-em {library_check:.1e}"]
        if "2016 vs hmm-em" in row:
            checks.append(f"2016 design vs hmm-em {row['2016 vs hmm-em']:.1e}")
        timings = ", ".join(seconds(s) for s in row["hmm-em all"])
        library_timings = ", ".join(seconds(s) for s in libraries[row["n"]]["seconds"])
        print(
            f"- N={row['n']:,}: {'; '.join(checks)}; hmm-em iterations {timings} s; "
            f"library iterations {library_timings} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="numbers of sequences N")
    parser.add_argument("--quick", action="store_true", help="N = 10,000 only")
    parser.add_argument("--full-2016", action="store_true", help="also measure the 2016 design above 100,000")
    parser.add_argument("--repeats", type=int, default=5, help="timed iterations (median reported)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/hmm-em-bench"), help="Parquet data folder")
    parser.add_argument(
        "--compare-split-cache",
        action="store_true",
        help="also time hmm-em's iterations with the executors' split cache off (HMM_EM_SPLIT_CACHE=off)",
    )
    parser.add_argument(
        "--java-defaults",
        action="store_true",
        help="run Spark's JVM with Java's defaults (C2 JIT) instead of hmm-em's local-mode JVM options (C1 only)",
    )
    parser.add_argument("--hmm-em-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--library-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--spark-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [10_000] if args.quick else [int(s.replace("_", "")) for s in args.sizes.split(",")]
    if args.library_child:
        print(json.dumps(library_child(args.library_child, args.repeats)))
        return
    if args.spark_child:
        print(
            json.dumps(
                run_size(args.spark_child, sizes[0], args.repeats, args.full_2016, args.hmm_em_only, args.java_defaults)
            )
        )
        return

    load_start = os.getloadavg()
    paths = {n: ensure_parquet(args.cache, n) for n in sizes}
    # The in-memory library first, in fresh processes, while nothing else of ours runs.
    libraries = {}
    for n in sizes:
        log(f"N={n}: library, one thread")
        libraries[n] = run_library(paths[n], args.repeats)
    java = args.java_defaults
    rows = [run_spark(paths[n], n, args.repeats, args.full_2016, java_defaults=java) for n in sizes]
    uncached = (
        {n: run_spark(paths[n], n, args.repeats, False, split_cache=False, java_defaults=java) for n in sizes}
        if args.compare_split_cache
        else {}
    )
    load = " / ".join(" ".join(f"{x:.1f}" for x in v) for v in (load_start, os.getloadavg()))
    print_report(rows, libraries, load, uncached)


if __name__ == "__main__":
    main()
