"""The distributed layer: the same E-step over a Spark DataFrame or Parquet splits.

Arrow batch -> validated arrays -> one statistics record (:mod:`.arrow`); Parquet files ->
splits -> Spark tasks or one local process (:mod:`.sources`); ``fit`` / ``score`` on a DataFrame
(:mod:`.spark`); data URIs (:mod:`.uris`). Imports the core only.
"""
