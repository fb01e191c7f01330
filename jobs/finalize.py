"""EMR step `finalize`: Publish the last committed parameters and the report under model/.

    spark-submit jobs/finalize.py --store URI --training-id ID [options]

Options and exit codes: `hmm-em finalize --help`. The logic lives in `hmm.training.steps`.
"""

import sys

from hmm.training.cli import exit_job, main

if __name__ == "__main__":
    exit_job(main(["finalize", *sys.argv[1:]]))
