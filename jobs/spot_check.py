"""Decode-sampling QA report of a token output folder (options: `--help`).

A thin wrapper over `pipeline.cli.spot_check` (installed as the `semanticodec-spot-check` command too).
"""

import sys

from pipeline.cli.spot_check import parse_spot_check_args as parse_args  # noqa: F401 (the job's parser, for tests)
from pipeline.cli.spot_check import spot_check_main as main

if __name__ == "__main__":
    sys.exit(main())
