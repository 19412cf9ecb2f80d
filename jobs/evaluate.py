"""`ray job submit --working-dir . -- python jobs/evaluate.py CHECKPOINT [...]`: evaluate a
checkpoint on a dataset split over the cluster (see `audiosweep evaluate --help`)."""

import sys

from audiosweep.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
