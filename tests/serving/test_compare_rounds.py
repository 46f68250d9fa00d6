"""A compare's rounds: each model answers the texts `rounds` times in a row, and its figures are the
medians over its rounds (serving.inference.InferenceService.compare), on the Compare RPC and
POST /v1/compare. The served tests use a server of this module's own, so its metrics hold this
module's calls only, with a low --max-compare-rounds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import grpc
import pytest
from google.protobuf import json_format

from seqserve.metric_names import COMPUTE_SECONDS, COMPUTE_TEXTS, REQUESTS
from seqserve.v1 import classifier_pb2
from serving.errors import ServingError
from serving.inference import InferenceService, median_of_rounds
from serving.metrics import COMPARE_PAGE
from serving.settings import Settings
from tests.serving.conftest import SARCASM_TEXTS
from tests.serving.metrics_text import delta
from tests.serving.rest_client import call
from tests.serving.server_process import ServerProcess, module_server
from tests.serving.test_kserve_v2 import MODELS
from tests.serving.test_registry import with_registry

LIMIT = 4
own_server = module_server("compare-rounds", "--max-compare-rounds", str(LIMIT))
TEXTS = SARCASM_TEXTS[:3]


def grpc_compare(server: ServerProcess, rounds: int) -> list[dict]:
    """The Compare RPC's results as the REST route writes them (the protobuf JSON mapping)."""
    request = classifier_pb2.CompareRequest(texts=TEXTS, rounds=rounds)
    response = server.stub.Compare(request, timeout=10)
    return [json_result(result) for result in response.results]


def json_result(result: classifier_pb2.ModelPredictions) -> dict:
    return json_format.MessageToDict(result)


def rest_compare(server: ServerProcess, rounds: int) -> list[dict]:
    reply = call(f"{server.rest_url}/v1/compare", {"texts": TEXTS, "rounds": rounds})
    assert reply.status == 200, reply.json()
    return reply.json()["results"]


SURFACES = [grpc_compare, rest_compare]


@pytest.mark.parametrize("rounds", [LIMIT + 1, 1000, -1])
def test_rounds_beyond_the_limit_are_refused_on_grpc_and_rest(own_server, rounds):
    before = own_server.metrics_text()
    message = f"rounds is {rounds}; " + (
        f"the limit is {LIMIT} (--max-compare-rounds)" if rounds > 0 else f"send 1 to {LIMIT} (0 = 1)"
    )
    with pytest.raises(grpc.RpcError) as error:
        own_server.stub.Compare(classifier_pb2.CompareRequest(texts=TEXTS, rounds=rounds), timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == message
    reply = call(f"{own_server.rest_url}/v1/compare", {"texts": TEXTS, "rounds": rounds})
    assert reply.status == 400 and reply.json()["error"] == message
    after = own_server.metrics_text()
    for model in MODELS:  # refused before any model ran
        assert delta(before, after, COMPUTE_TEXTS + "_total", model=model) == 0
    assert len(grpc_compare(own_server, LIMIT)) == len(MODELS)  # the limit itself is served


@pytest.mark.parametrize("surface", SURFACES, ids=["grpc", "rest"])
def test_rounds_answer_once_per_model_as_one_round_does(own_server, surface: Callable[..., list[dict]]):
    one = surface(own_server, 1)
    unset = surface(own_server, 0)  # the message's default: one round
    three = surface(own_server, 3)
    assert [r["model"] for r in three] == [r["model"] for r in one] == MODELS
    for single, default, rounds in zip(one, unset, three, strict=True):
        # the same version's answer to the same texts, alone in their batch each round
        assert rounds["predictions"] == single["predictions"] == default["predictions"]
        assert len(rounds["predictions"]) == len(TEXTS)
        assert (rounds["version"], rounds["runtime"]) == (single["version"], single["runtime"])


@pytest.mark.parametrize("surface", SURFACES, ids=["grpc", "rest"])
def test_every_round_runs_the_model_and_the_figures_are_one_rounds(
    own_server, surface: Callable[..., list[dict]]
):
    """The model's counters advance by rounds x texts; the compute returned is one round's (a median),
    not the rounds' sum, which is all the model's compute counter grew by on this quiet server."""
    rounds = 3
    before = own_server.metrics_text()
    results = surface(own_server, rounds)
    after = own_server.metrics_text()
    for result in results:
        model = result["model"]
        assert delta(before, after, COMPUTE_TEXTS + "_total", model=model) == rounds * len(TEXTS)
        requests = delta(before, after, REQUESTS + "_total", model=model, protocol=COMPARE_PAGE, code="OK")
        assert requests == rounds
        computed = delta(before, after, COMPUTE_SECONDS + "_total", model=model)
        compute = result["computeSecondsPerText"] * len(TEXTS)
        assert 0 < compute < computed
        queue_wait = result.get("queueWaitSeconds", 0.0)  # proto3 JSON leaves out a 0
        assert queue_wait + compute <= result["serverLatencySeconds"]


def test_a_models_figures_are_the_medians_of_its_rounds(tiny_model_repository):
    """Each figure its own median: of 4 rounds, the mean of the middle two, which is neither the mean of
    all four nor any one round's."""
    figures = {
        "server_seconds": [8.0, 1.0, 2.0, 6.0],  # median 4.0 (mean 4.25)
        "queue_wait_seconds": [0.1, 0.9, 0.5, 0.3],  # median 0.4
        "compute_seconds": [3.0, 3.0, 1.0, 7.0],  # median 3.0 (mean 3.5)
    }

    async def body(registry, events, metrics):
        service = InferenceService(registry, Settings(model_repository=tiny_model_repository), metrics)
        answer = await service.classify("sarcasm-gru", 0, TEXTS, None, COMPARE_PAGE)
        rounds = [
            dataclasses.replace(answer, **{name: values[i] for name, values in figures.items()})
            for i in range(4)
        ]
        median = median_of_rounds(rounds)
        assert (median.server_seconds, median.queue_wait_seconds, median.compute_seconds) == (
            4.0,
            pytest.approx(0.4),
            3.0,
        )
        assert median.model is answer.model and median.probabilities is answer.probabilities

    with_registry(tiny_model_repository, body)


def test_the_deadline_covers_every_round_together(tiny_model_repository):
    """A deadline each round alone would meet easily, but not all of them together: the call fails
    DEADLINE_EXCEEDED after some rounds instead of running them all."""
    rounds, deadline_s = 10_000, 0.05

    async def body(registry, events, metrics):
        settings = Settings(model_repository=tiny_model_repository, max_compare_rounds=rounds)
        service = InferenceService(registry, settings, metrics)
        with pytest.raises(ServingError) as error:
            await service.compare(["a headline"], ["sarcasm-flatten"], deadline_s, rounds)
        assert error.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        labels = {"model": "sarcasm-flatten", "version": "1", "runtime": "onnx"}
        ran = metrics.registry.get_sample_value(COMPUTE_TEXTS + "_total", labels)
        assert ran is not None and 0 < ran < rounds

    with_registry(tiny_model_repository, body)
