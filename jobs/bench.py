"""`python jobs/bench.py {dcls,reader,shuffle,cold-start,ingest,augment} ...`: the benchmarks (see `audiosweep bench --help`)."""

import sys

from audiosweep.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
