"""The settings of an export: one dataclass, the single source of defaults, help text and choices
(the command line is generated from these fields, like TokenizeConfig's)."""

from __future__ import annotations

from dataclasses import dataclass

from ..tokenize.config import S3Config, option
from .layout import LayoutName


@dataclass
class ExportConfig(S3Config):
    tokens: str = option(None, "token output folder of a tokenize run: local path or any fsspec URL "
                         "(s3://bucket/prefix)", required=True)
    output: str = option(None, "local folder for the .bin/.idx files, documents.jsonl and vocab.json",
                         required=True)
    layout: LayoutName = option("interleaved", "interleaved: [s0, a0, s1, a1, ...] in one vocabulary; "
                                "parallel: two aligned streams")
    bos: bool = option(False, "start each clip with a BOS token")
    eos: bool = option(True, "end each clip with an EOS token")
