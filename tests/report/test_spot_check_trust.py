"""The spot check reaches only the corpus (issue 21): a corpus, on the moto S3 server or local, whose
`uri` column names a private local file, a local tar member, chained URLs or a canary HTTP server,
and whose provenance names attacker weights. No original outside the URI rule is read or embedded,
the canary server sees no request, no weights are fetched; the user's --checkpoint, an allowed
prefix, or the corpus's own checkpoint after its SHA-256 check are used."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.codecs.semanticodec.checkpoint import encoder_file_hashes
from pipeline.codecs.semanticodec.lengths import row_token_count
from pipeline.codecs.semanticodec.variants import ACOUSTIC_VOCAB_SIZE
from pipeline.output.folder import OutputFolder, tokens_table
from pipeline.report.config import SpotCheckConfig
from pipeline.report.decode import DecodeOutcome, DecodeResult
from pipeline.report.spot_check import run_spot_check
from tests.support.audio import make_tone, wav_bytes
from tests.support.canary import CanaryServer, hostile_uris, write_canary_file, write_canary_tar

RATE, VOCAB = 100, 4096


def provenance(checkpoint: str, hashes: dict | None = None) -> dict:
    hashes = hashes or {"encoder": "e" * 64, "semantic_codebook": "c" * 64}
    return {"codec": "semanticodec", "variant": f"semanticodec-r{RATE}-v{VOCAB}", "token_rate": RATE,
            "semantic_vocab_size": VOCAB, "acoustic_vocab_size": ACOUSTIC_VOCAB_SIZE, "checkpoint": checkpoint,
            "synthetic_weights": True, "files": {k: {"path": k, "sha256": v} for k, v in hashes.items()}}


def rows_for(uris: dict[str, str]) -> list[dict]:
    rows = []
    for n, (id, uri) in enumerate(uris.items()):
        frames = row_token_count(1.0, 0, 1, RATE)
        rng = np.random.default_rng(n)
        rows.append({"id": id, "uri": uri, "chunk_index": 0, "num_chunks": 1, "chunk_start_s": 0.0, "duration_s": 1.0,
                     "source_start_s": 0.0, "source_end_s": 1.0, "source_sample_rate": 16000, "source_channels": 1,
                     "num_frames": frames, "semantic": rng.integers(0, VOCAB, frames).astype(np.uint16),
                     "acoustic": rng.integers(0, ACOUSTIC_VOCAB_SIZE, frames).astype(np.uint16)})
    return rows


class RecordingDecoder:
    """An injected decode function that records the checkpoint it was asked to load."""

    def __init__(self) -> None:
        self.checkpoints: list[str | None] = []

    def __call__(self, spec, requests, progress=None) -> DecodeOutcome:
        self.checkpoints.append(spec.checkpoint)
        return DecodeOutcome({r.index: DecodeResult(make_tone(len(r.tokens) / (RATE / 2))[0], "ok", None, 0.0)
                              for r in requests}, in_process=False)


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_a_corpus_on_s3_reaches_no_local_file_no_server_and_no_weights(tmp_path, monkeypatch, isolated_cache):
    import s3fs

    from tests.support.s3 import S3_ENV, MotoServer

    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    canary_file = write_canary_file(tmp_path / "home")
    canary_tar = write_canary_tar(tmp_path / "home")
    with CanaryServer() as canary, MotoServer() as endpoint:
        options = {"s3": {"endpoint_url": endpoint}}
        s3 = s3fs.S3FileSystem(endpoint_url=endpoint)
        s3.mkdir("qa-trust")
        good = make_tone(1.0, seed=3)[0]
        buffer = io.BytesIO()
        sf.write(buffer, good, 16000, format="WAV")
        s3.pipe_file("qa-trust/clips/good.wav", buffer.getvalue())
        for name in ("encoder.pt", "semantic_codebook.pt", "decoder.pt"):
            s3.pipe_file(f"qa-trust/attacker-weights/{name}", b"not weights")
        uris = {**hostile_uris(canary_file, canary_tar, canary.url), "good": "s3://qa-trust/clips/good.wav",
                "other_prefix": "s3://qa-trust/attacker-weights/encoder.pt"}
        out = OutputFolder("s3://qa-trust/tokens", options)
        for checkpoint in ("s3://qa-trust/attacker-weights", f"{canary.url}/weights"):
            out.write_shard("tokens", tokens_table(rows_for(uris)), provenance(checkpoint))
            decoder = RecordingDecoder()
            report_dir = tmp_path / f"report-{len(checkpoint)}"
            config = SpotCheckConfig(tokens="s3://qa-trust/tokens", report=str(report_dir), samples=len(uris),
                                     s3_endpoint_url=endpoint, allow_uri_prefix=["s3://qa-trust/clips/"])
            report = run_spot_check(config, decode_fn=decoder, progress=False)
            assert decoder.checkpoints == []  # nothing decoded with weights the corpus names
            flags = {f["kind"]: f for f in report["flags"]}
            assert "the URI rule" in flags["codec_unavailable"]["message"] and "--checkpoint" in flags["codec_unavailable"]["message"]
            picks = {s["id"]: s for s in report["samples"]}
            assert picks["good"]["original"]["available"] is True
            for id, pick in picks.items():
                if id != "good":
                    assert pick["original"]["available"] is False and pick["audio"]["original"] is None, id
            assert report["uris"]["outside_rule_rows"] == len(uris) - 2  # the tar:// one is an archive member uri
            # the one audio file in the report is the allowed original (nothing was decoded)
            assert sorted(p.name for p in (report_dir / "audio").iterdir()) == [
                Path(picks["good"]["audio"]["original"]).name]
            out.clear()
        assert canary.requests == []
    assert not list(isolated_cache.rglob("*.pt"))  # no weights were fetched into the shared cache


def test_a_local_corpus_reaches_only_its_folder_and_the_allowed_prefixes(tmp_path, isolated_cache, small_checkpoint):
    canary_file = write_canary_file(tmp_path / "home")
    canary_tar = write_canary_tar(tmp_path / "home")
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "good.wav").write_bytes(wav_bytes(1.0))
    (tmp_path / "corpus" / "own").mkdir(parents=True)
    (tmp_path / "corpus" / "own" / "inside.wav").write_bytes(wav_bytes(1.0))
    with CanaryServer() as canary:
        uris = {**hostile_uris(canary_file, canary_tar, canary.url), "good": str(clips / "good.wav"),
                "inside": "own/inside.wav"}
        out = OutputFolder(str(tmp_path / "corpus"))
        hashes = encoder_file_hashes(str(small_checkpoint), RATE, VOCAB)
        out.write_shard("tokens", tokens_table(rows_for(uris)), provenance(str(small_checkpoint), hashes))

        def check(**extra):
            decoder = RecordingDecoder()
            config = SpotCheckConfig(tokens=str(tmp_path / "corpus"), report=str(tmp_path / "report"),
                                     samples=len(uris), **extra)
            report = run_spot_check(config, decode_fn=decoder, progress=False)
            available = {s["id"] for s in report["samples"] if s["original"]["available"]}
            return report, decoder.checkpoints, available

        # by default: only the corpus folder; the recorded checkpoint is outside it
        report, checkpoints, available = check()
        assert checkpoints == [] and available == {"inside"}
        assert "outside the corpus folder" in {f["kind"]: f for f in report["flags"]}["codec_unavailable"]["message"]
        # the user's --checkpoint is used as given; --allow-uri-prefix opens one more folder, nothing else
        report, checkpoints, available = check(checkpoint="synthetic:small", allow_uri_prefix=[str(clips)])
        assert checkpoints == ["synthetic:small"] and available == {"inside", "good"}
        # the corpus's own checkpoint, once allowed, is used only when its files have the recorded SHA-256s
        report, checkpoints, _ = check(allow_uri_prefix=[str(small_checkpoint)])
        assert checkpoints == [str(small_checkpoint)]
        out.clear()
        out.write_shard("tokens", tokens_table(rows_for(uris)), provenance(str(small_checkpoint)))
        report, checkpoints, _ = check(allow_uri_prefix=[str(small_checkpoint)])
        assert checkpoints == [] and "SHA-256" in {f["kind"]: f for f in report["flags"]}["codec_unavailable"]["message"]
    assert canary.requests == []
