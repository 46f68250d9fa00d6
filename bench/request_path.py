"""In-process cost of the request path: CPU per request above the transport, no sockets.

The servicers of a real server (same registry, batcher, runtimes, metrics) are called directly with a
stand-in ServicerContext, so what is measured is exactly what seqserve adds on top of grpc.aio's own
cost (the no-op floor of `make bench-peers`). CPU time of the whole process (event loop and inference
threads) per request, at concurrency 1 and 32, one text per request, and 32 texts per request.

`request_steps` times the steps of a V2 ModelInfer request apart (decode and admission, encode, the
crossing to an inference thread and back) for the per-request CPU account of `make bench-peers`.

    .venv/bin/python -m bench.request_path --models models --model sarcasm-conv
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shlex
import statistics
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import service_pb2

from seqserve.loadtest.texts import load_texts
from seqserve.v1 import classifier_pb2
from serving.explanations import ExplainService
from serving.handlers.classifier import ClassifierServicer
from serving.handlers.v2_grpc import KServeV2Servicer
from serving.health import HealthService
from serving.inference import Classification, InferenceService
from serving.inference_pool import InferencePool
from serving.metrics import ServerMetrics
from serving.model import ServedModel
from serving.protocol.v2_dataplane import DataPlane
from serving.protocol.v2_types import InferRequest, InferResponse, encode_bytes_elements
from serving.registry import ModelRegistry
from serving.repository import ModelRepository
from serving.settings import Settings, build_settings


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


@dataclass(frozen=True)
class InProcessServer:
    """A server's request path without its sockets: registry, inference service, inference threads."""

    settings: Settings
    registry: ModelRegistry
    service: InferenceService
    health: HealthService
    pool: InferencePool


@contextlib.asynccontextmanager
async def in_process_server(models: str, model: str, serve_args: str = "") -> AsyncIterator[InProcessServer]:
    """The latest version of `model` loaded as `seqserve serve --model-repository models` would."""
    settings = build_settings(["--model-repository", models, *shlex.split(serve_args)])
    metrics = ServerMetrics()
    pool = InferencePool(settings.inference_threads)
    repository = ModelRepository(settings.model_repository)
    registry = ModelRegistry(repository, settings, metrics, pool, on_readiness=lambda *_: asyncio.sleep(0))
    try:
        await registry.load(model)
        service = InferenceService(registry, settings, metrics)
        yield InProcessServer(settings, registry, service, HealthService(), pool)
    finally:
        await registry.close()
        pool.close()


async def main_async(args: argparse.Namespace) -> dict:
    async with in_process_server(args.models, args.model, args.serve_args) as server:
        return await measure_cells(args, server)


async def measure_cells(args: argparse.Namespace, server: InProcessServer) -> dict:
    v2 = KServeV2Servicer(DataPlane(server.service, server.registry, server.health, server.settings))
    explain = ExplainService(server.service, server.registry, server.settings)
    own = ClassifierServicer(server.service, server.registry, explain)
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
    model = server.registry.snapshot.models[args.model].latest
    results.update(await batch_costs(model, texts, server.pool, args.rounds))
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
    one = [texts[0]]
    ids = model.tokenize(one)
    costs: dict[str, list[float]] = {}
    for _ in range(rounds):
        costs.setdefault("batch of 1: tokenize", []).append(_cpu_us(lambda: model.tokenize(one), calls))
        costs.setdefault("batch of 1: runtime", []).append(_cpu_us(lambda: model.runtime.run(ids), calls))
        costs.setdefault("batch of 1: predict_batch", []).append(
            _cpu_us(lambda: model.predict_batch(one), calls)
        )
        costs.setdefault("thread hand-off and back", []).append(await hand_off_us(pool, calls))
    return costs


async def hand_off_us(pool: InferencePool, calls: int) -> float:
    """CPU µs of one crossing as a batch makes it: a trivial call handed to an inference thread, its
    result back on the loop."""
    loop = asyncio.get_running_loop()
    started = time.process_time()
    for _ in range(calls):
        back = loop.create_future()
        assert pool.try_take(back.cancel)
        pool.run(int, 0, lambda *done, back=back: back.set_result(done))
        await back
    return (time.process_time() - started) / calls * 1e6


@dataclass(frozen=True)
class StepCosts:
    """CPU µs of the steps of a V2 ModelInfer request that the server's histograms do not time, medians
    over rounds: per request of N texts, decoding the message into texts and admitting them (model
    lookup, limits), and encoding the answer into its message; per batch, one crossing to an inference
    thread and back."""

    decode_us: dict[int, float]  # texts per request -> µs
    encode_us: dict[int, float]
    crossing_us: float


async def request_steps(
    server: InProcessServer, model: str, texts: Sequence[str], sizes: Sequence[int], rounds: int = 3,
    calls: int = 2000,
) -> StepCosts:  # fmt: skip
    service = server.service
    decode: dict[int, list[float]] = {}
    encode: dict[int, list[float]] = {}
    for size in sizes:
        message = v2_request(model, texts[:size])

        def decode_and_admit(message: service_pb2.ModelInferRequest = message) -> InferRequest:
            request = InferRequest.from_grpc(message)
            service.check_texts(request.texts(service.check_text_count))
            service.lookup(request.model_name, request.model_version)
            return request

        request = decode_and_admit()
        served = service.lookup(model)
        result = Classification(served, served.predict_batch(list(texts[:size])), 0.0, 0.0, 0.0)
        for _ in range(rounds):
            decode.setdefault(size, []).append(_cpu_us(decode_and_admit, calls))
            encode.setdefault(size, []).append(
                _cpu_us(lambda r=request, c=result: InferResponse.of(r, c).to_grpc(), calls)
            )
    crossings = [await hand_off_us(server.pool, calls) for _ in range(rounds)]
    return StepCosts(
        {size: statistics.median(values) for size, values in decode.items()},
        {size: statistics.median(values) for size, values in encode.items()},
        statistics.median(crossings),
    )


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
