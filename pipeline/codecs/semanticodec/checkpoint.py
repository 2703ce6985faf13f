"""Finding and reading SemantiCodec checkpoint files: hub, local folder or any fsspec URL.

A location holds one of two layouts (the paths come from `SemantiCodecVariant.files`), tried in
this order:

1. `repo`: a snapshot of the hub repo `haoheliu/SemantiCodec` (the hub itself, a
   `huggingface-cli download --local-dir` folder, an S3 mirror): `semanticodec_tokenrate_{R}/`
   folders and `codebook_idx/` at the root;
2. `single-rate`: one rate's folder as the official `checkpoint_path=` takes it: `encoder.ckpt`,
   `decoder.ckpt` and `codebook_idx/` inside it.

Anything else is refused in one line that lists the paths tried and says which rate or vocabulary
the location does hold. Files are fetched one by one, only when needed (encoding never touches
`decoder.ckpt`); `hf://` goes through huggingface_hub, so its cache, offline mode, token and
download locks apply. Each loaded file's SHA-256 is recorded (cached in the project's cache,
never beside the weights).
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import CheckpointError
from ...fsutil import is_local_url
from .file_hashes import sha256_of_file
from .variants import LAYOUTS, SEMANTIC_VOCAB_SIZES, TOKEN_RATES, SemantiCodecVariant

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = "hf://haoheliu/SemantiCodec"
SYNTHETIC_MARKER = "SYNTHETIC_WEIGHTS.json"
"""Written at the root of every synthetic checkpoint folder; its presence marks the weights as fake."""
HUB_PREFIX = "hf://"
UNKNOWN_SIZE = -1
_ZIP_MAGIC = b"PK\x03\x04"


def default_cache_dir() -> Path:
    root = os.environ.get("PIPELINE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "audio-tokenizer"
    )
    return Path(root)


@dataclass(slots=True)
class CheckpointSource:
    """Where checkpoint files come from: `hf://owner/repo[@revision]`, a local folder, or an fsspec URL.

    The first hub lookup pins the commit it resolved (`commit`), so every later file comes from
    that same commit; resolution pins the layout (`layout`) the same way.
    """

    location: str = DEFAULT_CHECKPOINT
    revision: str | None = None  # hub only: branch, tag or commit
    cache_dir: str | os.PathLike | None = None  # hub: the HF cache (default: HF_HUB_CACHE); fsspec: downloads
    storage_options: dict[str, Any] = field(default_factory=dict)  # fsspec only
    commit: str | None = field(default=None, init=False)
    layout: str | None = field(default=None, init=False)
    _hub_miss_reason: str = field(default="", init=False, repr=False)

    def __post_init__(self) -> None:
        if self.location.startswith(HUB_PREFIX) and "@" in self.location:
            base, _, pinned = self.location.partition("@")
            if not pinned:
                raise CheckpointError(f"{self.location}: nothing after '@' (write hf://owner/repo@<rev>)")
            if self.revision and self.revision != pinned:
                raise CheckpointError(
                    f"{self.location} names revision {pinned!r} but revision={self.revision!r} was also given"
                )
            self.location, self.revision = base, pinned
        if self.revision and self.kind != "hub":
            raise CheckpointError(
                f"a revision ({self.revision!r}) applies only to hf:// checkpoints, not {self.location}"
            )

    @property
    def kind(self) -> str:
        if self.location.startswith(HUB_PREFIX):
            return "hub"
        if not is_local_url(self.location):
            return "fsspec"
        return "local"

    @property
    def repo_id(self) -> str:
        return self.location.removeprefix(HUB_PREFIX).strip("/")

    @property
    def pinned_location(self) -> str:
        """The location with the resolved hub commit attached: hand this to workers so that every
        process reads the same files."""
        pin = self.commit or self.revision
        return f"{self.location}@{pin}" if self.kind == "hub" and pin else self.location

    def address(self, relative_path: str) -> str:
        if self.kind == "local":
            return str(self._local_root() / relative_path)
        return self.location.rstrip("/") + "/" + relative_path

    def size(self, relative_path: str) -> int | None:
        """Size in bytes of a file (UNKNOWN_SIZE if the hub does not say), None when it does not
        exist there; nothing is downloaded."""
        if self.kind == "hub":
            return self._hub_size(relative_path)
        if self.kind == "fsspec":
            fs, remote = self._fsspec(relative_path)
            try:
                info = fs.info(remote)
                return int(info["size"]) if info.get("type") == "file" else None
            except FileNotFoundError:
                return None
            except Exception as error:
                raise CheckpointError(
                    f"could not reach {self.address(relative_path)}: {type(error).__name__}: {error}"
                ) from error
        path = self._local_root() / relative_path
        return path.stat().st_size if path.is_file() else None

    def missing_text(self, relative_path: str) -> str:
        if self.kind == "hub":
            return (f"{relative_path} is not available from hub repo {self.repo_id} "
                    f"(revision {self.revision or 'main'}){self._hub_miss_reason}")
        return f"checkpoint file not found: {self.address(relative_path)}"

    def fetch(self, relative_path: str) -> Path:
        """Local path of `relative_path`, downloading it first when the source is remote."""
        if self.kind == "hub":
            return self._fetch_from_hub(relative_path)
        if self.kind == "fsspec":
            return self._fetch_with_fsspec(relative_path)
        path = self._local_root() / relative_path
        if not path.is_file():
            raise CheckpointError(self.missing_text(relative_path))
        return path

    def is_synthetic(self) -> bool:
        return self.size(SYNTHETIC_MARKER) is not None

    def _local_root(self) -> Path:
        return Path(self.location.removeprefix("file://")).expanduser()

    # --- Hugging Face hub (huggingface_hub: HF_HOME / HF_HUB_CACHE, HF_HUB_OFFLINE, HF_TOKEN, locks) ---
    def _hub_call(self, relative_path: str, dry_run: bool):
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        try:
            return hf_hub_download(self.repo_id, relative_path, revision=self.commit or self.revision,
                                   cache_dir=self.cache_dir, dry_run=dry_run)
        except LocalEntryNotFoundError:  # offline (HF_HUB_OFFLINE=1) or hub unreachable, and not cached
            from huggingface_hub import constants

            cache = self.cache_dir or constants.HF_HUB_CACHE
            why = " with HF_HUB_OFFLINE=1" if constants.HF_HUB_OFFLINE else " (the hub could not be reached)"
            self._hub_miss_reason = f": not in the HF cache {cache}{why}"
            return None
        except EntryNotFoundError:
            return None
        except RevisionNotFoundError as error:
            raise CheckpointError(f"hub repo {self.repo_id} has no revision {self.revision!r}") from error
        except RepositoryNotFoundError as error:  # also gated repos
            raise CheckpointError(
                f"cannot access hub repo {self.repo_id} (no such repo, or private/gated): check the name, "
                f"or set HF_TOKEN (or run `hf auth login`)"
            ) from error
        except Exception as error:  # network, HTTP errors: all end the same way for a user
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise CheckpointError(
                f"could not get {relative_path} from hub repo {self.repo_id}: "
                f"{type(error).__name__}: {first_line}"
            ) from error

    def _hub_size(self, relative_path: str) -> int | None:
        info = self._hub_call(relative_path, dry_run=True)
        if info is None:
            return None
        self.commit = self.commit or info.commit_hash
        return info.file_size if info.file_size is not None else UNKNOWN_SIZE

    def _fetch_from_hub(self, relative_path: str) -> Path:
        path = self._hub_call(relative_path, dry_run=False)
        if path is None:
            raise CheckpointError(self.missing_text(relative_path))
        path = Path(path)
        # The cache path is .../snapshots/<commit>/<relative_path>
        self.commit = self.commit or path.parents[len(Path(relative_path).parts) - 1].name
        return path

    # --- fsspec URLs (s3://, gs://, http(s)://, ...): downloaded once into the project cache ---
    def _fsspec(self, relative_path: str):
        import fsspec

        url = self.address(relative_path)
        try:
            return fsspec.core.url_to_fs(url, **self.storage_options)
        except Exception as error:
            raise CheckpointError(f"cannot open {url}: {type(error).__name__}: {error}") from error

    def _fetch_with_fsspec(self, relative_path: str) -> Path:
        from filelock import FileLock

        url = self.address(relative_path)
        cache_root = Path(self.cache_dir) if self.cache_dir else default_cache_dir() / "checkpoints"
        target = cache_root / hashlib.sha256(self.location.encode()).hexdigest()[:16] / relative_path
        remote_size = self.size(relative_path)
        if remote_size is None:
            raise CheckpointError(self.missing_text(relative_path))
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target) + ".lock"):  # workers sharing a cache download each file once
            if target.is_file() and target.stat().st_size == remote_size:
                return target
            fs, remote = self._fsspec(relative_path)
            partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
            try:
                fs.get_file(remote, str(partial))
            except Exception as error:
                partial.unlink(missing_ok=True)
                raise CheckpointError(f"could not download {url}: {type(error).__name__}: {error}") from error
            os.replace(partial, target)  # a crash mid-download never leaves a file that looks complete
        return target


@dataclass(frozen=True, slots=True)
class ResolvedCheckpoint:
    """Which files of a location make up one variant: the pre-flight record of `verify_checkpoint`."""

    location: str  # as resolved, with the hub commit attached (`hf://owner/repo@<commit>`)
    variant: str
    layout: str  # "repo" or "single-rate"
    files: dict[str, str]  # role → path relative to the location
    sizes: dict[str, int]  # role → bytes (UNKNOWN_SIZE when the hub does not say)
    revision: str | None  # the hub commit; None elsewhere
    synthetic: bool

    def to_dict(self) -> dict:
        return {"location": self.location, "variant": self.variant, "layout": self.layout,
                "files": dict(self.files), "sizes": dict(self.sizes), "revision": self.revision,
                "synthetic": self.synthetic}


def resolve_checkpoint(
    source: CheckpointSource, variant: SemantiCodecVariant, *, need_decoder: bool = False
) -> ResolvedCheckpoint:
    """The layout and files of `variant` at `source` (existence and sizes only, no download).

    Pins the layout on the source. Raises `CheckpointError` listing every path tried when no
    layout holds all the files."""
    tried = []
    for layout in ([source.layout] if source.layout else LAYOUTS):
        files = variant.files(layout, decoder=need_decoder)
        sizes = {role: source.size(path) for role, path in files.items()}
        missing = [files[role] for role, size in sizes.items() if size is None]
        if not missing:
            empty = [files[role] for role, size in sizes.items() if size == 0]
            if empty:
                raise CheckpointError(f"checkpoint file is empty (0 bytes): {source.address(empty[0])}")
            source.layout = layout
            return ResolvedCheckpoint(
                location=source.pinned_location, variant=variant.name, layout=layout, files=files,
                sizes=sizes, revision=source.commit, synthetic=source.is_synthetic(),
            )
        tried.append((layout, files, missing))
    raise CheckpointError(_not_found_message(source, variant, tried))


def verify_checkpoint(
    location: str,
    token_rate: int,
    semantic_vocab_size: int,
    *,
    storage_options: dict | None = None,
    need_decoder: bool = False,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> ResolvedCheckpoint:
    """Pre-flight for a job's driver: do all files of the variant exist at `location`? Reads no
    tensors (sizes only; on the hub, metadata or the cache). Raises `CheckpointError` in one line.
    `synthetic:` values must go through `synthetic.resolve_checkpoint_location` first."""
    if location.startswith("synthetic:"):
        raise ValueError(f"{location!r}: map it with resolve_checkpoint_location() before verifying")
    variant = SemantiCodecVariant(token_rate, semantic_vocab_size)
    source = CheckpointSource(location, revision, cache_dir, dict(storage_options or {}))
    return resolve_checkpoint(source, variant, need_decoder=need_decoder)


def _not_found_message(source: CheckpointSource, variant: SemantiCodecVariant, tried) -> str:
    first_missing = tried[0][2][0]
    mark = lambda path, missing: f"{path} [{'missing' if path in missing else 'found'}]"  # noqa: E731
    attempts = " and ".join(
        f"the {layout} layout (" + ", ".join(mark(path, missing) for path in files.values()) + ")"
        for layout, files, missing in tried
    )
    hints = "".join(f"; {hint}" for hint in _layout_hints(source, variant))
    return (f"{source.missing_text(first_missing)}; no {variant.name} checkpoint at {source.location}: "
            f"tried {attempts}{hints}")


def _layout_hints(source: CheckpointSource, variant: SemantiCodecVariant) -> list[str]:
    """What the location does hold, when it is not what was asked for (probed on failure only)."""
    rate, vocab = variant.token_rate, variant.semantic_vocab_size
    codebooks = {(r, v) for r in TOKEN_RATES for v in SEMANTIC_VOCAB_SIZES
                 if source.size(SemantiCodecVariant(r, v).codebook_file) is not None}
    rates = {r for r, _ in codebooks} | {
        r for r in TOKEN_RATES if source.size(SemantiCodecVariant(r, vocab).encoder_file) is not None
    }
    hints = []
    if rates and rate not in rates:
        found = ", ".join(str(r) for r in sorted(rates, reverse=True))
        hints.append(f"it holds token rate {found} files, not token rate {rate}")
    vocabs = sorted(v for r, v in codebooks if r == rate)
    if vocabs and vocab not in vocabs:
        sizes = ", ".join(map(str, vocabs))
        hints.append(f"its token rate {rate} codebooks are for semantic_vocab_size {sizes} only")
    if source.kind == "local":
        parent = CheckpointSource(str(source._local_root().parent))
        if parent.size(variant.codebook_file) is not None and parent.size(variant.encoder_file) is not None:
            hints.append(f"its parent folder is a repo snapshot with these files: pass {parent.location}")
    return hints


# --- reading files ---

def load_state_dict(path: Path) -> dict[str, Any]:
    """torch.load a plain state dict safely (`weights_only`, never unpickling code), memory-mapped
    when it is a zip checkpoint (what torch.save writes), with clear errors."""
    import pickle

    import torch

    with path.open("rb") as handle:
        magic = handle.read(4)
    size = path.stat().st_size
    read_errors = (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError)
    if magic == _ZIP_MAGIC:
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"cannot read checkpoint {path} ({size} bytes): it is truncated or corrupt "
                                  f"(a zip archive without its central directory); download it again")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except read_errors as error:
            raise CheckpointError(
                f"cannot read checkpoint {path} ({size} bytes): it is truncated, corrupt or not a torch "
                f"checkpoint ({type(error).__name__}: {_first_line(error)})"
            ) from error
    else:
        # torch's legacy (pre-1.6) format is not a zip and cannot be memory-mapped; weights_only
        # still refuses anything that is not plain tensors and containers.
        try:
            with warnings.catch_warnings():  # torch warns about the pickle protocol of what it then refuses
                warnings.simplefilter("ignore", UserWarning)
                state = torch.load(path, map_location="cpu", weights_only=True)
        except read_errors as error:
            raise CheckpointError(
                f"cannot read checkpoint {path} ({size} bytes): not a torch zip checkpoint (legacy format or "
                f"raw pickle?) and the safe weights-only loader refused it ({type(error).__name__}: "
                f"{_first_line(error)}); re-save the state dict with torch.save"
            ) from error
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"checkpoint {path} does not hold a flat state dict")
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else ""


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
            f"semantic codebook {path} has width {codebook.shape[1]}; "
            f"the encoder's features are {expected_dim}"
        )
    return codebook


@dataclass(frozen=True, slots=True)
class LoadedFile:
    path: str
    sha256: str


def hash_cache_dir() -> Path:
    return default_cache_dir() / "hashes"


def encoder_file_hashes(location: str, token_rate: int, semantic_vocab_size: int, *,
                        storage_options: dict | None = None) -> dict[str, str]:
    """{"encoder": sha256, "semantic_codebook": sha256} of a variant's encoding files (fetched into
    the cache first when remote), without loading them: what `codec_identity` compares."""
    source = CheckpointSource(location, storage_options=dict(storage_options or {}))
    resolved = resolve_checkpoint(source, SemantiCodecVariant(token_rate, semantic_vocab_size))
    return {role: sha256_of_file(source.fetch(path), hash_cache_dir()) for role, path in resolved.files.items()
            if role in ("encoder", "semantic_codebook")}


def describe_file(path: Path) -> LoadedFile:
    return LoadedFile(path=str(path), sha256=sha256_of_file(path, hash_cache_dir()))
