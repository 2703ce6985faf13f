"""Encoder actors sized from the cluster's nodes (no Ray): every request either fits the nodes with a
CPU left for decoding or is refused in one line; the spec an actor loads is the codec asked for."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.codecs.semanticodec import SemantiCodec
from pipeline.errors import ConfigError
from pipeline.tokenize.cluster import ClusterView, RayNode
from pipeline.tokenize.config import TokenizeConfig
from pipeline.tokenize.encoder_plan import DECODE_CPUS, EncoderResources, EncoderSpec, encoder_resources
from pipeline.tokenize.stages import EncoderActor, batch_to_records, records_to_batch
from tests.support.audio import flac_bytes


def cluster(*cpus: int, gpus: tuple[int, ...] = ()) -> ClusterView:
    gpus = gpus or (0,) * len(cpus)
    return ClusterView(tuple(RayNode(f"n{i}", f"10.0.0.{i}", c, g) for i, (c, g) in enumerate(zip(cpus, gpus, strict=True))), "n0")


def sized(*cpus: int, **settings) -> EncoderResources:
    return encoder_resources(TokenizeConfig(source="x", output="y", **settings), cluster(*cpus))


def refusal(*cpus: int, **settings) -> str:
    with pytest.raises(ConfigError) as error:
        sized(*cpus, **settings)
    return str(error.value)


def placeable(resources: EncoderResources, cpus: list[int]) -> bool:
    """Ray places actors one by one on any node with room: with equal sizes, every order fits the same."""
    per_node = sum(c // resources.cpus_per_actor for c in cpus)
    return per_node >= resources.max_actors and sum(cpus) - resources.max_actors * resources.cpus_per_actor >= 1


def test_gpu_encoders():
    pool = sized(2, num_gpus=(1, 8))
    assert pool == EncoderResources(1, 8, 1, 1, "cuda", None)
    assert pool.gpus_wanted == 8
    assert sized(2, num_gpus=4) == EncoderResources(4, 4, 1, 1, "cuda", None)
    assert sized(2, num_gpus=4, cpus_per_encoder=3) == EncoderResources(4, 4, 1, 3, "cuda", None)
    every_gpu = encoder_resources(TokenizeConfig(source="x", output="y"), cluster(8, 8, gpus=(1, 2)))
    assert every_gpu == EncoderResources(3, 3, 1, 1, "cuda", None)


def test_one_cpu_encoder_on_one_machine_leaves_a_cpu_and_runs_its_threads():
    assert sized(2) == EncoderResources(1, 1, 0, 1, "cpu", 2)  # as before: a 2-core laptop encodes on 2 threads
    assert sized(16) == EncoderResources(1, 1, 0, 15, "cpu", 16)


def test_default_cpu_sizing_is_per_node_never_above_the_largest():
    """Nodes of 1, 2 and 2 CPUs: sizing from the cluster's total asked for 4 CPUs per actor and hung."""
    resources = sized(1, 2, 2)
    assert resources == EncoderResources(1, 1, 0, 2, "cpu", 2)  # a whole 2-CPU node; 3 CPUs left to decode
    assert sized(16, 16) == EncoderResources(1, 1, 0, 16, "cpu", 16)
    assert sized(16, 16, num_cpu_encoders=2).cpus_per_actor == 15  # both nodes full would leave none
    assert sized(8, num_cpu_encoders=3) == EncoderResources(3, 3, 0, 2, "cpu", 2)


@pytest.mark.parametrize("cpus", [(2,), (3,), (1, 2, 2), (4, 1), (16, 16), (8, 2, 2, 2), (1, 1, 1, 1, 1)])
@pytest.mark.parametrize("actors", [1, 2, 3, 4])
def test_default_cpu_sizing_fits_or_refuses(cpus, actors):
    """Whatever the nodes and the actor count: actors that fit with a decode CPU left, or one line."""
    try:
        resources = sized(*cpus, num_cpu_encoders=actors)
    except ConfigError as error:
        assert actors + DECODE_CPUS > sum(cpus), f"refused although {actors} actors of 1 CPU fit: {error}"
        assert "\n" not in str(error)
        return
    assert placeable(resources, list(cpus)), resources
    assert resources.cpus_per_actor <= max(cpus)
    assert resources.torch_threads <= max(cpus)


def test_impossible_cpu_requests_are_refused_in_one_line():
    assert refusal(2, num_cpu_encoders=2) == (
        "2 CPU encoder actor(s) cannot be placed on Ray nodes of 2 CPUs: each takes at least 1 CPU and 1 stays "
        "free for decoding; use --num-cpu-encoders 1 or fewer")
    assert refusal(1) == (
        "1 CPU encoder actor(s) cannot be placed on Ray nodes of 1 CPUs: each takes at least 1 CPU and 1 stays "
        "free for decoding; give Ray at least 2 CPUs (--ray-num-cpus), or pass --num-gpus N where GPU workers "
        "start at zero")
    assert refusal(0).startswith("1 CPU encoder actor(s) cannot be placed on Ray nodes of 0 CPUs")  # a KubeRay head
    assert refusal(1, 2, 2, cpus_per_encoder=4) == (
        "--cpus-per-encoder 4 cannot be placed: the largest Ray node has 2 CPUs (nodes: 1+2+2); use at most 2")
    assert refusal(2, 2, cpus_per_encoder=2, num_cpu_encoders=2) == (
        "2 CPU encoder actor(s) of 2 CPUs cannot be placed on Ray nodes of 2+2 CPUs with 1 CPU left for "
        "decoding: lower --num-cpu-encoders or --cpus-per-encoder")
    assert sized(2, 2, cpus_per_encoder=2) == EncoderResources(1, 1, 0, 2, "cpu", 2)


def test_encoder_actor_loads_the_spec_it_is_given(small_checkpoint):
    """EncoderActor is a plain class: built from an EncoderSpec, it encodes as the codec it names."""
    import io

    import soundfile as sf

    from pipeline.audio.load import load_chunks
    from pipeline.codecs.semanticodec.prepare import prepare_clip
    from pipeline.records import AudioChunk, SourceItem

    spec = EncoderSpec(str(small_checkpoint), 100, 4096, "cpu", "float32", max_batch_windows=2)
    actor = EncoderActor(spec, torch_threads=1)
    codec = SemantiCodec.from_pretrained(str(small_checkpoint), token_rate=100, semantic_vocab_size=4096)
    assert actor.codec.max_batch_windows == 2 and actor.provenance == codec.provenance.to_dict()
    data = flac_bytes(1.5, 3)
    (chunk,) = load_chunks(SourceItem(id="a", uri="mem://a.flac", data=data), chunk_windows=30, max_duration_s=60)
    chunk = AudioChunk(chunk.info, prepare_clip(chunk.waveform, codec.variant).samples)
    (encoded,) = batch_to_records(actor(records_to_batch([chunk])))
    wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    expected = codec.encode([wave.T], rate)[0]
    np.testing.assert_array_equal(np.stack([encoded.semantic, encoded.acoustic], axis=1), expected)
