"""`seqserve classify`: send texts to a running server and print a readable table.

seqserve classify --model sarcasm-lstm "text" ...        one model
seqserve classify --compare "text" ...                   every loaded model, side by side
seqserve classify --compare --model a,b "text" ...       the named models
seqserve classify --compare --speed "text" ...           and each model's speed beside its accuracy
seqserve classify --compare --rounds 5 "text" ...        each model's figures: medians of 5 calls in a row
seqserve classify --explain [--compare] ... "text" ...   each word coloured by how much it moves the answer
seqserve classify --tls-ca ca.pem [--tls-cert c.pem --tls-key c.key] ...   over (mutual) TLS
seqserve classify --trace --model sarcasm-lstm "text"    traced: prints the call's trace id
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from rich.console import Console
from rich.text import Text

from seqserve.compute import times_fastest
from seqserve.numbers import positive_int
from seqserve.tracing import ClientTracing, exporter_names, span_exporters, trace_ids, traceparent_of
from seqserve.v1 import classifier_pb2, classifier_pb2_grpc

TEXT_WIDTH = 48
SPEED_REPEAT = 10  # compares behind the --speed figures, unless --repeat says otherwise
SPEED_ROUNDS = 5  # rounds of each of those compares, unless --rounds says otherwise (the page's default)
# Words that raise the explained label's probability turn red, words that lower it blue, as strongly as
# their attribution is large; a word of attribution ATTRIBUTION_FULL_COLOUR or more is fully coloured.
RAISES, LOWERS = (220, 50, 47), (38, 110, 215)
ATTRIBUTION_FULL_COLOUR = 0.25


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqserve classify", description=__doc__.split("\n\n")[0])
    parser.add_argument("texts", nargs="+", help="texts to classify")
    parser.add_argument("--address", default="127.0.0.1:8500", help="server gRPC address [%(default)s]")
    parser.add_argument("--model", default="", help="model name; with --compare a comma-separated subset")
    parser.add_argument("--version", type=int, default=0, help="model version (0 = latest) [%(default)s]")
    parser.add_argument("--compare", action="store_true", help="run the texts through several models")
    parser.add_argument(
        "--speed",
        action="store_true",
        help="with --compare: a table of each model's compute per text, queue wait and end-to-end time "
        "(medians over --repeat compares of --rounds rounds) beside its architecture and test accuracy, "
        "fastest first",
    )
    parser.add_argument(
        "--repeat",
        type=positive_int,
        help=f"with --compare: run it this many times; figures are each model's median "
        f"[{SPEED_REPEAT} with --speed, else 1]",
    )
    parser.add_argument(
        "--rounds",
        type=positive_int,
        help="with --compare: each model answers the texts this many times in a row before the next "
        "model's turn, and the server returns its medians (its first call, on caches the models before "
        "it left cold, then sets no figure); at most the server's --max-compare-rounds "
        f"[{SPEED_ROUNDS} with --speed, else 1]",
    )
    parser.add_argument(
        "--explain", action="store_true", help="colour each word by its attribution (leave one word out)"
    )
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colours of --explain [%(default)s]",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call [%(default)s]")
    parser.add_argument(
        "--tls-ca", type=Path, help="PEM CA certificates to verify the server with (turns TLS on)"
    )
    parser.add_argument("--tls-cert", type=Path, help="PEM client certificate, for a server requiring one")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument(
        "--trace",
        action="store_true",
        help="trace the call: send a sampled traceparent and print its trace id (the client span is "
        "exported where the OTEL_* variables say, if anywhere)",
    )
    return parser


def open_channel(args: argparse.Namespace) -> grpc.Channel:
    """Plaintext, or TLS when --tls-ca is given (with a client certificate for mutual TLS)."""
    if args.tls_ca is None:
        return grpc.insecure_channel(args.address)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=args.tls_ca.read_bytes(),
        private_key=args.tls_key.read_bytes() if args.tls_key else None,
        certificate_chain=args.tls_cert.read_bytes() if args.tls_cert else None,
    )
    return grpc.secure_channel(args.address, credentials)


def _short(text: str) -> str:
    return text if len(text) <= TEXT_WIDTH else text[: TEXT_WIDTH - 1] + "…"


def _scores(prediction: classifier_pb2.Prediction) -> str:
    return " ".join(f"{s.label}={s.score:.4f}" for s in prediction.scores)


def format_classify(texts: Sequence[str], response: classifier_pb2.ClassifyResponse) -> str:
    rows = [("text", "label", "score", "probabilities")]
    for text, prediction in zip(texts, response.predictions, strict=True):
        rows.append((_short(text), prediction.label, f"{prediction.score:.4f}", _scores(prediction)))
    return f"{response.model} v{response.version}\n" + _table(rows)


@dataclass(frozen=True)
class ModelFigures:
    """One model's server figures of a compare (medians when it ran several times), in seconds."""

    model: str
    end_to_end_s: float
    queue_wait_s: float
    compute_per_text_s: float


def compare_figures(responses: Sequence[classifier_pb2.CompareResponse]) -> list[ModelFigures]:
    """Each model's median figures over `responses` (compares of the same texts and models)."""
    results = [response.results for response in responses]
    return [
        ModelFigures(
            runs[0].model,
            statistics.median(r.server_latency_seconds for r in runs),
            statistics.median(r.queue_wait_seconds for r in runs),
            statistics.median(r.compute_seconds_per_text for r in runs),
        )
        for runs in zip(*results, strict=True)
    ]


def format_compare(
    texts: Sequence[str], response: classifier_pb2.CompareResponse, figures: Sequence[ModelFigures]
) -> str:
    header = ["text"] + [f"{r.model} v{r.version} ({r.runtime})" for r in response.results]
    rows = [tuple(header)]
    for index, text in enumerate(texts):
        cells = [f"{r.predictions[index].label} {r.predictions[index].score:.4f}" for r in response.results]
        rows.append((_short(text), *cells))
    rows.append(("end to end", *(f"{f.end_to_end_s * 1e3:.2f} ms" for f in figures)))
    rows.append(("queue wait", *(f"{f.queue_wait_s * 1e3:.3f} ms" for f in figures)))
    rows.append(("compute per text", *(f"{f.compute_per_text_s * 1e3:.4f} ms" for f in figures)))
    return _table(rows)


def format_speed(figures: Sequence[ModelFigures], models: Sequence[classifier_pb2.ModelInfo]) -> str:
    """Fastest first: each model's compute per text and its ratio to the fastest's, its queue wait and
    end-to-end time, beside its architecture and the test accuracy of its latest version."""
    info = {model.name: model for model in models}
    ranked = sorted(figures, key=lambda f: f.compute_per_text_s)
    ratios = times_fastest([f.compute_per_text_s for f in ranked])
    rows = [
        (
            "model", "architecture", "test accuracy", "compute per text (ms)", "x fastest",
            "queue wait (ms)", "end to end (ms)",
        )
    ]  # fmt: skip
    for figure, ratio in zip(ranked, ratios, strict=True):
        model = info.get(figure.model)
        accuracy = model.versions[-1].test_accuracy if model is not None and model.versions else 0.0
        rows.append(
            (
                figure.model,
                model.architecture if model is not None else "-",
                f"{accuracy:.4f}" if accuracy > 0 else "-",
                f"{figure.compute_per_text_s * 1e3:.4f}",
                f"{ratio:.2f}",
                f"{figure.queue_wait_s * 1e3:.3f}",
                f"{figure.end_to_end_s * 1e3:.2f}",
            )
        )
    return _table(rows)


def _shade(attribution: float) -> str:
    """A background from white towards RAISES or LOWERS, in proportion to |attribution|."""
    weight = min(1.0, abs(attribution) / ATTRIBUTION_FULL_COLOUR)
    target = RAISES if attribution > 0 else LOWERS
    red, green, blue = (round(255 + weight * (channel - 255)) for channel in target)
    return f"black on rgb({red},{green},{blue})"


def format_explanation(text: str, explanation: classifier_pb2.ModelExplanation) -> Text:
    """The text as sent, each word on its attribution's colour (unseen words dimmed), then the answer."""
    line = Text(f"{explanation.model} v{explanation.version}  ")
    position = 0
    for word in explanation.words:
        line.append(text[position : word.start])
        style = _shade(word.attribution) if word.seen else "dim"
        line.append(text[word.start : word.end], style=style + (" underline" if word.oov else ""))
        position = word.end
    line.append(text[position:])
    line.append(f"  {explanation.label} {explanation.probability:.4f}")
    return line


def print_explanations(
    console: Console, stub: classifier_pb2_grpc.ClassifierStub, args: argparse.Namespace, models: list[str]
) -> None:
    for text in args.texts:
        request = classifier_pb2.ExplainRequest(text=text, models=models, version=args.version)
        for explanation in stub.Explain(request, timeout=args.timeout).explanations:
            console.print(format_explanation(text, explanation), soft_wrap=True)
    console.print(
        "red: the word raises the label's probability, blue: it lowers it; dim: beyond max_length, "
        "underlined: outside the vocabulary",
        style="dim",
    )


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def print_compare(
    stub: classifier_pb2_grpc.ClassifierStub,
    args: argparse.Namespace,
    metadata: Sequence[tuple[str, str]] | None,
) -> None:
    models = [name for name in args.model.split(",") if name]
    rounds = args.rounds or (SPEED_ROUNDS if args.speed else 1)
    request = classifier_pb2.CompareRequest(texts=args.texts, models=models, rounds=rounds)
    repeat = args.repeat or (SPEED_REPEAT if args.speed else 1)
    responses = [stub.Compare(request, timeout=args.timeout, metadata=metadata) for _ in range(repeat)]
    figures = compare_figures(responses)
    print(format_compare(args.texts, responses[0], figures))
    if args.speed:
        listed = stub.ListModels(classifier_pb2.ListModelsRequest(), timeout=args.timeout).models
        print()
        print(format_speed(figures, listed))
        print(
            f"medians of {repeat} compare(s) of {rounds} round(s); the models ran one after another: "
            "compute per text is each model's own tokenize and runtime time, end to end adds the request "
            "path"
        )


def classify_main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    if not args.compare and not args.model:
        print("seqserve classify: --model is required (or use --compare)", file=sys.stderr)
        return 2
    if (args.tls_cert is None) != (args.tls_key is None) or (args.tls_cert and not args.tls_ca):
        print("seqserve classify: --tls-cert and --tls-key go together, with --tls-ca", file=sys.stderr)
        return 2
    tracing = span = None
    if args.trace:
        tracing = ClientTracing(
            "seqserve-classify", 1.0, span_exporters(os.environ, exporter_names(os.environ))
        )
        span = tracing.start_call("seqserve.classify", {"seqserve.model.name": args.model})
    metadata = traceparent_of(span) if span is not None else None
    with open_channel(args) as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)
        try:
            if args.explain:
                models = [name for name in args.model.split(",") if name] if args.compare else [args.model]
                always = args.color == "always"
                console = Console(
                    force_terminal=always or None,
                    color_system="truecolor" if always else "auto",
                    no_color=args.color == "never",
                    highlight=False,
                )
                print_explanations(console, stub, args, models)
            elif args.compare:
                print_compare(stub, args, metadata)
            else:
                request = classifier_pb2.ClassifyRequest(
                    model=args.model, version=args.version, texts=args.texts
                )
                response = stub.Classify(request, timeout=args.timeout, metadata=metadata)
                print(format_classify(args.texts, response))
        except grpc.RpcError as error:
            print(f"seqserve classify: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
        finally:
            if tracing is not None and span is not None:
                span.end()
                tracing.shutdown()
                print(f"trace id {trace_ids(span)[0]}")  # type: ignore[index]  # sampled: ratio 1
    return 0
