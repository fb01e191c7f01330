"""EMR step `init_training`: Create a training: validate the spec, scan the data, write spec.json and iteration 0.

    spark-submit jobs/init_training.py --store URI --training-id ID [options]

Options and exit codes: `hmm-em init --help`. The logic lives in `hmm.training.steps`.
"""

import sys

from hmm.training.cli import exit_job, main

if __name__ == "__main__":
    exit_job(main(["init", *sys.argv[1:]]))
