"""Finding and loading SemantiCodec checkpoint files: hub, local folder or any fsspec URL.

All three sources share the official layout of the Hugging Face repo `haoheliu/SemantiCodec`
(see `variants.py`). Files are fetched one by one, only when needed: encoding never touches
`decoder.ckpt`. Every loaded file's SHA-256 is recorded for provenance.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import CheckpointError
from .variants import SemantiCodecVariant

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = "hf://haoheliu/SemantiCodec"
SYNTHETIC_MARKER = "SYNTHETIC_WEIGHTS.json"
"""Written at the root of every synthetic checkpoint folder; its presence marks the weights as fake."""

_HASH_BLOCK_BYTES = 8 << 20


def default_cache_dir() -> Path:
    root = os.environ.get("PIPELINE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "audio-tokenizer"
    )
    return Path(root)


@dataclass(slots=True)
class CheckpointSource:
    """Where checkpoint files come from: `hf://owner/repo`, a local folder, or an fsspec URL."""

    location: str = DEFAULT_CHECKPOINT
    revision: str | None = None  # hub only
    cache_dir: str | os.PathLike | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)  # fsspec only

    @property
    def kind(self) -> str:
        if self.location.startswith("hf://"):
            return "hub"
        if "://" in self.location and not self.location.startswith("file://"):
            return "fsspec"
        return "local"

    def fetch(self, relative_path: str) -> Path:
        """Local path of `relative_path`, downloading it first when the source is remote."""
        if self.kind == "hub":
            return self._fetch_from_hub(relative_path)
        if self.kind == "fsspec":
            return self._fetch_with_fsspec(relative_path)
        root = Path(self.location.removeprefix("file://")).expanduser()
        path = root / relative_path
        if not path.is_file():
            raise CheckpointError(f"checkpoint file not found: {path}")
        return path

    def is_synthetic(self) -> bool:
        try:
            self.fetch(SYNTHETIC_MARKER)
        except CheckpointError:
            return False
        return True

    def _fetch_from_hub(self, relative_path: str) -> Path:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        repo_id = self.location.removeprefix("hf://").strip("/")
        try:
            return Path(
                hf_hub_download(
                    repo_id,
                    relative_path,
                    revision=self.revision,
                    cache_dir=self.cache_dir,
                )
            )
        except (EntryNotFoundError, LocalEntryNotFoundError) as error:
            raise CheckpointError(
                f"{relative_path} is not available from hub repo {repo_id} "
                f"(revision {self.revision or 'main'}): {error}"
            ) from error
        except Exception as error:  # network, auth, repo-not-found: all end the same way for a user
            raise CheckpointError(
                f"could not download {relative_path} from hub repo {repo_id}: "
                f"{type(error).__name__}: {error}"
            ) from error

    def _fetch_with_fsspec(self, relative_path: str) -> Path:
        import fsspec

        url = self.location.rstrip("/") + "/" + relative_path
        cache_root = Path(self.cache_dir) if self.cache_dir else default_cache_dir() / "checkpoints"
        target = cache_root / hashlib.sha256(self.location.encode()).hexdigest()[:16] / relative_path
        try:
            fs, remote_path = fsspec.core.url_to_fs(url, **self.storage_options)
            remote_size = fs.size(remote_path)
        except FileNotFoundError as error:
            raise CheckpointError(f"checkpoint file not found: {url}") from error
        except Exception as error:
            raise CheckpointError(f"could not reach {url}: {type(error).__name__}: {error}") from error
        if target.is_file() and target.stat().st_size == remote_size:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        try:
            fs.get_file(remote_path, str(partial))
        except Exception as error:
            partial.unlink(missing_ok=True)
            raise CheckpointError(f"could not download {url}: {type(error).__name__}: {error}") from error
        os.replace(partial, target)  # a crash mid-download never leaves a file that looks complete
        return target


def sha256_of_file(path: Path) -> str:
    """SHA-256 of a file, cached in a sidecar keyed by size and mtime (checkpoints are GBs)."""
    stat = path.stat()
    sidecar = path.with_name(path.name + ".sha256.json")
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        cached = json.loads(sidecar.read_text())
        if {k: cached.get(k) for k in stamp} == stamp:
            return cached["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK_BYTES):
            digest.update(block)
    value = digest.hexdigest()
    try:
        sidecar.write_text(json.dumps({**stamp, "sha256": value}))
    except OSError:  # read-only cache: hashing again next time is fine
        pass
    return value


def load_state_dict(path: Path) -> dict[str, Any]:
    """torch.load a plain state dict safely (`weights_only`), memory-mapped, with clear errors."""
    import pickle

    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as error:
        raise CheckpointError(
            f"cannot read checkpoint {path} ({path.stat().st_size} bytes): it is truncated, corrupt "
            f"or not a torch checkpoint ({type(error).__name__}: {str(error)[:200]})"
        ) from error
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"checkpoint {path} does not hold a flat state dict")
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def load_codebook(path: Path, expected_rows: int, expected_dim: int | None = None):
    """The semantic k-means centroids [V, D] float32, checked against the variant."""
    import numpy as np

    try:
        codebook = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise CheckpointError(f"cannot read semantic codebook {path}: {error}") from error
    if codebook.ndim != 2 or codebook.dtype != np.float32:
        raise CheckpointError(
            f"semantic codebook {path} must be a float32 matrix, got {codebook.dtype} {codebook.shape}"
        )
    if codebook.shape[0] != expected_rows:
        raise CheckpointError(
            f"semantic codebook {path} has {codebook.shape[0]} rows; the variant expects {expected_rows}"
        )
    if expected_dim is not None and codebook.shape[1] != expected_dim:
        raise CheckpointError(
            f"semantic codebook {path} has width {codebook.shape[1]}; the encoder's features are {expected_dim}"
        )
    return codebook


@dataclass(frozen=True, slots=True)
class LoadedFile:
    path: str
    sha256: str


def describe_file(path: Path) -> LoadedFile:
    return LoadedFile(path=str(path), sha256=sha256_of_file(path))


def variant_files(variant: SemantiCodecVariant) -> dict[str, str]:
    return {
        "encoder": variant.encoder_file,
        "semantic_codebook": variant.codebook_file,
        "decoder": variant.decoder_file,
    }
