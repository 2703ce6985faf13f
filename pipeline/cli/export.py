"""The export job: `semanticodec-export` and `python jobs/export_corpus.py` (pipeline/corpus/export.py)."""

from __future__ import annotations

from .common import run_cli


def export_main(argv: list[str] | None = None) -> int:
    """Entry point of `semanticodec-export` and `python jobs/export_corpus.py`."""
    from ..corpus.export import main

    return run_cli(lambda: main(argv), argv)
