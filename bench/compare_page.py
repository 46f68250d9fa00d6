"""The compare page on a repository's models as a person sees it: whether the compute per text it shows
stands between two models as their in-process cost does, and its screenshot.

One server with one dataset's models (the newest version of each, default settings) and one text.
1. In process, each model's tokenize + runtime per text on that text: alone, called again and again
   (bench.in_process.cost_per_text; the median of `--blocks` blocks of calls, the models' blocks
   interleaved, so a burst of other work on the machine slows one block of one model, not its figure),
   and in turn with the others with `--evict-mib` of other memory read between calls, as a server's
   other work between one model's batches leaves its caches cold.
2. The page, in headless Chromium, compares the text `--runs` times, each compare with `--rounds`
   rounds (the page's own default unless set): each model answers the text that many times in a row,
   the server returns its medians, and the page's "compute per text" row holds each model's median
   over the runs. Then `--compares` more compares of the text over gRPC (one round each, the API's
   default), and the page is read again without a text: its live table holds their compute per text
   (the window starts where the page first asked for it, after its own compares).
3. The claim: the ratio of `--slow` to `--fast` (lstm2 to flatten) on the page is within `--tolerance`
   (30 %) of the in-process ratio, for both of the page's figures.
4. A screenshot of the page comparing the text, after all of that (`--screenshot`).

    .venv/bin/python -m bench.compare_page --models models [--dataset sarcasm] [--text "..."] \
        [--runs 9] [--rounds 5] [--screenshot reports/compare-page.png] [--report reports/compare_page.md]
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc
import numpy as np

from bench import browser
from bench.explain_cost import copy_dataset_models
from bench.harness import start_seqserve
from bench.in_process import cost_per_text, load_in_process
from bench.machine import cpu_model, loads_text, now_text, versions, write_report
from bench.models import ModelFiles, find_models
from seqserve.v1 import classifier_pb2, classifier_pb2_grpc
from seqserve.verdicts import Verdict
from serving.handlers.compare_page import PAGE_ROUNDS

TEXT = "scientists unveil doomsday clock of hair loss"
WINDOW = "1200,1850"


def in_process_costs(
    models: Sequence[ModelFiles], repository: Path, text: str, evict_mib: int, blocks: int, rounds: int = 200
) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per text of each model on `text`, tokenize + runtime as the server runs them: alone (the
    median over `blocks` interleaved blocks of each one's median of repeated calls), and called in turn
    with `evict_mib` MiB read between calls (medians)."""
    loaded = {m.name: load_in_process(m.version_dir, m.config, repository) for m in models}
    per_block: dict[str, list[float]] = {name: [] for name in loaded}
    for _ in range(blocks):
        for name, model in loaded.items():
            per_block[name].append(cost_per_text(model, [text], calls=400))
    alone = {name: statistics.median(costs) for name, costs in per_block.items()}
    other_memory = np.ones(evict_mib * 2**18, dtype=np.float32)
    times: dict[str, list[float]] = {name: [] for name in loaded}
    for _ in range(rounds):
        for name, model in loaded.items():
            other_memory.sum()
            started = time.perf_counter()
            model.predict([text])
            times[name].append(time.perf_counter() - started)
    return alone, {name: statistics.median(seconds) for name, seconds in times.items()}


def ratio_verdict(shown: float, in_process: float, tolerance: float) -> Verdict:
    return Verdict.HOLDS if abs(shown / in_process - 1) <= tolerance else Verdict.DOES_NOT_HOLD


def figures_table(columns: Mapping[str, Mapping[str, float]], accuracy: Mapping[str, float]) -> list[str]:
    """Markdown lines: a column of µs per text for each title, ordered by the first; test accuracy."""
    first = next(iter(columns.values()))
    lines = [
        "| model | " + " | ".join(f"{title} (µs per text)" for title in columns) + " | test accuracy |",
        "|---|" + "---:|" * (len(columns) + 1),
    ]
    for name in sorted(first, key=first.__getitem__):
        cells = " | ".join(f"{column.get(name, math.nan):.1f}" for column in columns.values())
        lines.append(f"| {name} | {cells} | {accuracy[name]:.4f} |")
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models"), help="model repository [%(default)s]")
    parser.add_argument("--dataset", default="sarcasm", help="whose models [%(default)s]")
    parser.add_argument("--text", default=TEXT, help="the one text [%(default)s]")
    parser.add_argument("--slow", default="sarcasm-lstm2", help="the ratio's numerator [%(default)s]")
    parser.add_argument("--fast", default="sarcasm-flatten", help="the ratio's denominator [%(default)s]")
    parser.add_argument("--runs", type=int, default=9, help="the page's compares [%(default)s]")
    parser.add_argument(
        "--rounds", type=int, default=PAGE_ROUNDS, help="of each of them, the page's default [%(default)s]"
    )
    parser.add_argument("--compares", type=int, default=200, help="gRPC compares behind the live figures")
    parser.add_argument("--tolerance", type=float, default=0.30, help="of the ratio [%(default)s]")
    parser.add_argument("--evict-mib", type=int, default=16, help="read between in-process calls in turn")
    parser.add_argument("--blocks", type=int, default=5, help="of in-process calls alone [%(default)s]")
    parser.add_argument("--screenshot", type=Path, default=Path("reports/compare-page.png"))
    parser.add_argument("--report", type=Path, default=Path("reports/compare_page.md"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(args_list)
    models = [m for m in find_models(args.models) if m.config.dataset == args.dataset]
    names = {m.name for m in models}
    if not {args.slow, args.fast} <= names:
        print(f"bench.compare_page: {args.slow} and {args.fast} must be in {args.models}", file=sys.stderr)
        return 2
    started_at, load_start = time.monotonic(), os.getloadavg()
    in_process, in_turn = in_process_costs(models, args.models, args.text, args.evict_mib, args.blocks)
    with tempfile.TemporaryDirectory(prefix="bench-compare-page-") as scratch:
        repository, profiles = Path(scratch) / "models", Path(scratch) / "chromium"
        repository.mkdir()
        profiles.mkdir()
        copy_dataset_models(models, args.models, repository)
        server = start_seqserve(repository, "compare-page")
        with server, grpc.insecure_channel(server.address) as channel:
            rest = str(server.rest_url)
            compared, _ = browser.page_dom(rest, [args.text], profiles, runs=args.runs, rounds=args.rounds)
            this_compare = compared.milliseconds("results", "compute per text")
            stub = classifier_pb2_grpc.ClassifierStub(channel)
            request = classifier_pb2.CompareRequest(texts=[args.text])
            for _ in range(args.compares):
                stub.Compare(request, timeout=30)
            live_cells, _ = browser.page_dom(rest, [], profiles)
            live = live_cells.live_compute_ms()
            url = browser.page_url(rest, [args.text], args.runs, args.rounds)
            args.screenshot.parent.mkdir(parents=True, exist_ok=True)
            browser.chromium(
                profiles, f"--screenshot={args.screenshot.resolve()}", f"--window-size={WINDOW}", url
            )
        shutil.rmtree(profiles, ignore_errors=True)
    expected = in_process[args.slow] / in_process[args.fast]
    findings = [
        f"- in process, alone: {args.slow} / {args.fast} = **{expected:.2f}**; in turn, with "
        f"{args.evict_mib} MiB read between calls: {in_turn[args.slow] / in_turn[args.fast]:.2f}"
    ]
    for title, shown in (("the page's compare", this_compare), ("the page's live table", live)):
        ratio = shown[args.slow] / shown[args.fast]
        verdict = ratio_verdict(ratio, expected, args.tolerance)
        findings.append(
            f"- {title}: {ratio:.2f}, {100 * (ratio / expected - 1):+.0f} % of in process: "
            f"**{verdict.value}** (within ±{100 * args.tolerance:.0f} %)"
        )
    accuracy = {m.name: m.config.training.test_accuracy for m in models}
    report = [
        "# The compare page's compute per text against the in-process cost",
        "",
        f"- command: `{shlex.join(['.venv/bin/python', '-m', 'bench.compare_page', *args_list])}`; "
        f"took {(time.monotonic() - started_at) / 60:.1f} min",
        f"- date: {now_text()}; machine: {cpu_model()}, {os.cpu_count()} logical CPUs shared with other "
        f"work; load average at the start {loads_text(load_start)}, at the end {loads_text(os.getloadavg())}",
        f"- {versions(['onnxruntime', 'tokenizers', 'grpcio'])}",
        f"- one server with the {len(models)} {args.dataset} models, default settings; the text: "
        f"{args.text!r}; the page compared it {args.runs} times with {args.rounds} rounds each (each "
        f"model answered it {args.rounds} times in a row, its figures the medians), then {args.compares} "
        "gRPC compares of one round fed its live table; compute per text is the tokenize + runtime time "
        "of the model's batch (here the one text) in the server, in process the same two steps on the "
        f"same text (alone: the median of {args.blocks} blocks of 400 calls after 400 to warm up, the "
        "models' blocks interleaved)",
        "",
        *findings,
        "",
        *figures_table(
            {
                "in process, alone": {name: seconds * 1e6 for name, seconds in in_process.items()},
                f"in process, in turn after {args.evict_mib} MiB": {n: s * 1e6 for n, s in in_turn.items()},
                f"page: compute per text, median of {args.runs} runs of {args.rounds} rounds": {
                    n: ms * 1e3 for n, ms in this_compare.items()
                },
                "page: live compute per text": {name: ms * 1e3 for name, ms in live.items()},
            },
            accuracy,
        ),
        "",
        f"The screenshot: [{args.screenshot.name}]({args.screenshot.name}).",
        "",
    ]
    write_report(args.report, "\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
