"""The compare page on the REST port: its JSON routes, and the page itself in a real headless Chromium.

The browser loads `/?text=...&text=...`, which fills in the texts and submits the form as a person
would; `--virtual-time-budget` lets the page's fetches finish before the DOM is dumped. Chromium is
Debian's package (`make chromium`).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np

from bench import browser
from bench.browser import page_url
from seqserve.metric_names import COMPUTE_TEXTS
from serving.handlers.compare_page import PAGE_ROUNDS
from serving.settings import Settings
from tests.programs import debian_program
from tests.serving.conftest import SARCASM_TEXTS
from tests.serving.metrics_text import delta
from tests.serving.reference import read_config
from tests.serving.rest_client import call
from tests.serving.test_kserve_v2 import MODELS, classify

PAGE_TEXTS = ["mom thrilled to learn son's band is a phase", "scientists find water on the moon"]
FIGURE_ROWS = ["end to end", "queue wait", "compute per text"]


def page_default(page: str, field: str) -> int:
    """The value a number field of the page holds as it loads."""
    (value,) = re.findall(rf'<input id="{field}" type="number"[^>]* value="(\d+)"', page)
    return int(value)


def require_chromium() -> None:
    debian_program(str(browser.CHROMIUM), "chromium")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    require_chromium()
    return browser.chromium(tmp_path, *args)


def test_the_page_is_self_contained(server):
    reply = call(server.rest_url + "/")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/html")
    page = reply.body.decode()
    for reference in ('src="http', "src='http", 'href="http', "@import", "//cdn"):
        assert reference not in page  # no CDN, nothing fetched from elsewhere
    assert "/v1/compare" in page and "/v1/latency" in page
    assert page_default(page, "rounds") == PAGE_ROUNDS  # what the OpenAPI document and the bench say


def test_compare_over_http_equals_classify(server):
    reply = call(f"{server.rest_url}/v1/compare", {"texts": SARCASM_TEXTS})
    assert reply.status == 200
    results = reply.json()["results"]
    assert [r["model"] for r in results] == MODELS
    for result in results:
        expected, labels = classify(server, result["model"], SARCASM_TEXTS)
        scores = [[s["score"] for s in p["scores"]] for p in result["predictions"]]
        np.testing.assert_allclose(scores, expected, atol=1e-6)
        assert [p["label"] for p in result["predictions"]] == labels
        assert result["runtime"] == "onnx"
        # the model's own figures nest in its end-to-end time: the queue, then its batch's compute
        end_to_end, queue_wait = result["serverLatencySeconds"], result.get("queueWaitSeconds", 0.0)
        compute = result["computeSecondsPerText"] * len(SARCASM_TEXTS)
        assert compute > 0 and queue_wait >= 0 and queue_wait + compute <= end_to_end
    only = call(f"{server.rest_url}/v1/compare", {"texts": ["x"], "models": ["sarcasm-gru"]}).json()
    assert [r["model"] for r in only["results"]] == ["sarcasm-gru"]
    for body, status, message in [
        (b"{", 400, "not a seqserve.v1.CompareRequest"),
        ({"texts": "one"}, 400, "not a seqserve.v1.CompareRequest"),
        (b"null", 400, "not a seqserve.v1.CompareRequest"),  # not an object: once a 500
        ({"texts": []}, 400, "request has no texts"),
        ({"texts": ["x"], "models": ["sarcasm-transformer"]}, 404, "available models"),
    ]:
        reply = call(f"{server.rest_url}/v1/compare", body)
        assert reply.status == status and message in reply.json()["error"], (body, reply.json())


def test_latency_route_answers_for_every_model(server, tiny_model_repository):
    for model in MODELS:
        classify(server, model, SARCASM_TEXTS)
    figures = {m["model"]: m for m in call(f"{server.rest_url}/v1/latency").json()["models"]}
    assert set(figures) == set(MODELS)
    for model, figure in figures.items():
        assert figure["requests"] >= 1 and figure["computed_texts"] >= len(SARCASM_TEXTS)
        assert 0 < figure["p50_ms"] <= figure["p99_ms"] < 5000
        assert 0 < figure["compute_per_text_ms"] < figure["p99_ms"]
        training = read_config(tiny_model_repository, model).training
        assert (figure["architecture"], figure["dataset"]) == (model.split("-")[1], "sarcasm")
        assert figure["test_accuracy"] == round(training.test_accuracy, 4) > 0


def test_chromium_renders_every_models_answer_and_latency(server, tmp_path):
    require_chromium()
    page = call(server.rest_url + "/").body.decode()
    before = server.metrics_text()
    cells, points = browser.page_dom(server.rest_url, PAGE_TEXTS, tmp_path)
    after = server.metrics_text()
    # each of the page's runs asked for its rounds: every model ran the texts runs x rounds times
    runs, rounds = page_default(page, "runs"), page_default(page, "rounds")
    for model in MODELS:
        computed = delta(before, after, COMPUTE_TEXTS + "_total", model=model)
        assert computed == runs * rounds * len(PAGE_TEXTS), model
    header, *rows = cells.tables["results"]
    rows, figures = rows[: -len(FIGURE_ROWS)], rows[-len(FIGURE_ROWS) :]
    assert [model for model, _ in header[1:]] == MODELS
    assert [row[0][1] for row in rows] == PAGE_TEXTS
    for model in MODELS:
        _, labels = classify(server, model, PAGE_TEXTS)
        column = [next(text for m, text in row if m == model) for row in rows]
        assert [cell.split()[0] for cell in column] == labels
        for cell in column:
            assert 0.5 <= float(cell.split()[1]) <= 1.0  # the winning label's probability
    assert [row[0][1] for row in figures] == FIGURE_ROWS
    for title in FIGURE_ROWS:
        shown = cells.milliseconds("results", title)
        assert sorted(shown) == MODELS
        assert all(value > 0 for value in shown.values()) or title == "queue wait"  # that may show 0.000
    panel = cells.tables["latency"][1:]  # below the header: one row per model
    assert sorted(row[0][1] for row in panel) == MODELS
    for row in panel:
        model, architecture, _, compute, p50, p99 = (text for _, text in row[:6])
        assert architecture == model.split("-")[1]
        assert float(compute) > 0 and 0 < float(p50) <= float(p99)
    assert sorted(p["model"] for p in points.points) == MODELS  # every model drawn, with traffic by now
    for point in points.points:
        assert point["label"] == point["architecture"] == point["model"].split("-")[1]
        assert float(point["compute-ms"]) > 0 and 0 < float(point["accuracy"]) <= 1


def test_chromium_screenshot_of_the_page(server, tmp_path):
    screenshot = tmp_path / "compare.png"
    url = page_url(server.rest_url, PAGE_TEXTS)
    chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1100,800", url)
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_chromium_shows_the_servers_refusal_of_too_many_rounds(server, tmp_path):
    require_chromium()
    rounds = Settings().max_compare_rounds + 1
    url = page_url(server.rest_url, PAGE_TEXTS, runs=1, rounds=rounds)
    dom = chromium(tmp_path, "--dump-dom", url).stdout.decode()
    assert 'data-state="error"' in dom
    message = f"400: rounds is {rounds}; the limit is {rounds - 1} (--max-compare-rounds)"
    assert f'<div id="error">{message}</div>' in dom
