"""Entry point for `ray job submit --working-dir . -- python jobs/ablation.py [--space NAME] --preset P ...`.

Runs the `ablation_kernel` search space unless --space names another; every other argument is
`audiosweep sweep`'s (see `audiosweep sweep --help`).
"""

import sys

from audiosweep.jobs import sweep_job

if __name__ == "__main__":
    sys.exit(sweep_job("ablation_kernel", sys.argv[1:]))
