"""A real Prometheus scrapes the real server; the Grafana dashboard's queries answer for every model.

The queries are read from deploy/grafana/seqserve-dashboard.json, so the dashboard, the metric names and
the labels cannot drift apart unnoticed.
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from seqserve.v1 import classifier_pb2
from tests.pki import Pki
from tests.programs import debian_program
from tests.serving.conftest import SARCASM_TEXTS
from tests.serving.server_process import REPO_ROOT, ServerProcess, free_port

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "seqserve-dashboard.json"
P99_PANEL = "Request duration p99 by model"
COMPUTE_PANEL = "Compute per text by model"
PROMETHEUS = "/usr/bin/prometheus"
START_TIMEOUT_S = 30.0
ANSWER_TIMEOUT_S = 45.0


def dashboard_queries() -> dict[str, list[str]]:
    """Panel title -> its PromQL expressions (the Prometheus panels'; the traces panel asks Jaeger)."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {
        p["title"]: [t["expr"] for t in p.get("targets", [])]
        for p in panels
        if p["type"] != "row" and p["datasource"]["type"] == "prometheus"
    }


class Prometheus:
    def __init__(
        self, scrape_target: str, workdir: Path, tls: Pki | None = None, features: Sequence[str] = ()
    ) -> None:
        """Scrapes `scrape_target` every second; with `tls`, over HTTPS verifying the server against the
        CA and presenting the client certificate; `features`: --enable-feature values."""
        self.port = free_port()
        config = workdir / "prometheus.yml"
        https = (
            "    scheme: https\n    tls_config:\n"
            f"      ca_file: {tls.ca.cert}\n      cert_file: {tls.client.cert}\n"
            f"      key_file: {tls.client.key}\n"
            if tls
            else ""
        )
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: seqserve\n"
            f"{https}    static_configs:\n      - targets: ['{scrape_target}']\n"
        )
        self.log_path = workdir / "prometheus.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                *(f"--enable-feature={feature}" for feature in features),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())

    def query(self, expr: str) -> list[dict]:
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def wait_until_scraping(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if self.query('up{job="seqserve"} == 1'):
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.25)
        pytest.fail(
            f"Prometheus did not scrape the server in time; log:\n{self.log_path.read_text()[-3000:]}"
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


def require_prometheus() -> None:
    debian_program(PROMETHEUS, "prometheus")


@contextlib.contextmanager
def scraping(
    metrics_url: str, workdir: Path, tls: Pki | None = None, features: Sequence[str] = ()
) -> Iterator[Prometheus]:
    require_prometheus()
    instance = Prometheus(urllib.parse.urlsplit(metrics_url).netloc, workdir, tls, features)
    try:
        instance.wait_until_scraping()
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def prometheus(server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    with scraping(server.metrics_url, tmp_path_factory.mktemp("prometheus")) as instance:
        yield instance


def _finite_values(result: list[dict]) -> dict[str, float]:
    values = {series["metric"].get("model", ""): float(series["value"][1]) for series in result}
    return {model: value for model, value in values.items() if math.isfinite(value)}


def test_every_dashboard_query_answers_for_every_model_that_served_traffic(server, prometheus):
    """Each panel's every query returns a finite series for each model once it has served traffic: a
    query that parses but names a metric or label the server does not expose answers nothing."""
    queries = [expr for exprs in dashboard_queries().values() for expr in exprs]
    assert len(queries) >= 12
    models = set(server.ready["models"])
    unanswered = dict.fromkeys(queries, models)
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    # rate() needs the counters to move between scrapes, so traffic keeps flowing while we ask.
    while unanswered and time.monotonic() < deadline:
        for model in models:
            for _ in range(5):
                server.stub.Classify(
                    classifier_pb2.ClassifyRequest(model=model, texts=SARCASM_TEXTS), timeout=10
                )
        time.sleep(0.5)
        answered = {expr: set(_finite_values(prometheus.query(expr))) for expr in unanswered}
        unanswered = {expr: models - found for expr, found in answered.items() if models - found}
    assert not unanswered, f"queries without a series for these models: {unanswered}"
    (p99,) = dashboard_queries()[P99_PANEL]
    request_p99 = _finite_values(prometheus.query(p99))
    for value in request_p99.values():
        assert 0 < value < 5.0  # within the histogram's finite buckets (seconds)
    (compute,) = dashboard_queries()[COMPUTE_PANEL]
    for model, value in _finite_values(prometheus.query(compute)).items():
        assert 0 < value < request_p99[model]  # a text's share of a batch, inside a request's time
    ready = {series["metric"]["model"] for series in prometheus.query("seqserve_model_ready == 1")}
    assert ready == models


def test_prometheus_scrapes_https_with_a_client_certificate(tiny_model_repository, pki, tmp_path):
    """With --tls-client-ca, /metrics speaks mutual TLS only; Prometheus' tls_config gets through."""
    with ServerProcess(
        tiny_model_repository, tmp_path,
        "--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key),
        "--tls-client-ca", str(pki.ca.cert),
    ) as server, scraping(server.metrics_url, tmp_path, tls=pki) as instance:  # fmt: skip
        assert server.metrics_url.startswith("https://")
        ready = {series["metric"]["model"] for series in instance.query("seqserve_model_ready == 1")}
        assert ready == set(server.ready["models"])
