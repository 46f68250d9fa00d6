"""Overload: a burst far above capacity against a small queue.

The excess is refused at once with RESOURCE_EXHAUSTED; every accepted request completes with the
reference result; memory stays bounded. (A deadline passing in the queue: tests/serving/test_limits.py.)
"""

from __future__ import annotations

import asyncio
import time

import grpc
import numpy as np

from bench.proc import rss_bytes
from seqserve.v1 import classifier_pb2, classifier_pb2_grpc
from tests.reliability.conftest import assert_answers_normally
from tests.serving.conftest import SARCASM_TEXTS
from tests.serving.metrics_text import value
from tests.serving.reference import reference_probabilities
from tests.serving.server_process import ServerProcess

QUEUE = 4
BURST = 400
BATCH = 8
BURSTS = 5
RSS_BOUND = 64 * 1024 * 1024  # generous: a leak of a few KiB per request would pass 200 MB over the bursts
TEXTS = [f"{SARCASM_TEXTS[i % len(SARCASM_TEXTS)]} #{i}" for i in range(BURST * BATCH)]


async def burst(address: str) -> list[tuple[grpc.StatusCode, float, list[list[float]]]]:
    """BURST requests of BATCH texts at once: (code, seconds, scores per text) each."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)

        async def one(i: int) -> tuple[grpc.StatusCode, float, list[list[float]]]:
            texts = TEXTS[i * BATCH : (i + 1) * BATCH]
            started = time.perf_counter()
            try:
                response = await stub.Classify(
                    classifier_pb2.ClassifyRequest(model="sarcasm-gru", texts=texts), timeout=30
                )
            except grpc.aio.AioRpcError as error:
                return error.code(), time.perf_counter() - started, []
            scores = [[s.score for s in p.scores] for p in response.predictions]
            return grpc.StatusCode.OK, time.perf_counter() - started, scores

        return await asyncio.gather(*(one(i) for i in range(BURST)))


def test_a_burst_above_capacity_is_refused_fast_and_every_accepted_request_is_right(
    tiny_model_repository, tmp_path
):
    with ServerProcess(
        tiny_model_repository, tmp_path, "--max-queue-size", str(QUEUE), "--max-batch-size", str(BATCH),
        "--inference-threads", "1",
    ) as server:  # fmt: skip
        reference = reference_probabilities(tiny_model_repository, "sarcasm-gru", TEXTS)
        asyncio.run(burst(server.address))  # warm-up: allocations of a first burst are not growth
        rss_before = rss_bytes(server.process.pid)
        before = server.metrics_text()
        outcomes = []
        for _ in range(BURSTS):
            outcomes.append(asyncio.run(burst(server.address)))
        rss_after = rss_bytes(server.process.pid)
        after = server.metrics_text()
        assert_answers_normally(server.stub)
    results = [result for run in outcomes for result in run]
    codes = [code for code, _, _ in results]
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    accepted = codes.count(grpc.StatusCode.OK)
    refused = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
    # every burst overflowed the queue (how far depends on how fast this machine's client sends)
    assert all(grpc.StatusCode.RESOURCE_EXHAUSTED in {code for code, _, _ in run} for run in outcomes)
    assert accepted >= BURSTS * (QUEUE + 1)
    for run in outcomes:
        for i, (code, _, scores) in enumerate(run):
            if code == grpc.StatusCode.OK:
                np.testing.assert_allclose(scores, reference[i * BATCH : (i + 1) * BATCH], atol=1e-5)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    gru = {"model": "sarcasm-gru"}
    assert delta("seqserve_requests_total", code="RESOURCE_EXHAUSTED", **gru) == refused
    assert delta("seqserve_requests_total", code="OK", **gru) == accepted
    # refused at once: they never entered the queue, only the accepted ones waited in it (client-side
    # latencies on a 2-core machine measure the client's own event loop as much as the server)
    assert delta("seqserve_queue_wait_seconds_count", **gru) == accepted
    assert rss_after - rss_before < RSS_BOUND, f"RSS grew {(rss_after - rss_before) / 2**20:.1f} MiB"
