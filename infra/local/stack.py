"""``make local-stack``: the DAG against a local S3 (a moto server on 127.0.0.1), data and store on s3://.

    python -m infra.local.stack [--output demo-output/local-stack] [--max-sequences N] [--max-iter K] [--tol T]

Starts moto's S3 API in this process on a free port of 127.0.0.1, points every AWS client at
it (``AWS_ENDPOINT_URL``, test credentials; the steps inherit them), creates a bucket, puts the
demo data there (:mod:`infra.local.letters`, Parquet), runs the ``hmm_training`` DAG in local
mode with ``s3://`` data and store (:mod:`infra.local.dag_runner`), copies the published model
and report to ``<output>/model/`` (the server keeps everything in memory) and stops the server.

The steps are spark-submit jobs on local Spark with the ``spark`` engine, as on EMR: the
executors read the Parquet from S3 with pyarrow through the same endpoint (Spark itself needs
no S3 file system), and store, commit protocol, conditional writes and the DAG are what
production runs against S3.
"""

from __future__ import annotations

import argparse
import io
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hmm.training.commits import Training
from hmm.training.store import open_store
from infra.local import demo, letters
from infra.local.dag_runner import LocalAirflow
from infra.local.s3 import local_s3

BUCKET = "hmm-em-local"
TRAINING_ID = "letters-local-stack"
LOGICAL_DATE = datetime(2026, 1, 5, tzinfo=UTC)


def put_letters(bucket: str, max_sequences: int | None) -> str:
    """The demo data as one Parquet object in ``bucket``; returns the data URI."""
    import boto3
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(letters.parquet_table(max_sequences), buffer)
    boto3.client("s3").put_object(Bucket=bucket, Key="data/letters/part-00000.parquet", Body=buffer.getvalue())
    return f"s3://{bucket}/data/letters/"


def training_conf(data_uri: str, store_uri: str, tol: float, max_iter: int) -> dict[str, Any]:
    """The demo's conf with data and store on S3 (Spark executors read the data with pyarrow)."""
    return demo.training_conf(data_uri, store_uri, "spark", tol=tol, max_iter=max_iter, training_id=TRAINING_ID)


def copy_published(store_uri: str, training_id: str, folder: Path) -> list[Path]:
    """The published model of a training (the files its PUBLISHED marker names), from the store to ``folder``."""
    training = Training(open_store(store_uri), training_id)
    marker = training.published()
    if marker is None:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in [*marker["files"], "PUBLISHED"]:
        key = training.model_key(marker["iteration"], name)
        target = folder / name
        target.write_bytes(training.store.read(key))
        copied.append(target)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="demo-output/local-stack", help="Airflow home, log and model copy")
    parser.add_argument("--max-sequences", type=int, help="train on the first N paragraphs only (default: all)")
    parser.add_argument("--max-iter", type=int, default=30)
    parser.add_argument("--tol", type=float, default=500.0, help="stop when the log-likelihood gains less")
    args = parser.parse_args(argv)
    output = Path(args.output).resolve()
    started = time.perf_counter()

    with local_s3() as endpoint:
        import boto3

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        data_uri = put_letters(BUCKET, args.max_sequences)
        store_uri = f"s3://{BUCKET}/store"
        print(f"local S3: moto server at {endpoint}, bucket {BUCKET}")
        print(f"data:     {data_uri}\nstore:    {store_uri}")
        airflow = LocalAirflow(output / "airflow", log_file=output / "airflow.log").start()
        print(f"airflow:  AIRFLOW_HOME={airflow.home}; its log: {airflow.log_file}")
        print("DAG hmm_training, local mode, engine spark (spark-submit steps; executors read S3 with pyarrow)\n")
        runs = airflow.train(training_conf(data_uri, store_uri, args.tol, args.max_iter), LOGICAL_DATE)
        if runs.published is None:
            print(f"training {runs.training_id} is not published (see {airflow.log_file})")
            return 1
        copied = copy_published(store_uri, runs.training_id, output / "model")
        print(f"\nmodel:  {runs.published['model']}\nreport: {runs.published['report']}")
        names = ", ".join(path.name for path in copied)
        print(f"copied from the local S3 (gone when it stops) to {output / 'model'}: {names}")
    print(f"local S3 stopped; {len(runs.runs)} DAG run(s), {time.perf_counter() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
