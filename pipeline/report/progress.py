"""Progress of a spot check on stderr: a bar over the picked rows and, under it, a bar over the
DDIM steps of the row being decoded (a row takes ~46 s on CPU at 4 steps: it must not look hung)."""

from __future__ import annotations

import sys
from typing import Self


class PickProgress:
    """A `DecodeProgress` drawn with tqdm; close it (or use it as a context manager) when done."""

    def __init__(self, picks: int, *, file=None, disable: bool = False) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._file = file or sys.stderr
        self._disable = disable
        self.picks = tqdm(total=picks, desc="spot check", unit="row", file=self._file, disable=disable,
                          dynamic_ncols=True)
        self.steps = None
        self._current: int | None = None

    def step(self, index: int, done: int, total: int) -> None:
        if self._current != index:
            self._close_steps()
            self._current = index
            self.steps = self._tqdm(total=total, desc=f"  row {index + 1} decode", unit="step", leave=False,
                                    file=self._file, disable=self._disable, dynamic_ncols=True)
        self.steps.total = total
        if done > self.steps.n and not self.steps.update(done - self.steps.n):
            self.steps.refresh()  # steps are seconds apart: show each one (tqdm would skip some)

    def pick_done(self, index: int) -> None:
        self._close_steps()
        if not self.picks.update(1):
            self.picks.refresh()

    def _close_steps(self) -> None:
        if self.steps is not None:
            self.steps.close()
        self.steps, self._current = None, None

    def close(self) -> None:
        self._close_steps()
        self.picks.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
