import struct
from pathlib import Path

import grpc
import pytest
from tritonclient.grpc import service_pb2

from bench.harness import start_echo, start_seqserve
from bench.native_client import (
    V2_INFER,
    Call,
    classify_call,
    grpc_statuses,
    h2load_command,
    parse_h2load,
    run_h2load,
    status_problems,
    tfs_call,
    v2_call,
)
from bench.peers.native import metrics_page, server_counts
from seqserve.tfs.tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from serving.protocol.v2_types import InferRequest

DATA = Path(__file__).parent / "data"


def test_a_request_counted_run_of_h2load_is_read_from_its_real_output() -> None:
    """Captured from h2load 1.52 (-n 2000, 4 x 8) against bench/echo_server.py."""
    result = parse_h2load((DATA / "h2load_echo_v2.txt").read_text())
    assert result.requests_per_s == 2450.99
    assert result.mean_latency_s == pytest.approx(12.98e-3)
    assert (result.succeeded, result.failed) == (2000, 0)


def test_a_run_of_a_second_or_more_is_read_too() -> None:
    """Captured from h2load 1.52 (-D 1s): 'finished in 1.00s' (seconds, not ms), latencies in ms and µs."""
    result = parse_h2load((DATA / "h2load_echo_timed.txt").read_text())
    assert result.requests_per_s == 5210.0
    assert result.mean_latency_s == pytest.approx(6.11e-3)
    assert (result.succeeded, result.failed) == (5210, 0)


def test_failed_streams_and_non_2xx_statuses_count_as_failed() -> None:
    output = (DATA / "h2load_echo_v2.txt").read_text()
    output = output.replace(
        "2000 succeeded, 0 failed, 0 errored, 0 timeout", "1990 succeeded, 4 failed, 2 errored, 1 timeout"
    )
    output = output.replace("2000 2xx, 0 3xx, 0 4xx, 0 5xx", "1990 2xx, 0 3xx, 0 4xx, 3 5xx")
    result = parse_h2load(output)
    assert (result.succeeded, result.failed) == (1990, 4 + 2 + 1 + 3)


def test_an_output_without_its_summary_is_refused() -> None:
    with pytest.raises(RuntimeError, match="unexpected h2load output"):
        parse_h2load("starting benchmark...\nprogress: 10% done\n")


def test_h2load_sends_the_frame_as_grpc_for_a_count_of_calls_at_least_one_per_connection() -> None:
    command = h2load_command("127.0.0.1:1", v2_call("m", ["a"]), Path("f.grpc"), 4, 8, requests=2)
    assert command[1] == f"http://127.0.0.1:1{V2_INFER}" and command[command.index("--data") + 1] == "f.grpc"
    assert "content-type: application/grpc" in command and "te: trailers" in command
    assert command[command.index("-n") + 1] == "4"  # h2load refuses fewer calls than connections
    assert "-D" not in command  # a timed run cuts calls off in flight: the server counts them CANCELLED
    with pytest.raises(ValueError):
        h2load_command("127.0.0.1:1", v2_call("m", ["a"]), Path("f.grpc"), 1, 1, 1.0, requests=1)


def test_a_timed_run_gets_whole_milliseconds() -> None:
    """Regression: h2load refused `--warm-up-time 0.3` ('--warm-up-time: value error 0.3'): a duration is
    an integer and a unit."""
    command = h2load_command("127.0.0.1:1", v2_call("m", ["a"]), Path("f.grpc"), 4, 8, 2.5, 0.3)
    assert command[command.index("-D") + 1] == "2500ms"
    assert command[command.index("--warm-up-time") + 1] == "300ms"


def test_a_frame_is_the_grpc_length_prefix_and_the_message() -> None:
    call = v2_call("sarcasm-conv", ["one", "two"])
    frame = call.frame()
    assert frame[0] == 0 and struct.unpack(">I", frame[1:5])[0] == len(call.message)
    request = service_pb2.ModelInferRequest.FromString(frame[5:])
    assert InferRequest.from_grpc(request).texts() == ["one", "two"]
    assert classify_call("m", ["a"]).api == "seqserve" and tfs_call("m", ["a"]).api == "tfs"


PAGE = """# TYPE seqserve_requests_total counter
seqserve_requests_total{{code="OK",model="m",protocol="kserve_v2",version="1"}} {ok_v2}
seqserve_requests_total{{code="OK",model="m",protocol="seqserve_v1",version="1"}} {ok_own}
seqserve_requests_total{{code="CANCELLED",model="m",protocol="kserve_v2",version="1"}} {cancelled}
seqserve_requests_total{{code="INVALID_ARGUMENT",model="other",protocol="kserve_v2",version="1"}} 9.0
# TYPE seqserve_tokenize_duration_seconds histogram
seqserve_tokenize_duration_seconds_bucket{{le="+Inf",model="m",version="1"}} {batches}
seqserve_tokenize_duration_seconds_count{{model="m",version="1"}} {batches}
seqserve_tokenize_duration_seconds_sum{{model="m",version="1"}} {tokenize}
# TYPE seqserve_inference_duration_seconds histogram
seqserve_inference_duration_seconds_bucket{{le="+Inf",model="m",version="1"}} {batches}
seqserve_inference_duration_seconds_count{{model="m",version="1"}} {batches}
seqserve_inference_duration_seconds_sum{{model="m",version="1"}} {inference}
# TYPE seqserve_batch_size histogram
seqserve_batch_size_bucket{{le="+Inf",model="m",version="1"}} {batches}
seqserve_batch_size_count{{model="m",version="1"}} {batches}
seqserve_batch_size_sum{{model="m",version="1"}} {texts}
"""


def page(ok_v2: int, ok_own: int = 0, cancelled: int = 0, batches: int = 0, texts: int = 0,
         tokenize: float = 0.0, inference: float = 0.0) -> str:  # fmt: skip
    return PAGE.format(
        ok_v2=ok_v2, ok_own=ok_own, cancelled=cancelled, batches=batches, texts=texts, tokenize=tokenize,
        inference=inference,
    )  # fmt: skip


def test_statuses_are_the_counters_deltas_of_the_model_by_code() -> None:
    before, after = page(100, 5, 1), page(1100, 5, 3)
    assert grpc_statuses(before, after, "m") == {"CANCELLED": 2, "OK": 1000}
    assert grpc_statuses(before, before, "m") == {}
    assert grpc_statuses(before, after, "other") == {}  # its INVALID_ARGUMENT did not change


def test_a_cell_fails_on_any_non_ok_status_or_a_call_not_counted_ok() -> None:
    assert status_problems({"OK": 1000}, 1000) == []
    assert status_problems({"OK": 1000, "CANCELLED": 2}, 1000) == ["2 CANCELLED"]
    assert status_problems({"OK": 998}, 1000) == ["2 of h2load's 1000 answered calls not counted OK"]
    assert status_problems({}, 10) == ["10 of h2load's 10 answered calls not counted OK"]


def test_the_servers_counts_give_model_time_batches_and_texts_of_the_phase() -> None:
    before = page(10, batches=4, texts=10, tokenize=0.5, inference=1.0)
    after = page(110, batches=54, texts=110, tokenize=0.75, inference=1.5)
    counts = server_counts(before, after, "m")
    assert counts.statuses == {"OK": 100}
    assert counts.model_seconds == pytest.approx(0.25 + 0.5)
    assert (counts.batches, counts.batched_texts, counts.mean_batch) == (50, 100, 2.0)


def test_h2load_counts_a_grpc_error_as_http_200_and_the_servers_counter_catches_it(
    tiny_model_repository: Path,
) -> None:
    """Why the native cells read seqserve's counter: a refused call is an HTTP 200 with the gRPC status in
    its trailers, a success to h2load."""
    bad = service_pb2.ModelInferRequest(model_name="sarcasm-gru")
    bad.inputs.add(name="not_text", datatype="BYTES", shape=[1])
    with start_seqserve(tiny_model_repository, "test-native-statuses") as server:
        assert server.metrics_url is not None
        before = metrics_page(server.metrics_url)
        good = run_h2load(server.address, v2_call("sarcasm-gru", ["a headline"]), 2, 2, requests=40)
        bad_call = Call("v2", V2_INFER, bad.SerializeToString())
        refused = run_h2load(server.address, bad_call, 1, 1, requests=5)
        after = metrics_page(server.metrics_url)
    assert (good.succeeded, good.failed) == (40, 0)
    assert (refused.succeeded, refused.failed) == (5, 0)  # h2load saw five successes
    statuses = grpc_statuses(before, after, "sarcasm-gru")
    assert statuses == {"INVALID_ARGUMENT": 5, "OK": 40}
    assert status_problems(statuses, 45) == [
        "5 INVALID_ARGUMENT",
        "5 of h2load's 45 answered calls not counted OK",
    ]
    counts = server_counts(before, after, "sarcasm-gru")
    assert counts.batched_texts == 40 and 1 <= counts.batches <= 40 and counts.model_seconds > 0


def test_the_floor_answers_tf_serving_predict_with_seqserves_outputs() -> None:
    with start_echo("test-floor-predict") as floor, grpc.insecure_channel(floor.address) as channel:
        request = predict_pb2.PredictRequest.FromString(tfs_call("any", ["a", "b", "c"]).message)
        reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)
    probabilities = reply.outputs["probabilities"]
    assert [d.size for d in probabilities.tensor_shape.dim] == [3, 2] and len(probabilities.float_val) == 6
    assert [d.size for d in reply.outputs["label"].tensor_shape.dim] == [3]
