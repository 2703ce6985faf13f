"""The settings of a spot check: one dataclass, the single source of defaults, help text and
choices (the command line is generated from these fields, like TokenizeConfig's)."""

from __future__ import annotations

from dataclasses import dataclass

from ..tokenize.config import S3Config, option

DEFAULT_MAX_DECODE_S = 20.48  # two 10.24 s decoder windows per picked row


@dataclass
class SpotCheckConfig(S3Config):
    tokens: str = option(None, "token output folder of a tokenize run: local path or any fsspec URL "
                         "(s3://bucket/prefix)", required=True)
    report: str = option(None, "local folder for index.html, report.json, audio/ and img/", required=True)
    samples: int = option(16, "token rows to decode and compare with their original audio")
    checkpoint: str | None = option(None, "SemantiCodec weights with a decoder, overriding the checkpoint recorded "
                                    "in the corpus: hf://owner/repo, a folder, an fsspec URL, or synthetic:small / "
                                    "synthetic:golden (random test weights)")
    allow_uri_prefix: list[str] | None = option(None, "where the corpus's uris (originals) and recorded checkpoint "
                                                "may point besides the corpus folder: a folder or URL prefix, "
                                                "repeatable (e.g. /data/audio/ or s3://bucket/audio/)",
                                                metavar="PREFIX")
    ddim_steps: int = option(50, "DDIM steps per decode (fewer is faster and rougher; 50 is the official value)")
    cfg_scale: float = option(2.0, "classifier-free guidance scale of the decoder")
    seed: int = option(0, "picks the rows and seeds the decoder noise (sample k uses seed + k)")
    device: str = option("cpu", "torch device of the in-process decode: cpu, cuda, cuda:1, ...")
    max_decode_s: float = option(DEFAULT_MAX_DECODE_S, "decode at most this many seconds of each sampled row "
                                 "(0: the whole row)")
    ray: bool = option(False, "decode on Ray actors (one per GPU, else one CPU actor) instead of in this process")
    quiet: bool = option(False, "no progress bars on stderr")
