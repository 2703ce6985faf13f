"""Tokenize an audio collection into SemantiCodec Parquet token shards (options: `--help`).

A thin wrapper over `pipeline.cli.tokenize` (installed as the `semanticodec-tokenize` command too), kept so
that `python jobs/tokenize_audioset.py ...` and `ray job submit -- python jobs/tokenize_audioset.py ...`
work from a checkout and from the image: `pipeline` is importable there (an editable install, the
image's PYTHONPATH, or the `--working-dir` copy that Ray puts first on PYTHONPATH).
"""

import sys

from pipeline.cli.tokenize import parse_tokenize_args as parse_args  # noqa: F401 (the job's parser, for tests)
from pipeline.cli.tokenize import tokenize_main as main

if __name__ == "__main__":
    sys.exit(main())
