"""Which exceptions come from the accelerator rather than from one input's content.

A device error (a sticky CUDA error such as an illegal memory access or an Xid, a cuDNN/cuBLAS
failure, running out of device memory) says nothing about the audio being encoded: after a
sticky CUDA error every later kernel in the process fails too. Callers re-raise these so the
worker process dies and its work is retried elsewhere, instead of recording the inputs as bad.
"""

from __future__ import annotations

# Lower-case fragments of the messages PyTorch's CUDA, cuDNN and cuBLAS layers raise.
_DEVICE_MESSAGE_FRAGMENTS = (
    "cuda error",
    "cuda driver",
    "cudnn_status",
    "cudnn error",
    "cublas_status",
    "cublas error",
    "cufft_",
    "illegal memory access",
    "an illegal instruction",
    "device-side assert",
    "unspecified launch failure",
    "ecc error",
    "out of memory",
    "nccl error",
)


def is_out_of_memory(error: BaseException) -> bool:
    """Device (or allocator) ran out of memory: the same work may fit when split."""
    import torch

    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def is_device_error(error: BaseException) -> bool:
    """True for errors of the accelerator itself (see the module docstring), False otherwise."""
    import torch

    if isinstance(error, (torch.cuda.OutOfMemoryError, torch.AcceleratorError)):
        return True
    if not isinstance(error, RuntimeError):  # torch raises device failures as RuntimeError subclasses
        return False
    message = str(error).lower()
    return any(fragment in message for fragment in _DEVICE_MESSAGE_FRAGMENTS)
