"""What explanations cost a served model, measured side by side in one server: `make bench`.

1. One headline by one model: served `Explain` against a served batch-1 `Classify` of the same text and
   model, interleaved call by call over one gRPC channel; the claim is explain <= 2x classify.
2. The compare page's explain: POST /v1/explain with all seven sarcasm models; the server time is the
   sum of each model's server time (they run one after another in one explain thread); the claim is
   <= 30 ms (median).
3. Classification throughput at concurrency 32 (the seqserve load tester) with and without a concurrent
   load of 10 explain calls per second (one headline, the same model), in alternating pairs; the claim
   is "with" within 5 % of "without", decided on the 95 % interval of the pairs' mean ratio.
The server runs the dataset's models only, from a copy of their files, with its default settings.

    .venv/bin/python -m bench.explain_cost [--models models] [--model sarcasm-gru] [--calls 300] \
        [--pairs 20] [--duration 1.5] [--report reports/explain_cost.md]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import grpc
import numpy as np

from bench.dataset_texts import DATA_DIR, dataset_texts
from bench.harness import ServerProcess, start_seqserve
from bench.machine import cpu_model
from bench.models import ModelFiles, copy_tokenizer, find_models
from bench.served import measure
from seqserve.loadtest.runner import LoadSpec
from seqserve.loadtest.texts import load_texts
from seqserve.v1 import classifier_pb2, classifier_pb2_grpc
from seqserve.verdicts import Verdict
from training.statistics import Interval, mean_interval

EXPLAIN_OVER_CLASSIFY = 2.0
ALL_MODELS_SERVER_MS = 30.0
THROUGHPUT_KEPT = 0.95
EXPLAIN_RATE = 10.0  # calls per second beside the classification load
CONCURRENCY = 32


def copy_dataset_models(models: Sequence[ModelFiles], repository: Path, into: Path) -> None:
    """The models' newest versions and their tokenizer, so the server loads nothing else."""
    for model in models:
        shutil.copytree(model.version_dir, into / model.name / model.version_dir.name)
        copy_tokenizer(model.config, repository, into)


def quartiles(values: Sequence[float]) -> str:
    low, median, high = np.quantile(values, [0.25, 0.5, 0.75])
    return f"{median:.2f} (IQR {low:.2f}-{high:.2f})"


def one_model(
    stub: classifier_pb2_grpc.ClassifierStub, model: str, texts: Sequence[str], calls: int
) -> list[str]:
    """Explain vs Classify of the same headline, alternating; returns report lines."""
    classify_ms, explain_ms, words = [], [], []
    for i in range(calls):
        text = texts[i % len(texts)]
        classify = classifier_pb2.ClassifyRequest(model=model, texts=[text])
        explain = classifier_pb2.ExplainRequest(text=text, models=[model])
        started = time.perf_counter()
        stub.Classify(classify, timeout=10)
        classified = time.perf_counter()
        words.append(len(stub.Explain(explain, timeout=10).explanations[0].words))
        classify_ms.append(1e3 * (classified - started))
        explain_ms.append(1e3 * (time.perf_counter() - classified))
    ratio = float(np.median(explain_ms) / np.median(classify_ms))
    verdict = Verdict.HOLDS if ratio <= EXPLAIN_OVER_CLASSIFY else Verdict.DOES_NOT_HOLD
    return [
        f"- **served explain <= {EXPLAIN_OVER_CLASSIFY:g}x a served batch-1 classify ({model}): {verdict}**: "
        f"explain {quartiles(explain_ms)} ms vs classify {quartiles(classify_ms)} ms per call, ratio of "
        f"medians {ratio:.2f}x ({calls} headlines of {np.mean(words):.1f} words on average, each classified "
        "and explained in turn, round trip over gRPC on loopback)",
    ]


def all_models(rest_url: str, models: Sequence[str], texts: Sequence[str], calls: int) -> list[str]:
    server_ms, round_trip_ms = [], []
    for i in range(calls):
        body = json.dumps({"text": texts[i % len(texts)], "models": list(models)}).encode()
        request = urllib.request.Request(f"{rest_url}/v1/explain", body, {"Content-Type": "application/json"})
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        round_trip_ms.append(1e3 * (time.perf_counter() - started))
        server_ms.append(1e3 * sum(e["serverLatencySeconds"] for e in answer["explanations"]))
    median = float(np.median(server_ms))
    verdict = Verdict.HOLDS if median <= ALL_MODELS_SERVER_MS else Verdict.DOES_NOT_HOLD
    return [
        f"- **all {len(models)} models on the compare page's explain <= {ALL_MODELS_SERVER_MS:g} ms server "
        f"time: {verdict}**: server time {quartiles(server_ms)} ms (p90 {np.quantile(server_ms, 0.9):.2f}), "
        f"round trip {quartiles(round_trip_ms)} ms, {calls} headlines via POST /v1/explain",
    ]


class ExplainLoad:
    """Explain calls at a fixed rate from a thread, while the block runs."""

    def __init__(self, stub: classifier_pb2_grpc.ClassifierStub, model: str, texts: Sequence[str]) -> None:
        self._stub, self._model, self._texts = stub, model, texts
        self._stop = threading.Event()
        self.calls = self.failed = 0
        self.server_s = 0.0  # the explanations' own server time
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        next_at = time.perf_counter()
        while not self._stop.is_set():
            text = self._texts[self.calls % len(self._texts)]
            try:
                request = classifier_pb2.ExplainRequest(text=text, models=[self._model])
                reply = self._stub.Explain(request, timeout=10)
                self.server_s += reply.explanations[0].server_latency_seconds
            except grpc.RpcError:
                self.failed += 1
            self.calls += 1
            next_at += 1 / EXPLAIN_RATE
            self._stop.wait(max(0.0, next_at - time.perf_counter()))

    def __enter__(self) -> ExplainLoad:
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)
        elapsed = time.perf_counter() - self._started
        self.rate = self.calls / elapsed
        self.server_share = self.server_s / elapsed  # of one core's time: what the load takes


def throughput(
    server: ServerProcess,
    stub: classifier_pb2_grpc.ClassifierStub,
    model: str,
    texts: Sequence[str],
    texts_path: Path,
    spec: LoadSpec,
    pairs: int,
) -> list[str]:
    """Alternating pairs, every other one in the reverse order (ABBA), so a drift of the machine's other
    load hits both sides alike; the 95 % t interval of the pairs' mean log ratio (a geometric mean)
    decides."""

    def cell() -> float:
        (measured,) = measure(server, model, spec, texts_path, "on", concurrencies=(CONCURRENCY,))
        return measured.summary.requests_per_s

    ratios, shares, rows = [], [], []
    for pair in range(pairs):
        first_alone = pair % 2 == 0
        alone = cell() if first_alone else None
        with ExplainLoad(stub, model, texts) as load:
            beside = cell()
        alone = alone if first_alone else cell()
        ratio = beside / alone
        ratios.append(math.log(ratio))
        shares.append(load.server_share)
        rows.append(
            f"| {pair + 1} | {alone:.1f} | {beside:.1f} | {ratio:.3f} | {load.rate:.1f} | "
            f"{100 * load.server_share:.2f} | {load.failed} |"
        )
    interval = mean_interval(ratios)
    verdict = _within(interval, math.log(THROUGHPUT_KEPT))
    shown = "" if interval is None else f" [{math.exp(interval.low):.3f}, {math.exp(interval.high):.3f}]"
    geometric = math.exp(np.mean(ratios))
    cells = f"{spec.warmup_s:g} s warm-up + {spec.duration_s:g} s per cell"
    return [
        f"- **classification at c={CONCURRENCY} with {EXPLAIN_RATE:g} explain calls/s within "
        f"{100 * (1 - THROUGHPUT_KEPT):g} % of without ({model}): {verdict}**: geometric mean ratio "
        f"{geometric:.3f}{shown} (95 % t interval over {pairs} pairs; holds when the whole interval lies "
        f"above {THROUGHPUT_KEPT:g}, does not hold when it lies below; {cells}, alone and beside the "
        f"explain load in alternating order); the explain load itself took {100 * np.mean(shares):.2f} % "
        "of one core's time (its calls' server time)",
        "",
        "| pair | without (req/s) | with explain load (req/s) | ratio | explain calls/s "
        "| explain server time (% of a core) | explain errors |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


def _within(interval: Interval | None, low: float) -> Verdict:
    """Holds when the whole interval lies above `low`, does not when it lies below, else unclear."""
    if interval is None:
        return Verdict.UNCLEAR
    if interval.low > low:
        return Verdict.HOLDS
    return Verdict.DOES_NOT_HOLD if interval.high < low else Verdict.UNCLEAR


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models"), help="model repository [%(default)s]")
    parser.add_argument("--dataset", default="sarcasm", help="whose models [%(default)s]")
    parser.add_argument(
        "--model", default="sarcasm-gru", help="the one model of claims 1 and 3 [%(default)s]"
    )
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="the datasets' texts [%(default)s]")
    parser.add_argument("--calls", type=int, default=300, help="calls of claims 1 and 2 [%(default)s]")
    parser.add_argument("--pairs", type=int, default=20, help="throughput pairs [%(default)s]")
    parser.add_argument("--duration", type=float, default=1.5, help="measured s per throughput cell")
    parser.add_argument("--warmup", type=float, default=0.5, help="warm-up s per throughput cell")
    parser.add_argument(
        "--report", type=Path, default=Path("reports/explain_cost.md"), help="markdown output"
    )
    args = parser.parse_args(args_list)
    models = [m for m in find_models(args.models) if m.config.dataset == args.dataset]
    if not any(m.name == args.model for m in models):
        print(
            f"bench.explain_cost: no model {args.model} of {args.dataset} in {args.models}", file=sys.stderr
        )
        return 2
    texts_path = dataset_texts(args.dataset, args.data_dir)
    texts = load_texts(texts_path)[:1000]
    spec = LoadSpec(duration_s=args.duration, warmup_s=args.warmup)
    started_at = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-explain-") as scratch:
        repository = Path(scratch)
        copy_dataset_models(models, args.models, repository)
        server = start_seqserve(repository, "explain-cost")
        with server, grpc.insecure_channel(server.address) as channel:
            stub = classifier_pb2_grpc.ClassifierStub(channel)
            findings = one_model(stub, args.model, texts, args.calls)
            findings += all_models(str(server.rest_url), [m.name for m in models], texts, args.calls)
            findings += throughput(server, stub, args.model, texts, texts_path, spec, args.pairs)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    report = [
        "# What explanations cost a served model",
        "",
        f"- command: `{shlex.join(['.venv/bin/python', '-m', 'bench.explain_cost', *args_list])}` "
        f"(`make bench`); took {(time.monotonic() - started_at) / 60:.1f} min",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; machine: {cpu_model()}, "
        f"{os.cpu_count()} logical CPUs shared with other work, load average at the end {load}",
        f"- one server with the {len(models)} {args.dataset} models and default settings "
        "(one explain thread beside the inference threads); texts: the dataset's headlines in file order",
        "",
        *findings,
        "",
    ]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(report))
    print("\n".join(findings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
