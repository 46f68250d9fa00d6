"""Soak test: a real server under mixed load for an hour; errors, memory growth, and where memory grows.

Two models of `--models` (sarcasm-conv and sarcasm-lstm unless `--model` names others) and the
tokenizers are copied to a scratch repository, served by `seqserve serve` inside bench.traced_server
on free loopback ports. The load tester's closed loop (seqserve.loadtest.runner) keeps `--concurrency`
requests outstanding, spread evenly over every pair of model and protocol (seqserve.v1 Classify, KServe
V2 ModelInfer, TensorFlow Serving Predict), 1-4 real headlines each. A separate loop asks seqserve.v1
Explain about one headline through both models at `--explain-rate` per second, one call at a time (the
server admits --max-concurrent-explains at once, 1 by default, and refuses the rest).

The run is a sequence of windows: 60 s each, or 12 windows for runs shorter than 12 minutes. After
each, the resident memory of every process of the server is read from /proc, and the probe says what
is inside it: tracemalloc's own tables, the Python blocks traced, glibc's malloc. tracemalloc starts
after 1/12 of the run (minute 5 of 60), so that start-up and warm-up run untraced; snapshots after
1/6, 1/2 and all of the run (minutes 10, 30 and 60) are compared by line: the sites that grew most
between them.

Judged over the last 2/3 of the run (minutes 20-60): errors of either loop (must be 0), server log
lines at WARNING or above (0), and RSS growth: the highest sample against the one at the span's start,
each less tracemalloc's own memory (< 1 %; the raw figure is reported beside it). Nothing is judged on
speed, so the soak may run at nice 19 beside other work. Exit status 1 on any miss.

    .venv/bin/python -m bench.soak [--models models] [--model NAME ...] [--seconds 3600]
        [--concurrency 32] [--explain-rate 1] [--report reports/soak.md] [-- extra serve flags]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from bench import memory_growth
from bench.harness import ServerProcess, free_port, serve_command
from bench.machine import loads_text, now_text
from bench.traced_server import MemoryProbe
from seqserve.loadtest.cli import DEFAULT_TEXTS
from seqserve.loadtest.runner import LoadSpec, ModelRun, run_model
from seqserve.loadtest.targets import Target, create_target
from seqserve.loadtest.texts import TextCycle, load_texts
from seqserve.v1 import classifier_pb2, classifier_pb2_grpc

SECONDS = 3600.0
MODELS = ("sarcasm-conv", "sarcasm-lstm")
PROTOCOLS = ("seqserve", "v2", "tfs")
RSS_TARGET = 0.01
MAX_WINDOW_S = 60.0
MIN_WINDOWS = 12
TRACE_START_SHARE = 1 / 12  # minute 5 of 60
SNAPSHOT_SHARES = (1 / 6, 1 / 2, 1.0)  # minutes 10, 30, 60
JUDGED_SHARE = 2 / 3  # the last 40 minutes of 60
# Frames recorded per traced allocation: 1, the allocating line, costs the server least.
TRACE_FRAMES = 1
# A starved client (nice 19 beside busy benchmarks) must not count as a server error.
REQUEST_TIMEOUT_S = 60.0
CHANNELS = 4
MAX_TEXTS = 4
# gRPC core's own INFO lines on stderr, e.g. the note each snapshot's fork leaves: not warnings.
GRPC_INFO_LINE = re.compile(r"^I\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ")


@dataclass(frozen=True)
class Schedule:
    """Windows, and after which of them tracing starts and snapshots are taken (counted from 1)."""

    windows: int
    window_s: float
    trace_start: int  # 0: never
    snapshots: tuple[int, ...]
    judged: int  # the last this many windows

    @classmethod
    def of(cls, seconds: float, traced: bool = True) -> Schedule:
        windows = max(MIN_WINDOWS, math.ceil(seconds / MAX_WINDOW_S))

        def after(share: float) -> int:
            return max(1, round(windows * share))

        return cls(
            windows,
            seconds / windows,
            after(TRACE_START_SHARE) if traced else 0,
            tuple(after(share) for share in SNAPSHOT_SHARES) if traced else (),
            round(windows * JUDGED_SHARE),
        )


@dataclass(frozen=True)
class Mix:
    """One share of the load: a model, a protocol and texts per request, with its concurrency."""

    model: str
    protocol: str
    batch: int
    concurrency: int


def mixes(models: Sequence[str], concurrency: int) -> list[Mix]:
    """Request slot n goes to pair n mod P of (model, protocol), with 1 + (n div P) mod 4 texts."""
    pairs = list(itertools.product(models, PROTOCOLS))
    slots: Counter[tuple[str, str, int]] = Counter()
    for n in range(concurrency):
        model, protocol = pairs[n % len(pairs)]
        slots[(model, protocol, 1 + (n // len(pairs)) % MAX_TEXTS)] += 1
    return [Mix(model, protocol, batch, count) for (model, protocol, batch), count in sorted(slots.items())]


@dataclass
class ExplainTally:
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    due: int = 0  # ticks of the explain clock so far


@dataclass(frozen=True)
class Memory:
    """The server's memory at one moment: /proc's RSS and the probe's reply (bench.traced_server)."""

    rss_bytes: int  # every process of the server
    tracemalloc_bytes: int  # tracemalloc's own tables, part of rss_bytes
    traced_bytes: int  # Python blocks allocated since tracing began and still alive
    malloc_heap_bytes: int | None  # glibc's malloc (None without glibc): heap chunks in use,
    malloc_mmapped_bytes: int | None  # blocks mmapped apart (ONNX Runtime's arena regions among them)
    malloc_free_bytes: int | None  # and heap freed but kept

    @property
    def server_bytes(self) -> int:
        """RSS less what tracemalloc itself holds."""
        return self.rss_bytes - self.tracemalloc_bytes


@dataclass(frozen=True)
class Window:
    ok: int
    errors: Counter[str]  # "protocol STATUS" -> count
    explains_ok: int  # answered during this window
    explain_errors: int
    p50_ms: float
    p99_ms: float
    memory: Memory  # at the end of the window

    @property
    def requests(self) -> int:
        return self.ok + sum(self.errors.values())


@dataclass
class SoakResult:
    schedule: Schedule
    windows: list[Window]
    start: Memory  # before the first window
    pairs: dict[tuple[str, str], Counter[str]]  # (model, protocol) -> "ok" and error statuses
    explains: ExplainTally
    snapshots: list[tuple[int, Path]]  # (after window, file)
    seconds: float
    concurrency: int
    explain_rate: float
    models: list[str]
    trace_frames: int

    @property
    def judged(self) -> list[Window]:
        return self.windows[-self.schedule.judged :]

    @property
    def judged_start(self) -> Window:
        """The sample the judged span starts from: the end of the window before it."""
        return self.windows[-self.schedule.judged - 1]

    @property
    def errors(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for window in self.windows:
            total.update(window.errors)
        total.update({f"explain {code}": n for code, n in self.explains.errors.items()})
        return total

    @property
    def requests(self) -> int:
        return sum(w.requests for w in self.windows)

    @property
    def rss_growth(self) -> float:
        """Highest RSS of the judged span against its start, tracemalloc's own memory left out."""
        start = self.judged_start.memory.server_bytes
        return max(w.memory.server_bytes for w in self.judged) / start - 1

    @property
    def raw_rss_growth(self) -> float:
        return max(w.memory.rss_bytes for w in self.judged) / self.judged_start.memory.rss_bytes - 1


def serving_copy(repository: Path, models: Sequence[str], destination: Path) -> Path:
    """A repository of only `models` (and the tokenizers they share), so the server loads nothing else."""
    missing = [name for name in models if not (repository / name).is_dir()]
    if missing:
        raise SystemExit(
            f"bench.soak: {', '.join(missing)} not in {repository}: train them (make train) or name others "
            "with --model"
        )
    for name in (*models, "tokenizers"):
        if (repository / name).is_dir():
            shutil.copytree(repository / name, destination / name)
    return destination


async def explain_loop(
    address: str, models: list[str], texts: TextCycle, rate: float, tally: ExplainTally, stop: asyncio.Event
) -> None:
    """One Explain at a time, each on the next tick of a 1/rate clock; ticks that pass while a call runs
    are skipped, so a slow server gets fewer explanations, never a queue of them."""
    interval = 1.0 / rate
    async with grpc.aio.insecure_channel(address) as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)
        start = time.perf_counter()
        while not stop.is_set():
            sent = time.perf_counter()
            request = classifier_pb2.ExplainRequest(text=texts.take()[0], models=models)
            try:
                await stub.Explain(request, timeout=REQUEST_TIMEOUT_S)
            except grpc.aio.AioRpcError as error:
                tally.errors[error.code().name] += 1
            else:
                tally.ok += 1
                tally.latencies_s.append(time.perf_counter() - sent)
            tally.due = math.floor((time.perf_counter() - start) / interval) + 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), start + tally.due * interval - time.perf_counter())


def window_of(
    runs: Sequence[tuple[Mix, ModelRun]], explains: ExplainTally, explained: tuple[int, int], memory: Memory
) -> Window:
    """`explained`: the explain tally's (ok, errors) when the window began; `memory`: read after it."""
    errors: Counter[str] = Counter()
    for mix, run in runs:
        errors.update({f"{mix.protocol} {code}": n for code, n in run.outcome.recorder.errors.items()})
    latencies = np.array([x for _, run in runs for x in run.outcome.recorder.latencies_s]) * 1e3
    p50, p99 = np.percentile(latencies, [50, 99]) if latencies.size else (math.nan, math.nan)
    return Window(
        int(latencies.size),
        errors,
        explains.ok - explained[0],
        sum(explains.errors.values()) - explained[1],
        float(p50),
        float(p99),
        memory,
    )


class Soak:
    """One run against a started traced server."""

    def __init__(
        self,
        server: ServerProcess,
        models: list[str],
        texts: list[str],
        args: argparse.Namespace,
        snapshot_dir: Path,
    ) -> None:
        self.server = server
        self.probe = MemoryProbe(server.process)
        self.models = models
        self.texts = texts
        self.args = args
        self.schedule = Schedule.of(args.seconds, args.tracemalloc)
        self.snapshot_dir = snapshot_dir
        self.snapshots: list[tuple[int, Path]] = []

    async def memory(self) -> Memory:
        reply = await asyncio.to_thread(self.probe.ask, "memory")
        return Memory(
            sum(self.server.rss_bytes()),
            reply["tracemalloc_bytes"],
            reply["traced_bytes"],
            reply["malloc_heap_bytes"],
            reply["malloc_mmapped_bytes"],
            reply["malloc_free_bytes"],
        )

    async def after_window(self, number: int) -> None:
        """Start tracing or take a snapshot, as the schedule says, once the window's RSS was read."""
        if number == self.schedule.trace_start:
            await asyncio.to_thread(self.probe.ask, f"start {self.args.trace_frames}")
        if number in self.schedule.snapshots:
            path = self.snapshot_dir / f"after-window-{number:02d}.tracemalloc"
            await asyncio.to_thread(self.probe.ask, f"snapshot {path}")
            self.snapshots.append((number, path))

    async def run(self) -> SoakResult:
        schedule, args = self.schedule, self.args
        shares = mixes(self.models, args.concurrency)
        targets: dict[str, Target] = {
            protocol: create_target(protocol, self.server.address, CHANNELS) for protocol in PROTOCOLS
        }
        cycles = {m: TextCycle(self.texts, m.batch) for m in shares}
        pairs: dict[tuple[str, str], Counter[str]] = {(m.model, m.protocol): Counter() for m in shares}
        explains, stop = ExplainTally(), asyncio.Event()
        start = await self.memory()
        explainer = asyncio.create_task(
            explain_loop(
                self.server.address, self.models, TextCycle(self.texts, 1), args.explain_rate, explains, stop
            )
        )
        windows: list[Window] = []
        try:
            for number in range(1, schedule.windows + 1):
                explained = (explains.ok, sum(explains.errors.values()))
                runs = await asyncio.gather(
                    *(
                        run_model(
                            targets[m.protocol],
                            m.model,
                            LoadSpec(
                                concurrency=m.concurrency,
                                duration_s=schedule.window_s,
                                warmup_s=0,
                                batch=m.batch,
                                timeout_s=REQUEST_TIMEOUT_S,
                            ),
                            cycles[m],
                            None,
                        )
                        for m in shares
                    )
                )
                for mix, run in zip(shares, runs, strict=True):
                    pairs[(mix.model, mix.protocol)].update(
                        {"ok": run.outcome.recorder.ok, **run.outcome.recorder.errors}
                    )
                window = window_of(
                    list(zip(shares, runs, strict=True)), explains, explained, await self.memory()
                )
                windows.append(window)
                print(
                    f"  window {number}/{schedule.windows}: {window.requests} requests, "
                    f"{sum(window.errors.values())} errors, {window.explains_ok} explanations "
                    f"({window.explain_errors} errors), RSS {window.memory.rss_bytes / 2**20:.1f} MiB "
                    f"(tracemalloc {window.memory.tracemalloc_bytes / 2**20:.1f})",
                    flush=True,
                )
                await self.after_window(number)
        finally:
            stop.set()
            await explainer
            for target in targets.values():
                await target.close()
        return SoakResult(
            schedule,
            windows,
            start,
            pairs,
            explains,
            self.snapshots,
            args.seconds,
            args.concurrency,
            args.explain_rate,
            self.models,
            args.trace_frames,
        )


def warning_lines(log: str) -> list[str]:
    """The server's log lines at WARNING or above (it runs with --log-level WARNING): every line but
    gRPC core's INFO notes."""
    return [line for line in log.splitlines() if line.strip() and not GRPC_INFO_LINE.match(line)]


# What the probe reads inside the server process, each from a Memory; with RSS, the report's columns.
INSIDE: dict[str, Callable[[Memory], int | None]] = {
    "glibc heap in use": lambda m: m.malloc_heap_bytes,
    "glibc mmapped blocks": lambda m: m.malloc_mmapped_bytes,
    "glibc heap free, kept": lambda m: m.malloc_free_bytes,
    "Python blocks traced": lambda m: m.traced_bytes,
    "tracemalloc's own tables": lambda m: m.tracemalloc_bytes,
}
MEMORY_PARTS: dict[str, Callable[[Memory], int | None]] = {"RSS": lambda m: m.rss_bytes, **INSIDE}


def mib(size: int | None) -> float:
    return math.nan if size is None else size / 2**20


def plot_rss(result: SoakResult, path: Path) -> None:
    """Above: RSS after each window, with and without tracemalloc's own memory, the judged span shaded.
    Below: what the probe sees inside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minute = result.schedule.window_s / 60
    minutes = [0.0] + [(i + 1) * minute for i in range(len(result.windows))]
    memory = [result.start] + [w.memory for w in result.windows]
    figure, (above, below) = plt.subplots(
        2, 1, figsize=(9, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    above.plot(minutes, [mib(m.rss_bytes) for m in memory], label="RSS")
    above.plot(minutes, [mib(m.server_bytes) for m in memory], label="RSS less tracemalloc's own memory")
    for label, size in INSIDE.items():
        below.plot(minutes, [mib(size(m)) for m in memory], label=label)
    judged_from = (len(result.windows) - result.schedule.judged) * minute
    for axes in (above, below):
        axes.axvspan(judged_from, minutes[-1], alpha=0.1, color="tab:green")
        if result.schedule.trace_start:
            axes.axvline(result.schedule.trace_start * minute, linestyle="--", color="grey")
        for number, _ in result.snapshots:
            axes.axvline(number * minute, linestyle=":", color="black")
        axes.grid(alpha=0.3)
        axes.legend(loc="best", fontsize="small")
    above.set_ylabel("MiB, every process of the server")
    above.set_title(
        f"Soak: RSS less tracemalloc grew {result.rss_growth * 100:+.2f} % over the judged span (shaded); "
        f"target < {RSS_TARGET * 100:g} %"
    )
    below.set_ylabel("MiB, the server process")
    below.set_xlabel("minutes (dashed: tracemalloc starts; dotted: snapshots)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def counted(errors: Counter[str]) -> str:
    """E.g. "0", or "3 {'v2 UNAVAILABLE': 3}"."""
    return f"{sum(errors.values())} {dict(errors)}" if errors else "0"


def markdown(
    result: SoakResult,
    command: str,
    warnings: list[str],
    growths: list[memory_growth.Growth],
    plot: str,
) -> str:
    schedule, judged, start, end = (
        result.schedule,
        result.judged,
        result.judged_start.memory,
        result.windows[-1].memory,
    )

    def minutes(windows: int) -> str:
        return f"{round(windows * schedule.window_s / 60, 2):g}"

    errors = sum(result.errors.values())
    explain_ms = (
        np.percentile(np.array(result.explains.latencies_s) * 1e3, [50, 99])
        if result.explains.ok
        else [math.nan] * 2
    )
    frames = f"{result.trace_frames} frame" + ("s" if result.trace_frames != 1 else "")
    traced = (
        f"tracemalloc ({frames}) from minute {minutes(schedule.trace_start)}, snapshots after minutes "
        + ", ".join(minutes(n) for n in schedule.snapshots)
        if schedule.trace_start
        else "no tracemalloc (--no-tracemalloc)"
    )
    lines = [
        "# Soak test",
        "",
        f"Command: `{command}`  ",
        f"Date: {now_text()}; machine: {os.cpu_count()} cores, load average "
        f"{loads_text(os.getloadavg())} at the end (shared with other work); the soak's own niceness "
        f"{os.nice(0)}.",
        "",
        f"{result.seconds:g} s at concurrency {result.concurrency} against {', '.join(result.models)}: the "
        "load tester's closed loop, evenly over seqserve.v1 Classify, KServe V2 ModelInfer and TensorFlow "
        "Serving Predict, 1-4 headlines per request; seqserve.v1 Explain through both models at "
        f"{result.explain_rate:g}/s beside it. {schedule.windows} windows of {schedule.window_s:g} s; RSS of "
        f"every process of the server from /proc after each; {traced}. Judged: the last {schedule.judged} "
        f"windows ({minutes(schedule.judged)} min).",
        "",
        f"![RSS over the run]({plot})",
        "",
        "| figure | value | target | |",
        "|---|---|---|---|",
        f"| requests | {result.requests} | | |",
        f"| explanations answered / due | {result.explains.ok} / {result.explains.due} "
        f"(p50 {explain_ms[0]:.0f} ms, p99 {explain_ms[1]:.0f} ms) | | |",
        f"| errors | {counted(result.errors)} | 0 | {verdict(errors == 0)} |",
        f"| server log lines at WARNING or above | {len(warnings)} | 0 | {verdict(not warnings)} |",
        f"| RSS less tracemalloc: judged span's start / its max | {mib(start.server_bytes):.1f} / "
        f"{mib(max(w.memory.server_bytes for w in judged)):.1f} MiB | | |",
        f"| RSS growth over the judged span, less tracemalloc | {result.rss_growth * 100:+.2f} % | "
        f"< {RSS_TARGET * 100:g} % | {verdict(result.rss_growth < RSS_TARGET)} |",
        f"| raw RSS growth over the judged span | {result.raw_rss_growth * 100:+.2f} % | | |",
        "",
        f"RSS before the first window: {mib(result.start.rss_bytes):.1f} MiB. Latency is not judged (the "
        "run may be niced beside other work); per window below.",
        "",
        "Inside the server process (bench/traced_server.py), from the judged span's start to its end:",
        "",
        "| memory | start MiB | end MiB | change MiB |",
        "|---|---|---|---|",
    ]
    for label, size in MEMORY_PARTS.items():
        before, after = mib(size(start)), mib(size(end))
        lines.append(f"| {label} | {before:.2f} | {after:.2f} | {after - before:+.2f} |")
    lines.append("")
    if warnings:
        lines += ["Server log (WARNING and above, first lines):", "", "```", *warnings[:20], "```", ""]
    lines += ["| model | protocol | requests | errors |", "|---|---|---|---|"]
    for (model, protocol), counts in sorted(result.pairs.items()):
        failed = Counter({code: n for code, n in counts.items() if code != "ok" and n})
        lines.append(f"| {model} | {protocol} | {sum(counts.values())} | {counted(failed)} |")
    if growths:
        lines += ["", "## Where Python memory grew", ""]
        lines += [
            "Top growth sites between tracemalloc snapshots (`Snapshot.compare_to(..., 'lineno')`, "
            "bench/memory_growth.py), then the call stacks that grew most. Only blocks allocated after "
            "tracing started are traced.",
            "",
        ]
        for change in growths:
            lines += [*memory_growth.markdown(change, f"{change.before} -> {change.after}"), ""]
    lines += [
        "",
        "| window | minute | requests | errors | explanations | p50 ms | p99 ms | "
        + " | ".join(f"{label} MiB" for label in MEMORY_PARTS)
        + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(MEMORY_PARTS),
    ]
    for i, window in enumerate(result.windows):
        sizes = " | ".join(f"{mib(size(window.memory)):.2f}" for size in MEMORY_PARTS.values())
        lines.append(
            f"| {i + 1} | {minutes(i + 1)} | {window.requests} | {sum(window.errors.values())} | "
            f"{window.explains_ok} | {window.p50_ms:.2f} | {window.p99_ms:.2f} | {sizes} |"
        )
    return "\n".join(lines) + "\n"


def figures(
    result: SoakResult, warnings: list[str], growths: list[memory_growth.Growth]
) -> dict[str, object]:
    return {
        "requests": result.requests,
        "errors": dict(result.errors),
        "explains_ok": result.explains.ok,
        "explains_due": result.explains.due,
        "pairs": {f"{model} {protocol}": dict(counts) for (model, protocol), counts in result.pairs.items()},
        "rss_growth": result.rss_growth,
        "raw_rss_growth": result.raw_rss_growth,
        "rss_bytes": [w.memory.rss_bytes for w in result.windows],
        "tracemalloc_bytes": [w.memory.tracemalloc_bytes for w in result.windows],
        "malloc_mmapped_bytes": [w.memory.malloc_mmapped_bytes for w in result.windows],
        "snapshots": [number for number, _ in result.snapshots],
        "growth_sites": [[site.where for site in change.sites] for change in growths],
        "warnings": warnings,
    }


def passed(result: SoakResult, warnings: list[str]) -> bool:
    return not result.errors and not warnings and result.rss_growth < RSS_TARGET


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models"), help="model repository")
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        help=f"a model to serve and load (repeat; default {', '.join(MODELS)})",
    )
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", SECONDS)))
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--explain-rate", type=float, default=1.0, help="explanations per second")
    parser.add_argument(
        "--tracemalloc",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="trace Python allocations from 1/12 of the run on, with snapshots (--no-tracemalloc: RSS alone)",
    )
    parser.add_argument(
        "--trace-frames",
        type=int,
        default=TRACE_FRAMES,
        help="frames per traced allocation; above 1 the report shows the call stacks that grew most, but "
        "every allocation of the server costs more",
    )
    parser.add_argument("--texts", type=Path, default=DEFAULT_TEXTS, help="sarcasm.json or a file of lines")
    parser.add_argument("--report", type=Path, default=Path("reports/soak.md"))
    parser.add_argument(
        "--plot", type=Path, default=None, help="the RSS curve (PNG; default soak-rss.png beside the report)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    parser.add_argument(
        "--snapshots", type=Path, default=None, help="keep the tracemalloc snapshots in this folder"
    )
    parser.add_argument("--server-log", type=Path, default=None, help="keep the server's log (WARNING+) here")
    parser.add_argument("server_args", nargs="*", help="extra `seqserve serve` flags (after --)")
    args = parser.parse_args(argv)
    models = args.model or list(MODELS)
    plot = args.plot or args.report.with_name("soak-rss.png")
    texts = load_texts(args.texts, limit=5000)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="seqserve-soak-") as scratch:
        repository = serving_copy(args.models, models, Path(scratch, "models"))
        snapshot_dir = args.snapshots or Path(scratch, "snapshots")
        snapshot_dir.mkdir(parents=True, exist_ok=True)
        log_path = args.server_log or Path(scratch, "server.log")
        command = serve_command(
            repository,
            "--log-level",
            "WARNING",
            *args.server_args,
            port=free_port(),
            module="bench.traced_server",
        )
        with ServerProcess(command, log_path, stdin=subprocess.PIPE) as server:
            print(
                f"soak: {args.seconds:g} s at concurrency {args.concurrency} on {', '.join(models)}, "
                f"explanations at {args.explain_rate:g}/s",
                flush=True,
            )
            result = asyncio.run(Soak(server, models, texts, args, snapshot_dir).run())
        warnings = warning_lines(log_path.read_text())
        growths = [memory_growth.growth(a, b) for (_, a), (_, b) in itertools.pairwise(result.snapshots)]
    command = "python -m bench.soak " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    plot_rss(result, plot)
    report = markdown(result, command, warnings, growths, os.path.relpath(plot, args.report.parent))
    args.report.write_text(report)
    print(report)
    if args.json is not None:
        args.json.write_text(json.dumps(figures(result, warnings, growths)))
    return 0 if passed(result, warnings) else 1


if __name__ == "__main__":
    sys.exit(main())
