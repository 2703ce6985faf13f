"""Reading a committed output folder back, and the exactly-once checks the pipeline tests share."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads

from pipeline.output.schema import SCHEMA_DIR


def read_rows(folder: Path) -> list[dict]:
    return pads.dataset(folder, format="parquet").to_table().to_pylist() if folder.exists() else []


def read_output(folder: Path, *, with_retryable: bool = False) -> tuple[list[dict], list[dict], dict]:
    """(token rows, failure rows, run record) of a committed output folder; with `with_retryable`,
    the failure rows include the retryable ones (transient errors a rerun retries)."""
    tokens = read_rows(folder / "tokens")
    failures = read_rows(folder / "failures") + (read_rows(folder / "retryable") if with_retryable else [])
    run_record = json.loads((folder / "manifest.json").read_text())
    return tokens, failures, run_record


def validate_run_record(run_record: dict) -> None:
    import jsonschema

    schema = json.loads((SCHEMA_DIR / "manifest.v1.json").read_text())
    jsonschema.validate(run_record, schema)


def assert_each_id_once(tokens: list[dict], failures: list[dict], expected_ids: set[str]) -> None:
    keys = [(r["id"], r["chunk_index"]) for r in tokens]
    assert len(keys) == len(set(keys)), "a token row is duplicated"
    failed = [r["id"] for r in failures]
    assert len(failed) == len(set(failed)), "a failure row is duplicated"
    assert not set(failed) & {r["id"] for r in tokens}, "an id is both tokenized and failed"
    assert {r["id"] for r in tokens} | set(failed) == expected_ids


def tokens_by_id(tokens: list[dict]) -> dict[str, np.ndarray]:
    """id → [T, 2] token array, chunks concatenated in order."""
    out: dict[str, list] = {}
    for row in sorted(tokens, key=lambda r: (r["id"], r["chunk_index"])):
        out.setdefault(row["id"], []).append(np.stack([row["semantic"], row["acoustic"]], axis=1))
    return {key: np.concatenate(parts) for key, parts in out.items()}
