"""EMR step `decode`: decode Parquet sequences with a published model into Parquet outputs keyed by id.

    spark-submit jobs/decode.py --store URI --training-id ID --data URI --output URI [--outputs ...] [options]

Idempotent: a re-run skips the parts committed, a finished output is not recomputed. Options and exit
codes: `hmm-em decode --help`. The logic lives in `hmm.training.decode`.
"""

import sys

from hmm.training.cli import exit_job, main

if __name__ == "__main__":
    exit_job(main(["decode", *sys.argv[1:]], own_process=True))
