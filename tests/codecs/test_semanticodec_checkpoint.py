"""Checkpoint resolution (local folder, S3 through a real moto server, Hugging Face cache) and errors."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pipeline.codecs.semanticodec import SemantiCodec, SemantiCodecVariant
from pipeline.errors import CheckpointError
from tests.conftest import make_tone

VARIANT = SemantiCodecVariant(100, 4096)
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def ckpt_copy(small_checkpoint, tmp_path) -> Path:
    """A private copy of the small checkpoint that a test may damage."""
    return Path(shutil.copytree(small_checkpoint, tmp_path / "ckpt"))


@pytest.fixture(scope="module")
def reference_tokens(small_checkpoint):
    codec = SemantiCodec.from_pretrained(str(small_checkpoint), token_rate=100, semantic_vocab_size=4096)
    return codec.encode([make_tone(2.0, seed=7)], 16000)[0]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_local_folder_records_hashes_and_synthetic_flag(small_checkpoint):
    codec = SemantiCodec.from_pretrained(str(small_checkpoint), token_rate=100, semantic_vocab_size=4096)
    prov = codec.provenance.to_dict()
    assert prov["synthetic_weights"] is True and codec.is_synthetic
    assert prov["variant"] == "semanticodec-r100-v4096"
    assert set(prov["files"]) == {"encoder", "semantic_codebook"}  # the decoder is never read
    for name, relative in (("encoder", VARIANT.encoder_file), ("semantic_codebook", VARIANT.codebook_file)):
        assert prov["files"][name]["sha256"] == _sha256(small_checkpoint / relative)


def test_encoding_never_reads_the_decoder(ckpt_copy, reference_tokens):
    (ckpt_copy / VARIANT.decoder_file).write_bytes(b"not a checkpoint")  # would fail to load
    codec = SemantiCodec.from_pretrained(str(ckpt_copy), token_rate=100, semantic_vocab_size=4096)
    np.testing.assert_array_equal(codec.encode([make_tone(2.0, seed=7)], 16000)[0], reference_tokens)


def test_missing_file(ckpt_copy):
    with pytest.raises(CheckpointError, match="not found.*codebook_16384_0.npy"):  # only 4096/8192 built
        SemantiCodec.from_pretrained(str(ckpt_copy), token_rate=100, semantic_vocab_size=32768)
    (ckpt_copy / VARIANT.encoder_file).unlink()
    with pytest.raises(CheckpointError, match="not found.*encoder.ckpt"):
        SemantiCodec.from_pretrained(str(ckpt_copy), token_rate=100, semantic_vocab_size=4096)


def test_truncated_checkpoint(ckpt_copy):
    path = ckpt_copy / VARIANT.encoder_file
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        SemantiCodec.from_pretrained(str(ckpt_copy), token_rate=100, semantic_vocab_size=4096)


def test_wrong_variant(ckpt_copy):
    rate50 = SemantiCodecVariant(50, 4096)
    shutil.copy(ckpt_copy / rate50.encoder_file, ckpt_copy / VARIANT.encoder_file)
    with pytest.raises(CheckpointError, match="not the semanticodec-r100-v4096 variant.*token rate 50"):
        SemantiCodec.from_pretrained(str(ckpt_copy), token_rate=100, semantic_vocab_size=4096)


def test_codebook_of_the_wrong_size(ckpt_copy):
    shutil.copy(ckpt_copy / SemantiCodecVariant(100, 8192).codebook_file, ckpt_copy / VARIANT.codebook_file)
    with pytest.raises(CheckpointError, match="8192 rows; the variant expects 4096"):
        SemantiCodec.from_pretrained(str(ckpt_copy), token_rate=100, semantic_vocab_size=4096)


def test_unexpected_and_missing_keys(ckpt_copy):
    import torch

    path = ckpt_copy / VARIANT.encoder_file
    state = torch.load(path, weights_only=True)
    torch.save({**state, "decoder.some_layer.weight": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="unexpected keys.*decoder.some_layer.weight"):
        SemantiCodec.from_pretrained(str(ckpt_copy), token_rate=100, semantic_vocab_size=4096)
    del state["audiomae.model.blocks.1.attn.qkv.weight"]
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="missing encoder tensors audiomae.model.blocks.1.attn.qkv.weight"):
        SemantiCodec.from_pretrained(str(ckpt_copy), token_rate=100, semantic_vocab_size=4096)


def test_unknown_variant_is_a_value_error(small_checkpoint):
    with pytest.raises(ValueError, match="token_rate must be one of"):
        SemantiCodec.from_pretrained(str(small_checkpoint), token_rate=75, semantic_vocab_size=4096)
    with pytest.raises(ValueError, match="semantic_vocab_size must be one of"):
        SemantiCodec.from_pretrained(str(small_checkpoint), token_rate=100, semantic_vocab_size=1000)


@pytest.fixture()
def s3_server():
    """A real S3 HTTP API on 127.0.0.1 (moto's server), torn down after the test."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_fsspec_url_on_s3(small_checkpoint, s3_server, tmp_path, monkeypatch, reference_tokens):
    import s3fs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    options = {"endpoint_url": s3_server}
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir("weights")
    for relative in (VARIANT.encoder_file, VARIANT.codebook_file, "SYNTHETIC_WEIGHTS.json"):
        fs.put_file(str(small_checkpoint / relative), f"weights/release/{relative}")
    codec = SemantiCodec.from_pretrained(
        "s3://weights/release", token_rate=100, semantic_vocab_size=4096,
        cache_dir=str(tmp_path / "cache"), storage_options=options,
    )
    assert codec.is_synthetic
    assert codec.provenance.files["encoder"].sha256 == _sha256(small_checkpoint / VARIANT.encoder_file)
    np.testing.assert_array_equal(codec.encode([make_tone(2.0, seed=7)], 16000)[0], reference_tokens)
    with pytest.raises(CheckpointError, match="not found: s3://weights/release/semanticodec_tokenrate_50"):
        SemantiCodec.from_pretrained("s3://weights/release", token_rate=50, semantic_vocab_size=4096,
                                     cache_dir=str(tmp_path / "cache"), storage_options=options)


def test_hugging_face_hub_layout_from_its_cache(small_checkpoint, tmp_path, reference_tokens):
    """The hub path runs hf_hub_download for real; offline, it resolves the files from a cache laid
    out exactly as the hub client writes it (no network here)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--haoheliu--SemantiCodec"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    for relative in (VARIANT.encoder_file, VARIANT.codebook_file, "SYNTHETIC_WEIGHTS.json"):
        blob = repo / "blobs" / _sha256(small_checkpoint / relative)
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(small_checkpoint / relative, blob)
        link = repo / "snapshots" / commit / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    script = textwrap.dedent(
        f"""
        import json, numpy as np
        from pipeline.codecs.semanticodec import SemantiCodec
        from pipeline.errors import CheckpointError
        from tests.conftest import make_tone
        codec = SemantiCodec.from_pretrained("hf://haoheliu/SemantiCodec", token_rate=100,
                                             semantic_vocab_size=4096, cache_dir={str(tmp_path / "hub")!r})
        np.save({str(tmp_path / "tokens.npy")!r}, codec.encode([make_tone(2.0, seed=7)], 16000)[0])
        try:
            SemantiCodec.from_pretrained("hf://haoheliu/SemantiCodec", token_rate=25,
                                         semantic_vocab_size=4096, cache_dir={str(tmp_path / "hub")!r})
        except CheckpointError as error:
            print("ERROR", error)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300, cwd=REPO_ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "tokens.npy"), reference_tokens)
    assert "ERROR semanticodec_tokenrate_25/encoder.ckpt is not available from hub repo haoheliu/SemantiCodec" in result.stdout
