"""Nothing lost, nothing duplicated, nothing stuck (issue 12), and full forward passes (issue 10),
end to end on an embedded Ray: retryable read errors, settings fingerprint, writer exclusion,
device errors, partial inputs, windows per pass."""

from __future__ import annotations

import io

import boto3
import pytest

from pipeline.errors import OutputError
from pipeline.output.folder import RETRYABLE_DIR, OutputFolder
from pipeline.output.lease import WriterLease
from pipeline.output.shards import write_records
from pipeline.records import AudioChunk, Failure, SourceItem
from pipeline.sources.base import WorkUnit
from pipeline.sources.work_list import units_table
from pipeline.tokenize.config import TokenizeConfig
from pipeline.tokenize.stages import ReadDecode
from tests.support.audio import flac_bytes, write_flac_clips
from tests.support.outputs import assert_each_id_once, read_output
from tests.support.runs import tokenize
from tests.support.s3 import FaultyProxy, MotoServer


def config(source, output, checkpoint, **extra) -> TokenizeConfig:
    base = dict(source=str(source), output=str(output), checkpoint=str(checkpoint), token_rate=100,
                semantic_vocab_size=4096, rows_per_file=4, chunk_windows=2, max_batch_windows=4)
    return TokenizeConfig(**{**base, **extra})


def test_full_forward_passes_are_recorded(ray_local, small_checkpoint, tmp_path):
    write_flac_clips(tmp_path / "audio", 24)
    run_record = tokenize(config(tmp_path / "audio", tmp_path / "out", small_checkpoint, max_batch_windows=8),
                            progress=False)
    encoder = run_record["run"]["encoder"]
    assert encoder["windows"] == 24 and run_record["counts"]["tokenized"] == 24
    assert encoder["mean_windows_per_pass"] >= 6, encoder
    assert encoder["dtype_per_component"]["distances"] == "float32", encoder


def test_rerun_with_other_settings_is_refused_before_any_work(ray_local, small_checkpoint, tmp_path):
    write_flac_clips(tmp_path / "audio", 3, seconds=2.0)
    out = tmp_path / "out"
    tokenize(config(tmp_path / "audio", out, small_checkpoint), progress=False)
    before = sorted(p.name for p in out.rglob("*.parquet"))
    for change in ({"token_rate": 50}, {"chunk_windows": 3}, {"semantic_vocab_size": 8192}):
        with pytest.raises(OutputError, match="resuming would mix two corpora"):
            tokenize(config(tmp_path / "audio", out, small_checkpoint, **change), progress=False)
    assert sorted(p.name for p in out.rglob("*.parquet")) == before
    fresh = tokenize(config(tmp_path / "audio", out, small_checkpoint, token_rate=50, overwrite=True), progress=False)
    assert fresh["codec"]["token_rate"] == 50 and fresh["counts"]["tokenized"] == 3


def test_the_run_record_keeps_every_run(ray_local, small_checkpoint, tmp_path):
    write_flac_clips(tmp_path / "audio", 2, seconds=1.0)
    out = tmp_path / "out"
    first = tokenize(config(tmp_path / "audio", out, small_checkpoint))
    assert first["runs"] == [first["run"]] and first["run"]["rows_this_run"] == 2
    (tmp_path / "audio" / "late.flac").write_bytes(flac_bytes(1.0, seed=9))
    second = tokenize(config(tmp_path / "audio", out, small_checkpoint))
    assert second["runs"] == [first["run"], second["run"]]
    assert second["run"]["resumed"] is True and second["run"]["rows_this_run"] == 1
    assert second["counts"]["tokenized"] == 3


def test_a_containers_own_retryable_row_goes_once_a_rerun_reads_it_through(ray_local, small_checkpoint, tmp_path):
    """A transient error after a tar's last member leaves a retryable row under the tar's key; the
    rerun reads the tar again and finds every member complete: nothing new supersedes that row, which
    used to stay, so that every rerun exited 75 again."""
    import tarfile

    shards = tmp_path / "shards"
    shards.mkdir()
    with tarfile.open(shards / "a.tar", "w") as tar:
        for seed, name in enumerate(("one.flac", "two.flac")):
            payload = flac_bytes(1.0, seed=seed)
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    out = tmp_path / "out"
    assert tokenize(config(shards, out, small_checkpoint))["counts"]["tokenized"] == 2
    write_records(OutputFolder(str(out)), [Failure("a.tar", str(shards / "a.tar"), "read", "ConnectionResetError",
                                                   "connection reset after the last member", retryable=True)], {})
    again = tokenize(config(shards, out, small_checkpoint))
    assert again["counts"]["retryable"] == 0 and again["counts"]["tokenized"] == 2
    assert again["run"]["rows_this_run"] == 0 and not (out / RETRYABLE_DIR).exists()
    tokens, failures, _ = read_output(out)
    assert_each_id_once(tokens, failures, {"a.tar/one", "a.tar/two"})


def test_a_second_writer_is_refused(ray_local, small_checkpoint, tmp_path):
    write_flac_clips(tmp_path / "audio", 2, seconds=1.0)
    out = tmp_path / "out"
    holder = WriterLease(OutputFolder(str(out)))
    holder.acquire()
    try:
        with pytest.raises(OutputError, match="another run is writing"):
            tokenize(config(tmp_path / "audio", out, small_checkpoint), progress=False)
        assert not (out / "tokens").exists()
    finally:
        holder.release()
    assert tokenize(config(tmp_path / "audio", out, small_checkpoint), progress=False)["counts"]["tokenized"] == 2


def test_rejected_credentials_are_retried_on_the_next_run(ray_local, small_checkpoint, tmp_path):
    """A 403 on every read (a wrong secret) must not become a permanent failure."""
    names = write_flac_clips(tmp_path / "audio", 4, seconds=1.0)
    with MotoServer() as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="audio")
        for name in names:
            s3.upload_file(str(tmp_path / "audio" / name), "audio", f"clips/{name}")
        out = tmp_path / "out"
        # the listing goes through; every object read is denied, as with a key lacking s3:GetObject
        with FaultyProxy(endpoint, fault_rate=1.0, status=403, only_methods=("GET",), only_objects=True) as proxy:
            first = tokenize(config("s3://audio/clips/", out, small_checkpoint, s3_endpoint_url=proxy.url,
                                        read_retries=1), progress=False)
        assert first["counts"]["retryable"] == 4 and first["counts"]["tokenized"] == 0, first["counts"]
        assert first["counts"]["failed"] == 0
        assert len(list((out / RETRYABLE_DIR).glob("part-*.parquet"))) >= 1
        second = tokenize(config("s3://audio/clips/", out, small_checkpoint, s3_endpoint_url=endpoint),
                              progress=False)
    assert second["counts"]["tokenized"] == 4 and second["counts"]["retryable"] == 0
    assert not (out / RETRYABLE_DIR).exists()
    tokens, failures, _ = read_output(out)
    assert_each_id_once(tokens, failures, set(names))


def test_device_error_restarts_the_encoder_and_retries_the_batch(ray_local, small_checkpoint, tmp_path, monkeypatch):
    write_flac_clips(tmp_path / "audio", 6, seconds=1.0)
    marker = tmp_path / "device-fault-injected"
    monkeypatch.setenv("PIPELINE_INJECT_DEVICE_ERROR_ONCE", str(marker))
    out = tmp_path / "out"
    run_record = tokenize(config(tmp_path / "audio", out, small_checkpoint), progress=False)
    assert marker.exists(), "the fault was not injected"
    assert run_record["counts"]["tokenized"] == 6 and run_record["counts"]["failed"] == 0
    tokens, failures, _ = read_output(out)
    assert not failures and len({r["id"] for r in tokens}) == 6


class _FailingSource:
    """A source whose one input decodes to garbage now (its bytes changed since an earlier run)."""

    def read_unit(self, unit):
        yield SourceItem(id="long.flac", uri="/x/long.flac", data=b"not audio any more")
        yield SourceItem(id="fine.wav", uri="/x/fine.wav", data=b"also not audio")


def test_a_partly_committed_input_that_now_fails_stays_retryable():
    from pipeline.codecs.semanticodec.variants import SemantiCodecVariant
    from pipeline.tokenize.batch import batch_to_records

    skip = (set(), {("long.flac", 0)}, {"long.flac"})
    stage = ReadDecode(_FailingSource(), SemantiCodecVariant(100, 4096), skip, chunk_windows=2, max_duration_s=3600)
    tables = list(stage(units_table([WorkUnit("long.flac", "long.flac")])))
    records = {r.id: r for table in tables for r in batch_to_records(table)}
    assert isinstance(records["long.flac"], Failure) and records["long.flac"].retryable
    assert "already committed" in records["long.flac"].message
    assert isinstance(records["fine.wav"], Failure) and not records["fine.wav"].retryable
    assert not any(isinstance(r, AudioChunk) for r in records.values())


def test_resume_with_other_weights_is_refused(ray_local, small_checkpoint, tmp_path):
    from pipeline.codecs.semanticodec.synthetic import build_small_checkpoint

    other = build_small_checkpoint(tmp_path / "other-ckpt", token_rates=(100,), semantic_vocab_sizes=(4096,),
                                   width=32, include_decoder=False)  # same variant, other weights
    write_flac_clips(tmp_path / "audio", 2, seconds=1.0)
    out = tmp_path / "out"
    tokenize(config(tmp_path / "audio", out, small_checkpoint, limit=1), progress=False)
    before = sorted(p.name for p in out.rglob("*.parquet"))
    with pytest.raises(OutputError, match="tokenized with other weights .encoder, semantic_codebook SHA-256"):
        tokenize(config(tmp_path / "audio", out, other), progress=False)
    assert sorted(p.name for p in out.rglob("*.parquet")) == before
