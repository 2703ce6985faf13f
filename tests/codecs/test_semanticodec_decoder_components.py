"""VAE decoder and HiFi-GAN vocoder vs the official outputs on full-size synthetic weights.

The rate-100 decoder.ckpt (~1 GB) is rebuilt bit for bit from the golden manifest once per machine
(cached outside the repo) and memory-mapped once per module. Goldens: items (ii) and (iii) of
"Decoder goldens" in shared/golden/semanticodec/README.md. The reference ran on another CPU, so the
comparison uses atol 1e-4 (README: "UNet, VAE and vocoder component outputs").
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from pipeline.codecs.semanticodec.synthetic import ensure_golden_checkpoint
from pipeline.codecs.semanticodec.vae import VAEDecoder, VAEDecoderConfig
from pipeline.codecs.semanticodec.variants import SemantiCodecVariant
from pipeline.codecs.semanticodec.vocoder import HifiGanConfig, HifiGanVocoder

pytestmark = pytest.mark.golden

ATOL = 1e-4


@pytest.fixture(scope="module")
def decoder_state(golden_dir):
    root = ensure_golden_checkpoint(100, golden_dir=golden_dir, include_decoder=True)
    path = root / SemantiCodecVariant(100, 4096).decoder_file
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    yield state
    del state
    gc.collect()


def _max_abs_diff(actual: torch.Tensor, expected: np.ndarray) -> float:
    return float(np.max(np.abs(actual.numpy().astype(np.float64) - expected.astype(np.float64))))


def test_vae_decode_matches_official(decoder_state, golden_dir):
    vae = VAEDecoder.from_state_dict(decoder_state)
    assert vae.config == VAEDecoderConfig()  # the official AudioLDM 16 kHz / 64-mel VAE
    scale_factor = decoder_state["scale_factor"]
    assert float(scale_factor) == 0.75
    z = torch.from_numpy(np.load(golden_dir / "dec_r100_vae_in_z.npy"))
    expected = np.load(golden_dir / "dec_r100_vae_out_mel.npy")
    with torch.inference_mode():
        mel = vae.decode_latent(z, scale_factor)
    assert mel.dtype == torch.float32 and tuple(mel.shape) == expected.shape == (1, 1, 256, 64)
    diff = _max_abs_diff(mel, expected)
    print(f"VAE decode max|Δ| = {diff:.3g} (|mel| ≤ {np.abs(expected).max():.3g})")
    assert diff <= ATOL


def test_vocoder_matches_official(decoder_state, golden_dir):
    vocoder = HifiGanVocoder.from_state_dict(decoder_state)
    assert vocoder.config == HifiGanConfig()
    mel = torch.from_numpy(np.load(golden_dir / "dec_r100_vocoder_in_mel.npy"))
    expected = np.load(golden_dir / "dec_r100_vocoder_out_wav.npy")
    with torch.inference_mode():
        wave = vocoder(mel)
    assert wave.dtype == torch.float32 and tuple(wave.shape) == expected.shape == (1, 1, 7712)
    diff = _max_abs_diff(wave, expected)
    print(f"vocoder max|Δ| = {diff:.3g} (|wav| ≤ {np.abs(expected).max():.3g})")
    assert diff <= ATOL


def test_official_vocoder_length_rule():
    config = HifiGanConfig()
    assert config.output_length(48) == 7712
    assert config.output_length(1024) == 163872  # its stages: 5121, 20484, 40968, 81936, 163872 samples


def _randomize(module: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("weight") and param.dim() > 1:
                fan_in = param.shape[1] * int(np.prod(param.shape[2:]))
                param.copy_(torch.randn(param.shape, generator=generator) / fan_in**0.5)
            else:
                offset = 1.0 if "norm" in name and name.endswith("weight") else 0.0
                param.copy_(0.02 * torch.randn(param.shape, generator=generator) + offset)


def test_small_vae_is_shape_derived():
    config = VAEDecoderConfig(
        latent_channels=4, z_channels=4, level_channels=(32, 32, 64), blocks_per_level=2
    )
    source = VAEDecoder(config)
    _randomize(source, 0)
    state = {f"first_stage_model.{key}": value for key, value in source.state_dict().items()}
    state["first_stage_model.encoder.conv_in.weight"] = torch.zeros(1)  # unused groups are ignored
    vae = VAEDecoder.from_state_dict(state)
    assert vae.config == config and config.upsampling == 4
    z = torch.randn(2, 4, 8, 4, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        mel = vae.decode_latent(z, 0.5)
        direct = source(z * 2.0)
    assert tuple(mel.shape) == (2, 1, 32, 16) and torch.isfinite(mel).all()
    torch.testing.assert_close(mel, direct)


def test_small_vocoder_is_shape_derived():
    config = HifiGanConfig(initial_channels=32, resblock_kernel_sizes=(3, 5))
    source = HifiGanVocoder(config)
    _randomize(source, 2)
    state = {f"first_stage_model.vocoder.{key}": value for key, value in source.state_dict().items()}
    state["first_stage_model.decoder.conv_in.weight"] = torch.zeros(1)
    vocoder = HifiGanVocoder.from_state_dict(state)
    assert vocoder.config == config
    assert [vocoder.config.stage_channels(s) for s in range(5)] == [16, 8, 4, 2, 1]
    mel = torch.randn(2, 1, 1024, 64, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        wave = vocoder(mel)
        channels_first = vocoder(mel.squeeze(1).transpose(1, 2))
    assert tuple(wave.shape) == (2, 1, 163872) == (2, 1, config.output_length(1024))
    assert torch.isfinite(wave).all() and wave.abs().max() <= 1.0
    torch.testing.assert_close(wave, channels_first, rtol=0, atol=0)
