"""Synthetic SemantiCodec checkpoints in the official folder layout, for tests and offline demos.

Two kinds, both marked with `SYNTHETIC_WEIGHTS.json` at the folder root so that everything
built on them can say so:

* **golden**: full-size weights rebuilt bit for bit from the manifests in
  `shared/golden/semanticodec/` (each entry names its fill: `materialize`; every tensor's SHA-256 checked).
  The golden tokens were computed with the official code on exactly these weights.
* **small**: the same keys with small shapes (ViT width 64, 4 blocks; a small UNet, VAE and
  vocoder), so the pipeline's tests and the offline demo run in seconds, decoding included. The
  model code derives its architecture from shapes, so both load the same way.

Both are written in the published layout (`semanticodec_tokenrate_{R}/` + `codebook_idx/` at the
root). `resolve_checkpoint_location` is the one place that maps `synthetic:small|golden` to them.

Weights are random: tokens from them carry no meaning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import zlib
from pathlib import Path

import numpy as np

from ...errors import CheckpointError
from .checkpoint import SYNTHETIC_MARKER, default_cache_dir
from .variants import (
    ACOUSTIC_VOCAB_SIZE,
    SEMANTIC_VOCAB_SIZES,
    SemantiCodecVariant,
)

log = logging.getLogger(__name__)

GOLDEN_DIR_ENV = "SEMANTICODEC_GOLDEN_DIR"
LAYOUT_TAG = "published-layout-2"  # in the cache folder names: folders of an older layout are not reused
_NUMPY_DTYPES = {"float32": np.float32, "bool": np.bool_, "int32": np.int32, "int64": np.int64}


def default_golden_dir() -> Path:
    """`shared/golden/semanticodec` beside the repository, or $SEMANTICODEC_GOLDEN_DIR."""
    if os.environ.get(GOLDEN_DIR_ENV):
        return Path(os.environ[GOLDEN_DIR_ENV])
    repo = Path(__file__).resolve().parents[3]
    return repo.parent / "shared" / "golden" / "semanticodec"


def fill_normal(key: str, shape, scale: float, offset: float) -> np.ndarray:
    """The golden weights' fill: float64 standard normals seeded by crc32(key), scaled and offset,
    rounded to float32 once."""
    rng = np.random.default_rng(zlib.crc32(key.encode("utf-8")))
    values = rng.standard_normal(tuple(shape))
    values *= scale
    values += offset
    return values.astype(np.float32)


def materialize(entry: dict, fixed_buffers=None) -> np.ndarray:
    """One manifest entry → its array: seeded normals (`fill_normal`), a constant, or an array of the
    fixed buffers file."""
    fill = entry["fill"]
    if fill == "normal":
        return fill_normal(entry["key"], entry["shape"], float(entry["scale"]), float(entry["offset"]))
    dtype = _NUMPY_DTYPES[entry["dtype"]]
    if fill == "constant":
        return np.full(entry["shape"], entry["value"], dtype=dtype)
    if fill == "file":
        return np.asarray(fixed_buffers[entry["array"]], dtype=dtype).reshape(entry["shape"])
    raise ValueError(f"unknown fill {fill!r} for {entry['key']}")


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _state_from_manifest(manifest: dict, fixed_buffers=None) -> dict:
    import torch

    state = {}
    for entry in manifest["entries"]:
        array = materialize(entry, fixed_buffers)
        if _sha256(array) != entry["sha256"]:
            raise RuntimeError(f"synthetic tensor {entry['key']} does not match its manifest sha256")
        state[entry["key"]] = torch.from_numpy(array)
    return state


def _write_marker(root: Path, description: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    text = {"synthetic": True, "warning": "random weights for tests: tokens and audio mean nothing", **description}
    write_text = lambda obj, path: path.write_text(obj)  # noqa: E731
    _save_atomically(json.dumps(text, indent=2) + "\n", root / SYNTHETIC_MARKER, write_text)


def _save_npy(array: np.ndarray, path: Path) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array)


def _save_atomically(obj, path: Path, save) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")  # two builders never share a file
    save(obj, partial)
    os.replace(partial, path)


def _write_golden_encoder(root: Path, token_rate: int, golden: Path) -> None:
    import torch

    variant = SemantiCodecVariant(token_rate, 4096)
    manifest = json.loads((golden / f"encoder_manifest_r{token_rate}.json").read_text())
    codebook = materialize(manifest["semantic_codebook"])
    if _sha256(codebook) != manifest["semantic_codebook"]["sha256"]:
        raise RuntimeError("synthetic semantic codebook does not match its manifest sha256")
    _save_atomically(codebook, root / variant.codebook_file, _save_npy)
    del codebook
    state = _state_from_manifest(manifest)
    _save_atomically(state, root / variant.encoder_file, torch.save)


def _write_golden_decoder(root: Path, token_rate: int, golden: Path) -> None:
    import torch

    manifest = json.loads((golden / f"decoder_manifest_r{token_rate}.json").read_text())
    with np.load(golden / "decoder_fixed_buffers.npz") as buffers:
        state = _state_from_manifest(manifest, buffers)
    _save_atomically(state, root / SemantiCodecVariant(token_rate, 4096).decoder_file, torch.save)


@contextlib.contextmanager
def _build_lock(folder: Path):
    """One builder per folder across processes (parallel jobs, Ray workers, pytest-xdist)."""
    from filelock import FileLock

    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        yield


def ensure_golden_checkpoint(token_rate: int, *, cache_dir=None, golden_dir=None, include_decoder=False) -> Path:
    """The cached golden checkpoint folder of one rate, built on first use (outside the repo); the
    decoder is added when first asked for."""
    golden = Path(golden_dir) if golden_dir else default_golden_dir()
    manifest = golden / f"encoder_manifest_r{token_rate}.json"
    tag = hashlib.sha256(manifest.read_bytes() + LAYOUT_TAG.encode()).hexdigest()[:12]
    root = Path(cache_dir) if cache_dir else default_cache_dir() / "synthetic-golden"
    folder = root / f"r{token_rate}-{tag}"
    variant = SemantiCodecVariant(token_rate, 4096)
    encoder_files = (variant.encoder_file, variant.codebook_file, SYNTHETIC_MARKER)
    have = lambda names: all((folder / name).is_file() for name in names)  # noqa: E731
    if have(encoder_files) and (not include_decoder or have([variant.decoder_file])):
        return folder
    with _build_lock(folder):
        if not have(encoder_files):
            log.info("building synthetic golden encoder (rate %d) in %s", token_rate, folder)
            _write_golden_encoder(folder, token_rate, golden)
        if include_decoder and not have([variant.decoder_file]):
            log.info("building synthetic golden decoder (rate %d) in %s", token_rate, folder)
            _write_golden_decoder(folder, token_rate, golden)
        _write_marker(folder, {"kind": "golden", "source": str(golden)})
    return folder


# --- small checkpoints for pipeline tests ---

def _small_scale(key: str, shape) -> tuple[float, float]:
    """Scale/offset chosen as for the golden weights: activations near unit variance through every layer."""
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    name = key.rsplit(".", 1)[-1]
    if "norm" in key and name == "weight":
        return 0.1, 1.0
    if name.startswith("bias"):
        return 0.02, 0.0
    if name == "pos_embed":
        return 0.6, 0.0
    if name in ("cls_token", "embed"):
        return 0.02, 0.0
    if name.startswith("weight_ih"):
        return 4 / np.sqrt(shape[1]), 0.0
    if name.startswith("weight_hh"):
        return 2 / np.sqrt(shape[1]), 0.0
    if key.endswith("attn.proj.weight"):
        return 0.1 / np.sqrt(fan_in), 0.0
    return 1 / np.sqrt(fan_in), 0.0


def small_encoder_shapes(token_rate: int, width: int = 64, depth: int = 4, layers: int | None = None) -> dict:
    """Key → shape of a small encoder in the official key layout (MAE decoder left out)."""
    variant = SemantiCodecVariant(token_rate, 4096)
    dim = width * variant.patches_per_token
    hidden = 2 * dim
    patch = 16
    shapes = {
        "audiomae.model.cls_token": (1, 1, width),
        "audiomae.model.pos_embed": (1, 513, width),
        "audiomae.model.patch_embed.proj.weight": (width, 1, patch, patch),
        "audiomae.model.patch_embed.proj.bias": (width,),
    }
    for b in range(depth):
        p = f"audiomae.model.blocks.{b}."
        shapes |= {
            p + "norm1.weight": (width,), p + "norm1.bias": (width,),
            p + "attn.qkv.weight": (3 * width, width), p + "attn.qkv.bias": (3 * width,),
            p + "attn.proj.weight": (width, width), p + "attn.proj.bias": (width,),
            p + "norm2.weight": (width,), p + "norm2.bias": (width,),
            p + "mlp.fc1.weight": (4 * width, width), p + "mlp.fc1.bias": (4 * width,),
            p + "mlp.fc2.weight": (width, 4 * width), p + "mlp.fc2.bias": (width,),
        }
    shapes |= {"audiomae.model.norm.weight": (width,), "audiomae.model.norm.bias": (width,)}
    for layer in range(layers or variant.lstm_layers):
        in_size = 2 * dim if layer == 0 else 2 * hidden
        for suffix in ("", "_reverse"):
            shapes |= {
                f"encoder.weight_ih_l{layer}{suffix}": (4 * hidden, in_size),
                f"encoder.weight_hh_l{layer}{suffix}": (4 * hidden, hidden),
                f"encoder.bias_ih_l{layer}{suffix}": (4 * hidden,),
                f"encoder.bias_hh_l{layer}{suffix}": (4 * hidden,),
            }
    shapes |= {
        "encoder_output_linear.weight": (dim, 2 * hidden),
        "quantizer._codebook.embed": (1, ACOUSTIC_VOCAB_SIZE, dim),
    }
    return shapes


def _small_decoder_fill(key: str, shape) -> np.ndarray:
    name = key.rsplit(".", 1)[-1]
    if len(shape) == 1 and name == "weight":  # GroupNorm / LayerNorm gains
        scale, offset = 0.1, 1.0
    elif name == "bias":
        scale, offset = 0.02, 0.0
    else:
        scale, offset = 1 / np.sqrt(int(np.prod(shape[1:]))), 0.0
    return fill_normal(f"small-decoder|{key}", shape, scale, offset)


def build_small_checkpoint(
    root: str | os.PathLike,
    token_rates=(100,),
    semantic_vocab_sizes=SEMANTIC_VOCAB_SIZES,
    *,
    width: int = 64,
    depth: int = 4,
    include_decoder: bool = True,
) -> Path:
    """Write small synthetic encoders, codebooks and (by default) decoders for the given rates and
    vocabularies under `root`, in the published layout. Existing files are kept: they are a
    deterministic function of (key, width, depth), so a folder can be completed piece by piece."""
    root = Path(root)
    for rate in token_rates:
        _write_small_rate(root, rate, semantic_vocab_sizes, width, depth, include_decoder)
    _write_marker(root, {"kind": "small", "width": width, "depth": depth})
    return root


def _write_small_rate(root: Path, rate: int, vocab_sizes, width: int, depth: int, decoder: bool) -> None:
    import torch

    from .synthetic_decoder import small_decoder_state

    variant = SemantiCodecVariant(rate, 4096)
    shapes = small_encoder_shapes(rate, width, depth)
    dim = shapes["quantizer._codebook.embed"][-1]
    for vocab in vocab_sizes:
        path = root / SemantiCodecVariant(rate, vocab).codebook_file
        if not path.is_file():
            codebook = fill_normal(f"small|codebook|{rate}|{vocab}", (vocab, dim), 0.05, 0.0)
            _save_atomically(codebook, path, _save_npy)
    if not (root / variant.encoder_file).is_file():
        state = {
            key: torch.from_numpy(fill_normal(f"small|{key}", shape, *_small_scale(key, shape)))
            for key, shape in shapes.items()
        }
        _save_atomically(state, root / variant.encoder_file, torch.save)
    if decoder and not (root / variant.decoder_file).is_file():
        state = small_decoder_state(dim, _small_decoder_fill)
        _save_atomically(state, root / variant.decoder_file, torch.save)


def ensure_small_checkpoint(
    token_rate: int, semantic_vocab_size: int, *, with_decoder: bool = False, cache_dir=None
) -> Path:
    """The shared small synthetic checkpoint folder, completed with this variant's files on first
    use (one builder at a time across processes). Every rate and vocabulary size is available."""
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    folder = root / f"synthetic-small-{LAYOUT_TAG}"
    variant = SemantiCodecVariant(token_rate, semantic_vocab_size)
    needed = [SYNTHETIC_MARKER, *variant.files(decoder=with_decoder).values()]
    if all((folder / name).is_file() for name in needed):
        return folder
    with _build_lock(folder):
        log.info("building small synthetic checkpoint files for %s in %s", variant.name, folder)
        build_small_checkpoint(folder, (token_rate,), (semantic_vocab_size,), include_decoder=with_decoder)
    return folder


SYNTHETIC_PREFIX = "synthetic:"
SYNTHETIC_KINDS = ("small", "golden")


def resolve_checkpoint_location(
    value: str, token_rate: int, semantic_vocab_size: int, *, with_decoder: bool = False
) -> str:
    """`synthetic:small` / `synthetic:golden` → the cached folder holding that variant's synthetic
    files (built once, under a file lock); any other value is returned unchanged."""
    if not value.startswith(SYNTHETIC_PREFIX):
        return value
    kind = value[len(SYNTHETIC_PREFIX):]
    if kind == "small":
        return str(ensure_small_checkpoint(token_rate, semantic_vocab_size, with_decoder=with_decoder))
    if kind == "golden":
        if semantic_vocab_size != 4096:
            raise CheckpointError(
                f"synthetic:golden exists only for semantic_vocab_size 4096 (the golden vectors' codebook), "
                f"not {semantic_vocab_size}: use --semantic-vocab-size 4096, or synthetic:small for any size"
            )
        SemantiCodecVariant(token_rate, semantic_vocab_size)  # a clear error for an unknown rate
        return str(ensure_golden_checkpoint(token_rate, include_decoder=with_decoder))
    raise CheckpointError(
        f"unknown synthetic checkpoint {value!r}: use "
        + " or ".join(SYNTHETIC_PREFIX + name for name in SYNTHETIC_KINDS)
    )
