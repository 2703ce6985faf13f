"""What the encode stage runs: the codec each encoder actor loads (`EncoderSpec`) and how many actors
there are, with which Ray resources (`EncoderResources`), sized from the cluster's nodes. Plain
values: built on the driver, handed to the actors as they are, testable without Ray.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from ..codecs.semanticodec.variants import Dtype
from ..errors import ConfigError
from .cluster import ClusterView
from .config import TokenizeConfig

log = logging.getLogger(__name__)

DECODE_CPUS = 1  # CPUs the CPU encoder actors always leave free: decode and write tasks need one to run


@dataclass(frozen=True, slots=True)
class EncoderSpec:
    """The codec an encoder actor loads: the weights (resolved location), the variant, the device
    and numerics, the windows per forward pass."""

    checkpoint: str
    token_rate: int
    semantic_vocab_size: int
    device: Literal["cuda", "cpu"]
    dtype: Dtype
    max_batch_windows: int
    storage_options: dict | None = None  # fsspec options for the checkpoint's protocol

    def load(self):
        """The SemantiCodec this spec describes (a `CheckpointError` if the weights do not fit)."""
        from ..codecs.semanticodec import SemantiCodec

        return SemantiCodec.from_pretrained(self.checkpoint, self.token_rate, self.semantic_vocab_size,
                                            device=self.device, dtype=self.dtype,
                                            max_batch_windows=self.max_batch_windows,
                                            storage_options=self.storage_options)


@dataclass(frozen=True, slots=True)
class EncoderResources:
    """The encoder actor pool: `min_actors`..`max_actors` actors, each reserving `gpus_per_actor` GPUs
    and `cpus_per_actor` CPUs from Ray, running `torch_threads` threads (None: torch's default)."""

    min_actors: int
    max_actors: int
    gpus_per_actor: int
    cpus_per_actor: int
    device: Literal["cuda", "cpu"]
    torch_threads: int | None

    @property
    def gpus_wanted(self) -> int:
        return self.max_actors * self.gpus_per_actor


def encoder_resources(config: TokenizeConfig, cluster: ClusterView) -> EncoderResources:
    """One GPU actor per GPU (`--num-gpus`, default every GPU present), else CPU actors sized per node.
    Raises ConfigError for CPU actors that cannot be placed."""
    cpus = config.cpus_per_encoder or 1
    if isinstance(config.num_gpus, tuple):  # an autoscaling actor pool of min..max GPU encoders
        low, high = config.num_gpus
        return EncoderResources(low, high, 1, cpus, "cuda", None)
    gpus = cluster.gpus if config.num_gpus is None else config.num_gpus
    if gpus > 0:
        return EncoderResources(gpus, gpus, 1, cpus, "cuda", None)
    log.warning("no GPU in the cluster now: encoding on CPU actors. On an autoscaling cluster whose GPU "
                "workers start at zero, pass --num-gpus N to request N GPU encoder actors.")
    return cpu_encoder_resources(config.num_cpu_encoders, config.cpus_per_encoder, cluster.node_cpus)


def cpu_encoder_resources(actors: int, cpus_per_actor: int | None, node_cpus: list[int]) -> EncoderResources:
    """`actors` CPU encoder actors on nodes with `node_cpus` CPUs. Each actor must fit on one node and
    `DECODE_CPUS` stay free, or the pool waits forever for CPUs that no node has or the decode tasks
    never run. Default size: the most CPUs per actor that fit (the LSTM is memory-bound: one actor
    with all of a node's cores beats several with one each). A single actor runs one torch thread
    more than it reserves where every node it fits on has that CPU spare: decode tasks are light
    and interleave with its threads."""
    total, largest = sum(node_cpus), max(node_cpus, default=0)
    shape = "+".join(str(c) for c in node_cpus) or "0"

    def fits(cpus: int) -> bool:
        return sum(c // cpus for c in node_cpus) >= actors and total - actors * cpus >= DECODE_CPUS

    if cpus_per_actor is not None:
        if cpus_per_actor > largest:
            raise ConfigError(f"--cpus-per-encoder {cpus_per_actor} cannot be placed: the largest Ray node "
                              f"has {largest} CPUs (nodes: {shape}); use at most {largest}")
        if not fits(cpus_per_actor):
            raise ConfigError(
                f"{actors} CPU encoder actor(s) of {cpus_per_actor} CPUs cannot be placed on Ray nodes of "
                f"{shape} CPUs with {DECODE_CPUS} CPU left for decoding: lower --num-cpu-encoders or "
                "--cpus-per-encoder")
        return EncoderResources(actors, actors, 0, cpus_per_actor, "cpu", cpus_per_actor)
    size = next((cpus for cpus in range(largest, 0, -1) if fits(cpus)), None)
    if size is None:
        most = max(total - DECODE_CPUS, 0)
        hint = (f"use --num-cpu-encoders {most} or fewer" if most else "give Ray at least 2 CPUs "
                "(--ray-num-cpus), or pass --num-gpus N where GPU workers start at zero")
        raise ConfigError(f"{actors} CPU encoder actor(s) cannot be placed on Ray nodes of {shape} CPUs: "
                          f"each takes at least 1 CPU and {DECODE_CPUS} stays free for decoding; {hint}")
    spare = actors == 1 and all(c > size for c in node_cpus if c >= size)
    return EncoderResources(actors, actors, 0, size, "cpu", size + 1 if spare else size)
