"""In-process cost of the request path: CPU per request above the transport, no sockets.

The servicers of a real server (same registry, batcher, runtimes, metrics) are called directly with a
stand-in ServicerContext, so what is measured is exactly what seqserve adds on top of grpc.aio's own
cost (the no-op floor of `make bench-peers`). CPU time of the whole process (event loop and inference
threads) per request, at concurrency 1 and 32, one text per request, and 32 texts per request.

    .venv/bin/python -m bench.request_path --models models --model sarcasm-conv
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tritonclient.grpc import service_pb2

from seqserve.loadtest.texts import load_texts
from seqserve.v1 import classifier_pb2
from serving.explanations import ExplainService
from serving.handlers.classifier import ClassifierServicer
from serving.handlers.v2_grpc import KServeV2Servicer
from serving.health import HealthService
from serving.inference import InferenceService
from serving.inference_pool import InferencePool
from serving.metrics import ServerMetrics
from serving.model import ServedModel
from serving.protocol.v2_dataplane import DataPlane
from serving.protocol.v2_types import encode_bytes_elements
from serving.registry import ModelRegistry
from serving.repository import ModelRepository
from serving.settings import build_settings


class Context:
    """What the servicers read of a grpc.aio.ServicerContext on the success path."""

    def time_remaining(self) -> float | None:
        return 10.0

    async def abort(self, code: object, details: str) -> None:
        raise RuntimeError(f"{code}: {details}")


def v2_request(model: str, texts: Sequence[str]) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name="text", datatype="BYTES", shape=[len(texts)])
    request.raw_input_contents.append(encode_bytes_elements(t.encode() for t in texts))
    return request


async def measure(call, requests: list, concurrency: int) -> float:
    """CPU µs per request over `requests`, sent `concurrency` at a time."""
    started = time.process_time()
    for start in range(0, len(requests), concurrency):
        await asyncio.gather(*(call(r) for r in requests[start : start + concurrency]))
    return (time.process_time() - started) / len(requests) * 1e6


async def main_async(args: argparse.Namespace) -> dict:
    settings = build_settings(["--model-repository", args.models, *shlex.split(args.serve_args)])
    metrics = ServerMetrics()
    health = HealthService()
    pool = InferencePool(settings.inference_threads)
    repository = ModelRepository(settings.model_repository)
    registry = ModelRegistry(repository, settings, metrics, pool, on_readiness=lambda *_: asyncio.sleep(0))
    await registry.load(args.model)
    service = InferenceService(registry, settings, metrics)
    v2 = KServeV2Servicer(DataPlane(service, registry, health, settings))
    own = ClassifierServicer(service, registry, ExplainService(service, registry, settings))
    context = Context()
    texts = load_texts(Path(args.texts))
    results: dict[str, list[float]] = {}
    cells = [
        ("v2", 2, 1),
        ("v2", 4, 1),
        ("v2", 1, 1),
        ("v2", 32, 1),
        ("v2", 8, 32),
        ("classify", 1, 1),
        ("classify", 32, 1),
        ("classify", 8, 32),
    ]
    for round_ in range(args.rounds):
        for protocol, concurrency, per_request in cells:
            batches = [
                [texts[(i * per_request + j + round_ * 7919) % len(texts)] for j in range(per_request)]
                for i in range(args.requests // per_request)
            ]
            if protocol == "v2":
                requests = [v2_request(args.model, b) for b in batches]
                call = lambda r: v2.ModelInfer(r, context)  # noqa: E731
            else:
                requests = [classifier_pb2.ClassifyRequest(model=args.model, texts=b) for b in batches]
                call = lambda r: own.Classify(r, context)  # noqa: E731
            await measure(call, requests[: len(requests) // 10], concurrency)  # warm-up
            key = f"{protocol} c={concurrency} texts={per_request}"
            results.setdefault(key, []).append(await measure(call, requests, concurrency))
    model = registry.snapshot.models[args.model].latest
    results.update(await batch_costs(model, texts, pool, args.rounds))
    await registry.close()
    pool.close()
    return {key: statistics.median(values) for key, values in results.items()}


def _cpu_us(work: Callable[[], object], calls: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        work()
    return (time.process_time() - started) / calls * 1e6


async def batch_costs(
    model: ServedModel, texts: Sequence[str], pool: InferencePool, rounds: int, calls: int = 2000
) -> dict[str, list[float]]:
    """What one batch costs whatever its size, in CPU µs: the parts of `predict_batch` for one text,
    and the hand-off of a trivial call to an inference thread and back."""
    loop = asyncio.get_running_loop()
    one = [texts[0]]
    ids = model.tokenize(one)
    costs: dict[str, list[float]] = {}
    for _ in range(rounds):
        costs.setdefault("batch of 1: tokenize", []).append(_cpu_us(lambda: model.tokenize(one), calls))
        costs.setdefault("batch of 1: runtime", []).append(_cpu_us(lambda: model.runtime.run(ids), calls))
        costs.setdefault("batch of 1: predict_batch", []).append(
            _cpu_us(lambda: model.predict_batch(one), calls)
        )
        started = time.process_time()
        for _ in range(calls):
            back = loop.create_future()
            assert pool.try_take(back.cancel)
            pool.run(int, 0, lambda *done, back=back: back.set_result(done))
            await back
        costs.setdefault("thread hand-off and back", []).append((time.process_time() - started) / calls * 1e6)
    return costs


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="models")
    parser.add_argument("--model", default="sarcasm-conv")
    parser.add_argument("--texts", default="../shared/data/sarcasm/sarcasm.json", help="request texts")
    parser.add_argument("--requests", type=int, default=3200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve-args", default="", help="`seqserve serve` flags of the server measured")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(main_async(args)), indent=1))


if __name__ == "__main__":
    main()
