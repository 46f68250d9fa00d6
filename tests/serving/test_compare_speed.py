"""Each model's own cost on every compare surface, ranked as the models' in-process cost ranks them.

The tiny repository's Flatten and GRU, on texts long enough to fill their max_length, differ in process
by more than 2x per text (measured in each test, next to the surface it checks). The Compare RPC,
POST /v1/compare and the page in headless Chromium must rank them the same way by compute per text; the
page's live table and its speed/accuracy plot (from the server's metrics) too. The server is this
module's own. Compute is wall time, which other processes on a shared machine can stretch now and
then: each surface is ranked by its median over several compares, and the live figures average them all.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

import pytest

from bench import browser
from bench.in_process import cost_per_text, load_in_process
from seqserve.v1 import classifier_pb2
from serving.inference import InferenceService
from serving.settings import Settings
from tests.serving.conftest import SARCASM_TEXTS
from tests.serving.reference import read_config
from tests.serving.rest_client import call
from tests.serving.server_process import ServerProcess, module_server
from tests.serving.slow_model import SLOW_MODEL, repository_with_slow_model
from tests.serving.test_compare_page import require_chromium
from tests.serving.test_kserve_v2 import MODELS
from tests.serving.test_registry import with_registry

pytestmark = pytest.mark.timed  # tests/scheduling.py

# 24 texts beyond the tiny models' max_length (40 tokens), so the recurrent model runs all its steps; a
# batch this large spreads the request path's fixed cost per call thinly over its texts, and the page's
# URL (/?text=...) stays under aiohttp's 8 KiB request line.
WORDS = SARCASM_TEXTS[2].split()
SPEED_TEXTS = [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(44)) for i in range(24)]
REPEATS = 7  # compares per surface; each model's median compute per text ranks it (the page's runs too)


# The metrics behind the page's live figures hold this module's compares only.
own_server = module_server("compare-speed")


def in_process_ranking(repository: Path) -> list[str]:
    """The models, cheapest per text first, run in this process on SPEED_TEXTS; their costs must differ
    by more than 2x for the ranking to mean something."""
    costs = {
        name: cost_per_text(
            load_in_process(repository / name / "1", read_config(repository, name), repository), SPEED_TEXTS
        )
        for name in MODELS
    }
    assert max(costs.values()) > 2 * min(costs.values()), f"in-process costs too close to rank: {costs}"
    return sorted(costs, key=costs.__getitem__)


def ranking(per_model: dict[str, float]) -> list[str]:
    assert sorted(per_model) == MODELS and all(cost > 0 for cost in per_model.values()), per_model
    return sorted(per_model, key=per_model.__getitem__)


def grpc_compute(server: ServerProcess, repeats: int = REPEATS) -> dict[str, float]:
    request = classifier_pb2.CompareRequest(texts=SPEED_TEXTS)
    runs = [server.stub.Compare(request, timeout=10).results for _ in range(repeats)]
    return {
        results[0].model: statistics.median(r.compute_seconds_per_text for r in results)
        for results in zip(*runs, strict=True)
    }


def rest_compute(server: ServerProcess) -> dict[str, float]:
    url = f"{server.rest_url}/v1/compare"
    runs = [call(url, {"texts": SPEED_TEXTS}).json()["results"] for _ in range(REPEATS)]
    return {
        results[0]["model"]: statistics.median(r["computeSecondsPerText"] for r in results)
        for results in zip(*runs, strict=True)
    }


@pytest.mark.parametrize("surface", [grpc_compute, rest_compute], ids=["grpc", "rest"])
def test_compute_per_text_ranks_the_models_as_in_process(
    own_server, tiny_model_repository, surface: Callable[[ServerProcess], dict[str, float]]
):
    expected = in_process_ranking(tiny_model_repository)
    assert ranking(surface(own_server)) == expected


def test_the_page_ranks_the_models_as_in_process(own_server, tiny_model_repository, tmp_path):
    require_chromium()
    expected = in_process_ranking(tiny_model_repository)
    cells, _ = browser.page_dom(own_server.rest_url, SPEED_TEXTS, tmp_path, runs=REPEATS)
    assert ranking(cells.milliseconds("results", "compute per text")) == expected  # its runs' medians
    # The page first asked for the live figures after its compares, so their window starts there: it
    # holds these compares, and none of the page's, which ran beside the browser starting up. The live
    # figures are means: enough compares that a stretched one cannot turn them round.
    grpc_compute(own_server, 4 * REPEATS)
    cells, points = browser.page_dom(own_server.rest_url, [], tmp_path)
    assert ranking(cells.live_compute_ms()) == expected
    assert ranking({p["model"]: float(p["compute-ms"]) for p in points.points}) == expected
    for point in points.points:  # at its architecture's test accuracy, labelled with the architecture
        training = read_config(tiny_model_repository, point["model"]).training
        assert float(point["accuracy"]) == pytest.approx(training.test_accuracy, abs=1e-4)
        assert point["label"] == point["architecture"] == point["model"].split("-")[1]


def test_no_model_of_a_compare_waits_for_another(tiny_model_repository, tmp_path):
    """The models run one after another. Run together on the one inference thread, Flatten's batch
    would wait for the slow model's, and that wait would be in Flatten's end-to-end time."""
    root = repository_with_slow_model(tiny_model_repository, tmp_path / "models", matmuls=6)

    async def body(registry, events, metrics):
        service = InferenceService(registry, Settings(model_repository=root), metrics)
        slow, flatten = await service.compare(["a headline"], [SLOW_MODEL, "sarcasm-flatten"], None)
        assert flatten.server_seconds < slow.compute_seconds
        for result in (slow, flatten):
            assert result.queue_wait_seconds >= 0 and 0 < result.compute_seconds < result.server_seconds

    with_registry(root, body)
