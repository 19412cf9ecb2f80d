"""Entry point for `ray job submit --working-dir . -- python jobs/grid.py [--space NAME] --preset P ...`.

Runs the `grid` search space unless --space names another; every other argument is
`audiosweep sweep`'s (see `audiosweep sweep --help`).
"""

import sys

from audiosweep.jobs import sweep_job

if __name__ == "__main__":
    sys.exit(sweep_job("grid", sys.argv[1:]))
