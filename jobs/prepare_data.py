"""`python jobs/prepare_data.py {audioset,hf,hdf5,wds,demo} ...`: build Parquet shards (see `audiosweep prepare --help`)."""

import sys

from audiosweep.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
