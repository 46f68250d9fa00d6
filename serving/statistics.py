"""Per model version counters in the shape of Triton's `InferStatistics`, kept by the server itself.

KServe V2 `ModelStatistics` (gRPC) and `/v2/models/{m}/stats` (REST) answer from these. They are fed
from the request path that already exists, a few integer additions per request and per batch:
- `request_done` from `InferenceService.classify`: success / fail count and end-to-end ns;
- `queued` from the batcher (through `ModelMetrics.queue_wait`): queue count and ns per request;
- `batch_ran` from `ServedModel.finish`: execution_count, inference_count (texts), last_inference,
  and compute_input (tokenization), compute_infer (the runtime call) and compute_output, per batch
  and per executed batch size. compute_output is counted but always 0 ns: the runtime's output is
  already the float32 rows handed back, split per request without a copy.

Triton charges each request of a batch the whole batch's compute time; here compute_* count executed
batches, so their ns add up to the CPU time really spent (success and queue stay per request).
Every event is recorded on the event loop (a batch's only when it is back from its inference thread),
so nothing here needs a lock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Duration:
    """Triton's StatisticDuration: a count and the total of its durations in nanoseconds."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.ns += int(seconds * 1e9)

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class BatchDurations:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)

    def add(self, input_s: float, infer_s: float) -> None:
        self.compute_input.add(input_s)
        self.compute_infer.add(infer_s)
        self.compute_output.add(0.0)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {
            "compute_input": self.compute_input.as_dict(),
            "compute_infer": self.compute_infer.as_dict(),
            "compute_output": self.compute_output.as_dict(),
        }


class ModelStatistics:
    def __init__(self) -> None:
        self.success = Duration()
        self.fail = Duration()
        self.queue = Duration()
        self._compute = BatchDurations()
        self._by_size: dict[int, BatchDurations] = {}
        self.inference_count = 0
        self.execution_count = 0
        self.last_inference_ms = 0

    def request_done(self, ok: bool, seconds: float) -> None:
        (self.success if ok else self.fail).add(seconds)

    def queued(self, seconds: float) -> None:
        self.queue.add(seconds)

    def batch_ran(self, size: int, input_s: float, infer_s: float) -> None:
        self.execution_count += 1
        self.inference_count += size
        self.last_inference_ms = int(time.time() * 1000)
        self._compute.add(input_s, infer_s)
        by_size = self._by_size.get(size)
        if by_size is None:
            by_size = self._by_size[size] = BatchDurations()
        by_size.add(input_s, infer_s)

    def as_dict(self, name: str, version: int) -> dict[str, Any]:
        """Triton's ModelStatistics as JSON (the REST form; gRPC parses it into the message)."""
        compute = self._compute.as_dict()
        batches = [{"batch_size": size, **self._by_size[size].as_dict()} for size in sorted(self._by_size)]
        counts = (self.last_inference_ms, self.inference_count, self.execution_count)
        return {
            "name": name,
            "version": str(version),
            "last_inference": counts[0],
            "inference_count": counts[1],
            "execution_count": counts[2],
            "inference_stats": {
                "success": self.success.as_dict(),
                "fail": self.fail.as_dict(),
                "queue": self.queue.as_dict(),
                **compute,
            },
            "batch_stats": batches,
        }
