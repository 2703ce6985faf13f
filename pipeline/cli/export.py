"""The export job: `semanticodec-export` and `python jobs/export_corpus.py` (pipeline/corpus/export.py)."""

from __future__ import annotations

import json

from .common import parse_config, prog_name, run_cli


def export_main(argv: list[str] | None = None) -> int:
    """Entry point of `semanticodec-export` and `python jobs/export_corpus.py`."""
    return run_cli(lambda: _export(argv), argv)


def _export(argv: list[str] | None) -> int:
    from ..corpus import export as job
    from ..corpus.config import ExportConfig

    config = parse_config(ExportConfig, argv, job.__doc__, prog=prog_name("export_corpus.py"))
    vocab = job.export(config.tokens, config.output, config.layout, config.bos, config.eos,
                       config.storage_options())
    print(json.dumps({key: vocab[key] for key in job.SUMMARY_KEYS}, indent=2))
    return 0
