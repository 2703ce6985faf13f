"""What a token output folder holds, before anything is decoded: its committed shards, failure
shards and run record (`manifest.json`), each shard's codec provenance, shards made with another
codec than the first, the codec settings the report works with, and which checkpoint it may decode with.

The checkpoint a corpus records is a URI from data (`pipeline/sources/uri_rule.py`): the report
decodes with the user's --checkpoint, or with the recorded one only when the URI rule allows it
(under the corpus folder or an --allow-uri-prefix; the pipeline's own default repository and the
synthetic weights it builds itself are allowed too) and its encoder files hash to the SHA-256s the
corpus recorded. Otherwise nothing is downloaded or loaded, and the report says why.

"Another codec" is `pipeline.output.identity.codec_identity`, the same rule the corpus reader and the
resume check use. A folder that does not exist or holds no token shards is a user's mistake
(`SourceError`, one line), not a report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..codecs.semanticodec.variants import ACOUSTIC_VOCAB_SIZE, SEMANTIC_VOCAB_SIZES, TOKEN_RATES
from ..errors import SourceError
from ..output.identity import codec_identity
from ..sources.uri_rule import UriRule
from .token_stats import read_provenance, shard_name

CODEC_KEYS = ("codec", "variant", "token_rate", "semantic_vocab_size", "acoustic_vocab_size", "checkpoint",
              "synthetic_weights", "device", "dtype", "pipeline_version")
# when neither the shards nor manifest.json say (flagged as unknown_codec): the highest rate, and the
# largest vocabulary so that no id is reported out of range for want of knowing
ASSUMED_TOKEN_RATE = max(TOKEN_RATES)
ASSUMED_SEMANTIC_VOCAB_SIZE = max(SEMANTIC_VOCAB_SIZES)


@dataclass(slots=True)
class Inventory:
    fs: object
    shards: list[str]
    failure_shards: list[str]
    run_record: dict | None
    provenances: list[dict] = field(default_factory=list)
    unreadable: list[dict] = field(default_factory=list)  # {shard, error}
    mixed: list[dict] = field(default_factory=list)  # {shard, identity}: not the first shard's codec


def take_inventory(tokens_url: str, storage_options: dict | None) -> Inventory:
    """List and check the folder (raises SourceError when it cannot be a token output folder)."""
    from ..output.folder import FAILURES_DIR, TOKENS_DIR, OutputFolder

    output = OutputFolder(tokens_url, storage_options)
    try:
        fs, root = output.fs, output.root
        is_folder, exists = fs.isdir(root), fs.exists(root)
    except Exception as error:  # no credentials, unknown protocol, unreachable endpoint ...
        raise SourceError(f"cannot read --tokens {tokens_url}: {type(error).__name__}: "
                          f"{' '.join(str(error).split())}") from error
    if not is_folder:
        problem = "is a file, not a folder" if exists else "does not exist"
        raise SourceError(f"--tokens {tokens_url} {problem}: give the output folder of a tokenize run "
                          "(the --output of jobs/tokenize_audioset.py)")
    shards = output.committed_files(TOKENS_DIR)
    if not shards:
        raise SourceError(f"--tokens {tokens_url} holds no token shards ({TOKENS_DIR}/part-*.parquet): is it the "
                          "--output folder of a finished tokenize run?")
    inventory = Inventory(fs, shards, output.committed_files(FAILURES_DIR), output.read_run_record())
    reference = None
    for path in shards:
        provenance, error = read_provenance(fs, path)
        if error:
            inventory.unreadable.append({"shard": shard_name(path), "error": error})
            continue
        inventory.provenances.append(provenance)
        identity = codec_identity(provenance)
        if reference is None:
            reference = identity
        elif identity != reference:
            inventory.mixed.append({"shard": shard_name(path), "identity": identity})
    return inventory


def codec_settings(provenances: list[dict], run_record: dict | None, checkpoint: str | None) -> dict:
    """Token rate, vocab sizes and checkpoint from shard metadata (first shard), else the run record;
    `checkpoint` (the user's --checkpoint) overrides the recorded one."""
    source, settings = None, {}
    for provenance in provenances:
        if provenance.get("token_rate"):
            source, settings = "parquet metadata (pipeline.provenance)", provenance
            break
    if not settings and run_record and (run_record.get("codec") or {}).get("token_rate"):
        source, settings = "manifest.json codec", run_record["codec"]
    out = {k: settings.get(k) for k in CODEC_KEYS if settings.get(k) is not None}
    out["settings_source"] = source or "none found: assumed"
    out.setdefault("token_rate", ASSUMED_TOKEN_RATE)
    out.setdefault("semantic_vocab_size", ASSUMED_SEMANTIC_VOCAB_SIZE)
    out.setdefault("acoustic_vocab_size", ACOUSTIC_VOCAB_SIZE)
    out["synthetic_weights"] = bool(settings.get("synthetic_weights", False))
    out["frame_rate"] = out["token_rate"] / 2
    out["recorded_checkpoint"] = settings.get("checkpoint")
    out["checkpoint"] = checkpoint or settings.get("checkpoint")
    out["checkpoint_overridden"] = checkpoint is not None
    return out


def decoder_checkpoint(settings: dict, provenance: dict | None, rule: UriRule,
                       storage_options: dict | None) -> tuple[str | None, str | None]:
    """(the checkpoint to decode with, None), or (None, why the corpus's recorded one is not used)."""
    if settings["checkpoint_overridden"]:
        return settings["checkpoint"], None
    recorded = settings.get("recorded_checkpoint")
    if not recorded:
        return None, "no checkpoint recorded in the corpus and none given (--checkpoint)"
    recorded = str(recorded)
    if recorded.startswith("synthetic:"):  # built here from a seed, nothing is fetched
        return recorded, None
    fix = "pass --checkpoint with the weights to decode with"
    location = recorded.split("@")[0] if recorded.startswith("hf://") else recorded
    if not (_pipeline_own(recorded) or rule.allows(location)):
        return None, (f"the corpus names the checkpoint {recorded[:300]!r}, outside the corpus folder and every "
                      f"--allow-uri-prefix (the URI rule: a corpus cannot make the report fetch weights): {fix}")
    expected = codec_identity(provenance or {})["files"]
    if not all(expected.values()):
        return None, f"the corpus records no SHA-256 of its encoder files to check {recorded[:300]!r} against: {fix}"
    from ..codecs.semanticodec.checkpoint import encoder_file_hashes
    from ..fsutil import options_for

    try:
        found = encoder_file_hashes(recorded, int(settings["token_rate"]), int(settings["semantic_vocab_size"]),
                                    storage_options=options_for(recorded, storage_options) or None)
    except Exception as error:  # noqa: BLE001 - the report goes on without decodes, and says why
        return None, f"cannot check the corpus's checkpoint {recorded[:300]!r} ({type(error).__name__}: {error}): {fix}"
    if found != expected:
        return None, (f"the encoder files at the corpus's checkpoint {recorded[:300]!r} do not have the SHA-256s the "
                      f"corpus recorded (other weights): {fix}")
    return recorded, None


def _pipeline_own(checkpoint: str) -> bool:
    """The pipeline's default repository (any revision), or synthetic weights it built in its cache."""
    import os

    from ..codecs.semanticodec.checkpoint import DEFAULT_CHECKPOINT, default_cache_dir

    if checkpoint == DEFAULT_CHECKPOINT or checkpoint.startswith(DEFAULT_CHECKPOINT + "@"):
        return True
    if "://" in checkpoint:
        return False
    relative = os.path.relpath(os.path.realpath(checkpoint), os.path.realpath(default_cache_dir()))
    return relative.split(os.sep)[0].startswith("synthetic-")  # a path outside the cache starts with ".."
