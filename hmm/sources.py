"""Where a training's sequences come from: Parquet at a URI, read by an engine.

Two engines run the same per-batch code (:func:`hmm.arrow.batch_record`):

* ``spark``: ``spark.read.parquet`` and ``mapInArrow`` on the executors (EMR,
  or ``local[*]``); the production path.
* ``local``: pyarrow in this process, batch after batch, for data that one
  machine reads in reasonable time (and for fast tests of the commit
  protocol, which does not depend on the engine).

Records come back in a fixed (partition, batch) order, so statistics are
summed in the same order on every run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from .arrow import arrow_sequences, batch_record, sum_statistics
from .sequences import InvalidSequenceError
from .store import check_uri

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from .base import BaseHMM

ENGINES = ("spark", "local")
#: Rows per Arrow batch for the local engine (Spark's default maxRecordsPerBatch).
LOCAL_BATCH_ROWS = 10_000
#: Sequences read to the driver for data-dependent initialisation (k-means
#: means, Poisson moments); categorical ``n_features`` uses an exact aggregate.
INIT_SAMPLE_SEQUENCES = 10_000


@dataclass(frozen=True)
class Scan:
    """What one pass over the data found."""

    n_sequences: int
    n_observations: int
    max_symbol: int | None
    n_features: int | None
    errors: list[str]


class ParquetSequences:
    def __init__(
        self,
        uri: str,
        sequence_col: str = "sequence",
        id_col: str | None = None,
        engine: str = "spark",
        spark: SparkSession | None = None,
    ):
        self.uri = check_uri(uri, "data URI")
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.sequence_col = sequence_col
        self.id_col = id_col
        self.engine = engine
        self._spark = spark

    # ------------------------------------------------------------ engines

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            from pyspark.sql import SparkSession

            self._spark = SparkSession.builder.appName("hmm-em").getOrCreate()
        return self._spark

    def _dataset(self) -> Any:
        import pyarrow.dataset as ds
        import pyarrow.fs as pafs

        parsed = urlparse(self.uri)
        if parsed.scheme == "file":
            if not os.path.exists(parsed.path):
                raise InvalidSequenceError(f"data URI {self.uri} does not exist")
            return ds.dataset(parsed.path, format="parquet")
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        filesystem = pafs.S3FileSystem(endpoint_override=endpoint) if endpoint else pafs.S3FileSystem()
        return ds.dataset(f"{parsed.netloc}{parsed.path}", format="parquet", filesystem=filesystem)

    def _columns(self) -> list[str]:
        return [self.sequence_col] + ([self.id_col] if self.id_col else [])

    def records(self, model: BaseHMM, statistics: bool) -> list[dict[str, Any]]:
        """One record per Arrow batch, in (partition, batch) order."""
        if self.engine == "spark":
            from .spark import batch_records

            frame = self.spark.read.parquet(self.uri)
            self._check_columns(frame.columns)
            return batch_records(model, frame, self.sequence_col, self.id_col, statistics)
        dataset = self._dataset()
        self._check_columns(dataset.schema.names)
        records = []
        fragments = sorted(dataset.get_fragments(), key=lambda f: f.path)
        for partition, fragment in enumerate(fragments):
            batches = fragment.to_batches(columns=self._columns(), batch_size=LOCAL_BATCH_ROWS)
            for index, batch in enumerate(b for b in batches if b.num_rows):
                records.append(batch_record(model, batch, self.sequence_col, self.id_col, partition, index, statistics))
        return records

    def _check_columns(self, names: list[str]) -> None:
        for column in self._columns():
            if column not in names:
                raise InvalidSequenceError(f"data {self.uri} has no column {column!r} (columns: {sorted(names)})")

    # ------------------------------------------------------------- passes

    def scan(self, model: BaseHMM) -> Scan:
        """Validate every row and count; the first bad rows are reported by id."""
        records = self.records(model, statistics=False)
        widths = {r["n_features"] for r in records if r["n_features"] is not None}
        errors = [r["error"] for r in records if r["error"]]
        if len(widths) > 1:
            errors.append(f"observations have different numbers of features across batches: {sorted(widths)}")
        symbols = [r["max_symbol"] for r in records if r["max_symbol"] is not None]
        return Scan(
            n_sequences=sum(r["n_sequences"] for r in records),
            n_observations=sum(r["n_observations"] for r in records),
            max_symbol=max(symbols) if symbols else None,
            n_features=widths.pop() if len(widths) == 1 else None,
            errors=errors,
        )

    def statistics(self, model: BaseHMM) -> Any:
        """The E-step over every sequence (a :class:`hmm.stats.SufficientStats`)."""
        return sum_statistics(model, self.records(model, statistics=True))

    def sample(self, model: BaseHMM, n_sequences: int = INIT_SAMPLE_SEQUENCES) -> tuple[np.ndarray, np.ndarray]:
        """The first ``n_sequences`` sequences, for data-dependent initialisation."""
        symbols = model._observation_kind == "symbol"
        if self.engine == "spark":
            from .spark import collect_sample

            return collect_sample(self.spark.read.parquet(self.uri), self.sequence_col, symbols, n_sequences)
        table = self._dataset().head(n_sequences, columns=[self.sequence_col])
        return arrow_sequences(table.column(self.sequence_col), symbols)
