"""Checkpoint resolution (local folder, S3 through a real moto server, Hugging Face cache) and errors."""

from __future__ import annotations

import hashlib
import json
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
from tests.support.audio import make_tone

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
        from tests.support.audio import make_tone
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


# --- the published layout of haoheliu/SemantiCodec ---------------------------------------------

# What the official loader asks the hub for, per (rate, V): `semanticodec_tokenrate_{R}/encoder.ckpt`
# and `/decoder.ckpt`, and the last three parts of `codebook_idx/combine_{512|256|128}_audioset_dominate/
# codebook_{V/2}_0.npy` (downloaded from the repo ROOT). Written out, not derived, on purpose.
PUBLISHED = {
    (100, 4096): ("semanticodec_tokenrate_100/encoder.ckpt", "semanticodec_tokenrate_100/decoder.ckpt", "codebook_idx/combine_512_audioset_dominate/codebook_2048_0.npy"),
    (100, 8192): ("semanticodec_tokenrate_100/encoder.ckpt", "semanticodec_tokenrate_100/decoder.ckpt", "codebook_idx/combine_512_audioset_dominate/codebook_4096_0.npy"),
    (100, 16384): ("semanticodec_tokenrate_100/encoder.ckpt", "semanticodec_tokenrate_100/decoder.ckpt", "codebook_idx/combine_512_audioset_dominate/codebook_8192_0.npy"),
    (100, 32768): ("semanticodec_tokenrate_100/encoder.ckpt", "semanticodec_tokenrate_100/decoder.ckpt", "codebook_idx/combine_512_audioset_dominate/codebook_16384_0.npy"),
    (50, 4096): ("semanticodec_tokenrate_50/encoder.ckpt", "semanticodec_tokenrate_50/decoder.ckpt", "codebook_idx/combine_256_audioset_dominate/codebook_2048_0.npy"),
    (50, 8192): ("semanticodec_tokenrate_50/encoder.ckpt", "semanticodec_tokenrate_50/decoder.ckpt", "codebook_idx/combine_256_audioset_dominate/codebook_4096_0.npy"),
    (50, 16384): ("semanticodec_tokenrate_50/encoder.ckpt", "semanticodec_tokenrate_50/decoder.ckpt", "codebook_idx/combine_256_audioset_dominate/codebook_8192_0.npy"),
    (50, 32768): ("semanticodec_tokenrate_50/encoder.ckpt", "semanticodec_tokenrate_50/decoder.ckpt", "codebook_idx/combine_256_audioset_dominate/codebook_16384_0.npy"),
    (25, 4096): ("semanticodec_tokenrate_25/encoder.ckpt", "semanticodec_tokenrate_25/decoder.ckpt", "codebook_idx/combine_128_audioset_dominate/codebook_2048_0.npy"),
    (25, 8192): ("semanticodec_tokenrate_25/encoder.ckpt", "semanticodec_tokenrate_25/decoder.ckpt", "codebook_idx/combine_128_audioset_dominate/codebook_4096_0.npy"),
    (25, 16384): ("semanticodec_tokenrate_25/encoder.ckpt", "semanticodec_tokenrate_25/decoder.ckpt", "codebook_idx/combine_128_audioset_dominate/codebook_8192_0.npy"),
    (25, 32768): ("semanticodec_tokenrate_25/encoder.ckpt", "semanticodec_tokenrate_25/decoder.ckpt", "codebook_idx/combine_128_audioset_dominate/codebook_16384_0.npy"),
}
PUBLISHED_PATHS = sorted({path for paths in PUBLISHED.values() for path in paths})


def _touch_tree(root: Path, paths) -> Path:
    for relative in paths:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"x")  # verify reads no tensors: any non-empty bytes do
    return root


def test_resolver_asks_for_the_published_paths_of_all_12_variants(tmp_path):
    from pipeline.codecs.semanticodec.checkpoint import verify_checkpoint

    repo = _touch_tree(tmp_path / "repo", PUBLISHED_PATHS)
    for (rate, vocab), (encoder, decoder, codebook) in PUBLISHED.items():
        record = verify_checkpoint(str(repo), rate, vocab, need_decoder=True)
        assert record.layout == "repo"
        assert record.files == {"encoder": encoder, "decoder": decoder, "semantic_codebook": codebook}
        assert record.sizes == {"encoder": 1, "decoder": 1, "semantic_codebook": 1}
        assert (record.revision, record.synthetic) == (None, False)
        # the official single-rate folder (checkpoint_path=): the same names inside one rate's folder
        single = _touch_tree(tmp_path / f"single-{rate}-{vocab}", ["encoder.ckpt", "decoder.ckpt", codebook])
        record = verify_checkpoint(str(single), rate, vocab, need_decoder=True)
        assert record.layout == "single-rate"
        assert record.files == {"encoder": "encoder.ckpt", "decoder": "decoder.ckpt", "semantic_codebook": codebook}


def test_small_builder_writes_exactly_the_published_layout(tmp_path):
    from pipeline.codecs.semanticodec.synthetic import build_small_checkpoint

    root = build_small_checkpoint(tmp_path / "all", token_rates=(100, 50, 25), width=16, depth=1)
    written = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert written == sorted([*PUBLISHED_PATHS, "SYNTHETIC_WEIGHTS.json"])


def _single_rate_folder(repo: Path, target: Path, variant, *, decoder: bool = True) -> Path:
    """One rate's folder as the official checkpoint_path= takes it, made of links into `repo`."""
    paths = variant.files("single-rate", decoder=decoder)
    for role, repo_path in variant.files("repo", decoder=decoder).items():
        link = target / paths[role]
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(repo / repo_path)
    (target / "SYNTHETIC_WEIGHTS.json").symlink_to(repo / "SYNTHETIC_WEIGHTS.json")
    return target


def test_single_rate_folder_loads_and_decodes(small_checkpoint, tmp_path, reference_tokens):
    folder = _single_rate_folder(small_checkpoint, tmp_path / "semanticodec_tokenrate_100", VARIANT)
    codec = SemantiCodec.from_pretrained(str(folder), token_rate=100, semantic_vocab_size=4096)
    assert codec.provenance.to_dict()["layout"] == "single-rate" and codec.is_synthetic
    np.testing.assert_array_equal(codec.encode([make_tone(2.0, seed=7)], 16000)[0], reference_tokens)
    codec.load_decoder()
    assert codec.provenance.files["decoder"].path == str(folder / "decoder.ckpt")


def test_a_folder_of_another_rate_says_so(small_checkpoint, tmp_path):
    rate50 = SemantiCodecVariant(50, 4096)
    folder = _single_rate_folder(small_checkpoint, tmp_path / "r50", rate50)
    with pytest.raises(CheckpointError, match="it holds token rate 50 files, not token rate 100"):
        SemantiCodec.from_pretrained(str(folder), token_rate=100, semantic_vocab_size=4096)
    repo = tmp_path / "repo50"
    for relative in (rate50.encoder_file, rate50.codebook_file):
        (repo / relative).parent.mkdir(parents=True, exist_ok=True)
        (repo / relative).symlink_to(small_checkpoint / relative)
    with pytest.raises(CheckpointError, match="holds token rate 50 files, not token rate 25"):
        SemantiCodec.from_pretrained(str(repo), token_rate=25, semantic_vocab_size=4096)
    with pytest.raises(CheckpointError, match="codebooks are for semantic_vocab_size 4096 only"):
        SemantiCodec.from_pretrained(str(repo), token_rate=50, semantic_vocab_size=8192)


def test_the_error_lists_every_path_tried_in_one_line(tmp_path):
    from pipeline.codecs.semanticodec.checkpoint import verify_checkpoint

    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError) as error:
        verify_checkpoint(str(tmp_path / "empty"), 50, 16384)
    message = str(error.value)
    assert "\n" not in message
    for path in ("semanticodec_tokenrate_50/encoder.ckpt", "codebook_idx/combine_256_audioset_dominate/codebook_8192_0.npy",
                 "the single-rate layout (encoder.ckpt [missing]"):
        assert path in message


def test_the_old_nested_codebook_layout_is_not_taken_silently(small_checkpoint, tmp_path):
    """Codebooks inside the rate folder (this project's old, wrong layout) is no published layout."""
    old = tmp_path / "old"
    (old / VARIANT.folder / "codebook_idx" / VARIANT.kmeans_folder).mkdir(parents=True)
    (old / VARIANT.encoder_file).symlink_to(small_checkpoint / VARIANT.encoder_file)
    (old / VARIANT.folder / VARIANT.codebook_file).symlink_to(small_checkpoint / VARIANT.codebook_file)
    with pytest.raises(CheckpointError, match="not found.*codebook_idx/combine_512_audioset_dominate/codebook_2048_0.npy"):
        SemantiCodec.from_pretrained(str(old), token_rate=100, semantic_vocab_size=4096)


def test_verify_checkpoint_is_a_cheap_preflight(small_checkpoint, tmp_path):
    from pipeline.codecs.semanticodec.checkpoint import verify_checkpoint

    record = verify_checkpoint(str(small_checkpoint), 100, 8192, need_decoder=True)
    assert record.to_dict() == {
        "location": str(small_checkpoint), "variant": "semanticodec-r100-v8192", "layout": "repo",
        "files": SemantiCodecVariant(100, 8192).files(decoder=True),
        "sizes": {role: (small_checkpoint / path).stat().st_size
                  for role, path in SemantiCodecVariant(100, 8192).files(decoder=True).items()},
        "revision": None, "synthetic": True,
    }
    partial = _touch_tree(tmp_path / "partial", [VARIANT.encoder_file, VARIANT.codebook_file])
    verify_checkpoint(str(partial), 100, 4096)  # encoding needs no decoder.ckpt
    with pytest.raises(CheckpointError, match="not found.*semanticodec_tokenrate_100/decoder.ckpt"):
        verify_checkpoint(str(partial), 100, 4096, need_decoder=True)
    (partial / VARIANT.encoder_file).write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.*encoder.ckpt"):
        verify_checkpoint(str(partial), 100, 4096)
    with pytest.raises(CheckpointError, match="applies only to hf://"):
        verify_checkpoint(str(partial), 100, 4096, revision="v1")


def test_hub_revision_is_parsed_from_the_location():
    from pipeline.codecs.semanticodec.checkpoint import CheckpointSource

    source = CheckpointSource("hf://haoheliu/SemantiCodec@refs/pr/3")
    assert (source.repo_id, source.revision, source.pinned_location) == (
        "haoheliu/SemantiCodec", "refs/pr/3", "hf://haoheliu/SemantiCodec@refs/pr/3")
    with pytest.raises(CheckpointError, match="nothing after '@'"):
        CheckpointSource("hf://haoheliu/SemantiCodec@")
    with pytest.raises(CheckpointError, match="also given"):
        CheckpointSource("hf://haoheliu/SemantiCodec@v1", revision="v2")


# --- Hugging Face conventions ------------------------------------------------------------------

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _hf_cache(small_checkpoint: Path, hub: Path, relatives, commit: str = COMMIT) -> Path:
    """A cache entry laid out exactly as huggingface_hub writes it: blobs, snapshot symlinks, refs."""
    repo = hub / "models--haoheliu--SemantiCodec"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    for relative in relatives:
        blob = repo / "blobs" / _sha256(small_checkpoint / relative)
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            shutil.copy(small_checkpoint / relative, blob)
        link = repo / "snapshots" / commit / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return repo


def _run_offline(script: str, env_extra: dict, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGINGFACE_"))}
    env |= {"HF_HUB_OFFLINE": "1", **env_extra}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=cwd)


def test_hf_hub_cache_offline_conventions(small_checkpoint, tmp_path, reference_tokens):
    """`hf://haoheliu/SemantiCodec` with only HF_HUB_CACHE + HF_HUB_OFFLINE=1 set (no cache_dir
    argument, no network): the commit goes into the provenance; `@<rev>` pins a revision; the decoder
    comes from the same commit; nothing is written into the cache entry."""
    relatives = [*VARIANT.files(decoder=True).values(), "SYNTHETIC_WEIGHTS.json"]
    repo = _hf_cache(small_checkpoint, tmp_path / "hub", relatives)
    before = sorted(str(p) for p in repo.rglob("*"))
    script = f"""
        import json, numpy as np
        from pipeline.codecs.semanticodec import SemantiCodec
        from pipeline.codecs.semanticodec.checkpoint import verify_checkpoint
        from pipeline.errors import CheckpointError
        from tests.support.audio import make_tone
        out = {{}}
        codec = SemantiCodec.from_pretrained("hf://haoheliu/SemantiCodec", token_rate=100, semantic_vocab_size=4096)
        np.save({str(tmp_path / "tokens.npy")!r}, codec.encode([make_tone(2.0, seed=7)], 16000)[0])
        codec.load_decoder()
        out["provenance"] = codec.provenance.to_dict()
        out["verify"] = verify_checkpoint("hf://haoheliu/SemantiCodec", 100, 4096, need_decoder=True).to_dict()
        pinned = SemantiCodec.from_pretrained("hf://haoheliu/SemantiCodec@{COMMIT}", token_rate=100, semantic_vocab_size=4096)
        out["pinned_revision"] = pinned.provenance.revision
        for location in ("hf://haoheliu/SemantiCodec@v9", "hf://haoheliu/SemantiCodec"):
            try:
                SemantiCodec.from_pretrained(location, token_rate=50, semantic_vocab_size=4096)
            except CheckpointError as error:
                out.setdefault("errors", []).append(str(error))
        print(json.dumps(out))
        """
    result = _run_offline(script, {"HF_HUB_CACHE": str(tmp_path / "hub")})
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_array_equal(np.load(tmp_path / "tokens.npy"), reference_tokens)
    prov = out["provenance"]
    assert (prov["revision"], prov["layout"], prov["synthetic_weights"]) == (COMMIT, "repo", True)
    assert prov["files"]["decoder"]["path"].endswith(f"snapshots/{COMMIT}/semanticodec_tokenrate_100/decoder.ckpt")
    assert prov["files"]["encoder"]["sha256"] == _sha256(small_checkpoint / VARIANT.encoder_file)
    assert out["verify"]["revision"] == COMMIT and out["verify"]["location"] == f"hf://haoheliu/SemantiCodec@{COMMIT}"
    assert out["pinned_revision"] == COMMIT
    unknown_revision, missing_rate = out["errors"]
    assert "semanticodec_tokenrate_50/encoder.ckpt is not available from hub repo haoheliu/SemantiCodec (revision v9)" in unknown_revision
    assert "HF_HUB_OFFLINE=1" in missing_rate and "it holds token rate 100 files, not token rate 50" in missing_rate
    assert sorted(str(p) for p in repo.rglob("*")) == before  # no sidecar, no lock beside the weights


def test_hf_home_is_honoured(small_checkpoint, tmp_path, reference_tokens):
    _hf_cache(small_checkpoint, tmp_path / "home" / "hub", [VARIANT.encoder_file, VARIANT.codebook_file])
    script = """
        from pipeline.codecs.semanticodec import SemantiCodec
        codec = SemantiCodec.from_pretrained("hf://haoheliu/SemantiCodec", token_rate=100, semantic_vocab_size=4096)
        print(codec.provenance.files["encoder"].path)
        """
    result = _run_offline(script, {"HF_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().startswith(str(tmp_path / "home" / "hub" / "models--haoheliu--SemantiCodec"))


# --- never write beside the weights; sidecars not trusted blindly -----------------------------

def _files_under(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_read_only_checkpoint_folder_loads_and_stays_untouched(ckpt_copy, tmp_path, monkeypatch, reference_tokens):
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(tmp_path / "project-cache"))
    for path in [ckpt_copy, *ckpt_copy.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        before = _files_under(ckpt_copy)
        codec = SemantiCodec.from_pretrained(str(ckpt_copy), token_rate=100, semantic_vocab_size=4096)
        np.testing.assert_array_equal(codec.encode([make_tone(2.0, seed=7)], 16000)[0], reference_tokens)
        codec.load_decoder()
        assert _files_under(ckpt_copy) == before
        assert codec.provenance.files["encoder"].sha256 == _sha256(ckpt_copy / VARIANT.encoder_file)
        assert list((tmp_path / "project-cache" / "hashes").rglob("*.json"))  # the sidecars went here
    finally:
        for path in [ckpt_copy, *ckpt_copy.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


def test_forged_or_stale_hash_sidecars_are_not_trusted(ckpt_copy, tmp_path):
    from pipeline.codecs.semanticodec.file_hashes import sha256_of_file

    cache = tmp_path / "hashes"
    path = ckpt_copy / VARIANT.encoder_file
    real = _sha256(path)
    stat = path.stat()
    # the old place of the sidecar, forged with matching size and mtime: ignored
    (path.parent / "encoder.ckpt.sha256.json").write_text(
        json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": "deadbeef"}))
    assert sha256_of_file(path, cache) == real
    # the cache entry, forged: a wrong value without the file's edge digest is recomputed
    (entry,) = cache.rglob("*.json")
    forged = json.loads(entry.read_text()) | {"sha256": "deadbeef" * 8, "edges": "0" * 64}
    entry.write_text(json.dumps(forged))
    assert sha256_of_file(path, cache) == real
    entry.write_text(json.dumps(forged | {"sha256": "deadbeef"}))
    assert sha256_of_file(path, cache) == real
    # the file rewritten in place with its size and mtime put back: ctime (and the edges) differ
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert sha256_of_file(path, cache) == hashlib.sha256(bytes(data)).hexdigest() != real


def test_a_file_is_hashed_once(ckpt_copy, tmp_path, monkeypatch):
    from pipeline.codecs.semanticodec import file_hashes

    calls = []
    full = file_hashes._full_digest
    monkeypatch.setattr(file_hashes, "_full_digest", lambda p: calls.append(p) or full(p))
    path = ckpt_copy / VARIANT.encoder_file
    first = file_hashes.sha256_of_file(path, tmp_path / "hashes")
    assert file_hashes.sha256_of_file(path, tmp_path / "hashes") == first and len(calls) == 1


# --- unsafe or legacy checkpoint files -------------------------------------------------------

class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_raw_pickle_checkpoint_is_refused_without_running_it(ckpt_copy, tmp_path):
    import pickle

    marker = tmp_path / "code-ran"
    with open(ckpt_copy / VARIANT.encoder_file, "wb") as handle:
        pickle.dump({"audiomae.model.cls_token": _Payload(marker)}, handle)
    with pytest.raises(CheckpointError, match="not a torch zip checkpoint.*re-save the state dict with torch.save") as error:
        SemantiCodec.from_pretrained(str(ckpt_copy), token_rate=100, semantic_vocab_size=4096)
    assert "mmap" not in str(error.value) and not marker.exists()


def test_legacy_torch_format_loads(ckpt_copy, reference_tokens):
    import torch

    path = ckpt_copy / VARIANT.encoder_file
    torch.save(torch.load(path, weights_only=True), path, _use_new_zipfile_serialization=False)
    codec = SemantiCodec.from_pretrained(str(ckpt_copy), token_rate=100, semantic_vocab_size=4096)
    np.testing.assert_array_equal(codec.encode([make_tone(2.0, seed=7)], 16000)[0], reference_tokens)


# --- synthetic checkpoints: one resolver, small decoder for every variant ---------------------

def test_synthetic_locations_resolve_in_one_place(tmp_path, monkeypatch):
    from pipeline.codecs.semanticodec.synthetic import resolve_checkpoint_location

    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(tmp_path / "cache"))
    assert resolve_checkpoint_location("hf://haoheliu/SemantiCodec", 100, 16384) == "hf://haoheliu/SemantiCodec"
    assert resolve_checkpoint_location("s3://b/ckpt", 25, 4096) == "s3://b/ckpt"
    folder = Path(resolve_checkpoint_location("synthetic:small", 25, 32768, with_decoder=True))
    variant = SemantiCodecVariant(25, 32768)
    stamps = {path: (folder / path).stat().st_mtime_ns for path in variant.files(decoder=True).values()}
    assert Path(resolve_checkpoint_location("synthetic:small", 25, 32768, with_decoder=True)) == folder
    assert stamps == {path: (folder / path).stat().st_mtime_ns for path in stamps}  # built once
    assert Path(resolve_checkpoint_location("synthetic:small", 100, 8192)) == folder  # completed in place
    assert (folder / SemantiCodecVariant(100, 8192).codebook_file).is_file()
    with pytest.raises(CheckpointError, match="unknown synthetic checkpoint 'synthetic:tiny'.*synthetic:small or synthetic:golden"):
        resolve_checkpoint_location("synthetic:tiny", 100, 4096)
    with pytest.raises(CheckpointError, match="synthetic:golden exists only for semantic_vocab_size 4096"):
        resolve_checkpoint_location("synthetic:golden", 100, 8192)


def test_parallel_builders_build_once(tmp_path):
    script = """
        import sys
        from pipeline.codecs.semanticodec.synthetic import resolve_checkpoint_location
        print(resolve_checkpoint_location("synthetic:small", 50, 16384, with_decoder=True))
        """
    env = {**os.environ, "PIPELINE_CACHE_DIR": str(tmp_path / "cache")}
    runs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True,
                             env=env, cwd=REPO_ROOT) for _ in range(2)]
    outputs = {run.communicate(timeout=300)[0].strip() for run in runs}
    assert all(run.returncode == 0 for run in runs) and len(outputs) == 1
    folder = Path(outputs.pop())
    codec = SemantiCodec.from_pretrained(str(folder), token_rate=50, semantic_vocab_size=16384)
    assert codec.is_synthetic and not list(folder.rglob("*.partial"))


@pytest.mark.parametrize("rate", [100, 25])
def test_small_checkpoint_decodes_in_seconds(tmp_path, monkeypatch, rate):
    import time

    from pipeline.codecs.semanticodec.decoder import output_samples
    from pipeline.codecs.semanticodec.synthetic import resolve_checkpoint_location

    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(tmp_path / "cache"))
    folder = resolve_checkpoint_location("synthetic:small", rate, 32768, with_decoder=True)
    codec = SemantiCodec.from_pretrained(folder, token_rate=rate, semantic_vocab_size=32768)
    tokens = codec.encode([make_tone(3.0, seed=1)], 16000)[0]
    started = time.perf_counter()
    (wave,) = codec.decode([tokens], ddim_steps=4, seed=0)
    elapsed = time.perf_counter() - started
    assert wave.dtype == np.float32 and wave.shape == (output_samples(len(tokens), codec.variant.stack_factor),)
    assert np.isfinite(wave).all() and 0 < np.abs(wave).max() <= 1
    (again,) = codec.decode([tokens], ddim_steps=4, seed=0)
    np.testing.assert_array_equal(wave, again)
    print(f"r{rate}: small decode of {len(tokens)} tokens at 4 DDIM steps: {elapsed:.1f} s")
