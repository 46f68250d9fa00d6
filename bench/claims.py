"""The speed claims about the model zoo, checked in one run on this machine: `make claims`.

1. In process: every architecture on ONNX Runtime and on the TensorFlow SavedModel, through the serving
   runtime classes with the server's default settings, at every batch size and for texts of several
   lengths, each batch padded for each model as the server pads it (serving.sequence): texts of 8, 16,
   32, 64 and max_length tokens and the dataset's real texts (sarcasm headlines, IMDB test reviews) on
   the trained models, and texts of a longer length on untrained networks of the same architectures
   (bench/fresh_networks.py). All subjects of one (text length, batch) are timed in interleaved rounds.
2. Training: seconds per epoch from each trained version's history.json.
3. Served: each model over gRPC at concurrency 1 and 32 with the ONNX and the TensorFlow runtime
   (bench.served's cells: the servers bench.harness starts, the seqserve loadtest engine).
Then every claim is judged by bench.speed_verdicts for training and for each runtime; the tables,
verdicts and plots go to reports/speed.md.

    .venv/bin/python -m bench.claims [--models models] [--dataset sarcasm] [--long-length 512] \
        [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from bench.dataset_texts import DATA_DIR, dataset_texts
from bench.fresh_networks import fresh_name
from bench.harness import REPO_ROOT, start_seqserve
from bench.inference_timing import TimingBudget, interleaved_timings, random_ids
from bench.machine import cpu_model, loads_text, now_text, versions
from bench.models import ModelFiles, find_models
from bench.served import Cell, measure
from bench.speed_report import (
    CLOCKS,
    REAL_TEXTS,
    Setting,
    SpeedRun,
    TrainingTiming,
    claim_verdicts,
    ordered,
    plot,
    render,
    verdict_table,
    write_json,
)
from bench.speed_verdicts import TimingSpread
from seqserve.loadtest.runner import LoadSpec
from seqserve.loadtest.texts import load_texts
from seqserve.v1 import model_config_pb2
from serving.runtimes import Runtime, create_runtime
from serving.sequence import SequencePadding
from serving.settings import RUNTIMES, Settings
from serving.tokenization import TokenEncoder
from training.repository import CONFIG_FILE, read_config
from training.runs import load_models

BATCHES = (1, 8, 32, 128)
TEXT_LENGTHS = (8, 16, 32, 64)  # tokens per text, besides max_length and the real texts
REAL_BATCHES = 4  # different batches of real texts per timed call
SECONDS_PER_SUBJECT = 1.0  # per setting: 18 settings of 14 subjects take about 4 minutes
CONTROL_BATCH = 32  # or the measured batch size nearest to it
UNTRAINED = " (untrained)"
EXPORT_TIMEOUT_S = 900
VERSIONS = ("onnxruntime", "tensorflow-cpu", "keras", "tf2onnx", "numpy", "grpcio", "tokenizers")


@dataclass(frozen=True)
class Subject:
    architecture: str
    runtime: str
    trained: bool
    model: Runtime
    padding: SequencePadding

    @property
    def key(self) -> str:
        return f"{self.runtime}/{self.architecture}{'' if self.trained else UNTRAINED}"


def load_subjects(
    version_dirs: dict[str, tuple[Path, model_config_pb2.ModelConfig]], trained: bool
) -> list[Subject]:
    """Both runtimes of every architecture, made by the server's own factory and settings."""
    threads = Settings().intra_op_threads
    return [
        Subject(
            architecture,
            runtime,
            trained,
            create_runtime(runtime, directory, config, threads),
            SequencePadding.of(config),
        )
        for runtime in RUNTIMES
        for architecture, (directory, config) in version_dirs.items()
    ]


def export_untrained(
    directory: Path, architectures: Sequence[str], lengths: Sequence[int], vocab_size: int, num_outputs: int
) -> dict[int, dict[str, tuple[Path, model_config_pb2.ModelConfig]]]:
    """Untrained networks exported in a child process; length -> architecture -> (version dir, config)."""
    command = [
        sys.executable, "-m", "bench.fresh_networks", "--output", str(directory),
        "--vocab-size", str(vocab_size), "--num-outputs", str(num_outputs),
        "--lengths", ",".join(map(str, lengths)), "--architectures", ",".join(architectures),
    ]  # fmt: skip
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"claims-export-{os.getpid()}.log"
    with log.open("w") as stderr:
        result = subprocess.run(
            command, cwd=REPO_ROOT, stderr=stderr, timeout=EXPORT_TIMEOUT_S,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"exporting untrained networks failed; see {log}")
    return {
        length: {
            a: (
                directory / fresh_name(a, length),
                read_config(directory / fresh_name(a, length) / CONFIG_FILE),
            )
            for a in architectures
        }
        for length in lengths
    }


@dataclass(frozen=True)
class RealTexts:
    """The dataset's own texts and the server's encoder for its tokenizer."""

    texts: Sequence[str]
    encoder: TokenEncoder

    def batches(self, batch: int) -> list[list[str]]:
        return [list(self.texts[i * batch : (i + 1) * batch]) for i in range(REAL_BATCHES)]


def setting_ids(
    setting: Setting, padding: SequencePadding, vocab_size: int, real: RealTexts
) -> list[np.ndarray]:
    """The batches one timed call runs for a subject, padded as the server pads them for it."""
    if setting.tokens == REAL_TEXTS:
        return [real.encoder.encode(texts, padding) for texts in real.batches(setting.batch)]
    return [random_ids(setting.batch, setting.tokens, padding.width(setting.tokens), vocab_size)]


def _run_each(model: Runtime, batches: Sequence[np.ndarray]) -> None:
    for ids in batches:
        model.run(ids)


def time_setting(
    subjects: Sequence[Subject], setting: Setting, vocab_size: int, real: RealTexts, budget: TimingBudget
) -> dict[str, dict[str, TimingSpread]]:
    """Interleaved timings of every subject on the same texts; clock -> subject key -> ms per batch."""
    batches = {s.key: setting_ids(setting, s.padding, vocab_size, real) for s in subjects}
    samples = interleaved_timings(
        {s.key: partial(_run_each, s.model, batches[s.key]) for s in subjects}, budget
    )
    return {
        clock: {
            key: TimingSpread.of([1e3 * x / len(batches[key]) for x in values])
            for key, values in by_subject.items()
        }
        for clock, by_subject in (("wall", samples.wall), ("cpu", samples.cpu))
    }


def control_batch(batches: Sequence[int]) -> int:
    return min(batches, key=lambda batch: (abs(batch - CONTROL_BATCH), batch))


Inference = dict[str, dict[str, dict[Setting, dict[str, TimingSpread]]]]
Control = dict[str, dict[str, dict[str, tuple[TimingSpread, TimingSpread]]]]


def plan(dataset_length: int, long_length: int, batches: Sequence[int]) -> list[Setting]:
    """Every setting, in the order they are timed: the trained models' texts of every length (the
    shorter ones and the real texts at batch 1 and the control batch only, to keep the run short),
    then texts of the long length."""
    few = sorted({min(batches), control_batch(batches)})
    shorter = [t for t in TEXT_LENGTHS if t < dataset_length] + [REAL_TEXTS]
    trained = [Setting(dataset_length, batch, t) for t in shorter for batch in few]
    full = [Setting(length, batch, length) for length in (dataset_length, long_length) for batch in batches]
    return trained + full


def time_inference(
    trained: Sequence[Subject],
    untrained: dict[int, list[Subject]],
    dataset_length: int,
    long_length: int,
    batches: Sequence[int],
    vocab_size: int,
    real: RealTexts,
    budget: TimingBudget,
) -> tuple[Inference, Control]:
    """Every setting in turn: (clock -> runtime -> setting -> architecture -> ms, clock -> runtime ->
    architecture -> (trained, untrained) ms for texts of the dataset length at `control_batch(batches)`)."""
    inference: Inference = {clock: {runtime: {} for runtime in RUNTIMES} for clock in CLOCKS}
    control: Control = {clock: {runtime: {} for runtime in RUNTIMES} for clock in CLOCKS}
    control_setting = Setting(dataset_length, control_batch(batches), dataset_length)
    for setting in plan(dataset_length, long_length, batches):
        subjects = trained if setting.max_length == dataset_length else untrained[long_length]
        extra = untrained[dataset_length] if setting == control_setting else []
        started_at = time.monotonic()
        by_clock = time_setting([*subjects, *extra], setting, vocab_size, real, budget)
        for clock, timings in by_clock.items():
            for subject in subjects:
                by_setting = inference[clock][subject.runtime]
                by_setting.setdefault(setting, {})[subject.architecture] = timings[subject.key]
            for subject in extra:
                reference = timings[replace(subject, trained=True).key]
                control[clock][subject.runtime][subject.architecture] = (reference, timings[subject.key])
        rounds = min(t.count for t in by_clock["wall"].values())
        print(f"  {setting.text:<11} (max length {setting.max_length:<4}) batch {setting.batch:<4} "
              f"{len(extra) + len(subjects)} subjects, >= {rounds} rounds, "
              f"{time.monotonic() - started_at:.0f} s", flush=True)  # fmt: skip
    return inference, control


def training_timings(models: Path, dataset: str) -> dict[str, TrainingTiming]:
    """Seconds per epoch of the run each newest version published, without the first (graph-tracing) epoch."""
    timings = {}
    for architecture, model in load_models(models).get(dataset, {}).items():
        seconds = model.published.history["seconds"]
        used = seconds[1:] if len(seconds) > 1 else seconds
        epochs = f"2-{len(seconds)}" if len(seconds) > 1 else "1"
        timings[architecture] = TrainingTiming(
            architecture, model.name, model.version, epochs, TimingSpread.of(used)
        )
    return timings


def serve_and_measure(
    models: Path, names: Sequence[str], spec: LoadSpec, texts: Path
) -> dict[str, list[Cell]]:
    """Runtime -> one cell per model and concurrency, each runtime in its own server process."""
    served = {}
    for runtime in RUNTIMES:
        with start_seqserve(models, f"claims-server-{runtime}", "--runtime", runtime) as server:
            served[runtime] = [
                cell for name in names for cell in measure(server, name, spec, texts, "on", runtime=runtime)
            ]
    return served


def header(
    argv: Sequence[str],
    loads: list[tuple[str, tuple[float, ...]]],
    elapsed_s: float,
    budget: TimingBudget,
    spec: LoadSpec,
    texts: Path,
) -> list[str]:
    cores = os.cpu_count() or 1
    busiest = max(load[0] for _, load in loads)
    settings = Settings()
    lines = [
        f"- command: `{shlex.join(['.venv/bin/python', '-m', 'bench.claims', *argv])}` (`make claims`); "
        f"the whole run took {elapsed_s / 60:.1f} min",
        f"- date: {now_text()}",
        f"- machine: {cpu_model()}, {cores} logical CPUs",
        "- load average (1, 5, 15 min): " + "; ".join(f"{phase} {loads_text(load)}" for phase, load in loads),
        f"- Python {platform.python_version()}, {versions(VERSIONS)}",
        f"- in process: {settings.intra_op_threads} intra-op thread(s) and 1 inter-op thread per runtime "
        f"(the server's defaults); per setting, up to {budget.max_rounds} interleaved rounds (at least "
        f"{budget.min_rounds}, stopping after {budget.seconds_per_subject:g} s per subject); "
        f"texts of N tokens as N random non-zero ids; real texts: {REAL_BATCHES} batches from `{texts}` "
        "per call, each padded for each model as the server pads it",
        f"- served: {spec.warmup_s:g} s warm-up + {spec.duration_s:g} s measured per model and concurrency, "
        f"{spec.channels} channels, server defaults (max queue delay {settings.max_queue_delay_us} µs, "
        f"{settings.inference_threads} inference threads), one server process per runtime",
    ]
    if busiest >= cores / 2:
        lines.append(
            f"- **the machine was busy**: the 1-minute load average reached {busiest:.2f} on {cores} CPUs "
            "while other people's jobs shared them, so latencies are inflated and noisy; the "
            "interleaved in-process rounds expose all models to the same load, CPU time is reported "
            "next to latency, and the verdicts ask for non-overlapping interquartile ranges"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models"), help="model repository [%(default)s]")
    parser.add_argument("--dataset", default="sarcasm", help="whose models to compare [%(default)s]")
    parser.add_argument("--long-length", type=int, default=512, help="the longer input length [%(default)s]")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)), help="batch sizes [%(default)s]")
    parser.add_argument("--max-rounds", type=int, default=TimingBudget().max_rounds)
    parser.add_argument("--min-rounds", type=int, default=TimingBudget().min_rounds)
    parser.add_argument(
        "--seconds-per-subject", type=float, default=SECONDS_PER_SUBJECT,
        help="time budget per subject and setting [%(default)s]",
    )  # fmt: skip
    parser.add_argument("--duration", type=float, default=5.0, help="served: measured s per cell")
    parser.add_argument("--warmup", type=float, default=1.0, help="served: warm-up s per cell")
    parser.add_argument("--channels", type=int, default=LoadSpec().channels, help="served: gRPC channels")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="the datasets' texts [%(default)s]")
    parser.add_argument("--texts", type=Path, help="real texts [the dataset's in --data-dir]")
    parser.add_argument("--report", type=Path, default=Path("reports/speed.md"), help="markdown output")
    args = parser.parse_args(args_list)

    run_started = time.monotonic()
    loads = [("start", os.getloadavg())]
    found = find_models(args.models)
    models: dict[str, ModelFiles] = {
        m.config.architecture: m for m in found if m.config.dataset == args.dataset
    }
    if not models:
        print(f"claims: no {args.dataset} model in {args.models}/; train them first (`make train`)",
              file=sys.stderr)  # fmt: skip
        return 1
    architectures = ordered(list(models))
    models = {a: models[a] for a in architectures}
    lengths = {m.config.max_length for m in models.values()}
    if len(lengths) != 1 or args.long_length <= min(lengths):
        print(f"claims: the {args.dataset} models have input lengths {sorted(lengths)}; need one length, "
              f"shorter than --long-length {args.long_length}", file=sys.stderr)  # fmt: skip
        return 1
    dataset_length = lengths.pop()
    first = next(iter(models.values())).config
    tokenizer = Tokenizer.from_file(str(args.models / first.tokenizer.path))
    vocab_size = tokenizer.get_vocab_size()
    texts = args.texts or dataset_texts(args.dataset, args.data_dir)
    real = RealTexts(load_texts(texts), TokenEncoder(tokenizer))
    num_outputs = 1 if first.output_kind == model_config_pb2.OUTPUT_KIND_SIGMOID else len(first.labels)
    batches = tuple(int(b) for b in args.batches.split(","))
    budget = TimingBudget(args.max_rounds, args.min_rounds, args.seconds_per_subject)
    spec = LoadSpec(duration_s=args.duration, warmup_s=args.warmup, channels=args.channels)
    print(f"claims: {', '.join(architectures)} ({args.dataset}, length {dataset_length}); load average "
          f"{loads[0][1][0]:.2f}", flush=True)  # fmt: skip

    # The trained models load first: TensorFlow's thread pools are fixed by the first runtime that loads.
    trained = load_subjects({a: (m.version_dir, m.config) for a, m in models.items()}, trained=True)
    with tempfile.TemporaryDirectory(prefix="seqserve-claims-") as directory:
        print("claims: exporting untrained networks", flush=True)
        exported = export_untrained(
            Path(directory), architectures, (dataset_length, args.long_length), vocab_size, num_outputs
        )
        untrained = {length: load_subjects(dirs, trained=False) for length, dirs in exported.items()}
        loads.append(("in-process timing", os.getloadavg()))
        print("claims: timing in process", flush=True)
        inference, control = time_inference(
            trained, untrained, dataset_length, args.long_length, batches, vocab_size, real, budget
        )
    loads.append(("served", os.getloadavg()))
    print("claims: serving", flush=True)
    served = serve_and_measure(args.models, [m.name for m in models.values()], spec, texts)
    loads.append(("end", os.getloadavg()))

    run = SpeedRun(
        dataset=args.dataset,
        dataset_length=dataset_length,
        long_length=args.long_length,
        batches=batches,
        architectures=architectures,
        inference=inference,
        control=control,
        control_batch=control_batch(batches),
        training=training_timings(args.models, args.dataset),
        served=served,
        header=header(args_list, loads, time.monotonic() - run_started, budget, spec, texts),
    )
    args.report.parent.mkdir(parents=True, exist_ok=True)
    plots = plot(run, args.report.parent)
    args.report.write_text(render(run, plots), encoding="utf-8")
    write_json(run, args.report.with_suffix(".json"))
    print("\n" + "\n".join(verdict_table(claim_verdicts(run))))
    print(f"\nwritten: {args.report}, {args.report.with_suffix('.json')}, " + ", ".join(map(str, plots)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
