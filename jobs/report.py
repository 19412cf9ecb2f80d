"""`python jobs/report.py SWEEP_ID`: rebuild a sweep's report from MLflow (see `audiosweep report --help`)."""

import sys

from audiosweep.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
