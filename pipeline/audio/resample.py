"""Resampling long inputs in bounded memory, with the codec's own resampler kernel
(`codecs.semanticodec.input.resampler`): block by block (`StreamingResampler`), or cut into
resampler input spans for the encoder's device (`SpanCutter`, `resample_spans`)."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ..codecs.semanticodec.input import resampled_length, resampler
from ..codecs.semanticodec.variants import SAMPLE_RATE_HZ

GROUP_INPUT_SAMPLES = 1 << 22  # input samples per convolution in a streamed resample (16 MiB)


class StreamingResampler:
    """Resample one channel block by block, in memory bounded by `GROUP_INPUT_SAMPLES`.

    Output sample frames are the official resampler's: the same cached kernel slides over the
    same input positions, with the zero padding at both ends the whole-signal resampler uses, so
    the concatenated output equals resampling the whole signal at once up to float rounding of
    the convolution (max |Δ| ≤ 1.2e-7 from 8 to 96 kHz, measured in tests/test_audio.py).
    """

    def __init__(self, orig_rate: int, new_rate: int) -> None:
        import torch

        self.passthrough = orig_rate == new_rate
        self.orig_rate, self.new_rate, self.length = orig_rate, new_rate, 0
        if self.passthrough:
            return
        transform = resampler(orig_rate, new_rate)
        self.kernel, self.width = transform.kernel, transform.width
        self.orig, self.new = transform.orig_freq // transform.gcd, transform.new_freq // transform.gcd
        self.buffer = torch.zeros(self.width)  # holds padded positions [self.base, ...)
        self.base, self.next_frame, self.emitted = 0, 0, 0
        self.group = max(1, GROUP_INPUT_SAMPLES // self.orig)  # frames per convolution
        self.pending: list = []  # pushed blocks not yet in the buffer (one concatenation per group)
        self.pending_samples = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Feed input samples; returns the output samples they complete (in whole groups)."""
        import torch

        self.length += len(samples)
        if self.passthrough:
            return samples
        self.pending.append(torch.from_numpy(np.ascontiguousarray(samples, np.float32)))
        self.pending_samples += len(samples)
        if self.pending_samples < self.group * self.orig:
            return np.zeros(0, np.float32)
        return self._emit()

    def finish(self) -> np.ndarray:
        """The last output samples (right zero padding, trimmed to the official length)."""
        import torch

        if self.passthrough:
            return np.zeros(0, np.float32)
        self.pending.append(torch.zeros(self.width + self.orig))
        tail = self._emit(final=True)
        wanted = resampled_length(self.orig_rate, self.new_rate, self.length) - (self.emitted - len(tail))
        self.emitted += min(wanted, len(tail)) - len(tail)
        return tail[:max(0, wanted)]

    def _emit(self, final: bool = False) -> np.ndarray:
        """Frames whose input is all here, `group` at a time: the convolution's cost per call is
        mostly fixed (tens of ms on CPU), so it runs on large groups of equal shape."""
        import torch

        self.buffer = torch.cat([self.buffer, *self.pending])
        self.pending, self.pending_samples = [], 0
        size = self.kernel.shape[-1]
        ready = (self.base + len(self.buffer) - size) // self.orig + 1 - self.next_frame
        if not final:
            ready -= ready % self.group
        if ready <= 0:
            return np.zeros(0, np.float32)
        outs = []
        for start in range(0, ready, self.group):
            count = min(self.group, ready - start)
            lo = (self.next_frame + start) * self.orig - self.base
            window = self.buffer[lo:lo + (count - 1) * self.orig + size]
            frames = torch.nn.functional.conv1d(window[None, None], self.kernel, stride=self.orig)
            outs.append(frames.transpose(1, 2).reshape(-1).numpy())
        self.next_frame += ready
        drop = self.next_frame * self.orig - self.base
        self.buffer, self.base = self.buffer[drop:].clone(), self.base + drop
        out = np.concatenate(outs) if len(outs) > 1 else outs[0]
        self.emitted += len(out)
        return out


# --- resampling deferred to the encoder (`--resample-on encoder`) ---------------------------------

class SpanCutter:
    """Cut a signal into the resampler input spans of its consecutive 16 kHz chunks, streamed.

    The official resampler is a strided convolution over the signal zero-padded by `width` on the
    left and `width + orig` on the right: output frame j (`new` samples) reads padded input
    [j·orig, j·orig + kernel size). A chunk of `chunk_out` output samples, a multiple of `new`,
    therefore reads one contiguous span of the padded input; consecutive spans overlap by
    kernel size − orig samples. `resample_spans` turns each span back into exactly its chunk's
    samples of the whole-signal resample (up to float rounding of the convolution), on any
    device, so a decode task can ship spans and leave the resampling to the encoder's GPU.

    `push` source samples, then `finish`; each returns the (span, output sample count) pairs it
    completed. Memory: the span being filled plus the one returned.
    """

    def __init__(self, orig_rate: int, new_rate: int, length: int, chunk_out: int) -> None:
        if not self.supported(orig_rate, new_rate, chunk_out):
            raise ValueError(f"{chunk_out} output samples per chunk is not a whole number of "
                             f"{orig_rate}→{new_rate} Hz resampler frames")
        transform = resampler(orig_rate, new_rate)
        self.orig, self.new = orig_rate // transform.gcd, new_rate // transform.gcd
        self.width, self.size = transform.width, transform.kernel.shape[-1]
        self.chunk_out = chunk_out
        self.total = resampled_length(orig_rate, new_rate, length)
        self.spans = [self._span(start) for start in range(0, self.total, chunk_out)]
        self.next_span, self.current, self.filled = 0, None, 0
        self.ready: list = []
        self._start_span()
        self._feed(np.zeros(self.width, np.float32))

    @staticmethod
    def supported(orig_rate: int, new_rate: int, chunk_out: int) -> bool:
        return orig_rate != new_rate and chunk_out % (new_rate // math.gcd(orig_rate, new_rate)) == 0

    def push(self, samples: np.ndarray) -> list[tuple[np.ndarray, int]]:
        self._feed(np.asarray(samples, np.float32))
        return self._take()

    def finish(self) -> list[tuple[np.ndarray, int]]:
        self._feed(np.zeros(self.width + self.orig, np.float32))
        if self.current is not None:
            raise ValueError("span cutter finished before its last span was filled: fewer samples than announced")
        return self._take()

    def _span(self, start: int) -> tuple[int, int, int]:
        """(lo, hi, output count) in padded-input coordinates of the chunk starting at output `start`."""
        end = min(start + self.chunk_out, self.total)
        first_frame, end_frame = start // self.new, -(-end // self.new)
        return first_frame * self.orig, (end_frame - 1) * self.orig + self.size, end - start

    def _start_span(self, overlap: np.ndarray | None = None) -> None:
        if self.next_span == len(self.spans):
            self.current = None
            return
        lo, hi, _ = self.spans[self.next_span]
        self.current = np.empty(hi - lo, np.float32)
        self.filled = 0 if overlap is None else len(overlap)
        if overlap is not None:
            self.current[: len(overlap)] = overlap

    def _feed(self, samples: np.ndarray) -> None:
        while len(samples) and self.current is not None:
            used = min(len(self.current) - self.filled, len(samples))
            self.current[self.filled:self.filled + used] = samples[:used]
            self.filled, samples = self.filled + used, samples[used:]
            if self.filled == len(self.current):
                lo, _, count = self.spans[self.next_span]
                done = self.current
                self.ready.append((done, count))
                self.next_span += 1
                next_lo = self.spans[self.next_span][0] if self.next_span < len(self.spans) else None
                self._start_span(None if next_lo is None else done[next_lo - lo:])

    def _take(self) -> list[tuple[np.ndarray, int]]:
        ready, self.ready = self.ready, []
        return ready


@lru_cache(maxsize=64)
def _kernel_on(orig_rate: int, new_rate: int, device: str):
    return resampler(orig_rate, new_rate).kernel.to(device)


def resample_spans(spans: list, orig_rates: list[int], counts: list[int], new_rate: int = SAMPLE_RATE_HZ,
                   device: str = "cpu") -> list:
    """`SpanCutter` spans (numpy or torch, each with its source rate and output count) → float32
    tensors of `counts` samples at `new_rate`, on `device`. Spans of one rate and length (the
    usual batch of same-format clips) go through one convolution, uploaded from one (pinned, for
    CUDA) host buffer without waiting; nothing is read back."""
    import torch

    out: list = [None] * len(spans)
    groups: dict[tuple[int, int], list[int]] = {}
    for index, (span, rate) in enumerate(zip(spans, orig_rates, strict=True)):
        groups.setdefault((int(rate), len(span)), []).append(index)
    pin = torch.device(device).type == "cuda"
    for (rate, length), indices in groups.items():
        kernel = _kernel_on(rate, new_rate, str(device))
        stride = rate // math.gcd(rate, new_rate)
        host = torch.empty((len(indices), length), dtype=torch.float32, pin_memory=pin)
        for row, index in enumerate(indices):
            host[row].copy_(torch.as_tensor(spans[index], dtype=torch.float32))
        frames = torch.nn.functional.conv1d(host.to(device, non_blocking=True)[:, None], kernel, stride=stride)
        samples = frames.transpose(1, 2).reshape(len(indices), -1)
        for row, index in enumerate(indices):
            out[index] = samples[row, : counts[index]]
    return out
