"""Shared fixtures: golden data location, generated audio, small synthetic checkpoints, embedded Ray."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.codecs.semanticodec.synthetic import build_small_checkpoint, default_golden_dir


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    path = default_golden_dir()
    assert (path / "RECIPE.md").is_file(), f"golden vectors not found at {path} (set SEMANTICODEC_GOLDEN_DIR)"
    return path


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    """Small synthetic encoders for every rate, codebooks for V = 4096 and 8192."""
    root = tmp_path_factory.mktemp("small-ckpt")
    return build_small_checkpoint(root, token_rates=(100, 50, 25), semantic_vocab_sizes=(4096, 8192))


@pytest.fixture(scope="session")
def ray_local():
    import os

    import ray

    from tests.support.s3 import S3_ENV

    for key, value in S3_ENV.items():  # fake credentials for moto, inherited by Ray's workers
        os.environ.setdefault(key, value)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
