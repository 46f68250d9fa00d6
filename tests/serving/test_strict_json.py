"""Strict JSON: the shape check before parsing (depth, value count) sees exactly what the parser sees,
whatever the strings hold (brackets, quotes, backslashes), and the refusals name their reason."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.protocol.strict_json import MAX_DEPTH, MAX_VALUES, JsonError, parse

TRICKY_STRINGS = st.text(alphabet=st.sampled_from(list('[]{}",\\: aé\n')), max_size=12)
documents = st.recursive(
    st.one_of(st.integers(), st.booleans(), st.none(), TRICKY_STRINGS),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(TRICKY_STRINGS, children, max_size=4)
    ),
    max_leaves=40,
)


def depth(document: Any) -> int:
    if isinstance(document, list):
        return 1 + max((depth(item) for item in document), default=0)
    if isinstance(document, dict):
        return 1 + max((depth(item) for item in document.values()), default=0)
    return 0


def nested(document: Any, levels: int) -> Any:
    for _ in range(levels):
        document = [document]
    return document


@settings(max_examples=300, derandomize=True, database=None)
@given(document=documents, extra=st.integers(0, MAX_DEPTH + 3), ensure_ascii=st.booleans())
def test_the_shape_check_agrees_with_the_parsed_document(document, extra, ensure_ascii):
    wrapped = nested(document, extra)
    data = json.dumps(wrapped, ensure_ascii=ensure_ascii).encode()
    if depth(wrapped) > MAX_DEPTH:
        with pytest.raises(JsonError, match=f"deeper than {MAX_DEPTH} levels"):
            parse(data)
    else:
        assert parse(data) == wrapped


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, f"deeper than {MAX_DEPTH} levels"),
        (b'["' + b'\\"' * 10 + b'", ' + b"[" * 70 + b"]" * 71, f"deeper than {MAX_DEPTH} levels"),
        (b"[" + b"1.5," * MAX_VALUES + b"1.5]", f"more than {MAX_VALUES} values"),
        (b"[" + b"[]," * MAX_VALUES + b"[]]", f"more than {MAX_VALUES} values"),
        (b"[" + b'"",' * MAX_VALUES + b'""]', f"more than {MAX_VALUES} values"),
        (b"[NaN]", "NaN is not a JSON number"),
        (b"[-Infinity]", "Infinity is not a JSON number"),
        (b"[1e400]", "beyond the range of a double"),
        (b"[" + b"9" * 5000 + b"]", "digits"),
        (b'{"a": 1, "a": 2}', "appears twice"),
        ('{"a": "é"}'.encode("utf-16"), "utf-8"),
    ],
    ids=[
        "deep", "deep behind an escaped quote", "floats", "arrays", "strings", "NaN", "Infinity",
        "beyond a double", "too many digits", "a key twice", "UTF-16",
    ],
)  # fmt: skip
def test_refusals_name_their_reason(body, reason):
    with pytest.raises(JsonError, match=reason):
        parse(body)


def test_a_document_at_the_limits_is_read():
    at_limits = {"deep": nested(1, MAX_DEPTH - 1), "many": ["x,[{"] * (MAX_VALUES - 100)}
    assert parse(json.dumps(at_limits).encode()) == at_limits
