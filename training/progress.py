"""One progress display over a whole training job: architectures x seeds x epochs, elapsed time, ETA.

Every epoch prints one line (kept in logs); at a terminal the current epoch's batches also update a
single status line in place. The ETA assumes the remaining epochs of an architecture take as long as
its finished ones, and an architecture not yet started takes the mean of all finished epochs.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TextIO

import keras


def clock(seconds: float) -> str:
    """1h02m, 3m05s or 42s."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class JobProgress:
    def __init__(
        self,
        architectures: tuple[str, ...],
        seeds: int,
        epochs: int,
        *,
        stream: TextIO | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._architectures = architectures
        self._epochs_per_run = epochs
        self._seeds = seeds
        self._total = len(architectures) * seeds * epochs
        self._stream = stream or sys.stdout
        self._now = now
        self._started = now()
        self._seconds: dict[str, list[float]] = defaultdict(list)
        self._live = self._stream.isatty()

    @property
    def done(self) -> int:
        return sum(len(seconds) for seconds in self._seconds.values())

    def eta_seconds(self) -> float | None:
        finished = [s for seconds in self._seconds.values() for s in seconds]
        if not finished:
            return None
        overall = sum(finished) / len(finished)
        per_run = self._seeds * self._epochs_per_run
        remaining = 0.0
        for architecture in self._architectures:
            seconds = self._seconds.get(architecture, [])
            mean = sum(seconds) / len(seconds) if seconds else overall
            remaining += (per_run - len(seconds)) * mean
        return remaining

    def prefix(self) -> str:
        eta = self.eta_seconds()
        return (
            f"[{self.done}/{self._total} epochs, {clock(self._now() - self._started)} elapsed, "
            f"ETA {'?' if eta is None else clock(eta)}]"
        )

    def epoch_lines(self, architecture: str, run_label: str) -> EpochLines:
        return EpochLines(self, run_label, architecture)

    def epoch_done(self, architecture: str, seconds: float, line: str) -> None:
        self._seconds[architecture].append(seconds)
        self.write(f"{self.prefix()} {line}")

    def batch_done(self, line: str) -> None:
        if self._live:
            self._stream.write(f"\r\x1b[2K{self.prefix()} {line}")
            self._stream.flush()

    def write(self, line: str) -> None:
        self._stream.write(("\r\x1b[2K" if self._live else "") + line + "\n")
        self._stream.flush()


class EpochLines(keras.callbacks.Callback):
    """Wall seconds per epoch (fit + validation), which Keras's History does not keep, and the lines."""

    def __init__(self, progress: JobProgress, run: str, architecture: str) -> None:
        super().__init__()
        self.progress, self.run, self.architecture = progress, run, architecture
        self.seconds: list[float] = []
        self._started = 0.0
        self._epoch = 0
        self._steps = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._steps = int(self.params.get("steps") or 0)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch + 1
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if batch % 20 == 0:
            self.progress.batch_done(f"{self.run} epoch {self._epoch}: batch {batch + 1}/{self._steps}")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = time.perf_counter() - self._started
        self.seconds.append(seconds)
        logs = logs or {}
        figures = " ".join(
            f"{key} {logs[key]:.4f}"
            for key in ("loss", "accuracy", "val_loss", "val_accuracy")
            if key in logs
        )
        line = f"{self.run} epoch {epoch + 1}/{self.params['epochs']}: {figures}, {seconds:.1f} s"
        self.progress.epoch_done(self.architecture, seconds, line)
