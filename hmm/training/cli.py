"""``hmm-em``: train, resume, inspect and validate trainings from a shell.

Every argument is validated before it reaches a path, an S3 key or Spark;
errors end the command with one line on stderr and a non-zero exit code:
2 for bad input (arguments, spec, data, data changed under a training), 3 for a
training that cannot do what was asked (missing iteration, conflicting spec,
corrupt stored object), 4 for a store or file system that cannot be used
(endpoint down, credentials, disk full, read-only: retry once fixed), 1 otherwise.
The ``jobs/`` entry points (one per EMR step kind) call :func:`main` with the
step's subcommand and end their process with :func:`exit_job`.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from hmm.distributed.sources import ENGINES
from hmm.distributed.uris import InvalidURIError, brief, check_uri
from hmm.training.commits import Training, TrainingError
from hmm.training.spec import MAX_SPEC_BYTES, InvalidSpecError, TrainingSpec, check_training_id
from hmm.training.store import StoreError, StoreUnavailableError, open_store

EXIT_BAD_INPUT = 2
EXIT_TRAINING = 3
EXIT_UNAVAILABLE = 4
#: The highest iteration number a step accepts (keys hold it in decimal).
MAX_ITERATION = 10**9 - 1
#: Error lines are cut here: a message quoting a hostile 10 MB argument stays one readable line.
MAX_MESSAGE = 2000


def _uri(value: str) -> str:
    try:
        return check_uri(value, "store URI")
    except InvalidURIError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _training_id(value: str) -> str:
    try:
        return check_training_id(value)
    except InvalidSpecError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _iteration(value: str) -> int:
    # ASCII digits only: str.isdigit would take other scripts' digits (and int() would read them).
    if not re.fullmatch(r"[1-9][0-9]{0,8}", value):
        raise argparse.ArgumentTypeError(f"iteration must be an integer in [1, {MAX_ITERATION}], got {brief(value)}")
    return int(value)


def read_spec(text: str) -> TrainingSpec:
    """A spec from inline JSON or from a JSON file's path (a regular file of at most MAX_SPEC_BYTES).

    Parameters
    ----------
    text : str
        Inline JSON (starts with ``{``) or a path.

    Returns
    -------
    TrainingSpec

    Raises
    ------
    InvalidSpecError
        The file cannot be read or is not a regular file (a FIFO or device is not opened), or
        the spec is invalid (:meth:`TrainingSpec.from_json`).
    """
    if text.lstrip().startswith("{"):
        return TrainingSpec.from_json(text)
    try:
        # stat first: opening a FIFO would wait for a writer, and /dev/zero never ends.
        info = os.stat(text)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidSpecError(f"spec file {brief(text)} is not a regular file")
        with open(text, "rb") as file:
            raw = file.read(MAX_SPEC_BYTES + 1)
    except OSError as error:
        raise InvalidSpecError(f"cannot read spec file {brief(text)}: {error.strerror or error}") from None
    return TrainingSpec.from_json(raw)


def parser() -> argparse.ArgumentParser:
    """The ``hmm-em`` argument parser: one subcommand per action; URIs, ids and iterations checked as parsed."""
    top = argparse.ArgumentParser(
        prog="hmm-em",
        description="Baum-Welch training of HMMs as committed, resumable iterations in a store "
        "(file:///path or s3://bucket/prefix).",
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, *, store: bool = True, engine: bool = False) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help_text, description=help_text)
        if store:
            command.add_argument("--store", type=_uri, required=True, help="store root URI")
            command.add_argument("--training-id", type=_training_id, required=True, help="training identifier")
        if engine:
            command.add_argument(
                "--engine",
                choices=ENGINES,
                default="spark",
                help="spark: Spark E-step (default); local: this process with pyarrow",
            )
            spark = command.add_mutually_exclusive_group()
            spark.add_argument("--master", help="Spark master when not run by spark-submit, e.g. local[2]")
            spark.add_argument(
                "--remote",
                help="a Spark Connect server to run on, e.g. sc://127.0.0.1:15002 (default: $SPARK_REMOTE if set)",
            )
        return command

    train = add(
        "train",
        "Start (or continue) a training: init, iterations until converged or max_iter, finalize.",
        engine=True,
    )
    train.add_argument("--spec", required=True, help="training spec: a JSON file or inline JSON")
    add("resume", "Continue a training from its last committed iteration, then finalize.", engine=True)
    add("status", "Table of the committed iterations of a training.")
    validate = add(
        "validate", "Scan the data of a spec and report the first bad rows; writes nothing.", store=False, engine=True
    )
    validate.add_argument("--spec", required=True, help="training spec: a JSON file or inline JSON")
    validate.add_argument(
        "--store", type=_uri, help="store root URI: also check that the spec's init_from names a published model"
    )
    add("report", "Publish the model and report of a training (idempotent) and print where they are.")
    init = add("init", "EMR step: write spec.json and iteration 0 (initial parameters).", engine=True)
    init.add_argument("--spec", required=True, help="training spec: a JSON file or inline JSON")
    iterate = add("iterate", "EMR step: commit iteration K from committed K-1.", engine=True)
    iterate.add_argument("--iteration", type=_iteration, required=True, help="the iteration K to commit")
    add("finalize", "EMR step: publish the last committed parameters and the report.")
    decode = add(
        "decode",
        "Decode Parquet sequences with a published model (or a model file) into Parquet outputs keyed by id; "
        "idempotent: a re-run skips committed parts, a finished output is not recomputed.",
        store=False,
        engine=True,
    )
    decode.add_argument("--store", type=_uri, help="store root URI of the training (with --training-id)")
    decode.add_argument("--training-id", type=_training_id, help="the training whose published model decodes")
    decode.add_argument("--model-file", help="or: a model file (path, file:// or s3:// URI) saved by model.save")
    decode.add_argument("--data", type=_data_uri, required=True, help="Parquet data URI (a file or a directory)")
    decode.add_argument("--output", type=_output_uri, required=True, help="output URI (file:// or s3://)")
    decode.add_argument(
        "--outputs",
        default="viterbi",
        help="comma-separated: viterbi, log_likelihood, posterior, filtered (default viterbi)",
    )
    decode.add_argument("--sequence-col", help="the sequence column (default: the training's, else 'sequence')")
    decode.add_argument("--id-col", help="the id column the output is keyed by (default: the training's, else 'id')")
    return top


def _data_uri(value: str) -> str:
    try:
        return check_uri(value, "data URI")
    except InvalidURIError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _output_uri(value: str) -> str:
    try:
        return check_uri(value, "output URI")
    except InvalidURIError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def process_age_seconds(pid: int | str = "self") -> float | None:
    """Seconds since a process started (Linux ``/proc``); None where that cannot be read.

    Parameters
    ----------
    pid : int or "self", default="self"
        The process.

    Returns
    -------
    float or None
    """
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # Fields after the command name, which is in parentheses and may hold spaces;
            # the start time (field 22) is in clock ticks since boot.
            fields = stat.read().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def job_startup(spark_session_seconds: float | None, own_process: bool) -> dict[str, float]:
    """What the job spent before its step, for the COMMIT's timings.

    ``spark_session_seconds``: starting the Spark session. In a process of its own (a job or
    the ``hmm-em`` script) also ``startup_seconds``, from the start of this Python process to
    now (interpreter, imports, the session), and under spark-submit ``launch_seconds``, from
    the start of the JVM that spark-submit launched (this process's parent) to the start of
    this process.

    Parameters
    ----------
    spark_session_seconds : float or None
        Seconds the Spark session took to start; None without Spark.
    own_process : bool
        This process exists for the command (a job or the ``hmm-em`` script).

    Returns
    -------
    dict of str to float
        Those of ``spark_session_seconds``, ``startup_seconds`` and ``launch_seconds`` that apply.
    """
    timings: dict[str, float] = {}
    if spark_session_seconds is not None:
        timings["spark_session_seconds"] = spark_session_seconds
    age = process_age_seconds() if own_process else None
    if age is not None:
        timings["startup_seconds"] = age
    # spark-submit's PythonRunner starts the job with the gateway port of the JVM, its parent.
    if age is not None and "PYSPARK_GATEWAY_PORT" in os.environ:
        parent = process_age_seconds(os.getppid())
        if parent is not None:
            timings["launch_seconds"] = max(parent - age, 0.0)
    return timings


def _spark(args: argparse.Namespace) -> Any:
    if getattr(args, "engine", "local") != "spark":
        return None
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    remote = args.remote or (None if args.master else os.environ.get("SPARK_REMOTE"))
    if remote:
        # A Spark Connect session: no JVM here; the server's Python workers run the tasks. The
        # Connect class itself, not pyspark's switch, which would turn the whole process (a test's)
        # to Connect mode.
        import warnings

        with warnings.catch_warnings():
            # pyspark 4.3 warns about pandas 3 on every Connect session; hmm-em's Arrow path does not use pandas.
            warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
            from pyspark.sql.connect.session import SparkSession as ConnectSession

            return ConnectSession.builder.remote(remote).getOrCreate()
    builder = SparkSession.builder.appName(f"hmm-em {args.command}")
    if args.master:
        # Not under spark-submit (whose --conf and cluster defaults are left alone): a session
        # of this process, so no web UI and no progress bar on the terminal.
        builder = (
            builder.master(args.master)
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
        )
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def run(args: argparse.Namespace, own_process: bool = False) -> int:
    """Run a parsed command, printing its result; errors propagate (:func:`main` turns them into exit codes).

    Parameters
    ----------
    args : argparse.Namespace
        :func:`parser`'s result.
    own_process : bool, default=False
        As in :func:`job_startup`.

    Returns
    -------
    int
        0.
    """
    from hmm.training import steps

    if args.command == "status":
        training = Training(open_store(args.store), args.training_id)
        if not training.has_spec():
            raise TrainingError(f"training {args.training_id!r} does not exist in {args.store}")
        from hmm.training.report import iteration_table

        print(iteration_table(training.records()))
        print(f"\nlatest committed iteration: {training.latest()}; converged: {training.converged()}")
        return 0
    if args.command in ("report", "finalize"):
        result = steps.finalize(args.store, args.training_id)
        print(f"{args.command}: {result['status']}: model {result['model']}, report {result['report']}")
        return 0
    if args.command == "decode" and (args.training_id is None) == (args.model_file is None):
        raise ValueError("name the model with --store and --training-id, or with --model-file (one of the two)")
    if args.command == "decode" and args.training_id is not None and args.store is None:
        raise ValueError("--training-id needs --store, the store the training is in")
    session_started = time.perf_counter()
    spark = _spark(args)
    session_seconds = time.perf_counter() - session_started if spark is not None else None
    if args.command == "validate":
        checked = read_spec(args.spec)
        if checked.init_from not in (None, steps.LATEST):
            if args.store is None:
                raise InvalidSpecError(
                    f"spec field 'init_from' is {checked.init_from!r}: give --store, the store that training is in"
                )
            steps.check_init_from(args.store, checked)
        counts = steps.validate_data(checked, args.engine, spark)
        print(f"valid: {counts['n_sequences']} sequences, {counts['n_observations']} observations")
    elif args.command == "init":
        result = steps.init_training(args.store, args.training_id, read_spec(args.spec), args.engine, spark)
        print(f"init: {result['status']}: iteration 0 of {args.training_id} ({result['n_sequences']} sequences)")
    elif args.command == "decode":
        from hmm.training.decode import decode

        result = decode(
            args.output,
            args.data,
            store_uri=args.store,
            training_id=args.training_id,
            model_path=args.model_file,
            outputs=args.outputs,
            sequence_col=args.sequence_col,
            id_col=args.id_col,
            engine=args.engine,
            spark=spark,
        )
        print(
            f"decode: {result['status']}: {result['n_rows']} sequences in {result['n_parts']} part(s) "
            f"({result['skipped_parts']} committed before) at {result['output']}; outputs {','.join(result['outputs'])}"
        )
    elif args.command == "iterate":
        startup = job_startup(session_seconds, own_process)
        result = steps.em_iteration(args.store, args.training_id, args.iteration, args.engine, spark, startup)
        print(steps.format_progress(result))
    else:  # train, resume
        spec = read_spec(args.spec) if args.command == "train" else None
        result = steps.train(args.store, args.training_id, spec, args.engine, spark)
        print(f"{args.command}: model {result['model']}\nreport {result['report']}")
    return 0


def main(argv: Sequence[str] | None = None, *, own_process: bool | None = None) -> int:
    """Run one command; ``own_process``: this process exists for it (default: ``argv`` is None,
    i.e. the ``hmm-em`` script), so its start-up counts as the command's (see :func:`job_startup`).

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments; default ``sys.argv[1:]``.
    own_process : bool, optional
        See above.

    Returns
    -------
    int
        The exit code: 0 done, 2 bad input, 3 the training cannot do it, 4 the store or data
        cannot be reached; the error is one line on stderr. Bad arguments exit 2 through
        argparse (``SystemExit``); other exceptions propagate (the interpreter exits 1).
    """
    args = parser().parse_args(argv)
    try:
        return run(args, own_process=argv is None if own_process is None else own_process)
    except StoreUnavailableError as error:
        return _fail(args, error, EXIT_UNAVAILABLE)
    except (TrainingError, StoreError) as error:  # incl. missing and corrupt stored objects
        return _fail(args, error, EXIT_TRAINING)
    except ValueError as error:  # bad spec, data, URI or argument; data changed under a training
        return _fail(args, error, EXIT_BAD_INPUT)
    except OSError as error:  # the data's file system (pyarrow): unreachable, refused, unreadable
        return _fail(args, f"cannot read the data: {error}", EXIT_UNAVAILABLE)


def exit_job(code: int) -> NoReturn:
    """End a job's process with exit code ``code`` (what :func:`main` returned), without the
    interpreter's teardown.

    What a normal exit does for others still happens, in its order: threads that are not daemons
    are joined, the ``atexit`` handlers run (logging's flush, pyarrow's S3 finalizer, pyspark's
    stop of a JVM this process started) and stdout and stderr are flushed. Skipped is freeing
    every module and object one by one: ~0.4 s with numba, scikit-learn and pyspark loaded, a
    fifth of a local-mode iteration (benchmarks/README.md), after the step's result is in the
    store. An exception out of :func:`main` (argparse's ``SystemExit`` included) never gets here:
    the process ends as Python ends it.
    """
    main_thread = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main_thread and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # CPython's own exit path runs them the same way
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or broken pipe: nothing more to say
            stream.flush()
    os._exit(code)


def _fail(args: argparse.Namespace, error: object, code: int) -> int:
    """One line on stderr: the command, the object and the cause."""
    message = " ".join(str(error).split())
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + " [...]"
    print(f"hmm-em {args.command}: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
