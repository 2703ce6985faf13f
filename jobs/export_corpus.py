"""Export a token output to Megatron-LM / GPT-NeoX indexed binary files (`pipeline/corpus/export.py`).

    python jobs/export_corpus.py --tokens OUT --output DIR [--layout interleaved|parallel] [--bos] [--no-eos]
"""

from __future__ import annotations

import sys

from pipeline.cli.export import export_main
from pipeline.corpus.export import export

__all__ = ["export", "export_main"]

if __name__ == "__main__":
    sys.exit(export_main())
