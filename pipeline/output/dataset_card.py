"""The dataset card (OUT/README.md) of a token output, in Hugging Face conventions.

Its YAML front matter declares one config per table (`tokens`, the default, and `failures` when
there are failures), so `datasets.load_dataset(OUT)` reads the token rows and
`load_dataset(OUT, "failures")` the failure rows, locally or after `push_to_hub`. Without it the
loader sees tokens/ and failures/ side by side and refuses ("column names don't match"). The body
says what a user needs before training on the tokens: codec, weights, counts, columns, how to load.
"""

from __future__ import annotations

import json

from ..redaction import redact
from .folder import FAILURES_DIR, PROVENANCE_KEY, RUN_RECORD_FILE, TOKENS_DIR, OutputFolder
from .schema import FAILURES_SCHEMA_VERSION, TOKENS_SCHEMA_VERSION, load_schema_file

CARD_FILE = "README.md"
SHARD_PATTERN = "part-*.parquet"
TABLES = ((TOKENS_DIR, "tokens", TOKENS_SCHEMA_VERSION), (FAILURES_DIR, "failures", FAILURES_SCHEMA_VERSION))
TAGS = ["audio", "audio-tokens", "semanticodec"]


def write_dataset_card(output_url: str, storage_options: dict | None = None, *, repo_id: str | None = None) -> str:
    """Write OUT/README.md from the committed shards and the run record (`manifest.json`); returns its path.
    `repo_id`: the Hub dataset repo to name in the loading example (default: the folder)."""
    output = OutputFolder(output_url, storage_options)
    output.publish(CARD_FILE, dataset_card(output, repo_id).encode())
    return output.path(CARD_FILE)


def dataset_card(output: OutputFolder, repo_id: str | None = None) -> str:
    """The card's text for an output folder as it is now."""
    present = [(kind, name, version) for kind, name, version in TABLES if output.committed_files(kind)]
    run_record = output.read_run_record() or {}
    return redact(render_card(present, run_record, _provenance(output, run_record), repo_id or output.url))


def card_configs(present_tables: list[str]) -> list[dict]:
    """The `configs:` entries: one per table present, the first (tokens when present) the default."""
    configs = []
    for kind, name, _ in TABLES:
        if name in present_tables:
            config = {"config_name": name, "data_files": [{"split": "train", "path": f"{kind}/{SHARD_PATTERN}"}]}
            configs.append(config)
    if configs:
        configs[0]["default"] = True
    return configs


def render_card(present: list[tuple[str, str, int]], run_record: dict, codec: dict, load_from: str) -> str:
    from huggingface_hub import DatasetCardData

    names = [name for _, name, _ in present]
    codec = codec or {}
    variant = codec.get("variant", "unknown variant")
    front = DatasetCardData(pretty_name=f"SemantiCodec tokens ({variant})", tags=TAGS, configs=card_configs(names))
    lines = ["---", front.to_yaml(), "---", "", f"# SemantiCodec tokens ({variant})", ""]
    if codec.get("synthetic_weights"):
        lines += ["> **Warning: made with synthetic (random) codec weights.** These tokens are for testing the "
                  "pipeline only; they carry no information about the audio.", ""]
    source = (run_record.get("source") or {}).get("url")
    lines += [
        f"Audio{f' from `{source}`' if source else ''} tokenized with SemantiCodec by "
        f"audio-tokenizer-pipeline {run_record.get('pipeline_version', '')}".rstrip() + ". "
        "One row per clip, or per chunk of a long file; row i of `semantic` and `acoustic` together is token pair i.",
        "",
        "## Load it",
        "",
        "```python",
        "from datasets import load_dataset",
    ]
    if "tokens" in names:
        lines.append(f'tokens = load_dataset("{load_from}", split="train")  # config "tokens"')
    if "failures" in names:
        lines.append(f'failures = load_dataset("{load_from}", "failures", split="train")  # inputs not tokenized')
    lines += [
        "```",
        "",
        "For training, `pipeline.corpus.PackedTokenDataset` packs the tokens into fixed-length sequences "
        "(resumable with DataLoader workers) and `jobs/export_corpus.py` writes Megatron/GPT-NeoX `.bin`/`.idx` "
        "files; both leave out inputs with a missing chunk. The `tokens` config itself holds every committed row: "
        "an input cut into chunks is complete when all `num_chunks` of its chunk indexes are present.",
        "",
        *_codec_section(codec),
        *_counts_section(run_record),
    ]
    for _, name, version in present:
        lines += _columns_section(name, version)
    if not names:
        lines += ["This output holds no committed shards yet.", ""]
    return "\n".join(lines).rstrip() + "\n"


def _codec_section(codec: dict) -> list[str]:
    if not codec:
        return []
    rate = codec.get("token_rate")
    lines = ["## Codec", "", "| | |", "|---|---|"]
    for label, value in (("codec", codec.get("codec")), ("variant", codec.get("variant")),
                         ("token rate", f"{rate} tokens/s ({rate / 2:g} pairs/s)" if rate else None),
                         ("semantic vocabulary", codec.get("semantic_vocab_size")),
                         ("acoustic vocabulary", codec.get("acoustic_vocab_size")),
                         ("encoder numerics", codec.get("dtype")), ("checkpoint", codec.get("checkpoint")),
                         ("synthetic weights", codec.get("synthetic_weights"))):
        if value is not None:
            lines.append(f"| {label} | `{value}` |")
    files = codec.get("files") or {}
    if files:
        lines += ["", "Checkpoint files (SHA-256):", "", "| file | sha256 |", "|---|---|"]
        lines += [f"| {name} | `{(info or {}).get('sha256')}` |" for name, info in sorted(files.items())]
    return lines + [""]


def _counts_section(run_record: dict) -> list[str]:
    counts, totals = run_record.get("counts") or {}, run_record.get("totals") or {}
    if not counts and not totals:
        return []
    lines = ["## Contents", "", f"From `{RUN_RECORD_FILE}` ({run_record.get('created_at', 'unknown time')}):", "",
             "| | |", "|---|---|"]
    for section in (counts, totals):
        for key, value in section.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                lines.append(f"| {key.replace('_', ' ')} | {value:,.2f} |" if isinstance(value, float)
                             else f"| {key.replace('_', ' ')} | {value:,} |")
    by_type = counts.get("failures_by_type") or {}
    if by_type:
        lines += ["", "| failure type | inputs |", "|---|---|"]
        lines += [f"| {name} | {count:,} |" for name, count in sorted(by_type.items(), key=lambda kv: -kv[1])]
    return lines + [""]


def _columns_section(name: str, version: int) -> list[str]:
    spec = load_schema_file(name, version)
    shown = f"{version}.{spec['minor_version']}" if "minor_version" in spec else str(version)
    lines = [f"## Columns of `{name}` (schema `{name}` v{shown})", "", spec.get("description", ""), "",
             "| column | type | nullable | description |", "|---|---|---|---|"]
    for column in spec["columns"]:
        doc = column.get("doc", "").replace("|", "\\|")
        lines.append(f"| `{column['name']}` | {column['type']} | {'yes' if column['nullable'] else 'no'} | {doc} |")
    return lines + [""]


def _provenance(output: OutputFolder, run_record: dict) -> dict:
    """The codec provenance: the run record's, or (no run record yet) the first token shard's."""
    if run_record.get("codec"):
        return run_record["codec"]
    shards = output.committed_files(TOKENS_DIR)
    if not shards:
        return {}
    import pyarrow.parquet as pq

    metadata = pq.read_schema(shards[0], filesystem=output.fs).metadata or {}
    return json.loads(metadata.get(PROVENANCE_KEY.encode(), b"{}"))

