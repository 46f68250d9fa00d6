"""Variable-length graphs against their fixed-length twins, side by side in one run: `make bench`.

A twin is the same version padded to max_length, as it was served before its config had `sequence`:
the same files and weights, so the ratio is the cost of the padding alone.

(a) In process (the server's encoder, padding and ONNX Runtime session, bench/in_process.py): batches
    of 32 real texts of each dataset (sarcasm headlines, IMDB test reviews), per-text CPU time and
    latency, twin and variable interleaved (bench/inference_timing.py). Every batch's outputs are
    compared first: they must agree within 1e-5. Target: >= 3x lower per-text cost for sarcasm's lstm,
    lstm2, gru, rnn and conv; the other models' gains are reported.
(b) Served: one server holding each model and its twin (`<name>-fixed`, config `sequence` cleared, in a
    temporary repository), 32 headlines per request at concurrency 8, the two measured in alternation.
    Target: >= 2x the texts/s of the twin for sarcasm-lstm and sarcasm-lstm2.

    .venv/bin/python -m bench.variable_length [--models models] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import grpc
import numpy as np
from google.protobuf import text_format

from bench.dataset_texts import DATA_DIR, dataset_texts
from bench.in_process import InProcessModel, load_in_process
from bench.inference_timing import TimingBudget, interleaved_timings
from bench.run import ModelFiles, cpu_model, find_models, free_port, measure, serve_command, serving, started
from bench.speed_verdicts import Spread
from seqserve.loadtest.runner import LoadSpec
from seqserve.loadtest.texts import load_texts
from seqserve.v1 import classifier_pb2, classifier_pb2_grpc

BATCH = 32
BATCHES_PER_CALL = 16  # one timed call runs this many different batches of real texts
PARITY_TOLERANCE = 1e-5
IN_PROCESS_GAIN = 3.0
IN_PROCESS_TARGETS = ("sarcasm-lstm", "sarcasm-lstm2", "sarcasm-gru", "sarcasm-rnn", "sarcasm-conv")
SERVED_GAIN = 2.0
SERVED_TARGETS = ("sarcasm-lstm", "sarcasm-lstm2")
SERVED_CONCURRENCY = 8
TWIN_SUFFIX = "-fixed"


@dataclass(frozen=True)
class InProcessResult:
    model: str
    mean_width: float  # columns per batch, variable-length
    max_length: int
    parity: float  # max |variable - twin| over every batch
    cpu_us: tuple[Spread, Spread]  # per text: (twin, variable)
    wall_us: tuple[Spread, Spread]

    @property
    def gain(self) -> float:
        """Twin's per-text CPU time over the variable-length graph's."""
        return self.cpu_us[0].median / self.cpu_us[1].median


def text_batches(texts: Sequence[str], count: int) -> list[list[str]]:
    return [list(texts[i * BATCH : (i + 1) * BATCH]) for i in range(count)]


def run_all(model: InProcessModel, batches: Sequence[Sequence[str]]) -> None:
    for batch in batches:
        model.predict(batch)


def compare_in_process(
    model: ModelFiles, repository: Path, batches: list[list[str]], budget: TimingBudget
) -> InProcessResult:
    variable = load_in_process(model.version_dir, model.config, repository)
    twin = variable.fixed_length()
    parity = max(float(np.abs(variable.predict(b) - twin.predict(b)).max()) for b in batches)
    timed = batches[:BATCHES_PER_CALL]
    subjects = {"twin": partial(run_all, twin, timed), "variable": partial(run_all, variable, timed)}
    samples = interleaved_timings(subjects, budget)
    texts = BATCH * len(timed)

    def per_text(by_subject: dict[str, list[float]]) -> tuple[Spread, Spread]:
        twin_us, variable_us = ([1e6 * x / texts for x in by_subject[s]] for s in subjects)
        return Spread.of(twin_us), Spread.of(variable_us)

    width = statistics.fmean(variable.encode(b).shape[1] for b in batches)
    cpu, wall = per_text(samples.cpu), per_text(samples.wall)
    return InProcessResult(model.name, width, model.config.max_length, parity, cpu, wall)


def twin_repository(models: Sequence[ModelFiles], repository: Path, directory: Path) -> None:
    """Each model's ONNX version as itself and as `<name>-fixed` (config `sequence` cleared)."""
    for model in models:
        tokenizer = Path(model.config.tokenizer.path)
        (directory / tokenizer.parent).mkdir(parents=True, exist_ok=True)
        shutil.copy2(repository / tokenizer, directory / tokenizer)
        onnx_file = model.config.export.onnx_file or "model.onnx"
        for name in (model.name, model.name + TWIN_SUFFIX):
            config = type(model.config)()
            config.CopyFrom(model.config)
            config.name = name
            if name != model.name:
                config.ClearField("sequence")
            target = directory / name / model.version_dir.name
            target.mkdir(parents=True)
            shutil.copy2(model.version_dir / onnx_file, target / onnx_file)
            (target / "config.pbtxt").write_text(text_format.MessageToString(config))


def served_parity(address: str, name: str, texts: list[str]) -> float:
    """Max |model - twin| over one request of `texts`, as the server answers it."""
    with grpc.insecure_channel(address) as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)
        scores = [
            np.array([[s.score for s in p.scores] for p in stub.Classify(
                classifier_pb2.ClassifyRequest(model=target, texts=texts), timeout=30).predictions])
            for target in (name, name + TWIN_SUFFIX)
        ]  # fmt: skip
    return float(np.abs(scores[0] - scores[1]).max())


@dataclass(frozen=True)
class ServedResult:
    model: str
    parity: float
    texts_per_s: tuple[list[float], list[float]]  # per round: (twin, variable)

    @property
    def gain(self) -> float:
        twin, variable = self.texts_per_s
        return statistics.median(variable) / statistics.median(twin)


def compare_served(
    models: Sequence[ModelFiles], repository: Path, texts: Path, spec: LoadSpec, rounds: int
) -> list[ServedResult]:
    logs = Path(os.environ.get("TMPDIR", "/tmp"))
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-variable-length-") as scratch:
        twin_repository(models, repository, Path(scratch))
        port = free_port()
        with started(
            serve_command(Path(scratch), port, free_port()), logs / f"bench-variable-{port}.log"
        ) as ready:
            server = serving(ready)
            sample = load_texts(texts, limit=BATCH)
            for model in models:
                parity = served_parity(server.address, model.name, sample)
                by_target: dict[str, list[float]] = {model.name + TWIN_SUFFIX: [], model.name: []}
                for _ in range(rounds):
                    for target, values in by_target.items():
                        (cell,) = measure(
                            server, target, spec, texts, "on", concurrencies=(spec.concurrency,)
                        )
                        values.append(cell.summary.texts_per_s)
                twin, variable = by_target.values()
                results.append(ServedResult(model.name, parity, (twin, variable)))
    return results


def _label(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def _spread(spread: Spread) -> str:
    return f"{spread.median:.1f} ({spread.low:.1f}-{spread.high:.1f})"


def report(
    argv: Sequence[str],
    loads: list[tuple[str, tuple[float, ...]]],
    in_process: list[InProcessResult],
    served: list[ServedResult],
    spec: LoadSpec,
    rounds: int,
) -> tuple[str, list[str]]:
    """The markdown report and its PASS/FAIL lines."""
    verdicts = []
    for result in in_process:
        exact = result.parity <= PARITY_TOLERANCE
        if result.model in IN_PROCESS_TARGETS or not exact:
            passed = exact and (result.gain >= IN_PROCESS_GAIN or result.model not in IN_PROCESS_TARGETS)
            verdicts.append(
                f"**{_label(passed)}** (a) {result.model}: per-text CPU {result.gain:.2f}x lower than its "
                f"fixed-length twin (target {IN_PROCESS_GAIN:g}x), outputs within {result.parity:.1e}"
            )
    for result in served:
        passed = result.parity <= PARITY_TOLERANCE and result.gain >= SERVED_GAIN
        verdicts.append(
            f"**{_label(passed)}** (b) {result.model}: {result.gain:.2f}x the texts/s of its fixed-length "
            f"twin served (target {SERVED_GAIN:g}x), answers within {result.parity:.1e}"
        )
    lines = [
        "# Variable-length graphs against their fixed-length twins",
        "",
        f"- command: `{shlex.join(['.venv/bin/python', '-m', 'bench.variable_length', *argv])}` "
        "(part of `make bench`)",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {cpu_model()}, {os.cpu_count()} logical CPUs; load average (1, 5, 15 min): "
        + "; ".join(f"{phase} {' '.join(f'{x:.2f}' for x in load)}" for phase, load in loads),
        "- twin: the same version padded to max_length (its config's `sequence` cleared), same weights",
        "",
        f"## (a) In process: server encoder + ONNX Runtime, batches of {BATCH} real texts",
        "",
        "µs per text, median (interquartile range) of interleaved rounds; width = mean columns per batch "
        "of the variable-length graph; parity = max |variable - twin| over every batch.",
        "",
        "| model | width / max_length | twin CPU µs | variable CPU µs | CPU gain | twin latency µs "
        "| variable latency µs | latency gain | parity |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in in_process:
        wall_gain = r.wall_us[0].median / r.wall_us[1].median
        lines.append(
            f"| {r.model} | {r.mean_width:.1f} / {r.max_length} | {_spread(r.cpu_us[0])} "
            f"| {_spread(r.cpu_us[1])} | {r.gain:.2f}x | {_spread(r.wall_us[0])} | {_spread(r.wall_us[1])} "
            f"| {wall_gain:.2f}x | {r.parity:.1e} |"
        )
    lines += [
        "",
        f"## (b) Served: {spec.batch} headlines per request, concurrency {spec.concurrency}, one server",
        "",
        f"texts/s per {spec.duration_s:g} s cell ({spec.warmup_s:g} s warm-up), {rounds} rounds, twin and "
        "variable in alternation; gain = ratio of the medians.",
        "",
        "| model | twin texts/s | variable texts/s | gain | parity |",
        "|---|---|---|---:|---:|",
    ]
    for r in served:
        twin, variable = (", ".join(f"{x:.0f}" for x in values) for values in r.texts_per_s)
        lines.append(f"| {r.model} | {twin} | {variable} | {r.gain:.2f}x | {r.parity:.1e} |")
    lines += ["", "## Targets", "", *(f"- {v}" for v in verdicts)]
    return "\n".join(lines) + "\n", verdicts


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models"), help="model repository [%(default)s]")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="datasets' texts [%(default)s]")
    parser.add_argument("--batches", type=int, default=64, help="(a) batches checked per model [%(default)s]")
    parser.add_argument(
        "--seconds-per-subject", type=float, default=1.0, help="(a) timing budget [%(default)s]"
    )
    parser.add_argument("--duration", type=float, default=5.0, help="(b) measured s per cell [%(default)s]")
    parser.add_argument("--warmup", type=float, default=1.0, help="(b) warm-up s per cell [%(default)s]")
    parser.add_argument("--rounds", type=int, default=2, help="(b) cells per model and twin [%(default)s]")
    parser.add_argument(
        "--report", type=Path, default=Path("reports/variable_length.md"), help="markdown output"
    )
    args = parser.parse_args(args_list)

    found = find_models(args.models) if args.models.is_dir() else []
    variable = [m for m in found if m.config.sequence.variable_length]
    if not variable:
        print(
            f"bench: no variable-length model in {args.models}/; train some first (`make train`)",
            file=sys.stderr,
        )
        return 1
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as `seqserve serve` runs them
    loads = [("start", os.getloadavg())]
    budget = TimingBudget(min_rounds=5, seconds_per_subject=args.seconds_per_subject)
    in_process = []
    for dataset in sorted({m.config.dataset for m in variable}):
        batches = text_batches(load_texts(dataset_texts(dataset, args.data_dir)), args.batches)
        for model in (m for m in variable if m.config.dataset == dataset):
            started_at = time.monotonic()
            in_process.append(compare_in_process(model, args.models, batches, budget))
            seconds = time.monotonic() - started_at
            print(f"  {model.name:<16} in process {in_process[-1].gain:5.2f}x, {seconds:.0f} s", flush=True)
    loads.append(("served", os.getloadavg()))
    spec = LoadSpec(
        concurrency=SERVED_CONCURRENCY, batch=BATCH, duration_s=args.duration, warmup_s=args.warmup
    )
    served_models = [m for m in variable if m.name in SERVED_TARGETS]
    served = (
        compare_served(served_models, args.models, dataset_texts("sarcasm", args.data_dir), spec, args.rounds)
        if served_models
        else []
    )
    loads.append(("end", os.getloadavg()))
    text, verdicts = report(args_list, loads, in_process, served, spec, args.rounds)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(text)
    print("\n" + "\n".join(verdicts) + f"\n\nwritten to {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
