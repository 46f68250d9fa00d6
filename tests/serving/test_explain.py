"""Leave-one-word-out explanations (serving.explain): exact against a closed form, equal to separate calls.

- Dropping a word's ids equals tokenizing the text with the word's span replaced by a space, for
  tokenizers as training builds them (both truncation sides), checked over generated texts.
- A hand-built ONNX model whose logit is a sum of per-token weights, served through the real runtime
  class, has attributions in closed form: sigmoid(sum) - sigmoid(sum without the word).
- On every architecture at hand (the small graphs built here on ONNX Runtime; every trained
  architecture on ONNX Runtime and TensorFlow: the suite's small ones, or those of
  SEQSERVE_TRAINED_MODELS, e.g. `models/` after `make train`), the one batched call equals 1 + L
  separate classifications of the texts without each word.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, processors

from seqserve.v1 import model_config_pb2
from serving.errors import ServingError
from serving.explain import Explainer, ExplainUnsupported, WordSplitter
from serving.explanations import ExplainService
from serving.inference import InferenceService
from serving.runtimes import create_runtime
from serving.sequence import SequencePadding
from serving.settings import Settings
from tests.serving.conftest import LONG_TEXT, SARCASM_TEXTS
from tests.serving.reference import read_config
from tests.serving.test_registry import with_registry
from tests.serving.variable_length_models import KINDS, publish, trailing_padding, variable_length_onnx
from training.tokenizer import build_tokenizer

TOLERANCE = 1e-6
CORPUS = [
    "the cat sat on the mat",
    "don't stop... now!",
    "scientists discover a new species of frog",
    "area man passionate defender of what he imagines constitution to be",
]
EXPLAIN_TEXTS = [
    *SARCASM_TEXTS,
    LONG_TEXT,
    "cat",
    "zzqx blorft vvvk",  # only words outside the vocabulary
    "  Tabs\tand\u3000ideographic   spaces\n…and ⑴ ﬁne 😀 İstanbul  ",
]
# Letters of the vocabulary, punctuation, and characters the NFKC normaliser expands or re-cases.
ALPHABET = "catsmonheifrgd!?.,'-() \t\n\u00a0\u3000…⑴ﬁİ😀ÄΣß"


def splitter_for(max_length: int, side: str) -> tuple[Tokenizer, WordSplitter]:
    tokenizer = build_tokenizer(CORPUS, vocab_size=40, max_length=max_length, truncation_side=side)
    return tokenizer, WordSplitter(tokenizer)


def without_span(text: str, start: int, end: int) -> str:
    return text[:start] + " " + text[end:]


@pytest.mark.parametrize("side", ["right", "left"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=ALPHABET, max_size=40))
def test_dropping_a_words_ids_equals_tokenizing_the_text_without_it(side, text):
    tokenizer, splitter = splitter_for(6, side)
    words = splitter.split(text)
    rows = splitter.variants(words, SequencePadding(6))  # fixed length: the tokenizer's own rows
    assert rows[0].tolist() == tokenizer.encode(text).ids
    seen = [span for span, is_seen in zip(words.spans, splitter.seen(words), strict=True) if is_seen]
    assert len(rows) == 1 + len(seen)
    for row, (start, end) in zip(rows[1:], seen, strict=True):
        variant = without_span(text, start, end)
        assume("<br" not in tokenizer.normalizer.normalize_str(variant))  # the documented exception
        assert row.tolist() == tokenizer.encode(variant).ids, (text, text[start:end])
    # words are non-empty, ordered, disjoint spans of the text as sent
    ends = [0] + [end for _start, end in words.spans]
    assert all(
        start >= previous and end > start
        for (start, end), previous in zip(words.spans, ends[:-1], strict=True)
    )


def test_removing_a_word_can_form_markup_the_normaliser_deletes():
    """The exception serving.explain documents: without "x", "<br x/>" is a line break."""
    tokenizer, splitter = splitter_for(8, "right")
    text = "<br x/>"
    words = splitter.split(text)
    (start, end) = next(span for span in words.spans if text[span[0] : span[1]] == "x")
    row = splitter.variants(words, SequencePadding(8))[1 + words.spans.index((start, end))]
    assert tokenizer.encode(without_span(text, start, end)).ids == [0] * 8
    assert row.tolist()[:4] != [0] * 4  # the explanation still removes only "x"


def test_a_tokenizer_without_one_fixed_length_cannot_explain():
    tokenizer, _ = splitter_for(6, "right")
    tokenizer.no_padding()
    with pytest.raises(ExplainUnsupported):
        WordSplitter(tokenizer)


def test_words_map_to_the_characters_sent_oov_and_unseen_flagged():
    tokenizer, splitter = splitter_for(7, "right")  # "…" is three ids: 7 ids reach "sat"
    weights = np.zeros(tokenizer.get_vocab_size(), dtype=np.float32)
    explainer = Explainer(splitter, SequencePadding(7), SumRuntime(weights), ("no", "yes"))
    text = "  The\tCAT… zzqx  sat on the mat "
    explanation = explainer.explain(text)
    shown = [text[w.start : w.end] for w in explanation.words]
    assert shown == ["The", "CAT", "…", "zzqx", "sat", "on", "the", "mat"]
    assert [w.oov for w in explanation.words] == [False, False, False, True, False, False, False, False]
    assert [w.seen for w in explanation.words] == [True] * 5 + [False] * 3
    assert explanation.variants == 6
    assert explanation.label == "yes" and explanation.probability == pytest.approx(0.5)


@pytest.mark.parametrize("side", ["right", "left"])
def test_words_beyond_max_length_are_unseen_on_the_truncated_side(side):
    _, splitter = splitter_for(3, side)
    words = splitter.split("the cat sat on the mat")
    expected = [True] * 3 + [False] * 3
    assert splitter.seen(words) == (expected if side == "right" else expected[::-1])


def test_empty_and_blank_texts_have_no_words_and_one_variant():
    _, splitter = splitter_for(5, "right")
    explainer = Explainer(splitter, SequencePadding(5, True), SumRuntime(np.ones(40, np.float32)), ("n", "y"))
    for text in ("", "   ", "\t\n\u3000"):
        explanation = explainer.explain(text)
        assert explanation.words == () and explanation.variants == 1


WORDS = st.sampled_from(
    ["the", "cat", "sat", "mat", "frog", "zzqx", "blorft", "İstanbul", "😀", "…", "don't"]
)
SPACES = st.sampled_from([" ", "  ", "\t", "\n", "\u3000", "\u00a0 "])


@st.composite
def texts(draw: st.DrawFn) -> str:
    """Empty, one word, only words outside the vocabulary, more words than max_length, Unicode, runs of
    whitespace: words from a list that has all of these, joined by whitespace runs."""
    words = draw(st.lists(WORDS, max_size=12))
    gaps = draw(st.lists(SPACES, min_size=len(words) + 1, max_size=len(words) + 1))
    return "".join(gap + word for gap, word in zip(gaps, [*words, ""], strict=True))


@pytest.mark.parametrize("side", ["right", "left"])
@settings(max_examples=100, deadline=None)
@given(text=texts())
def test_every_text_gets_an_exact_explanation(side, text):
    tokenizer, splitter = splitter_for(6, side)
    weights = np.random.default_rng(3).normal(0, 1, tokenizer.get_vocab_size()).astype(np.float32)
    weights[0] = 0
    explanation = Explainer(splitter, SequencePadding(6, True), SumRuntime(weights), ("n", "y")).explain(text)

    def closed_form(t: str) -> float:
        return float(1 / (1 + np.exp(-weights[tokenizer.encode(t).ids].astype(np.float64).sum())))

    assert explanation.probability == pytest.approx(closed_form(text), abs=TOLERANCE)
    assert explanation.variants == 1 + sum(w.seen for w in explanation.words)
    assert sum(w.seen for w in explanation.words) <= 6
    unknown = tokenizer.token_to_id("[UNK]")
    for word in explanation.words:
        piece = text[word.start : word.end]
        assert piece.strip() == piece and piece
        ids = tokenizer.encode(piece).ids
        assert word.oov == all(i == unknown for i in ids if i != 0)
        expected = explanation.probability - closed_form(without_span(text, word.start, word.end))
        assert word.attribution == pytest.approx(expected if word.seen else 0.0, abs=TOLERANCE), piece


class SumRuntime:
    """In-process twin of the closed-form graph, for the offset tests: sigmoid(sum of weights)."""

    name, source, fixed_sequence_length = "numpy", "weights", None

    def __init__(self, weights: np.ndarray) -> None:
        self._weights = weights

    def run(self, ids: np.ndarray) -> np.ndarray:
        p = 1 / (1 + np.exp(-self._weights[ids].sum(axis=1, keepdims=True)))
        return np.concatenate([1 - p, p], axis=1).astype(np.float32)


# ---------------------------------------------------------------- the closed form, on ONNX Runtime


def sum_of_weights_onnx(weights: np.ndarray) -> onnx.ModelProto:
    """probabilities = sigmoid(sum over positions of weights[id]), weights[0] = 0 (padding adds nothing)."""
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["weights", "input_ids"], ["per_token"]),  # [b, L]
            helper.make_node("ReduceSum", ["per_token", "axis_1"], ["logit"], keepdims=1),  # [b, 1]
            helper.make_node("Sigmoid", ["logit"], ["probabilities"]),
        ],
        "sum_of_weights",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT32, ["batch", "length"])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 1])],
        initializer=[
            numpy_helper.from_array(weights, "weights"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_1"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def repository(tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny trained models, the closed-form graph, and the variable-length graphs of every kind."""
    root = tmp_path_factory.mktemp("explain") / "models"
    shutil.copytree(tiny_model_repository, root)
    vocab = Tokenizer.from_file(str(root / "tokenizers" / "sarcasm" / "tokenizer.json")).get_vocab_size()
    weights = np.random.default_rng(7).normal(0, 1, vocab).astype(np.float32)
    weights[0] = 0.0
    np.save(root / "weights.npy", weights)
    for sequence in (None, model_config_pb2.SequenceInput(variable_length=True)):
        name = "sarcasm-sum" + ("-variable" if sequence else "")
        publish(root, "sarcasm-flatten", name, sum_of_weights_onnx(weights), sequence)
    max_length = read_config(root, "sarcasm-flatten").max_length
    for kind in KINDS:
        sequence = model_config_pb2.SequenceInput(
            variable_length=True, trailing_padding=trailing_padding(kind)
        )
        publish(
            root, "sarcasm-flatten", f"sarcasm-v{kind}", variable_length_onnx(kind, vocab, "length"), sequence
        )
        publish(
            root, "sarcasm-flatten", f"sarcasm-f{kind}", variable_length_onnx(kind, vocab, max_length), None
        )
    return root


@pytest.mark.parametrize("name", ["sarcasm-sum", "sarcasm-sum-variable"])
def test_attributions_match_the_closed_form(repository, name):
    config = read_config(repository, name)
    tokenizer = Tokenizer.from_file(str(repository / config.tokenizer.path))
    weights = np.load(repository / "weights.npy").astype(np.float64)
    runtime = create_runtime("onnx", repository / name / "1", config, 1)
    explainer = Explainer(WordSplitter(tokenizer), SequencePadding.of(config), runtime, config.labels)

    def closed_form(text: str) -> float:
        return float(1 / (1 + np.exp(-weights[tokenizer.encode(text).ids].sum())))

    for text in EXPLAIN_TEXTS:
        explanation = explainer.explain(text)
        base = closed_form(text)
        assert explanation.probability == pytest.approx(base, abs=TOLERANCE)
        for word in explanation.words:
            expected = base - closed_form(without_span(text, word.start, word.end)) if word.seen else 0.0
            assert word.attribution == pytest.approx(expected, abs=TOLERANCE), (text, word)
    assert any(not w.seen for w in explainer.explain(LONG_TEXT).words)  # the cut-off words are there


def batched_equals_separate(models) -> list[str]:
    """Each model: its explanation of each text vs one classification per variant text."""
    checked = []
    for model in models:
        for text in EXPLAIN_TEXTS:
            explanation = model.explainer.explain(text)
            seen = [w for w in explanation.words if w.seen]
            texts = [text] + [without_span(text, w.start, w.end) for w in seen]
            separate = np.array([model.predict_batch([t])[0, 1] for t in texts], dtype=np.float64)
            batched = np.array(
                [explanation.probability] + [explanation.probability - w.attribution for w in seen]
            )
            assert np.abs(batched - separate).max() <= TOLERANCE, (model.name, model.runtime.name, text)
            assert explanation.variants == len(texts)
        checked.append(f"{model.name}/{model.runtime.name}")
    return checked


def registry_models(registry):
    return [registry.resolve(name) for name in registry.snapshot.names()]


def test_batched_equals_separate_calls_on_the_fixture_models(repository):
    async def body(registry, events, metrics):
        models = registry_models(registry)
        checked = await asyncio.get_running_loop().run_in_executor(None, batched_equals_separate, models)
        assert len(checked) == 2 + 2 + 2 * len(KINDS)

    with_registry(repository, body)


@pytest.fixture
def trained_models(request: pytest.FixtureRequest) -> Path:
    """SEQSERVE_TRAINED_MODELS (e.g. `models/` after `make train`), else every architecture as the suite
    trains it for the training tests (one session fixture: trained once for both)."""
    configured = os.environ.get("SEQSERVE_TRAINED_MODELS")
    trained = Path(configured) if configured else request.getfixturevalue("trained_repository")
    assert any(trained.glob("sarcasm-*/*/config.pbtxt")), f"no trained sarcasm model in {trained}"
    return trained


@pytest.mark.parametrize("runtime", ["onnx", "tf"])
def test_batched_equals_separate_calls_on_the_trained_models(trained_models, tmp_path, runtime):
    root = tmp_path / "models"
    root.mkdir()
    shutil.copytree(trained_models / "tokenizers" / "sarcasm", root / "tokenizers" / "sarcasm")
    for model in trained_models.glob("sarcasm-*"):
        shutil.copytree(model, root / model.name)  # a copy: nothing is ever written into the originals
    published = {p.parents[1].name for p in trained_models.glob("sarcasm-*/*/config.pbtxt")}

    async def body(registry, events, metrics):
        models = registry_models(registry)
        checked = await asyncio.get_running_loop().run_in_executor(None, batched_equals_separate, models)
        assert sorted(checked) == sorted(f"{name}/{runtime}" for name in published)

    with_registry(root, body, runtime=runtime)


def test_a_model_whose_tokenizer_cannot_explain_is_refused_with_invalid_argument(repository, tmp_path):
    """A tokenizer that adds a token of its own to every text still classifies, but its words cannot be
    dropped id by id: Explain says so as INVALID_ARGUMENT."""
    root = tmp_path / "models"
    shutil.copytree(repository / "tokenizers", root / "tokenizers")
    shutil.copytree(repository / "sarcasm-vgap", root / "sarcasm-vgap")
    tokenizer = Tokenizer.from_file(str(root / "tokenizers" / "sarcasm" / "tokenizer.json"))
    tokenizer.post_processor = processors.TemplateProcessing(single="$A [UNK]", special_tokens=[("[UNK]", 1)])
    path = root / "tokenizers" / "marked" / "tokenizer.json"
    path.parent.mkdir()
    path.write_text(tokenizer.to_str())
    config_path = root / "sarcasm-vgap" / "1" / "config.pbtxt"
    config = read_config(root, "sarcasm-vgap")
    config.tokenizer.path = "tokenizers/marked/tokenizer.json"
    config.tokenizer.sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    config_path.write_text(text_format.MessageToString(config))

    async def body(registry, events, metrics):
        assert not registry.failures
        settings = Settings(model_repository=root)
        explain = ExplainService(InferenceService(registry, settings, metrics), registry, settings)
        assert registry.resolve("sarcasm-vgap").explainer is None
        with pytest.raises(ServingError) as refused:
            await explain.explain(["cat"], ["sarcasm-vgap"])
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "cannot be explained" in refused.value.message
        explain.close()

    with_registry(root, body)
