"""The Ray cluster as the driver sees it when a run starts: its live nodes with their CPUs and GPUs,
and which node the driver is on. A run's read, encode and write work goes to whichever node Ray
picks, so a local path is only safe where every node sees it: `check_cluster_paths` refuses the
others once Ray is up and before any work, asking each node (`missing_on_nodes`) under --shared-fs.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..fsutil import is_local_url, url_to_fs
from ..output.folder import TMP_DIR
from ..sources.work_list import WorkList
from .config import TokenizeConfig

PROBE_TIMEOUT_S = 120.0  # a node starts a worker process for the probe: seconds, more on a busy node


@dataclass(frozen=True, slots=True)
class RayNode:
    node_id: str
    address: str
    cpus: int
    gpus: int


@dataclass(frozen=True, slots=True)
class ClusterView:
    nodes: tuple[RayNode, ...]  # the live ones
    driver_node_id: str

    @classmethod
    def current(cls) -> ClusterView:
        """The cluster the driver is connected to (`ray.init` has run)."""
        import ray

        nodes = tuple(RayNode(node_id=n["NodeID"], address=n.get("NodeManagerAddress", "?"),
                              cpus=int(n["Resources"].get("CPU", 0)), gpus=int(n["Resources"].get("GPU", 0)))
                      for n in ray.nodes() if n["Alive"])
        return cls(nodes, ray.get_runtime_context().get_node_id())

    @property
    def node_cpus(self) -> list[int]:
        return [node.cpus for node in self.nodes]

    @property
    def gpus(self) -> int:
        return sum(node.gpus for node in self.nodes)

    def work_off_the_driver(self, gpus_wanted: int) -> str | None:
        """Why the run's tasks and actors may run on another node than the driver's (None: they
        cannot). Nodes that an autoscaler adds later count too: a head that offers no CPU (as the
        heads of the KubeRay specs and the AWS cluster config) leaves all the work to workers, and GPU
        encoders that the cluster cannot hold now make the autoscaler add nodes."""
        if len(self.nodes) > 1:
            return f"this Ray cluster has {len(self.nodes)} nodes"
        driver = next((n for n in self.nodes if n.node_id == self.driver_node_id), None)
        if driver is None or driver.cpus == 0:
            return "the driver's Ray node offers no CPU, so the work runs on other nodes"
        if gpus_wanted > self.gpus:
            return (f"the run asks for {gpus_wanted} GPU encoders and the cluster has {self.gpus} GPUs now, "
                    "so they run on nodes that join later")
        return None


def missing_on_nodes(paths: list[str], cluster: ClusterView,
                     timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, list[str]]:
    """Node address → the `paths` that node cannot see (absolute local paths); a node that does not
    answer within `timeout_s` misses them all. Empty when every node sees every path."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=0)(missing_here)
    refs = {probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False)
                          ).remote(paths): node for node in cluster.nodes}
    ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
    missing = {refs[ref].address: list(paths) for ref in late}
    for ref in late:
        ray.cancel(ref, force=True)
    for ref in ready:
        try:
            unseen = ray.get(ref)
        except ray.exceptions.RayError:  # the node died or could not start a worker: it saw nothing
            unseen = list(paths)
        if unseen:
            missing[refs[ref].address] = unseen
    return missing


def missing_here(paths: list[str]) -> list[str]:
    """Runs on each node: the paths it does not see."""
    return [path for path in paths if not os.path.exists(path)]


def check_cluster_paths(config: TokenizeConfig, cluster: ClusterView, gpus_wanted: int, checkpoint: str,
                        units: WorkList | None = None) -> None:
    """A local path works only if every node that runs the work sees it. Where the work may leave
    the driver's node, a local path is refused unless --shared-fs declares it shared, and then every
    live node must see it: a path that only the driver sees would turn existing inputs into missing
    ones and write shards to the workers' own disks. Nodes added later are trusted to mount the same."""
    reason = cluster.work_off_the_driver(gpus_wanted)
    paths = node_local_paths(config, checkpoint, units) if reason else []
    if not paths:
        return
    if not config.shared_fs:
        what, path = paths[0]
        raise ConfigError(
            f"{what} {path} is a local path, but {reason} and the run reads, encodes and writes on any of "
            "them: use s3:// (or another object store) on a multi-node cluster, or pass --shared-fs if it is "
            "on a filesystem every node mounts at the same path (NFS, Lustre, EFS)")
    check_shared_paths(paths, cluster)


def node_local_paths(config: TokenizeConfig, checkpoint: str, units: WorkList | None = None) -> list[tuple[str, str]]:
    """(what, local path) for each local path that the run's tasks and actors read or write, with
    the first local input the source lists (a remote manifest may list local files; one that the URI
    rule refused already is a failure row, never read)."""
    named = [("--source", config.source), ("--audio-root", config.audio_root), ("--output", config.output),
             ("--checkpoint", checkpoint)]
    found = [(what, url) for what, url in named if url and is_local_url(url)]
    first_input = next((uri for uri in units.readable_uris() if is_local_url(uri)), None) if units else None
    if first_input:
        found.append(("the input", first_input))
    return found


def check_shared_paths(paths: list[tuple[str, str]], cluster: ClusterView) -> None:
    """--shared-fs: every live node sees each path. The output by a probe file written here (the same
    folder, not one of the same name on each node); the others (read only) by their existence."""
    from ..sources import has_glob

    checks: dict[str, tuple[str, str]] = {}  # absolute path to look for → (what, path as given)
    probe = None
    for what, url in paths:
        local = url_to_fs(url)[1]
        if what == "--output":
            probe = Path(local) / TMP_DIR / f"shared-fs-{uuid.uuid4().hex}"
            probe.parent.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"--shared-fs probe; deleted at once\n")
            local = str(probe)
        if not has_glob(local):
            checks[local] = (what, url)
    try:
        missing = missing_on_nodes(list(checks), cluster)
    finally:
        if probe is not None:
            probe.unlink(missing_ok=True)
    if missing:
        address, unseen = min(missing.items())
        what, url = checks[unseen[0]]
        others = f" (nor do {len(missing) - 1} other nodes)" if len(missing) > 1 else ""
        raise ConfigError(f"--shared-fs: Ray node {address} does not see {what} {url}{others}: mount it at "
                          "the same path on every node, or use s3:// (or another object store)")
