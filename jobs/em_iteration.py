"""EMR step `em_iteration`: Commit EM iteration K from committed K-1 (--iteration K); a no-op if K is committed.

    spark-submit jobs/em_iteration.py --store URI --training-id ID [options]

Options and exit codes: `hmm-em iterate --help`. The logic lives in `hmm.training.steps`.
"""

import sys

from hmm.training.cli import exit_job, main

if __name__ == "__main__":
    exit_job(main(["iterate", *sys.argv[1:]], own_process=True))
