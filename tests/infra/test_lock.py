"""The lock files agree with pyproject.toml, and this environment is exactly the lock.

`requirements-dev.lock` (what make, CI and the tests install) and `requirements.lock` (the image's
runtime subset) pin every transitive dependency with hashes (`make lock` writes both). A change to
pyproject.toml that the lock does not satisfy fails here, so CI never tests something other than
what a new user gets.
"""

from __future__ import annotations

import re
import sysconfig
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
DEV_LOCK = ROOT / "requirements-dev.lock"
RUNTIME_LOCK = ROOT / "requirements.lock"
CONSTRAINTS = ROOT / "constraints.txt"
PROJECT = "audio-tokenizer-pipeline"


def locked(path: Path, environment: dict | None = None) -> dict[str, Version]:
    """name → pinned version of the entries of a lock file that apply to `environment` (this
    interpreter and platform by default); every entry must carry hashes."""
    text = path.read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    pins: dict[str, Version] = {}
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        requirement = Requirement(entry.split("\\")[0].strip())
        assert "--hash=sha256:" in entry, f"{path.name}: {requirement} has no hash"
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{path.name}: {requirement} is not an exact pin"
        if requirement.marker is None or requirement.marker.evaluate(environment or default_environment()):
            pins[canonicalize_name(requirement.name)] = Version(specifier.version)
    return pins


def project_requirements(extras: tuple[str, ...] = ()) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        requirements += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return requirements


def assert_satisfied(requirements: list[Requirement], pins: dict[str, Version], lock: str) -> None:
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"pyproject.toml asks for {requirement}, {lock} has no {name}: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"pyproject.toml asks for {requirement}, {lock} pins {name}=={pins[name]}: run `make lock`")


def test_the_locks_satisfy_pyproject():
    assert_satisfied(project_requirements(("dev",)), locked(DEV_LOCK), DEV_LOCK.name)
    assert_satisfied(project_requirements(), locked(RUNTIME_LOCK), RUNTIME_LOCK.name)


def test_the_runtime_lock_is_the_dev_lock_without_the_dev_tools():
    """One resolution: the image runs the versions the tests ran."""
    dev, runtime = locked(DEV_LOCK), locked(RUNTIME_LOCK)
    assert {name: dev.get(name) for name in runtime} == runtime


def test_torch_and_torchaudio_are_the_tested_pair():
    pair = {canonicalize_name(Requirement(line).name): Version(line.split("==")[1])
            for line in CONSTRAINTS.read_text().splitlines() if line and not line.startswith("#")}
    assert set(pair) == {"torch", "torchaudio"}
    for lock in (DEV_LOCK, RUNTIME_LOCK):
        pins = locked(lock)
        assert {name: pins[name] for name in pair} == pair, f"{lock.name} does not pin the pair of constraints.txt"


def test_this_environment_is_exactly_the_lock():
    """What is installed is what the lock pins (and nothing it does not know), so a test run checks
    what a new user installs. pip, setuptools' own tooling and the project itself are not locked."""
    pins = locked(DEV_LOCK)
    # the environment's own site-packages (Ray puts its vendored psutil/colorama on sys.path when imported)
    site = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    installed = {canonicalize_name(d.metadata["Name"]): Version(d.version) for d in metadata.distributions(path=site)}
    unlocked = set(installed) - set(pins) - {"pip", canonicalize_name(PROJECT)}
    assert not unlocked, f"installed but not in {DEV_LOCK.name}: {sorted(unlocked)} (make the venv anew: make setup)"
    differ = {name: (str(pins[name]), str(installed.get(name))) for name in pins if installed.get(name) != pins[name]}
    assert not differ, f"installed versions differ from {DEV_LOCK.name} (lock, installed): {differ}"


def test_torchaudio_loads_with_this_torch():
    """torchaudio's compiled library loads and runs (a torchaudio built against another torch
    fails here with an undefined symbol)."""
    import torch
    import torchaudio.functional as F

    out = F.resample(torch.zeros(1, 441), 44100, 16000)
    assert out.shape == (1, 160)
