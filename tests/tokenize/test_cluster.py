"""The cluster as the driver sees it, and local paths on it: refused where the work may leave the
driver's node, unless --shared-fs and every node sees them. No Ray, but for the probe on the embedded
local Ray; the multi-node runs are in test_multinode.py."""

from __future__ import annotations

import os

import pytest

from pipeline.errors import ConfigError
from pipeline.sources import WorkList, WorkUnit
from pipeline.tokenize import cluster as C
from pipeline.tokenize.cluster import ClusterView, RayNode, check_cluster_paths
from pipeline.tokenize.config import TokenizeConfig

REMEDY = ("the run reads, encodes and writes on any of them: use s3:// (or another object store) on a multi-node "
          "cluster, or pass --shared-fs if it is on a filesystem every node mounts at the same path (NFS, Lustre, EFS)")
REMOTE = {"source": "s3://b/audio/", "output": "s3://b/tokens"}
HF_WEIGHTS = "hf://haoheliu/SemantiCodec@abc"


def view(*cpus: int, gpus: int = 0) -> ClusterView:
    return ClusterView(tuple(RayNode(f"n{i}", f"10.0.0.{i}", c, gpus if i == 0 else 0) for i, c in enumerate(cpus)),
                       "n0")


def refusal(config: TokenizeConfig, cluster: ClusterView, gpus_wanted: int = 0, checkpoint: str = HF_WEIGHTS,
            units=()) -> str:
    with pytest.raises(ConfigError) as error:
        check_cluster_paths(config, cluster, gpus_wanted, checkpoint, units)
    return str(error.value)


def test_local_paths_are_refused_where_the_work_leaves_the_driver():
    check_cluster_paths(TokenizeConfig(**REMOTE), view(1, 2, 2), 0, HF_WEIGHTS)
    check_cluster_paths(TokenizeConfig(source="/data/a", output="/data/t"), view(2), 0, "/weights")  # one node
    assert refusal(TokenizeConfig(**{**REMOTE, "output": "/data/tokens"}), view(1, 2, 2)) == (
        f"--output /data/tokens is a local path, but this Ray cluster has 3 nodes and {REMEDY}")
    assert refusal(TokenizeConfig(**{**REMOTE, "source": "file:///data/audio"}), view(1, 2, 2)).startswith(
        "--source file:///data/audio is a local path, but this Ray cluster has 3 nodes and ")
    assert refusal(TokenizeConfig(**REMOTE), view(4, 4), checkpoint="synthetic:small").startswith(
        "--checkpoint synthetic:small is a local path")
    kuberay_head = refusal(TokenizeConfig(**{**REMOTE, "audio_root": "/clips"}), view(0))
    assert kuberay_head.startswith("--audio-root /clips is a local path, but the driver's Ray node offers no CPU, "
                                   "so the work runs on other nodes and ")
    scaling_up = refusal(TokenizeConfig(**{**REMOTE, "output": "/data/tokens"}), view(8, gpus=1), gpus_wanted=8)
    assert scaling_up.startswith("--output /data/tokens is a local path, but the run asks for 8 GPU encoders and the "
                                 "cluster has 1 GPUs now, so they run on nodes that join later and ")


def test_a_remote_manifest_listing_local_files_is_refused_too():
    units = WorkList.from_units([WorkUnit("a", "s3://b/a.flac"), WorkUnit("b", "/mnt/clips/b.flac")])
    config = TokenizeConfig(source="s3://b/list.csv", output="s3://b/tokens")
    assert refusal(config, view(2, 2), units=units).startswith(
        "the input /mnt/clips/b.flac is a local path, but this Ray cluster has 2 nodes")


def test_shared_fs_asks_every_node_and_names_one_that_does_not_see(monkeypatch, tmp_path):
    asked = []

    def missing_on_nodes(paths, cluster):
        asked.append(list(paths))
        assert all(os.path.exists(p) for p in paths), "the output probe exists while the nodes look"
        return {"10.0.0.2": [paths[-1]], "10.0.0.1": [paths[0]]}

    monkeypatch.setattr(C, "missing_on_nodes", missing_on_nodes)
    (tmp_path / "audio").mkdir()
    config = TokenizeConfig(source=str(tmp_path / "audio"), output=str(tmp_path / "out"), shared_fs=True)
    assert refusal(config, view(1, 2, 2), checkpoint="s3://w/ckpt") == (
        f"--shared-fs: Ray node 10.0.0.1 does not see --source {tmp_path / 'audio'} (nor do 1 other nodes): mount it "
        "at the same path on every node, or use s3:// (or another object store)")
    ((source, probe),) = asked
    assert source == str(tmp_path / "audio") and probe.startswith(str(tmp_path / "out" / "_tmp" / "shared-fs-"))
    assert not list((tmp_path / "out" / "_tmp").iterdir()), "the probe file is deleted"
    monkeypatch.setattr(C, "missing_on_nodes", lambda paths, cluster: {})
    check_cluster_paths(config, view(1, 2, 2), 0, "s3://w/ckpt")


def test_the_driver_sees_its_one_node_and_the_probe_asks_it(ray_local, tmp_path):
    cluster = ClusterView.current()
    (node,) = cluster.nodes
    assert node.node_id == cluster.driver_node_id and node.cpus == 2 and cluster.gpus == 0
    assert cluster.work_off_the_driver(gpus_wanted=0) is None
    seen, unseen = tmp_path / "seen", tmp_path / "never-made"
    seen.write_text("x")
    assert C.missing_on_nodes([str(seen), str(unseen)], cluster) == {node.address: [str(unseen)]}
    assert C.missing_on_nodes([str(seen)], cluster) == {}
