"""What an output folder records carries no credential: the rows of tokens/, failures/ and
retryable/, the shards' provenance, the run record (manifest.json) and the dataset card (README.md)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq

from pipeline.output.dataset_card import write_dataset_card
from pipeline.output.folder import CommittedKeys, OutputFolder
from pipeline.output.run_record import run_record_from_counts
from pipeline.output.shards import write_records
from pipeline.output.summary import ShardSummary
from pipeline.records import ChunkInfo, EncodedChunk, Failure
from pipeline.sources.manifest_rows import row_item
from pipeline.sources.uri_rule import UriRule
from pipeline.tokenize.config import TokenizeConfig

SIGNED = ("https://b.s3.amazonaws.com/a.wav?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIABOOKS0000EXAMPLE"
          "%2F20240101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=b00c5b00c5")
SECRETS = ("AKIABOOKS0000EXAMPLE", "b00c5b00c5", "K3Y:S3CR3T")


def test_rows_and_provenance_are_redacted(tmp_path):
    output = OutputFolder(str(tmp_path))
    info = ChunkInfo(id="a", uri=SIGNED, duration_s=0.1, source_sample_rate=16000, source_channels=1)
    records = [EncodedChunk(info, np.arange(5, dtype=np.uint16), np.arange(5, dtype=np.uint16)),
               Failure("b", SIGNED, "decode", "AudioDecodeError", f"cannot decode {SIGNED}"),
               Failure("c", SIGNED, "read", "ClientError", f"403 for url URL('{SIGNED}')", retryable=True)]
    write_records(output, records, {"variant": "v", "checkpoint": "s3://K3Y:S3CR3T@weights/semanticodec/"})
    for path in tmp_path.rglob("*.parquet"):
        assert not [s for s in SECRETS if s.encode() in path.read_bytes()], path
        rows = pq.read_table(path).to_pylist()
        assert all(row["uri"].startswith("https://b.s3.amazonaws.com/a.wav?X-Amz-Algorithm=REDACTED") for row in rows)
    [tokens] = (tmp_path / "tokens").glob("*.parquet")
    provenance = json.loads(pq.read_schema(tokens).metadata[b"pipeline.provenance"])
    assert provenance["checkpoint"] == "s3://REDACTED@weights/semanticodec/"


def test_an_id_made_from_a_presigned_uri_is_redacted_and_the_read_keeps_the_signature():
    rule = UriRule("/lists", allowed_prefixes=("https://b.s3.amazonaws.com/",))
    item = row_item({"uri": SIGNED}, rule=rule)
    assert item.uri == SIGNED  # what the workers read
    assert item.id.startswith("https://b.s3.amazonaws.com/a.wav?") and "b00c5b00c5" not in item.id
    assert row_item({"uri": SIGNED.replace("b00c5b00c5", "0therS1g")}, rule=rule).id == item.id


def test_run_record_and_dataset_card_are_redacted(tmp_path):
    output = OutputFolder(str(tmp_path))
    config = TokenizeConfig(source=SIGNED, output="s3://K3Y:S3CR3T@bucket/run1", checkpoint="synthetic:small",
                            semantic_vocab_size=4096)
    run_record = run_record_from_counts(config=config, source_kind="files", keys=CommittedKeys(), run=ShardSummary(),
                                    encoder={"batch_rows": 16, "num_encoders": 1, "device": "cpu"},
                                    wall_time_s=1.0, resumed=False)
    text = json.dumps(run_record)
    assert not [s for s in SECRETS if s in text]
    assert run_record["source"]["url"].startswith("https://b.s3.amazonaws.com/a.wav?X-Amz-Algorithm=REDACTED")
    assert run_record["run"]["config"]["output"] == "s3://REDACTED@bucket/run1"
    output.write_run_record({**run_record, "source": {"url": SIGNED, "kind": "files"}})  # an older, unredacted one
    card = (tmp_path / "README.md")
    write_dataset_card(str(tmp_path), repo_id="https://K3Y:S3CR3T@hub.example/datasets/x")
    assert not [s for s in SECRETS if s in card.read_text()]
    assert "X-Amz-Signature=REDACTED" in card.read_text()
