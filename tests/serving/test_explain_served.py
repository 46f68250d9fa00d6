"""Explain on every surface of a real server: seqserve.v1 gRPC, REST (KServe V1 shape and /v1/explain),
`seqserve classify --explain`, its admission limit beside classification, and its metrics."""

from __future__ import annotations

import concurrent.futures
import urllib.parse
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import grpc
import numpy as np
import pytest

from seqserve.cli import main
from seqserve.v1 import classifier_pb2
from tests.serving.conftest import LONG_TEXT, SARCASM_TEXTS
from tests.serving.gate import Gate
from tests.serving.metrics_text import value
from tests.serving.rest_client import call
from tests.serving.server_process import ServerProcess
from tests.serving.slow_model import SLOW_MODEL, repository_with_slow_model
from tests.serving.test_compare_page import chromium

MODELS = ["sarcasm-flatten", "sarcasm-gru"]
TEXT = "Nation's dogs vow to keep their humans safe from… the MAILMAN  zzqx!"


def explain(server: ServerProcess, text: str, models: list[str], version: int = 0):
    request = classifier_pb2.ExplainRequest(text=text, models=models, version=version)
    return server.stub.Explain(request, timeout=30).explanations


def positive(server: ServerProcess, model: str, texts: list[str]) -> np.ndarray:
    reply = server.stub.Classify(classifier_pb2.ClassifyRequest(model=model, texts=texts), timeout=30)
    return np.array([p.scores[1].score for p in reply.predictions], dtype=np.float64)


def test_grpc_explain_equals_classifying_the_texts_without_each_word(server):
    for text in [TEXT, LONG_TEXT, *SARCASM_TEXTS]:
        explanations = explain(server, text, MODELS)
        assert [e.model for e in explanations] == MODELS
        for e in explanations:
            seen = [w for w in e.words if w.seen]
            variants = [text] + [text[: w.start] + " " + text[w.end :] for w in seen]
            probabilities = positive(server, e.model, variants)
            assert e.label == "sarcastic" and e.variants == len(variants)
            assert e.probability == pytest.approx(probabilities[0], abs=1e-6)
            for word, p in zip(seen, probabilities[1:], strict=True):
                assert word.attribution == pytest.approx(probabilities[0] - p, abs=1e-6)
            assert all(text[w.start : w.end] == w.word for w in e.words)
            assert e.runtime == "onnx" and e.server_latency_seconds > 0


def test_every_loaded_model_explains_when_none_is_named_oov_and_unseen_flagged(server):
    explanations = explain(server, TEXT, [])
    assert [e.model for e in explanations] == MODELS
    words = explanations[0].words
    assert [w.word for w in words][-3:] == ["MAILMAN", "zzqx", "!"]
    assert words[-2].oov and not next(w for w in words if w.word == "the").oov
    long = explain(server, LONG_TEXT, ["sarcasm-gru"])[0]
    assert not long.words[-1].seen and long.words[-1].attribution == 0
    assert long.variants == 1 + sum(w.seen for w in long.words) <= 1 + 40  # the tiny models' max_length
    (empty,) = explain(server, "", ["sarcasm-gru"])
    assert list(empty.words) == [] and empty.variants == 1


@pytest.mark.parametrize(
    ("text", "models", "version", "code", "message"),
    [
        ("x", ["sarcasm-transformer"], 0, grpc.StatusCode.NOT_FOUND, "available models"),
        ("x", MODELS, 1, grpc.StatusCode.INVALID_ARGUMENT, "exactly one model"),
        ("x", ["sarcasm-gru"], 9, grpc.StatusCode.NOT_FOUND, "no loaded version 9"),
        ("x" * 20000, ["sarcasm-gru"], 0, grpc.StatusCode.INVALID_ARGUMENT, "--max-text-bytes"),
        ("x", ["Bad/Name"], 0, grpc.StatusCode.INVALID_ARGUMENT, "model name"),
    ],
)
def test_grpc_errors_are_clear(server, text, models, version, code, message):
    with pytest.raises(grpc.RpcError) as caught:
        explain(server, text, models, version)
    assert caught.value.code() == code and message in caught.value.details(), caught.value.details()


def test_rest_kserve_v1_explain_and_the_page_route_agree_with_grpc(server):
    texts = [TEXT, "cat"]
    reply = call(f"{server.rest_url}/v1/models/sarcasm-gru:explain", {"instances": texts})
    assert reply.status == 200, reply.body
    explanations = reply.json()["explanations"]
    assert len(explanations) == 2
    for text, answer in zip(texts, explanations, strict=True):
        (expected,) = explain(server, text, ["sarcasm-gru"])
        assert answer["model"] == "sarcasm-gru" and answer["probability"] == pytest.approx(
            expected.probability
        )
        assert [(w["start"], w["end"], w["seen"], w["oov"]) for w in answer["words"]] == [
            (w.start, w.end, w.seen, w.oov) for w in expected.words
        ]
        assert [w["attribution"] for w in answer["words"]] == pytest.approx(
            [w.attribution for w in expected.words]
        )
    every = call(f"{server.rest_url}/v1/explain", {"text": TEXT}).json()["explanations"]
    assert [e["model"] for e in every] == MODELS and every[0]["words"][0]["start"] == 0


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/models/sarcasm-gru:explain", b"{", 400, "not JSON"),
        ("/v1/models/sarcasm-gru:explain", {"instances": "one"}, 400, "'instances'"),
        ("/v1/models/sarcasm-gru:explain", {"instances": [1]}, 400, "'instances'"),
        ("/v1/models/sarcasm-gru:explain", {"instances": []}, 400, "no texts"),
        ("/v1/models/sarcasm-gru:explain", {"instances": ["x"] * 300}, 400, "--max-texts-per-request"),
        ("/v1/models/sarcasm-nope:explain", {"instances": ["x"]}, 404, "available models"),
        ("/v1/explain", b"[", 400, "not a seqserve.v1.ExplainRequest"),
        ("/v1/explain", {"text": 3}, 400, "not a seqserve.v1.ExplainRequest"),
        ("/v1/explain", b"true", 400, "not a seqserve.v1.ExplainRequest"),  # not an object: once a 500
        ("/v1/explain", {"text": "x", "models": ["a", "b"], "version": 2}, 400, "exactly one model"),
    ],
)
def test_rest_errors_are_clear_4xx(server, path, body, status, message):
    reply = call(server.rest_url + path, body)
    assert reply.status == status and message in reply.json()["error"], reply.body


def test_explain_metrics(server):
    before = server.metrics_text()
    explain(server, TEXT, ["sarcasm-flatten"])
    after = server.metrics_text()
    labels = {"model": "sarcasm-flatten", "version": "1", "runtime": "onnx"}
    for name in ("seqserve_explain_seconds_count", "seqserve_explain_variants_count"):
        assert value(after, name, **labels) - value(before, name, **labels) == 1
    words = len(explain(server, TEXT, ["sarcasm-flatten"])[0].words)
    assert (
        value(after, "seqserve_explain_variants_sum", **labels)
        - value(before, "seqserve_explain_variants_sum", **labels)
        == 1 + words
    )


def test_classify_explain_colours_each_word(server, capsys):
    assert main(["classify", "--address", server.address, "--model", "sarcasm-gru", "--explain", TEXT]) == 0
    plain = capsys.readouterr().out.splitlines()
    assert plain[0].startswith(f"sarcasm-gru v1  {TEXT}  sarcastic 0.")
    command = ["classify", "--address", server.address, "--explain", "--compare", "--color", "always", TEXT]
    assert main(command) == 0
    coloured = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in coloured[:2]] == MODELS
    assert "\x1b[" in coloured[0] and "48;2;" in coloured[0]  # 24-bit backgrounds
    assert main(["classify", "--address", server.address, "--model", "nope", "--explain", "x"]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err


@pytest.fixture(scope="module")
def slow_server(
    tiny_model_repository: Path, gate: Gate, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    root = repository_with_slow_model(tiny_model_repository, tmp_path_factory.mktemp("explain-slow") / "m", 1)
    with ServerProcess(
        root, tmp_path_factory.mktemp("explain-slow-logs"), "--max-concurrent-explains", "1", env=gate.env
    ) as s:
        yield s


def test_explanations_beyond_the_limit_are_refused_and_classification_goes_on(slow_server, gate):
    """While the slow model explains (its batch held at the gate), every other explanation is refused at
    once, whatever its model, and classification answers as usual."""
    gate.hold()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(explain, slow_server, LONG_TEXT, [SLOW_MODEL])
        variants = gate.next_run()  # the explanation's one batch: text and variants
        try:
            with pytest.raises(grpc.RpcError) as refused:
                explain(slow_server, "cat", ["sarcasm-gru"])
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "--max-concurrent-explains" in refused.value.details()
            assert len(positive(slow_server, "sarcasm-gru", ["cat"])) == 1  # not held up
            reply = call(f"{slow_server.rest_url}/v1/models/sarcasm-gru:explain", {"instances": ["cat"]})
            assert reply.status == 429 and reply.headers.get("Retry-After")
            assert not running.done()
        finally:
            gate.open()
            variants.release()
        assert running.result()[0].variants == variants.rows > 1


class Highlights(HTMLParser):
    """Each row of the page's explanations table: its data-model, its words (text and
    data-attribution) and the whole highlighted cell's text."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, tuple[list[tuple[str, float]], list[str]]] = {}
        self._model: str | None = None
        self._in_table = self._in_cell = False
        self._word: list | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table" and attributes.get("id") == "explanations":
            self._in_table = True
        elif self._in_table and tag == "tr" and attributes.get("data-model"):
            self._model = attributes["data-model"]
            self.rows[self._model] = ([], [])
        elif self._model and tag == "td" and attributes.get("class") == "explained":
            self._in_cell = True
        elif self._in_cell and tag == "span":
            self._word = ["", float(attributes["data-attribution"] or "nan")]

    def handle_endtag(self, tag: str) -> None:
        if tag == "span" and self._word is not None and self._model:
            self.rows[self._model][0].append((self._word[0], self._word[1]))
            self._word = None
        elif tag == "td":
            self._in_cell = False
        elif tag == "table":
            self._in_table = False

    def handle_data(self, data: str) -> None:
        if self._in_cell and self._model:
            self.rows[self._model][1].append(data)
            if self._word is not None:
                self._word[0] += data


def test_chromium_highlights_each_models_words_in_its_row(server, tmp_path):
    url = f"{server.rest_url}/?" + urllib.parse.urlencode({"explain": TEXT})
    page = Highlights()
    page.feed(chromium(tmp_path, "--dump-dom", url).stdout.decode())
    assert list(page.rows) == MODELS
    for model in MODELS:
        words, cell_text = page.rows[model]
        (expected,) = explain(server, TEXT, [model])
        assert "".join(cell_text) == TEXT  # the text as sent: case, punctuation and spacing intact
        assert [w for w, _ in words] == [w.word for w in expected.words]
        assert [a for _, a in words] == pytest.approx([w.attribution for w in expected.words], abs=1e-6)
