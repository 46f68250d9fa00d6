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


def _scheme(settings: Settings) -> str:
    return "https" if settings.tls else "http"


def metrics_url(settings: Settings, port: int) -> str:
    return f"{_scheme(settings)}://{address(settings.effective_metrics_host, port)}/metrics"


def rest_url(settings: Settings, port: int) -> str:
    return f"{_scheme(settings)}://{address(settings.host, port)}"


def client_command() -> str:
    """`seqserve` as the person who started the server can paste it: bare only if it is on PATH."""
    if shutil.which("seqserve"):
        return "seqserve"
    script = Path(sys.executable).parent / "seqserve"
    return str(script.relative_to(Path.cwd())) if script.is_relative_to(Path.cwd()) else str(script)


def announce(
    settings: Settings,
    grpc_port: int,
    rest_port: int,
    metrics_port: int,
    models: Mapping[str, Sequence[int]],
    workers: Sequence[int] = (),
) -> None:
    """Where the server is and how to use it; `workers`: the pids of `--workers` processes."""
    grpc_address = address(settings.host, grpc_port)
    transport = "gRPC (TLS)" if settings.tls else "gRPC"
    processes = f", {len(workers)} worker processes" if workers else ""
    print(f"seqserve: {transport} on {grpc_address}  ({SERVICES}){processes}")
    rest = rest_url(settings, rest_port)
    print(f"seqserve: KServe V2 REST at {rest}/v2, compare page at {rest}/")
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
    example = next(iter(models))
    curl_tls = " --cacert CA.pem" if settings.tls else ""
    if settings.tls_client_ca:
        curl_tls += " --cert CLIENT.pem --key CLIENT.key"
    body = json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["Nice."]}]})
    print(f"  curl{curl_tls} {rest}/v2/models/{example}/infer -d {shlex.quote(body)}")
    ready = {
        "grpc_address": grpc_address,
        "tls": settings.tls,
        "rest_url": rest,
        "metrics_url": metrics_url(settings, metrics_port),
        "models": {name: list(versions) for name, versions in models.items()},
        "pid": os.getpid(),
        "workers": list(workers),
    }
    print(READY_PREFIX + json.dumps(ready), flush=True)
