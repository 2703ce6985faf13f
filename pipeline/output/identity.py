"""What makes two sets of tokens compatible: one definition, used by resume, the corpus reader and
the QA report.

Two token rows may sit in one corpus only if they came from the same codec variant with the same
weights. The checkpoint's *location* (a hub repo, a local copy, an S3 mirror) does not matter; the
files' SHA-256 does. The decoder is not part of it: encoding never reads it.
"""

from __future__ import annotations

IDENTITY_KEYS = ("codec", "variant", "token_rate", "semantic_vocab_size", "acoustic_vocab_size", "synthetic_weights")
IDENTITY_FILES = ("encoder", "semantic_codebook")
ID_RULE_KEY = "id_rule"
LEGACY_ID_RULE = 1  # outputs whose fingerprint has no id rule were made with the first one


def codec_identity(provenance: dict) -> dict:
    """The part of a codec provenance dict (`Provenance.to_dict()`) that decides token compatibility."""
    identity = {key: provenance.get(key) for key in IDENTITY_KEYS}
    files = provenance.get("files") or {}
    identity["files"] = {name: (files.get(name) or {}).get("sha256") for name in IDENTITY_FILES}
    return identity


def identity_differences(a: dict, b: dict) -> dict:
    """{key: (a's value, b's value)} for every key where two identities differ."""
    return {key: (a.get(key), b.get(key)) for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)}


def run_fingerprint(*, variant: str, dtype: str, chunk_windows: int, tokens_schema_version: int,
                    id_rule: int | None = None) -> dict:
    """What a resumed run must share with the run that started an output folder: the codec variant,
    the encoder's numeric mode (bf16 tokens differ slightly from fp32), the chunking (chunk indexes
    of different chunkings are not comparable), the schema's major version and the id rule (the
    same audio must keep its id: `pipeline/sources/ids.py`, default the current rule). The
    weights are compared by `codec_identity` when the encoders load (it needs the files' hashes)."""
    from ..sources.ids import ID_RULE_VERSION

    return {"variant": variant, "dtype": dtype, "chunk_windows": int(chunk_windows),
            "tokens_schema_version": int(tokens_schema_version),
            ID_RULE_KEY: int(ID_RULE_VERSION if id_rule is None else id_rule)}
