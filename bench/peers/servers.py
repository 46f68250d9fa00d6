"""The servers of a peers run: who they are (`Served`), and how each is started on the run's scratch
repository: seqserve (one per `--workers` count), a baseline tree, KServe's Python ModelServer in its
own virtualenv (padded to max_length, and per `--trim N` to each request's longest text), the lean
design (bench/lean_server.py, with `--lean`), the floor."""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.harness import LOG_DIR, REPO_ROOT, ServerProcess, free_port, start_echo, start_seqserve
from bench.models import ModelFiles, copy_tokenizer
from seqserve.v1 import model_config_pb2

KSERVE_PEER = REPO_ROOT / "bench" / "kserve_peer.py"
KSERVE_REQUIREMENTS = REPO_ROOT / "bench" / "kserve_peer_requirements.txt"
KSERVE = "KServe"
KSERVE_TRIMMED = "KServe, padded to the longest text"
FLOOR = "no-op floor"
LEAN = "lean design"
BASELINE = "seqserve baseline"
SEQSERVE_PREFIX = "seqserve N="
# the protocols compared (seqserve loadtest's --protocol, bench.native_client's CALLS) and the names the
# report gives them; a server speaks some of them (Served.protocols)
PROTOCOLS = {"v2": "V2 ModelInfer", "tfs": "TF Serving Predict", "seqserve": "Classify"}
# what a baseline tree speaks (it may predate TF Serving's API)
COMMON_PROTOCOLS = ("v2", "seqserve")
SEQSERVE_PADDING = "to the batch's longest text + the model's `sequence.trailing_padding` (config.pbtxt)"


def seqserve_name(processes: int) -> str:
    return f"{SEQSERVE_PREFIX}{processes}"


@dataclass(frozen=True)
class Served:
    """One server under test, by the name the report gives it."""

    name: str
    server: ServerProcess
    protocols: tuple[str, ...]  # keys of PROTOCOLS it speaks
    processes: int  # what it runs on: only servers of the same count are compared in a target
    padding: str  # how it pads a request's ids, for the report
    models: frozenset[str] | None = None  # None: every model of the run
    parity: bool = True  # False: it answers constants (the floor), not the models' probabilities
    native: bool = True  # measured with h2load too (seqserve and the floor; KServe only by tritonclient)

    def serves(self, model: str) -> bool:
        return self.models is None or model in self.models


@dataclass(frozen=True)
class Memory:
    server: str
    rss_mib: list[float]  # each process: the first is the one started, then its workers


def memory(served: Served) -> Memory:
    label = served.name if served.models is None else f"{served.name} ({', '.join(sorted(served.models))})"
    return Memory(label, [rss / 2**20 for rss in served.server.rss_bytes()])


def peer_versions() -> str:
    pins = dict(line.split("==", 1) for line in KSERVE_REQUIREMENTS.read_text().splitlines() if "==" in line)
    return ", ".join(f"{name} {pins[name]}" for name in ("kserve", "grpcio", "onnxruntime", "tokenizers"))


def scratch_repository(models: Sequence[ModelFiles], source: Path, into: Path) -> list[dict]:
    """Copy each model's latest config, ONNX file and tokenizer into a repository of only these models;
    returns the peer's manifest of the very same files."""
    manifest = []
    for model in models:
        config = model.config
        onnx_name = config.export.onnx_file or "model.onnx"
        version_dir = into / model.name / model.version_dir.name
        version_dir.mkdir(parents=True)
        shutil.copy2(model.version_dir / "config.pbtxt", version_dir / "config.pbtxt")
        shutil.copy2(model.version_dir / onnx_name, version_dir / onnx_name)
        tokenizer = copy_tokenizer(config, source, into)
        manifest.append(
            {
                "name": model.name,
                "onnx": str(version_dir / onnx_name),
                "tokenizer": str(tokenizer),
                "sigmoid": config.output_kind == model_config_pb2.OUTPUT_KIND_SIGMOID,
            }
        )
    return manifest


def trims(models: Sequence[ModelFiles]) -> dict[int, list[str]]:
    """The KServe peer's `--trim N` for each variable-length model (N = its `sequence.trailing_padding`),
    as N -> models: one peer process per N. Fixed-length graphs cannot be cut: none for them."""
    by_trim: dict[int, list[str]] = {}
    for model in models:
        if model.config.sequence.variable_length:
            by_trim.setdefault(model.config.sequence.trailing_padding, []).append(model.name)
    return by_trim


def start_kserve(python: str, manifest: list[dict], scratch: Path, *extra: str) -> ServerProcess:
    """The KServe peer serving the models of `manifest` (written into `scratch`), ready once every one
    answers ModelReady (it prints no ready line)."""
    import tritonclient.grpc as triton  # the sync client, for the readiness poll only

    port = free_port()
    address = f"127.0.0.1:{port}"
    models = [entry["name"] for entry in manifest]
    manifest_path = scratch / f"kserve-peer-{port}.json"
    manifest_path.write_text(json.dumps(manifest))

    def every_model_ready(process: subprocess.Popen[str], deadline: float) -> dict | None:
        client = triton.InferenceServerClient(address)
        try:
            while process.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(Exception):  # not listening yet
                    if all(client.is_model_ready(name) for name in models):
                        return {"grpc_address": address, "pid": process.pid}
                time.sleep(0.2)
            return None
        finally:
            client.close()

    command = [python, str(KSERVE_PEER), "--manifest", str(manifest_path), *extra]
    command += ["--grpc_port", str(port), "--http_port", str(free_port())]
    return ServerProcess(command, LOG_DIR / f"bench-peers-kserve-{port}.log", probe=every_model_ready)


def start_lean(repository: Path) -> ServerProcess:
    """bench/lean_server.py, the reference design, on a free port over the run's repository."""
    port = free_port()
    command = [sys.executable, "-m", "bench.lean_server", "--models", str(repository), "--port", str(port)]
    return ServerProcess(command, LOG_DIR / f"bench-peers-lean-{port}.log")


def start_servers(
    stack: contextlib.ExitStack,
    args: argparse.Namespace,
    scratch: Path,
    models: Sequence[ModelFiles],
) -> list[Served]:
    """Every server of the run, in the report's order; a new peer is one more entry here."""
    repository = scratch / "models"
    manifest = scratch_repository(models, args.models, repository)
    servers = []
    for count in (int(n) for n in args.workers.split(",")):
        extra = ("--workers", str(count)) if count > 1 else ()
        server = stack.enter_context(start_seqserve(repository, "peers-seqserve", *extra))
        servers.append(Served(seqserve_name(count), server, tuple(PROTOCOLS), count, SEQSERVE_PADDING))
    if args.baseline is not None or args.baseline_args:
        tree = args.baseline.resolve() if args.baseline is not None else REPO_ROOT
        baseline = start_seqserve(repository, "peers-baseline", *shlex.split(args.baseline_args), cwd=tree)
        servers.append(Served(BASELINE, stack.enter_context(baseline), COMMON_PROTOCOLS, 1, SEQSERVE_PADDING))
    if args.kserve_python:
        peer = stack.enter_context(start_kserve(args.kserve_python, manifest, scratch))
        padding = "every text to max_length (tokenizer.json's padding)"
        servers.append(Served(KSERVE, peer, ("v2",), 1, padding, native=False))
        for trim, trimmed in trims(models).items():
            entries = [entry for entry in manifest if entry["name"] in trimmed]
            peer = stack.enter_context(
                start_kserve(args.kserve_python, entries, scratch, "--trim", str(trim))
            )
            padding = f"to the request's longest text + {trim} (`kserve_peer.py --trim {trim}`)"
            servers.append(
                Served(KSERVE_TRIMMED, peer, ("v2",), 1, padding, frozenset(trimmed), native=False)
            )
    if args.lean:
        lean = stack.enter_context(start_lean(repository))
        servers.append(Served(LEAN, lean, ("v2",), 1, SEQSERVE_PADDING))
    floor = stack.enter_context(start_echo("peers-floor"))
    servers.append(Served(FLOOR, floor, tuple(PROTOCOLS), 1, "none: constant answers", parity=False))
    return servers
