"""`python -m bench.peers`: start the servers, check parity, measure the models in process, run the
interleaved rounds with the Python clients and with h2load, write reports/peers.md. Exits 1 when a
model is missing, parity fails, or a native cell has a non-OK gRPC status."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import bench.peers
from bench.machine import write_report
from bench.models import find_models
from bench.native_client import H2LOAD
from bench.peers.cpu_account import accounted, executed_batch
from bench.peers.model_cost import in_process_costs, served_batch_costs
from bench.peers.native import NativeMeasurement, run_native_round
from bench.peers.parity import PARITY_TEXTS, ParityError, served_parity
from bench.peers.report import Run, markdown
from bench.peers.rounds import Cell, Measurement, run_round
from bench.peers.servers import FLOOR, memory, start_servers
from bench.peers.verdicts import ONE_WORKER
from bench.request_path import StepCosts, in_process_server, request_steps
from seqserve.loadtest.cli import DEFAULT_TEXTS
from seqserve.loadtest.runner import LoadSpec
from seqserve.loadtest.texts import load_texts

REPORT = Path("reports/peers.md")
CLIENT_KINDS = ("python", "native")


async def model_steps(repository: Path, model: str, texts: Sequence[str], sizes: Sequence[int]) -> StepCosts:
    async with in_process_server(str(repository), model) as server:
        return await request_steps(server, model, texts, sizes)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(bench.peers.__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--models", type=Path, default=Path("models"), help="model repository [%(default)s]")
    add("--model", default="sarcasm-conv,sarcasm-lstm", help="models to compare [%(default)s]")
    add("--cells", default="1x1,32x1,8x32", help="concurrency x texts per request, per model [%(default)s]")
    add(
        "--clients",
        default=",".join(CLIENT_KINDS),
        help="python (tritonclient.grpc.aio, seqserve loadtest; with KServe), native (h2load; no KServe), "
        "or both [%(default)s]",
    )
    add(
        "--kserve-python",
        default=".venv-kserve/bin/python",
        help="the peer virtualenv's python ('' leaves KServe out) [%(default)s]",
    )
    add("--workers", default="1,2", help="seqserve server processes, one server per count [%(default)s]")
    add("--rounds", type=int, default=3, help="interleaved rounds [%(default)s]")
    add("--duration", type=float, default=2.5, help="measured seconds per measurement [%(default)s]")
    add("--warmup", type=float, default=0.5, help="warm-up seconds per measurement [%(default)s]")
    add(
        "--channels",
        type=int,
        default=4,
        help="Python client channels (connections), each request on the next [%(default)s]",
    )
    add("--texts", type=Path, default=DEFAULT_TEXTS, help="request texts [%(default)s]")
    add(
        "--baseline",
        type=Path,
        help="another seqserve source tree (e.g. `git archive main`) served beside, as `seqserve baseline`, "
        "for an A/B of a change in the same run",
    )
    add("--baseline-args", default="", help="`seqserve serve` flags of the baseline (an A/B of a setting)")
    add(
        "--lean",
        action="store_true",
        help="serve bench/lean_server.py beside, V2 only: the reference design of the same function",
    )
    add("--report", type=Path, default=REPORT, help="markdown report [%(default)s]")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(args_list)
    clients = {kind for kind in args.clients.split(",") if kind}
    if not clients or clients - set(CLIENT_KINDS):
        print(f"bench-peers: --clients takes {' and/or '.join(CLIENT_KINDS)}", file=sys.stderr)
        return 1
    if "native" in clients and shutil.which(H2LOAD) is None:
        print("bench-peers: no h2load (`make h2load` installs Debian's nghttp2-client)", file=sys.stderr)
        return 1
    if "python" not in clients:
        args.kserve_python = ""  # KServe is measured by the Python client only
    names = [name for name in args.model.split(",") if name]
    found = {m.name: m for m in find_models(args.models)}
    missing = [name for name in names if name not in found]
    if missing:
        print(
            f"bench-peers: {', '.join(missing)} not in {args.models}/ (train them: `make train`)",
            file=sys.stderr,
        )
        return 1
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    load_before = os.getloadavg()
    spec = LoadSpec(
        duration_s=args.duration, warmup_s=args.warmup, channels=args.channels, max_requests=200_000
    )
    shapes = [tuple(int(n) for n in shape.split("x")) for shape in args.cells.split(",")]
    cells = [Cell(name, c, b) for name in names for c, b in shapes]
    models = [found[n] for n in names]
    corpus = load_texts(args.texts)
    measurements: list[Measurement] = []
    native: list[NativeMeasurement] = []
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as scratch, contextlib.ExitStack() as stack:
        servers = start_servers(stack, args, Path(scratch), models)
        print("bench-peers: the models' in-process cost", flush=True)
        costs = in_process_costs(models, args.models, corpus)
        sizes = sorted({cell.batch for cell in cells})
        steps = (
            {name: asyncio.run(model_steps(Path(scratch) / "models", name, corpus, sizes)) for name in names}
            if "native" in clients
            else {}
        )
        try:
            parity = served_parity(servers, names, corpus[:PARITY_TEXTS])
        except ParityError as error:
            print(f"bench-peers: {error}", file=sys.stderr)
            return 1
        print(
            f"bench-peers: same answers (largest difference {max(parity.values()):.1e}); {len(cells)} cells "
            f"x {len(servers)} servers x {args.rounds} rounds, clients: {', '.join(sorted(clients))}",
            flush=True,
        )
        for round_ in range(args.rounds):
            if "python" in clients:
                measurements += run_round(servers, cells, spec, corpus, round_)
            if "native" in clients:
                native += run_native_round(servers, cells, corpus, args.duration, args.warmup, round_)
        memories = [memory(s) for s in servers]
        executed = sorted({executed_batch(ours) for ours, _ in accounted(native, ONE_WORKER, FLOOR, "v2")})
        if executed:
            print("bench-peers: the executed batches' cost in process", flush=True)
        batch_us = served_batch_costs(models, args.models, corpus, executed) if executed else {}
    command = shlex.join([".venv/bin/python", "-m", "bench.peers", *args_list])
    architectures = {m.name: m.config.architecture for m in models}
    run = Run(
        command, spec, args.rounds, (load_before, os.getloadavg()), measurements, servers, architectures,
        parity, costs, memories, native, steps, batch_us,
    )  # fmt: skip
    write_report(args.report, markdown(run))
    failing = [m for m in native if m.problems()]
    if failing:
        print(f"bench-peers: {len(failing)} native cell(s) with failed or non-OK calls", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
