"""What a server that has started tells whoever started it: people get its addresses and a command to
paste, programs one machine-readable line last (`seqserve-ready {json}`).

Kept apart from serving.server, which imports gRPC, the runtimes and the handlers: the supervisor of
`--workers N` announces the server too, and stays a small process that imports none of them.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from serving.settings import Settings

READY_PREFIX = "seqserve-ready "
SERVICES = "seqserve.v1.Classifier, inference.GRPCInferenceService (KServe V2), grpc.health.v1, reflection"


def read_ready_line(lines: Iterable[str], timeout_s: float) -> dict | None:
    """For whoever starts a server: its ready line's JSON from its stdout, or None if it ended or
    `timeout_s` passed first (checked between lines)."""
    deadline = time.monotonic() + timeout_s
    for line in lines:
        if line.startswith(READY_PREFIX):
            return json.loads(line[len(READY_PREFIX) :])
        if time.monotonic() > deadline:
            break
    return None


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def metrics_url(settings: Settings, port: int) -> str:
    return f"http://{address(settings.effective_metrics_host, port)}/metrics"


def client_command() -> str:
    """`seqserve` as the person who started the server can paste it: bare only if it is on PATH."""
    if shutil.which("seqserve"):
        return "seqserve"
    script = Path(sys.executable).parent / "seqserve"
    return str(script.relative_to(Path.cwd())) if script.is_relative_to(Path.cwd()) else str(script)


def announce(
    settings: Settings,
    grpc_port: int,
    metrics_port: int,
    models: Mapping[str, Sequence[int]],
    workers: Sequence[int] = (),
) -> None:
    """Where the server is and how to use it; `workers`: the pids of `--workers` processes."""
    grpc_address = address(settings.host, grpc_port)
    transport = "gRPC (TLS)" if settings.tls else "gRPC"
    processes = f", {len(workers)} worker processes" if workers else ""
    print(f"seqserve: {transport} on {grpc_address}  ({SERVICES}){processes}")
    print(f"seqserve: metrics at {metrics_url(settings, metrics_port)}")
    listing = ", ".join(f"{name} v{','.join(map(str, versions))}" for name, versions in models.items())
    print(f"seqserve: models {listing}")
    print("seqserve: try")
    tls = " --tls-ca CA.pem" if settings.tls else ""
    if settings.tls_client_ca:
        tls += " --tls-cert CLIENT.pem --tls-key CLIENT.key"
    print(
        f"  {client_command()} classify --address {grpc_address}{tls} --model {next(iter(models))} "
        + shlex.quote("Local man wins award for most average day ever")
    )
    ready = {
        "grpc_address": grpc_address,
        "tls": settings.tls,
        "metrics_url": metrics_url(settings, metrics_port),
        "models": {name: list(versions) for name, versions in models.items()},
        "pid": os.getpid(),
        "workers": list(workers),
    }
    print(READY_PREFIX + json.dumps(ready), flush=True)
