"""Variable-length graphs against fixed-length ones, side by side in one run: `make bench`.

Each variable-length version is measured three ways, on the same files and weights:
- variable: as the server serves it, each batch padded only as far as the model needs;
- padded: the same version padded to max_length (its config's `sequence` cleared): what the per-batch
  padding alone saves, with outputs that must agree within 1e-5;
- fixed-length graph: the same ONNX file with its recurrent ops' `sequence_lens` removed, padded to
  max_length, so they run every position as the exports before masking did (Conv1D and GAP have no
  such input: for them it is the padded one). Its outputs differ, as it reads the padding; its cost
  is that of the architecture's fixed-length graph, the baseline of the targets.

(a) In process (the server's encoder, padding and ONNX Runtime session, bench/in_process.py): batches
    of 32 real texts of each dataset (sarcasm headlines, IMDB test reviews), per-text CPU time and
    latency, all three and the encoder alone interleaved (bench/inference_timing.py). Target: >= 3x
    lower per-text CPU than the fixed-length graph for sarcasm's lstm, lstm2, gru, rnn and conv; the
    other models' gains are reported.
(b) Served: one server holding each model in all three forms (`<name>-padded`, `<name>-fixed`, in a
    temporary repository), 32 headlines per request at concurrency 8, the three in alternation, their
    order rotated from round to round.
    Target: >= 2x the texts/s of the fixed-length graph for sarcasm-lstm and sarcasm-lstm2.

    .venv/bin/python -m bench.variable_length [--models models] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import grpc
import numpy as np
import onnx
from google.protobuf import text_format

from bench.dataset_texts import DATA_DIR, dataset_texts
from bench.harness import start_seqserve
from bench.in_process import InProcessModel, load_in_process
from bench.inference_timing import TimingBudget, interleaved_timings
from bench.machine import cpu_model, loads_text, now_text
from bench.models import ModelFiles, copy_tokenizer, find_models
from bench.served import measure
from bench.speed_verdicts import TimingSpread
from bench.targets import TargetResult
from seqserve.loadtest.runner import LoadSpec
from seqserve.loadtest.texts import load_texts
from seqserve.v1 import classifier_pb2, classifier_pb2_grpc

BATCH = 32
BATCHES_PER_CALL = 8  # one timed call runs this many different batches of real texts
PARITY_TOLERANCE = 1e-5
IN_PROCESS_GAIN = 3.0
IN_PROCESS_TARGETS = ("sarcasm-lstm", "sarcasm-lstm2", "sarcasm-gru", "sarcasm-rnn", "sarcasm-conv")
SERVED_GAIN = 2.0
SERVED_TARGETS = ("sarcasm-lstm", "sarcasm-lstm2")
SERVED_CONCURRENCY = 8
RECURRENT_OPS = frozenset({"LSTM", "GRU", "RNN"})
SEQUENCE_LENS = 4  # index of the optional sequence_lens input of ONNX's LSTM, GRU and RNN
# form -> model-name suffix in the temporary repository of (b)
FORMS = {"fixed-length graph": "-fixed", "padded": "-padded", "variable": ""}


def without_sequence_lens(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """The graph with every recurrent op running all positions; None when it has no sequence_lens."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    changed = False
    for node in fixed.graph.node:
        if node.op_type in RECURRENT_OPS and len(node.input) > SEQUENCE_LENS and node.input[SEQUENCE_LENS]:
            node.input[SEQUENCE_LENS] = ""
            changed = True
    return fixed if changed else None


def write_forms(model: ModelFiles, repository: Path, directory: Path) -> dict[str, str]:
    """The model's three forms as versions in `directory`, a model repository; form -> model name."""
    copy_tokenizer(model.config, repository, directory)
    onnx_file = model.config.export.onnx_file or "model.onnx"
    graph = onnx.load(model.version_dir / onnx_file)
    fixed = without_sequence_lens(graph)
    names = {}
    for form, suffix in FORMS.items():
        name = model.name + (suffix if fixed is not None or form != "fixed-length graph" else "-padded")
        names[form] = name
        target = directory / name / model.version_dir.name
        if target.exists():
            continue
        config = type(model.config)()
        config.CopyFrom(model.config)
        config.name = name
        if form != "variable":
            config.ClearField("sequence")
        target.mkdir(parents=True)
        onnx.save(fixed if form == "fixed-length graph" and fixed is not None else graph, target / onnx_file)
        (target / "config.pbtxt").write_text(text_format.MessageToString(config))
    return names


@dataclass(frozen=True)
class InProcessResult:
    model: str
    mean_width: float  # columns per batch, variable-length
    max_length: int
    parity: float  # max |variable - padded| over every batch
    cpu_us: dict[str, TimingSpread]  # per text: form (and "encode") -> CPU time
    wall_us: dict[str, TimingSpread]

    def gain(self, baseline: str, clock: str = "cpu") -> float:
        """The baseline form's per-text time over the variable-length graph's."""
        timings = self.cpu_us if clock == "cpu" else self.wall_us
        return timings[baseline].median / timings["variable"].median


def text_batches(texts: Sequence[str], count: int) -> list[list[str]]:
    return [list(texts[i * BATCH : (i + 1) * BATCH]) for i in range(count)]


def predict_all(model: InProcessModel, batches: Sequence[Sequence[str]]) -> None:
    for batch in batches:
        model.predict(batch)


def encode_all(model: InProcessModel, batches: Sequence[Sequence[str]]) -> None:
    for batch in batches:
        model.encode(batch)


def compare_in_process(
    model: ModelFiles, repository: Path, forms: Path, batches: list[list[str]], budget: TimingBudget
) -> InProcessResult:
    names = write_forms(model, repository, forms)
    loaded = {
        form: load_in_process(forms / name / model.version_dir.name, model.config, repository)
        for form, name in names.items()
    }
    loaded = {form: m if form == "variable" else m.fixed_length() for form, m in loaded.items()}
    variable, padded = loaded["variable"], loaded["padded"]
    parity = max(float(np.abs(variable.predict(b) - padded.predict(b)).max()) for b in batches)
    timed = batches[:BATCHES_PER_CALL]
    subjects = {form: partial(predict_all, m, timed) for form, m in loaded.items()}
    subjects["encode"] = partial(encode_all, variable, timed)
    samples = interleaved_timings(subjects, budget)
    texts = BATCH * len(timed)

    def per_text(by_subject: dict[str, list[float]]) -> dict[str, TimingSpread]:
        return {s: TimingSpread.of([1e6 * x / texts for x in values]) for s, values in by_subject.items()}

    width = statistics.fmean(variable.encode(b).shape[1] for b in batches)
    cpu, wall = per_text(samples.cpu), per_text(samples.wall)
    return InProcessResult(model.name, width, model.config.max_length, parity, cpu, wall)


def served_parity(address: str, names: Sequence[str], texts: list[str]) -> float:
    """Max |first - second| over one request of `texts`, as the server answers it."""
    with grpc.insecure_channel(address) as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)
        scores = [
            np.array([[s.score for s in p.scores] for p in stub.Classify(
                classifier_pb2.ClassifyRequest(model=name, texts=texts), timeout=30).predictions])
            for name in names
        ]  # fmt: skip
    return float(np.abs(scores[0] - scores[1]).max())


@dataclass(frozen=True)
class ServedResult:
    model: str
    parity: float  # variable against padded, one request
    texts_per_s: dict[str, list[float]]  # form -> per round

    def gain(self, baseline: str) -> float:
        return statistics.median(self.texts_per_s["variable"]) / statistics.median(self.texts_per_s[baseline])


def form_order(forms: Sequence[str], round_: int) -> list[str]:
    """The forms in the order of round `round_`, each round starting one further along, so that none is
    always measured first (or right after the same neighbour) on a machine whose load drifts."""
    shift = round_ % len(forms)
    return [*forms[shift:], *forms[:shift]]


def compare_served(
    models: Sequence[ModelFiles], repository: Path, texts: Path, spec: LoadSpec, rounds: int
) -> list[ServedResult]:
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-variable-length-") as scratch:
        forms = {model.name: write_forms(model, repository, Path(scratch)) for model in models}
        with start_seqserve(Path(scratch), "variable") as server:
            sample = load_texts(texts, limit=BATCH)
            for model in models:
                names = forms[model.name]
                parity = served_parity(server.address, [names["variable"], names["padded"]], sample)
                by_form: dict[str, list[float]] = {form: [] for form in names}
                for round_ in range(rounds):
                    for form in form_order(list(by_form), round_):
                        cells = measure(
                            server, names[form], spec, texts, "on", concurrencies=(spec.concurrency,)
                        )
                        by_form[form].append(cells[0].summary.texts_per_s)
                results.append(ServedResult(model.name, parity, by_form))
    return results


def _spread(spread: TimingSpread) -> str:
    return f"{spread.median:.1f} ({spread.low:.1f}-{spread.high:.1f})"


def verdicts(in_process: list[InProcessResult], served: list[ServedResult]) -> list[TargetResult]:
    results = []
    for r in in_process:
        exact = r.parity <= PARITY_TOLERANCE
        if r.model in IN_PROCESS_TARGETS or not exact:
            gain = r.gain("fixed-length graph")
            results.append(
                TargetResult(
                    f"(a) {r.model}",
                    exact and (gain >= IN_PROCESS_GAIN or r.model not in IN_PROCESS_TARGETS),
                    f"per-text CPU {gain:.2f}x lower than the fixed-length graph (target "
                    f"{IN_PROCESS_GAIN:g}x; {r.gain('padded'):.2f}x lower than padded to max_length, "
                    f"outputs within {r.parity:.1e})",
                )
            )
    for r in served:
        gain = r.gain("fixed-length graph")
        results.append(
            TargetResult(
                f"(b) {r.model}",
                r.parity <= PARITY_TOLERANCE and gain >= SERVED_GAIN,
                f"{gain:.2f}x the texts/s of the fixed-length graph served (target {SERVED_GAIN:g}x; "
                f"{r.gain('padded'):.2f}x padded to max_length, answers within {r.parity:.1e})",
            )
        )
    return results


def report(
    argv: Sequence[str],
    loads: list[tuple[str, tuple[float, ...]]],
    in_process: list[InProcessResult],
    served: list[ServedResult],
    spec: LoadSpec,
    rounds: int,
) -> str:
    command = shlex.join([".venv/bin/python", "-m", "bench.variable_length", *argv])
    lines = [
        "# Variable-length graphs against fixed-length ones",
        "",
        f"- command: `{command}` (part of `make bench`)",
        f"- date: {now_text()}",
        f"- machine: {cpu_model()}, {os.cpu_count()} logical CPUs; load average (1, 5, 15 min): "
        + "; ".join(f"{phase} {loads_text(load)}" for phase, load in loads),
        "- forms of each version (same weights): *variable* as served; *padded* to max_length (config "
        "`sequence` cleared); *fixed-length graph*: recurrent ops without `sequence_lens`, padded to "
        "max_length, as exported before masking (for Conv1D and GAP the same as padded)",
        "",
        f"## (a) In process: server encoder + ONNX Runtime, batches of {BATCH} real texts",
        "",
        "CPU µs per text, median (interquartile range) of interleaved rounds; *encode* is the encoder "
        "alone, included in the others; width = mean columns per batch of the variable form; parity = "
        "max |variable - padded| over every batch; gains by CPU time (latency in brackets).",
        "",
        "| model | width / max_length | encode | fixed-length graph | padded | variable "
        "| gain vs fixed-length graph | gain vs padded | parity |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in in_process:
        spreads = " | ".join(_spread(r.cpu_us[s]) for s in ("encode", *FORMS))
        gains = " | ".join(
            f"{r.gain(baseline):.2f}x ({r.gain(baseline, 'wall'):.2f}x)"
            for baseline in ("fixed-length graph", "padded")
        )
        lines.append(
            f"| {r.model} | {r.mean_width:.1f} / {r.max_length} | {spreads} | {gains} | {r.parity:.1e} |"
        )
    lines += [
        "",
        f"## (b) Served: {spec.batch} headlines per request, concurrency {spec.concurrency}, one server",
        "",
        f"texts/s per {spec.duration_s:g} s cell ({spec.warmup_s:g} s warm-up), {rounds} rounds, the "
        "three forms in alternation (order rotated each round); gains = ratios of the medians; parity = "
        "max |variable - padded| "
        f"over one request of {BATCH} headlines.",
        "",
        "| model | fixed-length graph texts/s | padded texts/s | variable texts/s "
        "| gain vs fixed-length graph | gain vs padded | parity |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for r in served:
        cells = " | ".join(", ".join(f"{x:.0f}" for x in r.texts_per_s[form]) for form in FORMS)
        lines.append(
            f"| {r.model} | {cells} | {r.gain('fixed-length graph'):.2f}x | {r.gain('padded'):.2f}x "
            f"| {r.parity:.1e} |"
        )
    lines += ["", "## Targets", "", *(v.line() for v in verdicts(in_process, served))]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models"), help="model repository [%(default)s]")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="datasets' texts [%(default)s]")
    parser.add_argument("--batches", type=int, default=32, help="(a) batches checked per model [%(default)s]")
    parser.add_argument("--seconds-per-subject", type=float, default=1.0, help="(a) timing budget")
    parser.add_argument("--duration", type=float, default=3.0, help="(b) measured s per cell [%(default)s]")
    parser.add_argument("--warmup", type=float, default=1.0, help="(b) warm-up s per cell [%(default)s]")
    parser.add_argument("--rounds", type=int, default=3, help="(b) cells per model and form [%(default)s]")
    parser.add_argument("--report", type=Path, default=Path("reports/variable_length.md"), help="output")
    args = parser.parse_args(args_list)

    found = find_models(args.models)
    variable = [m for m in found if m.config.sequence.variable_length]
    if not variable:
        print(f"bench: no variable-length model in {args.models}/; train some first", file=sys.stderr)
        return 1
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as `seqserve serve` runs them
    loads = [("start", os.getloadavg())]
    budget = TimingBudget(min_rounds=5, seconds_per_subject=args.seconds_per_subject)
    in_process = []
    with tempfile.TemporaryDirectory(prefix="bench-variable-forms-") as forms:
        for dataset in sorted({m.config.dataset for m in variable}):
            batches = text_batches(load_texts(dataset_texts(dataset, args.data_dir)), args.batches)
            for model in (m for m in variable if m.config.dataset == dataset):
                started_at = time.monotonic()
                in_process.append(compare_in_process(model, args.models, Path(forms), batches, budget))
                gain, seconds = in_process[-1].gain("fixed-length graph"), time.monotonic() - started_at
                print(f"  {model.name:<16} in process {gain:5.2f}x, {seconds:.0f} s", flush=True)
    loads.append(("served", os.getloadavg()))
    spec = LoadSpec(
        concurrency=SERVED_CONCURRENCY, batch=BATCH, duration_s=args.duration, warmup_s=args.warmup
    )
    served_models = [m for m in variable if m.name in SERVED_TARGETS]
    texts = dataset_texts("sarcasm", args.data_dir)
    served = compare_served(served_models, args.models, texts, spec, args.rounds) if served_models else []
    loads.append(("end", os.getloadavg()))
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(report(args_list, loads, in_process, served, spec, args.rounds))
    print("\n" + "\n".join(v.line() for v in verdicts(in_process, served)) + f"\n\nwritten to {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
