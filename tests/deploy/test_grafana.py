"""deploy/grafana: the dashboard's exemplars lead to the traces. Its exemplar queries are those of the
histograms the server puts trace ids on, the Prometheus datasource links the label the server writes to
the Jaeger datasource, and that one is the Jaeger of deploy/k8s-tracing."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import yaml
from opentelemetry.trace import SpanContext

from deploy.image_venv import REPO_ROOT
from serving.tracing import exemplar_of
from tests.deploy.manifests import K8S_DIR, load_documents

GRAFANA = REPO_ROOT / "deploy" / "grafana"
DASHBOARD = json.loads((GRAFANA / "seqserve-dashboard.json").read_text())
DATASOURCES = {
    d["type"]: d for d in yaml.safe_load((GRAFANA / "datasources.yaml").read_text())["datasources"]
}
# the histograms whose observations carry a sampled request's (or batch's) trace id
WITH_EXEMPLARS = (
    "seqserve_request_duration_seconds",
    "seqserve_tokenize_duration_seconds",
    "seqserve_inference_duration_seconds",
)


def targets() -> list[tuple[dict, dict]]:
    return [(p, t) for p in DASHBOARD["panels"] for t in p.get("targets", [])]


def test_exemplars_are_shown_exactly_on_the_histograms_that_carry_them() -> None:
    shown = {t["expr"] for _, t in targets() if t.get("exemplar")}
    assert shown
    for expr in shown:
        assert any(name + "_bucket" in expr for name in WITH_EXEMPLARS), expr
    for name in WITH_EXEMPLARS:
        assert any(name in expr for expr in shown), name
    queue_wait = [t for _, t in targets() if "seqserve_queue_wait_seconds" in t.get("expr", "")]
    assert queue_wait and not any(t.get("exemplar") for t in queue_wait)


def test_the_exemplar_link_reads_the_label_the_server_writes_and_opens_the_traces_datasource() -> None:
    written = exemplar_of(
        SpanContext(trace_id=0x0AF7651916CD43DD8448EB211C80319C, span_id=0xB7AD6B7169203331, is_remote=False)
    )
    (destination,) = DATASOURCES["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert destination["name"] in written
    assert written[destination["name"]] == "0af7651916cd43dd8448eb211c80319c"
    assert destination["datasourceUid"] == DATASOURCES["jaeger"]["uid"]


def test_the_traces_variable_selects_a_jaeger_datasource_the_traces_panel_uses() -> None:
    (variable,) = [v for v in DASHBOARD["templating"]["list"] if v["name"] == "traces"]
    assert variable["type"] == "datasource" and variable["query"] == DATASOURCES["jaeger"]["type"]
    traced = [(p, t) for p, t in targets() if t["datasource"]["type"] == "jaeger"]
    assert traced
    for panel, target in traced:
        assert panel["datasource"]["uid"] == target["datasource"]["uid"] == "${traces}"
        assert target["queryType"] == "search" and target["service"] == "seqserve"


def test_the_jaeger_datasource_is_the_tracing_overlays_query_port() -> None:
    url = urlsplit(DATASOURCES["jaeger"]["url"])
    services = [
        d for d in load_documents([K8S_DIR.parent / "k8s-tracing" / "jaeger.yaml"]) if d["kind"] == "Service"
    ]
    (service,) = [s for s in services if s["metadata"]["name"] == url.hostname]
    assert url.port in {p["port"] for p in service["spec"]["ports"] if p["name"] == "query"}
