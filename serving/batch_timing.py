"""When a batch's steps ran: the batcher takes the times, the metrics and the traces read them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BatchTiming:
    """perf_counter readings of one batch: formed (a thread taken for it), prepared (on the loop),
    and the runtime call's start and end on its thread."""

    formed: float
    prepared: float
    started: float
    ended: float
    items: int

    @property
    def prepare_s(self) -> float:
        return self.prepared - self.formed

    @property
    def execute_s(self) -> float:
        return self.ended - self.started

    @property
    def compute_s(self) -> float:
        """The batch's own work: prepare and execute, not the hand-offs between them."""
        return self.prepare_s + self.execute_s

    @property
    def compute_per_item_s(self) -> float:
        return self.compute_s / self.items
