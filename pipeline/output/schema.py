"""The versioned output contract, loaded from the language-neutral files in `schemas/`."""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path


def _schema_dir() -> Path:
    """`schemas/` of a checkout, or the copy an installed package puts under `<prefix>/share`."""
    checkout = Path(__file__).resolve().parents[2] / "schemas"
    if checkout.is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "audio-tokenizer-pipeline" / "schemas"


SCHEMA_DIR = _schema_dir()
TOKENS_SCHEMA_VERSION = 1
FAILURES_SCHEMA_VERSION = 1
RUN_RECORD_SCHEMA_VERSION = 1  # of the run record, schemas/manifest.v<N>.json

_ARROW_TYPES = {
    "string": "string",
    "int32": "int32",
    "float64": "float64",
    "list<uint16>": ("list", "uint16"),
    "list<string>": ("list", "string"),
}


@cache
def load_schema_file(name: str, version: int) -> dict:
    path = SCHEMA_DIR / f"{name}.v{version}.json"
    if not path.is_file():
        raise ValueError(f"unknown schema {name} v{version} (no {path})")
    return json.loads(path.read_text())


def arrow_schema(name: str, version: int):
    """The pyarrow schema of a Parquet table (`tokens`, `failures`), with its version in metadata."""
    import pyarrow as pa

    spec = load_schema_file(name, version)
    fields = []
    for column in spec["columns"]:
        kind = _ARROW_TYPES[column["type"]]
        arrow_type = pa.list_(getattr(pa, kind[1])()) if isinstance(kind, tuple) else getattr(pa, kind)()
        fields.append(pa.field(column["name"], arrow_type, nullable=column["nullable"]))
    metadata = {"pipeline.schema": name, "pipeline.schema_version": str(version)}
    return pa.schema(fields, metadata=metadata)


def check_table_version(metadata: dict | None, name: str, known_version: int) -> None:
    """Refuse files of another table or of a version this code does not know."""
    metadata = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
                for k, v in (metadata or {}).items()}
    if metadata.get("pipeline.schema") != name:
        raise ValueError(f"not a {name} file (schema {metadata.get('pipeline.schema')!r})")
    if metadata.get("pipeline.schema_version") != str(known_version):
        raise ValueError(
            f"{name} schema version {metadata.get('pipeline.schema_version')} is not supported "
            f"(this code reads version {known_version})"
        )
