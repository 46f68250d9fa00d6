"""The compare page on the REST port: its JSON routes, and the page itself in a real headless Chromium.

The browser loads `/?text=...&text=...`, which fills in the texts and submits the form as a person
would; `--virtual-time-budget` lets the page's fetches finish before the DOM is dumped. Chromium is
Debian's package (`make chromium`).
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from tests.programs import debian_program
from tests.serving.conftest import SARCASM_TEXTS
from tests.serving.rest_client import call
from tests.serving.server_process import ServerProcess
from tests.serving.test_kserve_v2 import MODELS, classify

CHROMIUM = "/usr/bin/chromium"
# The flags that work on a machine without a display, sandbox support or network.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--virtual-time-budget=10000",
)  # fmt: skip
BROWSER_TIMEOUT_S = 90
PAGE_TEXTS = ["mom thrilled to learn son's band is a phase", "scientists find water on the moon"]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    debian_program(CHROMIUM, "chromium")
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    command = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    result = subprocess.run(command, capture_output=True, timeout=BROWSER_TIMEOUT_S)
    shutil.rmtree(profile, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


class Cells(HTMLParser):
    """The text of every cell, by table id, and each cell's data-model."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[tuple[str | None, str]]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._model: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table":
            self._table = attributes.get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell, self._model = [], attributes.get("data-model")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append((self._model, "".join(self._cell).strip()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def page_url(server: ServerProcess, texts: list[str]) -> str:
    return f"{server.rest_url}/?" + urllib.parse.urlencode([("text", t) for t in texts])


def test_the_page_is_self_contained(server):
    reply = call(server.rest_url + "/")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/html")
    page = reply.body.decode()
    for reference in ('src="http', "src='http", 'href="http', "@import", "//cdn"):
        assert reference not in page  # no CDN, nothing fetched from elsewhere
    assert "/v1/compare" in page and "/v1/latency" in page


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
        assert result["serverLatencySeconds"] > 0 and result["runtime"] == "onnx"
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


def test_latency_route_answers_for_every_model(server):
    for model in MODELS:
        classify(server, model, SARCASM_TEXTS)
    figures = {m["model"]: m for m in call(f"{server.rest_url}/v1/latency").json()["models"]}
    assert set(figures) == set(MODELS)
    for figure in figures.values():
        assert figure["requests"] >= 1
        assert 0 < figure["p50_ms"] <= figure["p99_ms"] < 5000


def test_chromium_renders_every_models_answer_and_latency(server, tmp_path):
    dom = chromium(tmp_path, "--dump-dom", page_url(server, PAGE_TEXTS)).stdout.decode()
    cells = Cells()
    cells.feed(dom)
    header, *rows, latency = cells.tables["results"]
    assert [model for model, _ in header[1:]] == MODELS
    assert [row[0][1] for row in rows] == PAGE_TEXTS
    for model in MODELS:
        _, labels = classify(server, model, PAGE_TEXTS)
        column = [next(text for m, text in row if m == model) for row in rows]
        assert [cell.split()[0] for cell in column] == labels
        for cell in column:
            assert 0.5 <= float(cell.split()[1]) <= 1.0  # the winning label's probability
    assert latency[0][1] == "server latency" and all(text.endswith(" ms") for _, text in latency[1:])
    panel = cells.tables["latency"][1:]  # below the header: one row per model
    assert sorted(row[0][1] for row in panel) == MODELS
    for row in panel:
        p50, p99 = float(row[1][1]), float(row[2][1])
        assert 0 < p50 <= p99


def test_chromium_screenshot_of_the_page(server, tmp_path):
    screenshot = tmp_path / "compare.png"
    chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1100,800", page_url(server, PAGE_TEXTS))
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
