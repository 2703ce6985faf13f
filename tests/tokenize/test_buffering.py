"""How much decoded audio Ray Data holds ahead of the encoder (`run.bound_buffers`): a long file's
chunks flow with backpressure instead of sitting in the object store whole."""

from __future__ import annotations

import time

import numpy as np

from pipeline.codecs.semanticodec.variants import SEGMENT_SAMPLES
from pipeline.tokenize.config import TokenizeConfig
from pipeline.tokenize.run import BUFFERED_BATCHES, bound_buffers

ROWS = 48


def rows_ahead_of_a_slow_encoder(ray, log_path, bounded: bool, chunk_windows: int = 1, batch_rows: int = 2) -> int:
    """One decode task yields ROWS chunk-sized rows; one actor takes `batch_rows` at a time, slowly.
    Returns the most rows ever produced and not yet consumed."""
    row_samples = (chunk_windows + 1) * SEGMENT_SAMPLES  # a prepared chunk

    class LongFile:  # the decode task of one long input
        def __call__(self, row):
            for index in range(ROWS):
                with open(log_path, "a") as log:
                    log.write(f"P {time.monotonic()}\n")
                yield {"index": index, "waveform": np.zeros(row_samples, np.float32)}

    class SlowEncoder:
        def __call__(self, batch):
            time.sleep(0.1)
            with open(log_path, "a") as log:
                log.writelines(f"C {time.monotonic()}\n" for _ in batch["index"])
            return {"index": batch["index"]}

    log_path.write_text("")
    ds = ray.data.from_items([{"unit": 0}])
    if bounded:
        bound_buffers(ds.context, TokenizeConfig(output="unused", chunk_windows=chunk_windows),
                      encoders=1, batch_rows=batch_rows)
    ds = ds.flat_map(LongFile()).map_batches(
        SlowEncoder, batch_size=batch_rows, compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1)
    assert sorted(row["index"] for row in ds.iter_rows()) == list(range(ROWS))
    events = sorted((float(when), kind) for kind, when in (line.split() for line in log_path.read_text().splitlines()))
    ahead = most = 0
    for _, kind in events:
        ahead += 1 if kind == "P" else -1
        most = max(most, ahead)
    return most


def test_a_long_files_chunks_wait_for_the_encoder_in_bounded_numbers(ray_local, tmp_path):
    """Unbounded, Ray Data decodes the whole file ahead of a slow encoder (a 6 h file: 1.4 GB in the
    object store); bounded, at most about BUFFERED_BATCHES batches (here 3 x 2 rows) plus the
    decode task's own 2-block generator buffer wait, and every row still arrives."""
    bounded = rows_ahead_of_a_slow_encoder(ray_local, tmp_path / "bounded.log", bounded=True)
    unbounded = rows_ahead_of_a_slow_encoder(ray_local, tmp_path / "unbounded.log", bounded=False)
    print(f"rows ahead of the encoder: {bounded} bounded, {unbounded} unbounded (of {ROWS})")
    assert bounded <= 2 * BUFFERED_BATCHES * 2 + 4
    assert unbounded > 2 * bounded  # the unbounded run shows what the bound prevents


def test_the_bound_is_sized_by_the_longest_rows_and_the_encoders():
    class Context:  # the two DataContext fields bound_buffers sets
        target_max_block_size = 128 << 20

        class execution_options:
            from ray.data import ExecutionResources

            resource_limits = ExecutionResources()

    context = Context()
    bound_buffers(context, TokenizeConfig(output="unused"), encoders=4, batch_rows=16)
    chunk = 31 * SEGMENT_SAMPLES * 4  # 30 windows + the padding window, float32
    assert context.target_max_block_size == chunk
    assert context.execution_options.resource_limits.object_store_memory == 4 * BUFFERED_BATCHES * 16 * chunk
    bound_buffers(context, TokenizeConfig(output="unused", resample_on="encoder"), encoders=1, batch_rows=16)
    assert context.execution_options.resource_limits.object_store_memory == BUFFERED_BATCHES * 16 * chunk * 8
