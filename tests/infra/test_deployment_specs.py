"""Offline checks of the cluster deployment definitions under infra/.

- every YAML file parses;
- the RayCluster / RayJob specs validate against KubeRay's CRD schemas (vendored beside the repo in
  shared/vendor/kuberay-crds/), converted to JSON Schema with Kubernetes' own rules: int-or-string,
  list-map keys, int32/int64 ranges, and unknown fields rejected unless the CRD preserves them
  (what `kubectl apply` with strict field validation does); CEL rules (x-kubernetes-validations)
  are not evaluated;
- core objects (the ServiceAccount, every pod template wrapped into a Pod) validate strictly with
  kubernetes-validate's Kubernetes schemas;
- infra/aws/cluster.yaml validates against the installed Ray's ray-schema.json and Ray's own
  config preparation;
- the image installs exactly the runtime lock file and runs as a non-root user;
- token auth is on for every Ray container, secrets come only from Secrets, no key-like strings.

The negative tests mutate a valid spec and assert the validator rejects it, so the positive
tests cannot pass vacuously.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import tomllib
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
CRD_DIR = Path(__file__).resolve().parents[3] / "shared" / "vendor" / "kuberay-crds"
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
K8S_VERSION = "1.33.0"  # a version whose schemas kubernetes-validate ships

RAYCLUSTER = INFRA / "kuberay" / "raycluster.yaml"
RAYJOB = INFRA / "kuberay" / "rayjob.yaml"
SERVICEACCOUNT = INFRA / "kuberay" / "serviceaccount.yaml"
AWS_CLUSTER = INFRA / "aws" / "cluster.yaml"
DOCKERFILE = INFRA / "docker" / "Dockerfile"

AUTH_SECRET_KEY = "auth_token"
SERVICE_ACCOUNT = "audio-tokenizer"
SECRET_ENV_NAMES = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "RAY_AUTH_TOKEN",
    "HF_TOKEN",
}
PINNED = ("torch", "torchaudio", "ray")
AWS_KEY_RE = re.compile(r"(?:AKIA|ASIA)[0-9A-Z]{16}")
AWS_SECRET_RE = re.compile(r"aws_secret_access_key\s*[:=]\s*['\"]?[A-Za-z0-9/+]{16,}", re.IGNORECASE)
PRIVATE_KEY_RE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


# ---------------------------------------------------------------------------------------------
# loading


def yaml_files() -> list[Path]:
    return sorted(p for p in INFRA.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml"))


@cache
def _load(path: Path) -> tuple:
    return tuple(d for d in yaml.safe_load_all(path.read_text()) if d is not None)


def load_docs(path: Path) -> list[dict]:
    return copy.deepcopy(list(_load(path)))


def k8s_docs() -> list[tuple[Path, dict]]:
    return [(p, d) for p in sorted((INFRA / "kuberay").glob("*.yaml")) for d in load_docs(p)]


def the_doc(path: Path, kind: str) -> dict:
    docs = [d for d in load_docs(path) if d.get("kind") == kind]
    assert len(docs) == 1, f"{path.relative_to(REPO)}: expected one {kind}, found {len(docs)}"
    return docs[0]


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def pyproject_pins() -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in pyproject()["project"]["dependencies"]]
    pins = {r.name: r for r in reqs if r.name in PINNED}
    assert set(pins) == set(PINNED), f"pyproject.toml lacks pins for {set(PINNED) - set(pins)}"
    return pins


# ---------------------------------------------------------------------------------------------
# CRD openAPIV3Schema → JSON Schema (draft 7)


def crd_dir() -> Path:
    if not (CRD_DIR / CRD_FILES["RayCluster"]).is_file() or not (CRD_DIR / CRD_FILES["RayJob"]).is_file():
        pytest.fail(
            f"KubeRay CRDs not found in {CRD_DIR} (expected {sorted(CRD_FILES.values())}): the repository "
            "must be checked out beside shared/ (shared/vendor/kuberay-crds/)",
            pytrace=False,
        )
    return CRD_DIR


def _convert(node: Any) -> Any:
    """One Kubernetes structural-schema node as JSON Schema, recursively."""
    if isinstance(node, list):
        return [_convert(x) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {name: _convert(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = _convert(value) if isinstance(value, dict) else value
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_convert(sub) for sub in value]
        elif key == "x-kubernetes-list-map-keys":
            out[key] = list(value)  # checked by the keyword added in crd_validator
        elif key.startswith("x-kubernetes-") or key == "nullable":
            continue  # handled below; CEL rules (x-kubernetes-validations) are not evaluated
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        if "anyOf" not in out:
            out["type"] = ["integer", "string"]
    if node.get("nullable") and "type" in out:
        out["type"] = [*([out["type"]] if isinstance(out["type"], str) else out["type"]), "null"]
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if node.get("x-kubernetes-list-type") != "map":
        out.pop("x-kubernetes-list-map-keys", None)
    # Unknown fields: Kubernetes prunes them (and strict field validation rejects them) unless the
    # schema preserves unknown fields; an object with neither properties nor additionalProperties
    # is free-form (e.g. the top-level metadata).
    if (
        node.get("type") == "object"
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _list_map_keys(validator, keys, instance, schema):
    if not validator.is_type(instance, "array"):
        return
    seen: dict[tuple, int] = {}
    for i, item in enumerate(instance):
        if not isinstance(item, dict):
            continue
        key = tuple(item.get(k) for k in keys)
        if key in seen:
            yield jsonschema.ValidationError(
                f"duplicate entry {dict(zip(keys, key, strict=True))} in a list-map keyed by {keys} "
                f"(items {seen[key]} and {i})"
            )
        seen.setdefault(key, i)


_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("int32")
def _int32(value) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


@_FORMATS.checks("int64")
def _int64(value) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


CRDValidator = jsonschema.validators.extend(
    jsonschema.Draft7Validator, {"x-kubernetes-list-map-keys": _list_map_keys}
)


@cache
def crd_validator(kind: str):
    docs = [d for d in yaml.safe_load_all((crd_dir() / CRD_FILES[kind]).read_text()) if d]
    crd = next(d for d in docs if d.get("kind") == "CustomResourceDefinition")
    assert crd["spec"]["group"] == "ray.io" and crd["spec"]["names"]["kind"] == kind
    versions = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    assert versions, f"{CRD_FILES[kind]} has no v1 version"
    schema = _convert(versions[0]["schema"]["openAPIV3Schema"])
    CRDValidator.check_schema(schema)
    return CRDValidator(schema, format_checker=_FORMATS)


def crd_errors(doc: dict) -> list[str]:
    assert doc.get("apiVersion") == "ray.io/v1", f"{doc.get('kind')}: apiVersion {doc.get('apiVersion')!r}"
    errors = sorted(crd_validator(doc["kind"]).iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors]


# ---------------------------------------------------------------------------------------------
# walking the KubeRay specs


def cluster_specs(doc: dict) -> list[tuple[str, dict]]:
    if doc["kind"] == "RayCluster":
        return [("spec", doc["spec"])]
    if doc["kind"] == "RayJob":
        return [("spec.rayClusterSpec", doc["spec"]["rayClusterSpec"])]
    return []


def pod_templates(doc: dict) -> list[tuple[str, dict]]:
    out = []
    for where, spec in cluster_specs(doc):
        out.append((f"{where}.headGroupSpec.template", spec["headGroupSpec"]["template"]))
        for i, group in enumerate(spec.get("workerGroupSpecs", [])):
            out.append((f"{where}.workerGroupSpecs[{i}].template", group["template"]))
    if doc["kind"] == "RayJob" and "submitterPodTemplate" in doc["spec"]:
        out.append(("spec.submitterPodTemplate", doc["spec"]["submitterPodTemplate"]))
    return out


def ray_env_holders(doc: dict) -> list[tuple[str, dict]]:
    """Every container that runs Ray code or talks to the cluster (+ the autoscaler sidecar's options)."""
    out = []
    for where, template in pod_templates(doc):
        for c in template["spec"].get("initContainers", []) + template["spec"]["containers"]:
            out.append((f"{where}/{c['name']}", c))
    for where, spec in cluster_specs(doc):
        if spec.get("enableInTreeAutoscaling"):
            out.append((f"{where}.autoscalerOptions", spec.get("autoscalerOptions") or {}))
    return out


def env_lists(node: Any, path: str = "") -> Iterator[tuple[str, list]]:
    """Every `env` list anywhere in a document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "env" and isinstance(value, list):
                yield f"{path}.env", value
            yield from env_lists(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from env_lists(value, f"{path}[{i}]")


def as_pod(template: dict, name: str) -> dict:
    meta = {"name": name, **{k: v for k, v in (template.get("metadata") or {}).items() if k != "name"}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(template["spec"])}


def gpu_groups(spec: dict) -> list[dict]:
    return [
        g
        for g in spec.get("workerGroupSpecs", [])
        if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0].get("resources", {}).get("limits", {})
    ]


# ---------------------------------------------------------------------------------------------
# every file


def test_infra_has_the_expected_files():
    for path in (RAYCLUSTER, RAYJOB, SERVICEACCOUNT, AWS_CLUSTER, DOCKERFILE, INFRA.parent / "README.md"):
        assert path.is_file(), f"missing {path.relative_to(REPO)}"


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_yaml_parses(path: Path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} holds no YAML document"
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: a document is a {type(doc).__name__}, not a mapping"
        if path.parent.name == "kuberay":
            assert doc.get("apiVersion") and doc.get("kind"), f"{path}: a document lacks apiVersion/kind"
            name = doc.get("metadata", {}).get("name", "")
            assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name), f"{path}: bad name {name!r}"


def test_no_credentials_in_infra():
    files = [p for p in INFRA.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert files
    for path in files:
        text = path.read_text(errors="replace")
        assert not AWS_KEY_RE.search(text), (
            f"{path.relative_to(REPO)} contains something like an AWS access key id"
        )
        assert not AWS_SECRET_RE.search(text), (
            f"{path.relative_to(REPO)} contains an aws_secret_access_key value"
        )
        assert not PRIVATE_KEY_RE.search(text), f"{path.relative_to(REPO)} contains a private key"


def test_credential_patterns_do_catch_keys():
    key_id = "AKIA" + "ABCDEFGHIJKLMNOP"
    assert AWS_KEY_RE.search(f"aws_access_key_id = {key_id}")
    assert AWS_SECRET_RE.search("aws_secret_access_key = " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY")
    assert AWS_SECRET_RE.search('AWS_SECRET_ACCESS_KEY: "' + "abcdefghij0123456789/+" + '"')
    assert not AWS_SECRET_RE.search("no AWS_SECRET_ACCESS_KEY value: it comes from a secretKeyRef")


# ---------------------------------------------------------------------------------------------
# KubeRay CRDs


@pytest.mark.parametrize(
    "path,kind", [(RAYCLUSTER, "RayCluster"), (RAYJOB, "RayJob")], ids=["raycluster", "rayjob"]
)
def test_spec_validates_against_kuberay_crd(path: Path, kind: str):
    errors = crd_errors(the_doc(path, kind))
    assert not errors, f"{path.relative_to(REPO)} does not validate against the {kind} CRD:\n" + "\n".join(
        errors
    )


def _group(doc):
    return cluster_specs(doc)[0][1]["workerGroupSpecs"][0]


def _worker_container(doc):
    return _group(doc)["template"]["spec"]["containers"][0]


def _set(fn: Callable[[dict], None]) -> Callable[[dict], dict]:
    def apply(doc: dict) -> dict:
        fn(doc)
        return doc

    return apply


MUTATIONS = {
    "replicas-not-int": (
        ("RayCluster", "RayJob"),
        _set(lambda d: _group(d).update(replicas="many")),
        "replicas",
    ),
    "required-groupName-missing": (
        ("RayCluster", "RayJob"),
        _set(lambda d: _group(d).pop("groupName")),
        "groupName",
    ),
    "unknown-field": (("RayCluster", "RayJob"), _set(lambda d: _group(d).update(maxReplica=8)), "maxReplica"),
    "bad-quantity": (
        ("RayCluster",),
        _set(lambda d: _worker_container(d)["resources"]["limits"].update(cpu="lots")),
        "cpu",
    ),
    "rayStartParams-not-string": (
        ("RayCluster",),
        _set(lambda d: _group(d)["rayStartParams"].update({"num-gpus": 1})),
        "num-gpus",
    ),
    "duplicate-env-name": (
        ("RayCluster",),
        _set(lambda d: _worker_container(d)["env"].append({"name": "RAY_AUTH_MODE", "value": "disabled"})),
        "duplicate",
    ),
    "auth-mode-not-in-enum": (
        ("RayCluster",),
        _set(lambda d: d["spec"]["authOptions"].update(mode="password")),
        "authOptions",
    ),
    "int32-overflow": (
        ("RayJob",),
        _set(lambda d: d["spec"].update(ttlSecondsAfterFinished=2**40)),
        "ttlSeconds",
    ),
    "bool-as-string": (
        ("RayJob",),
        _set(lambda d: d["spec"].update(shutdownAfterJobFinishes="yes")),
        "shutdown",
    ),
    "misspelled-top-level": (("RayJob",), _set(lambda d: d.update(sepc={})), "sepc"),
}


@pytest.mark.parametrize(
    "kind,mutation",
    [(kind, name) for name, (kinds, _, _) in MUTATIONS.items() for kind in kinds],
)
def test_crd_validation_rejects_broken_specs(kind: str, mutation: str):
    path = RAYCLUSTER if kind == "RayCluster" else RAYJOB
    doc = the_doc(path, kind)
    assert not crd_errors(doc), "the unmutated spec must be valid for this test to mean anything"
    _, mutate, expected = MUTATIONS[mutation]
    errors = crd_errors(mutate(doc))
    assert errors, f"{mutation}: the CRD validation accepted a broken {kind}"
    assert any(expected in e for e in errors), f"{mutation}: errors do not mention {expected!r}: {errors}"


def test_crd_conversion_keeps_int_or_string():
    doc = the_doc(RAYCLUSTER, "RayCluster")
    limits = _worker_container(doc)["resources"]["limits"]
    for value in (8, "8", "7500m"):
        limits["cpu"] = value
        assert not crd_errors(doc), f"cpu={value!r} is a valid quantity"
    limits["cpu"] = 7.5
    assert crd_errors(doc), "a float is neither an int nor a string"


# ---------------------------------------------------------------------------------------------
# core Kubernetes objects (kubernetes-validate, strict)


def _k8s_validate(obj: dict) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def core_objects() -> list[tuple[str, dict]]:
    out = []
    for path, doc in k8s_docs():
        rel = path.relative_to(INFRA)
        if doc["apiVersion"] == "v1":
            out.append((f"{rel}:{doc['kind']}/{doc['metadata']['name']}", doc))
        for where, template in pod_templates(doc):
            out.append((f"{rel}:{where}", as_pod(template, f"{doc['metadata']['name']}-pod")))
    return out


@pytest.mark.parametrize("obj", [o for _, o in core_objects()], ids=[n for n, _ in core_objects()])
def test_core_objects_validate_strictly(obj: dict):
    import kubernetes_validate

    try:
        _k8s_validate(obj)
    except kubernetes_validate.ValidationError as e:
        pytest.fail(
            f"{obj['kind']} does not validate (Kubernetes {K8S_VERSION}, strict): "
            f"{'.'.join(str(p) for p in e.path)}: {e.message}"
        )


def test_core_objects_include_the_service_account_and_every_pod_template():
    names = [n for n, _ in core_objects()]
    assert any(n.endswith("ServiceAccount/" + SERVICE_ACCOUNT) for n in names), names
    assert sum(".template" in n or "PodTemplate" in n for n in names) >= 5, names


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p["spec"]["containers"][0].update(imagePullPolicyy="Always"),
        lambda p: p["spec"]["containers"][0]["env"].append(
            {"name": "X", "valueFrom": {"secretKeyRef": "nope"}}
        ),
        lambda p: p["spec"]["volumes"][0]["emptyDir"].update(medium=7),
    ],
    ids=["unknown-field", "secretKeyRef-not-object", "medium-not-string"],
)
def test_kubernetes_validate_rejects_broken_pods(mutate):
    import kubernetes_validate

    pod = as_pod(the_doc(RAYCLUSTER, "RayCluster")["spec"]["workerGroupSpecs"][0]["template"], "w")
    _k8s_validate(copy.deepcopy(pod))
    mutate(pod)
    with pytest.raises(kubernetes_validate.ValidationError):
        _k8s_validate(pod)


# ---------------------------------------------------------------------------------------------
# what the cluster must be


def test_rayjob_cluster_spec_equals_raycluster_spec():
    cluster = the_doc(RAYCLUSTER, "RayCluster")["spec"]
    job = the_doc(RAYJOB, "RayJob")["spec"]["rayClusterSpec"]
    assert job == cluster, "rayjob.yaml's rayClusterSpec has drifted from raycluster.yaml's spec"


@pytest.mark.parametrize(
    "path,kind", [(RAYCLUSTER, "RayCluster"), (RAYJOB, "RayJob")], ids=["raycluster", "rayjob"]
)
def test_cluster_shape(path: Path, kind: str):
    doc = the_doc(path, kind)
    ((_, spec),) = cluster_specs(doc)
    ray_pin = pyproject_pins()["ray"]
    assert ray_pin.specifier.contains(spec["rayVersion"]), (
        f"rayVersion {spec['rayVersion']} vs pyproject {ray_pin}"
    )
    assert spec["enableInTreeAutoscaling"] is True

    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    assert "num-cpus" in head["rayStartParams"]
    head_res = head["template"]["spec"]["containers"][0]["resources"]
    for part in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(head_res[part]), f"head {part}: {head_res[part]}"
        assert "nvidia.com/gpu" not in head_res[part], "the head is CPU only"

    groups = gpu_groups(spec)
    assert len(groups) == 1 == len(spec["workerGroupSpecs"]), "one (GPU) worker group"
    group = groups[0]
    assert group["minReplicas"] == 0 and group["maxReplicas"] >= 1
    assert group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"]
    assert group["rayStartParams"]["num-gpus"] == "1"
    res = group["template"]["spec"]["containers"][0]["resources"]
    for part in ("requests", "limits"):
        assert str(res[part]["nvidia.com/gpu"]) == "1", f"worker {part} must ask for exactly one GPU"
        assert {"cpu", "memory"} <= set(res[part])

    version = pyproject()["project"]["version"]
    for where, template in pod_templates(doc):
        pod = template["spec"]
        assert pod.get("serviceAccountName") == SERVICE_ACCOUNT, f"{where}: serviceAccountName"
        for c in pod["containers"]:
            assert c["image"].rsplit("/", 1)[-1] == f"audio-tokenizer:{version}", (
                f"{where}: image {c['image']}"
            )
        if where.endswith("submitterPodTemplate"):
            continue
        shm = [v for v in pod.get("volumes", []) if v.get("emptyDir", {}).get("medium") == "Memory"]
        assert len(shm) == 1, f"{where}: one memory-backed emptyDir for /dev/shm"
        mounts = pod["containers"][0].get("volumeMounts", [])
        assert {"name": shm[0]["name"], "mountPath": "/dev/shm"} in mounts, f"{where}: /dev/shm not mounted"


def test_service_account_is_irsa_style():
    sa = the_doc(SERVICEACCOUNT, "ServiceAccount")
    assert sa["apiVersion"] == "v1" and sa["metadata"]["name"] == SERVICE_ACCOUNT
    arn = sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", arn), arn
    for doc in load_docs(SERVICEACCOUNT):
        if doc["kind"] == "Secret":  # allowed only as a placeholder, never a real token
            values = {**doc.get("stringData", {}), **doc.get("data", {})}
            assert set(values.values()) <= {"REPLACE_WITH_A_RANDOM_TOKEN"}, "a Secret with a real value"


def test_rayjob_runs_the_tokenizer_and_cleans_up():
    import importlib.util

    spec = the_doc(RAYJOB, "RayJob")["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(spec["ttlSecondsAfterFinished"], int) and spec["ttlSecondsAfterFinished"] > 0
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["python", "jobs/tokenize_audioset.py"], argv
    assert yaml.safe_load(spec["runtimeEnvYAML"])["working_dir"] == "/app", (
        "entrypoint path is relative to /app"
    )

    module_spec = importlib.util.spec_from_file_location(
        "_tokenize_job", REPO / "jobs" / "tokenize_audioset.py"
    )
    job = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(job)
    try:
        args = job.parse_args(argv[2:])
    except SystemExit:
        pytest.fail(f"the job's own parser rejects the RayJob entrypoint: {argv[2:]}")
    assert args.source == "hf://datasets/agkphysics/AudioSet" and args.split == "bal_train"
    assert args.output == "s3://YOUR-BUCKET/tokens/audioset-bal"
    assert (args.token_rate, args.semantic_vocab_size) == (100, 16384)
    group = gpu_groups(spec["rayClusterSpec"])[0]
    assert args.num_gpus == group["maxReplicas"], (
        "--num-gpus must be given (a cluster scaled to zero has no GPU to count) and match maxReplicas"
    )
    assert args.retryable_exit_code == 0, "inputs kept retryable (missing clips) must not fail every attempt"
    assert 0 < spec["backoffLimit"] <= 3 and spec["submitterConfig"]["backoffLimit"] > 0


# ---------------------------------------------------------------------------------------------
# token auth and secrets


def _auth_secret_name(doc: dict) -> str:
    names = set()
    for _, spec in cluster_specs(doc):
        auth = spec.get("authOptions")
        if auth is not None:
            assert auth.get("mode") == "token", f"{doc['kind']}: authOptions.mode={auth.get('mode')!r}"
            if auth.get("secretName"):
                names.add(auth["secretName"])
    return names.pop() if len(names) == 1 else ""


@pytest.mark.parametrize(
    "path,kind", [(RAYCLUSTER, "RayCluster"), (RAYJOB, "RayJob")], ids=["raycluster", "rayjob"]
)
def test_token_auth_on_every_ray_container(path: Path, kind: str):
    doc = the_doc(path, kind)
    secret_name = _auth_secret_name(doc)
    holders = ray_env_holders(doc)
    assert len(holders) >= (4 if kind == "RayJob" else 3), [w for w, _ in holders]
    seen_secrets = set()
    for where, container in holders:
        env = {e["name"]: e for e in container.get("env", [])}
        assert env.get("RAY_AUTH_MODE", {}).get("value") == "token", f"{where}: RAY_AUTH_MODE is not token"
        token = env.get("RAY_AUTH_TOKEN")
        assert token is not None, f"{where}: no RAY_AUTH_TOKEN"
        ref = token.get("valueFrom", {}).get("secretKeyRef")
        assert "value" not in token and ref, f"{where}: RAY_AUTH_TOKEN must come from a secretKeyRef"
        assert ref["key"] == AUTH_SECRET_KEY and not ref.get("optional", False), f"{where}: {ref}"
        seen_secrets.add(ref["name"])
    assert len(seen_secrets) == 1, f"containers read the token from different Secrets: {seen_secrets}"
    if secret_name:
        assert seen_secrets == {secret_name}, (
            f"authOptions.secretName {secret_name} vs containers {seen_secrets}"
        )
    documented = SERVICEACCOUNT.read_text() + (INFRA.parent / "README.md").read_text()
    assert f"kubectl create secret generic {seen_secrets.pop()}" in documented, (
        "how to create the token Secret"
    )


@pytest.mark.parametrize("path", sorted((INFRA / "kuberay").glob("*.yaml")), ids=lambda p: p.name)
def test_no_literal_secret_values_in_env(path: Path):
    for doc in load_docs(path):
        for where, env in env_lists(doc):
            for item in env:
                if item.get("name") in SECRET_ENV_NAMES:
                    assert "value" not in item, f"{path.name}{where}: literal value for {item['name']}"
                    assert item.get("valueFrom", {}).get("secretKeyRef"), (
                        f"{path.name}{where}: {item['name']}"
                    )


def test_env_secret_check_catches_a_literal_key():
    doc = the_doc(RAYCLUSTER, "RayCluster")
    _worker_container(doc)["env"].append({"name": "AWS_SECRET_ACCESS_KEY", "value": "x" * 40})
    bad = [
        item
        for _, env in env_lists(doc)
        for item in env
        if item.get("name") in SECRET_ENV_NAMES and "value" in item
    ]
    assert bad, "the walk over env lists missed a literal secret"


# ---------------------------------------------------------------------------------------------
# AWS cluster launcher


def _ray_schema() -> dict:
    import ray.autoscaler

    path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    assert path.is_file(), f"no ray-schema.json in the installed ray ({path})"
    return json.loads(path.read_text())


def _ray_validate(config: dict) -> None:
    """Ray's schema (draft 7), then Ray's own preparation + validation, as `ray up` does."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    jsonschema.Draft7Validator(_ray_schema()).validate(config)
    validate_config(prepare_config(copy.deepcopy(config)))


def test_aws_cluster_config_validates_against_ray_schema():
    (config,) = load_docs(AWS_CLUSTER)
    _ray_validate(config)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c["available_node_types"]["ray.worker.gpu"]["resources"].update(GPU="1"),
        lambda c: c.update(max_worker=8),
        lambda c: c["docker"].update(run_options="--gpus all"),
        lambda c: c["available_node_types"]["ray.worker.gpu"].pop("node_config"),
        lambda c: c.update(head_node_type="ray.head.missing"),
    ],
    ids=[
        "resource-not-int",
        "unknown-key",
        "run-options-not-list",
        "node-config-missing",
        "unknown-head-type",
    ],
)
def test_ray_schema_rejects_broken_cluster_configs(mutate):
    (config,) = load_docs(AWS_CLUSTER)
    mutate(config)
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        _ray_validate(config)


def test_aws_cluster_shape():
    (config,) = load_docs(AWS_CLUSTER)
    assert config["provider"]["type"] == "aws" and config["provider"]["region"] == "us-west-2"
    assert config["auth"]["ssh_user"] == "ubuntu"
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["node_config"]["InstanceType"] == "m6i.2xlarge"
    assert head["resources"].get("GPU", 0) == 0
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert len(workers) == 1
    (gpu,) = workers
    assert gpu["resources"]["GPU"] == 1 and gpu.get("min_workers", 0) == 0 and gpu["max_workers"] == 8
    assert config["max_workers"] >= gpu["max_workers"]
    for t in types.values():
        assert "IamInstanceProfile" in t["node_config"], "S3 access from an instance profile"
    docker = config["docker"]
    version = pyproject()["project"]["version"]
    assert docker["image"].rsplit("/", 1)[-1] == f"audio-tokenizer:{version}"
    run_options = " ".join(docker.get("run_options", []) + docker.get("worker_run_options", []))
    assert "--gpus all" in run_options and "--shm-size" in run_options
    assert "RAY_AUTH_MODE=token" in " ".join(docker["run_options"]), "token auth in every container"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in config[key] if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token" in c for c in starts), f"{key}: RAY_AUTH_MODE=token"
    text = AWS_CLUSTER.read_text()
    assert "AWS_ACCESS_KEY_ID" not in text and "AWS_SECRET_ACCESS_KEY" not in text


# ---------------------------------------------------------------------------------------------
# Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())  # join continuation lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_dockerfile_installs_exactly_the_runtime_lock():
    runs = [rest for op, rest in dockerfile_instructions() if op == "RUN"]
    copied = " ".join(rest for op, rest in dockerfile_instructions() if op in ("COPY", "ADD"))
    assert "requirements.lock" in copied, "the image does not copy the lock file"
    installs = [cmd for run in runs for cmd in run.split("&&") if re.search(r"\bpip install\b", cmd)]
    assert any("--require-hashes" in cmd and "--no-deps" in cmd and "requirements.lock" in cmd for cmd in installs)
    for cmd in installs:  # nothing else resolves versions: every other install takes no dependencies
        assert "requirements.lock" in cmd or "--no-deps" in cmd, f"an install outside the lock: {cmd}"
        assert not re.search(r"(?:torch|torchaudio|ray)\S*[=<>~]", cmd), f"a version outside the lock: {cmd}"


def test_dockerfile_basics():
    instr = dockerfile_instructions()
    ops = [op for op, _ in instr]
    assert ops.count("FROM") >= 1
    users = [rest for op, rest in instr if op == "USER"]
    assert users, "no USER directive"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), "the image must not run as root"
    if not user.isdigit():
        assert any(op == "RUN" and "--uid 1000" in rest and user in rest for op, rest in instr)
    else:
        assert user == "1000"
    assert [rest for op, rest in instr if op == "WORKDIR"][-1] == "/app"
    runs = " ".join(rest for op, rest in instr if op == "RUN")
    assert "libsndfile1" in runs
    assert re.search(r"pip install (?:\S+ )*/app\b", runs), "pip install /app"
    copied = " ".join(rest for op, rest in instr if op in ("COPY", "ADD"))
    for part in ("pyproject.toml", "pipeline/", "jobs/", "schemas/"):
        assert part in copied, f"the image does not copy {part}"
    for op, rest in instr:
        if op in ("ENV", "ARG"):
            assert not re.search(r"AWS_|HF_TOKEN|RAY_AUTH_TOKEN|SECRET|PASSWORD", rest, re.IGNORECASE), (
                f"credential-like {op} in the Dockerfile: {rest}"
            )


def test_readme_section_is_there():
    readme = (INFRA.parent / "README.md").read_text()
    assert "## Running on a cluster" in readme
    text = readme.split("## Running on a cluster", 1)[1].split("\n## ", 1)[0]
    for needle in (
        "docker build -f infra/docker/Dockerfile",
        "kubectl apply -f infra/kuberay/",
        "ray job submit",
        "RAY_AUTH_MODE",
        "ray up infra/aws/cluster.yaml",
        "--overwrite",
        "--max-batch-windows",
    ):
        assert needle in text, f"README's cluster section does not mention {needle}"
