"""Decoder parity with the official SemantiCodec on full-size synthetic weights, plus the official
DDIM grid, window and length rules."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from pipeline.codecs.semanticodec import SemantiCodec
from pipeline.codecs.semanticodec.decoder import ddim_timesteps, output_samples, split_windows
from pipeline.codecs.semanticodec.synthetic import ensure_golden_checkpoint

RATES = (100, 50, 25)
ATOL = 1e-4  # the reference ran on another CPU; observed differences are ~5e-6


def load_codec(rate: int, golden_dir) -> SemantiCodec:
    root = ensure_golden_checkpoint(rate, golden_dir=golden_dir, include_decoder=True)
    codec = SemantiCodec.from_pretrained(str(root), token_rate=rate, semantic_vocab_size=4096)
    codec.load_decoder()
    return codec


@pytest.fixture(scope="module", params=RATES, ids=lambda rate: f"r{rate}")
def codec(request, golden_dir):
    codec = load_codec(request.param, golden_dir)
    yield codec
    del codec
    gc.collect()


@pytest.fixture(scope="module")
def codec_r100(golden_dir):
    """Rate 100 only, for the goldens that exist at that rate (weights are memory-mapped: cheap)."""
    codec = load_codec(100, golden_dir)
    yield codec
    del codec
    gc.collect()


def golden(golden_dir, name):
    return np.load(golden_dir / name)


def injected_noise(golden_dir, rate, clip, windows):
    draws = [golden(golden_dir, f"dec_r{rate}_full_clip_{clip}_noise_draw{i}.npy")[0] for i in range(5 * windows)]
    return [[np.stack(draws[5 * w : 5 * (w + 1)]) for w in range(windows)]]


@pytest.mark.golden
def test_unet_forward_at_three_timesteps(codec, golden_dir):
    rate = codec.variant.token_rate
    x = torch.from_numpy(golden(golden_dir, f"dec_r{rate}_unet_in_x.npy"))
    context = torch.from_numpy(golden(golden_dir, f"dec_r{rate}_unet_in_context.npy"))
    for t in (999, 500, 1):
        with torch.inference_mode():
            out = codec.load_decoder().unet(x, torch.tensor([t]), context)
        np.testing.assert_allclose(out.numpy(), golden(golden_dir, f"dec_r{rate}_unet_out_t{t}.npy"), rtol=0, atol=ATOL)


@pytest.mark.golden
def test_conditioning_rows_are_exact_lookups(codec, golden_dir):
    rate = codec.variant.token_rate
    tokens = torch.from_numpy(golden(golden_dir, f"tokens_r{rate}_clip_a.npy")[0])
    window = codec.variant.tokens_per_segment
    features = codec.load_decoder().conditioning(tokens, window)[:, :-192].numpy()
    count = len(tokens)
    np.testing.assert_array_equal(features[:4], golden(golden_dir, f"dec_r{rate}_full_clip_a_quantized_feature_rows0-3.npy"))
    straddle = golden(golden_dir, f"dec_r{rate}_full_clip_a_quantized_feature_rows{count - 4}-{count + 3}.npy")
    np.testing.assert_array_equal(features[count - 4 : count + 4], straddle)


@pytest.mark.golden
def test_full_decode_clip_a_with_injected_noise(codec, golden_dir):
    rate = codec.variant.token_rate
    tokens = golden(golden_dir, f"tokens_r{rate}_clip_a.npy")[0]
    (wave,) = codec.decode([tokens], ddim_steps=4, cfg_scale=2.0, noise=injected_noise(golden_dir, rate, "a", 1))
    expected = golden(golden_dir, f"dec_r{rate}_full_clip_a_waveform.npy")[0, 0]
    assert wave.dtype == np.float32 and wave.shape == expected.shape == (61440,)
    np.testing.assert_allclose(wave, expected, rtol=0, atol=ATOL)
    print(f"r{rate} clip a full decode: max |Δ| {np.abs(wave - expected).max():.2e}")


@pytest.mark.golden
def test_full_decode_clip_d_three_windows_rate_100(codec_r100, golden_dir):
    codec = codec_r100
    tokens = golden(golden_dir, "tokens_r100_clip_d.npy")[0]
    (wave,) = codec.decode([tokens], ddim_steps=4, cfg_scale=2.0, noise=injected_noise(golden_dir, 100, "d", 3))
    expected = golden(golden_dir, "dec_r100_full_clip_d_waveform.npy")[0, 0]
    assert wave.shape == expected.shape == (337920,)
    np.testing.assert_allclose(wave, expected, rtol=0, atol=ATOL)


@pytest.mark.golden
def test_seeded_decode_does_not_depend_on_batching(codec_r100, golden_dir):
    codec = codec_r100
    tokens = [golden(golden_dir, "tokens_r100_clip_a.npy")[0], golden(golden_dir, "tokens_r100_clip_d.npy")[0][:600]]
    together = codec.decode(tokens, ddim_steps=2, seed=7, max_batch_windows=8)
    alone = codec.decode(tokens, ddim_steps=2, seed=7, max_batch_windows=1)
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=ATOL)
    assert [len(w) for w in together] == [61440, 192000]


@pytest.mark.golden
def test_decoder_from_a_single_rate_folder(golden_dir, tmp_path):
    """decoder.ckpt is taken from the layout the encoder came from (here: links forming the official
    single-rate folder) and gives the golden UNet output."""
    from pipeline.codecs.semanticodec import SemantiCodecVariant

    root = ensure_golden_checkpoint(100, golden_dir=golden_dir, include_decoder=True)
    variant = SemantiCodecVariant(100, 4096)
    single = variant.files("single-rate", decoder=True)
    for role, repo_path in variant.files("repo", decoder=True).items():
        (tmp_path / single[role]).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / single[role]).symlink_to(root / repo_path)
    codec = SemantiCodec.from_pretrained(str(tmp_path), token_rate=100, semantic_vocab_size=4096)
    decoder = codec.load_decoder()
    assert codec.provenance.layout == "single-rate"
    assert codec.provenance.files["decoder"].path == str(tmp_path / "decoder.ckpt")
    x = torch.from_numpy(golden(golden_dir, "dec_r100_unet_in_x.npy"))
    context = torch.from_numpy(golden(golden_dir, "dec_r100_unet_in_context.npy"))
    with torch.inference_mode():
        out = decoder.unet(x, torch.tensor([500]), context)
    np.testing.assert_allclose(out.numpy(), golden(golden_dir, "dec_r100_unet_out_t500.npy"), rtol=0, atol=ATOL)


@pytest.mark.golden
def test_bad_tokens_are_refused(codec):
    vocab = codec.variant.semantic_vocab_size
    with pytest.raises(ValueError, match=r"semantic ids must be in \[0, 4096\)"):
        codec.decode([np.array([[vocab, 0]])], ddim_steps=1)
    with pytest.raises(ValueError, match=r"acoustic ids must be in \[0, 8192\)"):
        codec.decode([np.array([[0, -1]])], ddim_steps=1)
    with pytest.raises(ValueError, match="non-empty"):
        codec.decode([np.zeros((0, 2), np.int64)], ddim_steps=1)
    with pytest.raises(ValueError, match="noise arrays must be"):
        codec.decode([np.zeros((4, 2), np.int64)], ddim_steps=4, noise=[[np.zeros((2, 8, 256, 16), np.float32)]])


def test_ddim_grid_matches_official_and_survives_its_crashing_counts():
    np.testing.assert_array_equal(ddim_timesteps(4), [1, 251, 501, 751])
    np.testing.assert_array_equal(ddim_timesteps(50), np.arange(1, 1000, 20))
    assert len(ddim_timesteps(6)) == 7  # the official grid gives 7 steps for 6, kept for parity
    np.testing.assert_array_equal(ddim_timesteps(3), [1, 334, 667])  # official: IndexError on step 1000
    assert len(ddim_timesteps(9)) == 9 and ddim_timesteps(9).max() < 1000
    with pytest.raises(ValueError):
        ddim_timesteps(0)


def test_window_split_and_output_length_rules():
    assert split_windows(600, 512) == [(0, 512), (480, 600)]
    assert split_windows(512, 512) == [(0, 512)]
    assert split_windows(513, 512) == [(0, 512), (480, 513)]
    assert split_windows(1056, 512) == [(0, 512), (480, 992), (960, 1056)]
    assert output_samples(600, 1.0) == 192000
    assert output_samples(803, 1.0) == 803 * 320 - 1  # the official float expression truncates
