"""h2load, a native HTTP/2 load generator, driving gRPC unary calls with pre-encoded frames.

A Python client saturates before the transport does (tritonclient.grpc.aio tops out at 5-7k req/s
against the no-op floor on these machines), so the floor it reports is its own. h2load, from Debian's
`nghttp2-client` (`make h2load`), sends the same bytes for every call: the 5-byte gRPC prefix and a
serialized request, with `content-type: application/grpc` and `te: trailers`. It counts HTTP statuses
only, and a gRPC error travels in the trailers of an HTTP 200, so the gRPC statuses are read from the
server's own `seqserve_requests_total` around the measurement (`grpc_statuses`); a cell with any
non-OK status fails.

A timed h2load run (`-D`) stops with calls in flight, which the server then counts as CANCELLED; a
run of a number of calls (`-n`) answers every one, which is what a cell that must see only OK needs.

    .venv/bin/python -m bench.native_client --address 127.0.0.1:8500 --model sarcasm-conv
"""

from __future__ import annotations

import argparse
import re
import shutil
import struct
import subprocess
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import service_pb2

from seqserve.metric_names import REQUESTS
from seqserve.tfs.tensorflow.core.framework import tensor_pb2, types_pb2
from seqserve.tfs.tensorflow_serving.apis import predict_pb2
from seqserve.v1 import classifier_pb2
from serving.protocol.v2_types import encode_bytes_elements

H2LOAD = "h2load"
V2_INFER = "/inference.GRPCInferenceService/ModelInfer"
CLASSIFY = "/seqserve.v1.Classifier/Classify"
TFS_PREDICT = "/tensorflow.serving.PredictionService/Predict"
CLIENT = "h2load"
OK = "OK"


@dataclass(frozen=True)
class Call:
    """One gRPC method and the serialized request h2load sends to it every time."""

    api: str  # a key of CALLS: the load tester's --protocol names ("v2", "seqserve", "tfs")
    path: str
    message: bytes

    def frame(self) -> bytes:
        """The length-prefixed message of the gRPC wire format (uncompressed)."""
        return struct.pack(">BI", 0, len(self.message)) + self.message


def v2_call(model: str, texts: Sequence[str]) -> Call:
    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name="text", datatype="BYTES", shape=[len(texts)])
    request.raw_input_contents.append(encode_bytes_elements(text.encode() for text in texts))
    return Call("v2", V2_INFER, request.SerializeToString())


def classify_call(model: str, texts: Sequence[str]) -> Call:
    request = classifier_pb2.ClassifyRequest(model=model, texts=list(texts))
    return Call("seqserve", CLASSIFY, request.SerializeToString())


def tfs_call(model: str, texts: Sequence[str]) -> Call:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[text.encode() for text in texts])
    tensor.tensor_shape.dim.add(size=len(texts))
    request.inputs["text"].CopyFrom(tensor)
    return Call("tfs", TFS_PREDICT, request.SerializeToString())


CALLS = {"v2": v2_call, "seqserve": classify_call, "tfs": tfs_call}


@dataclass(frozen=True)
class H2loadResult:
    requests_per_s: float
    mean_latency_s: float
    succeeded: int
    failed: int  # h2load's failed + errored + timeouts, and every non-2xx status


_FINISHED = re.compile(r"finished in [\d.]+m?s, ([\d.]+) req/s")
_REQUESTS = re.compile(
    r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout"
)
_STATUSES = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_LATENCY = re.compile(r"time for request:\s+\S+\s+\S+\s+(\S+)")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def _seconds(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse_h2load(output: str) -> H2loadResult:
    """h2load's summary -> the figures the benchmarks use; raises if a line is missing."""
    finished, requests = _FINISHED.search(output), _REQUESTS.search(output)
    statuses, latency = _STATUSES.search(output), _LATENCY.search(output)
    if not (finished and requests and statuses and latency):
        raise RuntimeError(f"unexpected h2load output:\n{output[-2000:]}")
    succeeded, failed, errored, timeout = (int(value) for value in requests.groups())
    _, redirects, client_errors, server_errors = (int(value) for value in statuses.groups())
    return H2loadResult(
        requests_per_s=float(finished.group(1)),
        mean_latency_s=_seconds(latency.group(1)),
        succeeded=succeeded,
        failed=failed + errored + timeout + redirects + client_errors + server_errors,
    )


def _milliseconds(seconds: float) -> str:
    """A duration as h2load takes it: an integer and a unit."""
    return f"{max(1, round(seconds * 1000))}ms"


def h2load_command(
    address: str,
    call: Call,
    data: Path,
    connections: int,
    streams: int,
    seconds: float | None = None,
    warm_up_s: float = 0.0,
    *,
    requests: int | None = None,
) -> list[str]:
    """One h2load thread (it takes a few % of a core at these rates): `connections` connections with
    `streams` concurrent streams each, either for `requests` calls, every one answered (at least one per
    connection, as h2load asks), or for `seconds` after `warm_up_s` of warm-up, when h2load stops with
    calls in flight (the server counts them CANCELLED)."""
    if (seconds is None) == (requests is None):
        raise ValueError("give seconds or requests, one of them")
    if requests is not None:
        budget = ["-n", str(max(requests, connections))]
    else:
        assert seconds is not None
        budget = ["-D", _milliseconds(seconds)]
        budget += ["--warm-up-time", _milliseconds(warm_up_s)] if warm_up_s > 0 else []
    return [
        H2LOAD, f"http://{address}{call.path}", "--data", str(data),
        "-H", "content-type: application/grpc", "-H", "te: trailers",
        "-c", str(connections), "-m", str(streams), "-t", "1", *budget,
    ]  # fmt: skip


def run_h2load(
    address: str,
    call: Call,
    connections: int,
    streams: int,
    seconds: float | None = None,
    warm_up_s: float = 0.0,
    *,
    requests: int | None = None,
) -> H2loadResult:
    if shutil.which(H2LOAD) is None:
        raise RuntimeError("h2load is not installed: `make h2load` installs Debian's nghttp2-client")
    with tempfile.NamedTemporaryFile(suffix=".grpc") as data:
        data.write(call.frame())
        data.flush()
        command = h2load_command(
            address, call, Path(data.name), connections, streams, seconds, warm_up_s, requests=requests
        )
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=600 + (seconds or 0) + warm_up_s
        )
    if done.returncode != 0:
        raise RuntimeError(f"h2load exited {done.returncode}: {done.stderr[-2000:]}")
    return parse_h2load(done.stdout)


def requests_by_code(metrics_text: str, model: str) -> Counter[str]:
    """`seqserve_requests_total` of one model on a /metrics page, by gRPC status code (every version,
    runtime and protocol summed)."""
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == REQUESTS + "_total" and sample.labels.get("model") == model:
                counts[sample.labels.get("code", "")] += int(sample.value)
    return counts


def grpc_statuses(before: str, after: str, model: str) -> dict[str, int]:
    """The requests a server counted between two /metrics pages, by gRPC status code (none counted: {})."""
    delta = requests_by_code(after, model)
    delta.subtract(requests_by_code(before, model))
    return {code: count for code, count in sorted(delta.items()) if count}


def status_problems(statuses: dict[str, int], answered: int) -> list[str]:
    """What is wrong with a cell's gRPC statuses: any non-OK status, or fewer OK than the HTTP 200s
    h2load counted (a call the server never counted). [] when every call was counted OK."""
    problems = [f"{count} {code}" for code, count in statuses.items() if code != OK]
    counted = statuses.get(OK, 0)
    if counted < answered:
        problems.append(f"{answered - counted} of h2load's {answered} answered calls not counted OK")
    return problems


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--api", choices=sorted(CALLS), default="v2")
    parser.add_argument("--texts", type=int, default=1, help="texts per request")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--requests", type=int, default=10_000)
    args = parser.parse_args(argv)
    call = CALLS[args.api](args.model, ["scientists unveil doomsday clock of hair loss"] * args.texts)
    print(run_h2load(args.address, call, args.connections, args.streams, requests=args.requests))


if __name__ == "__main__":
    main()
