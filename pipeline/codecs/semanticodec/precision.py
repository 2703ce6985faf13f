"""The encoder's numeric precision per component, chosen per (dtype option, device type).

* `float32`: everything in IEEE float32 (the official numerics).
* `bfloat16`: AudioMAE under bf16 autocast; the LSTM's weights cast once to `BF16_LSTM_DTYPE`
  of the device type; fbank, output linear and the codeword distances stay float32.

No process-global flag is ever set (`allow_tf32`, `set_float32_matmul_precision`): they race
between threads and leak into other code. PyTorch's defaults keep cuBLAS matmuls in IEEE fp32,
which the distances rely on: `check_fp32_matmuls` refuses a process where someone switched
TF32 matmuls on. cuDNN (the fp32 LSTM and the patch-embedding conv on CUDA) allows TF32 by
PyTorch's default; `components` reports that as it is rather than hiding it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import torch

from ...errors import ConfigError
from .variants import Dtype

DTYPES: tuple[str, ...] = get_args(Dtype)
# The LSTM dtype under the bfloat16 option, per device type, by measurement
# (bench/encode_throughput.py). CPU: oneDNN's bf16 LSTM on avx512_bf16 ran the whole encoder 2.1x
# faster than the same bf16 codec with an fp32 LSTM (5.2 vs 2.5 audio-s/s, rate 100, 2 threads);
# CPUs without native bf16 keep it in fp32. CUDA: no GPU was available to measure; cuDNN's bf16
# LSTM runs on tensor cores and reads half the weight bytes per step (the recurrence is
# bandwidth-bound at small batch).
BF16_LSTM_DTYPE = {"cpu": torch.bfloat16, "cuda": torch.bfloat16}


@dataclass(frozen=True, slots=True)
class Precision:
    device_type: str
    audiomae_autocast: torch.dtype | None  # None: float32
    lstm: torch.dtype

    def components(self) -> dict[str, str]:
        """What each component computes in, for the run record."""
        cudnn_tf32 = self.device_type == "cuda" and torch.backends.cudnn.allow_tf32
        lstm = _name(self.lstm)
        if lstm == "float32" and cudnn_tf32:
            lstm = "tf32"  # cuDNN's RNN under PyTorch's default allow_tf32
        return {
            "fbank": "float32",
            "audiomae": _name(self.audiomae_autocast) if self.audiomae_autocast else "float32",
            "lstm": lstm,
            "output_linear": "float32",
            "distances": "float32",
        }


def precision_for(dtype: str, device_type: str) -> Precision:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if dtype == "float32":
        return Precision(device_type, None, torch.float32)
    lstm = BF16_LSTM_DTYPE.get(device_type, torch.float32)
    if device_type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        lstm = torch.float32  # emulated bf16 would be slower than fp32
    return Precision(device_type, torch.bfloat16, lstm)


def check_fp32_matmuls(device_type: str) -> None:
    """Refuse to run when this process made float32 CUDA matmuls TF32 (the distances need IEEE)."""
    if device_type == "cuda" and torch.get_float32_matmul_precision() != "highest":
        raise ConfigError(
            "this process enabled TF32 float32 matmuls (torch.backends.cuda.matmul.allow_tf32 or "
            "set_float32_matmul_precision); SemantiCodec's codeword distances need IEEE float32: leave "
            "them at PyTorch's default"
        )


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
