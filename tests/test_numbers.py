"""The shared flag/env number parsers: argparse shows their message; env parsing catches ValueError."""

from __future__ import annotations

import argparse

import pytest

from seqserve.numbers import non_negative_float, non_negative_int, positive_int


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [(positive_int, "0", "0 is not positive"), (non_negative_int, "-1", "-1 is negative"),
     (non_negative_float, "-0.5", "-0.5 is negative"), (positive_int, "two", "'two' is not a whole number"),
     (non_negative_int, "1.5", "'1.5' is not a whole number")],
)  # fmt: skip
def test_out_of_range_values_are_refused_with_a_message_for_people(parse, text, message, capsys):
    parser = argparse.ArgumentParser(prog="seqserve")
    parser.add_argument("--n", type=parse)
    with pytest.raises(ValueError, match=message):
        parse(text)
    with pytest.raises(SystemExit):
        parser.parse_args(["--n", text])
    assert f"argument --n: {message}" in capsys.readouterr().err


def test_values_in_range_parse():
    assert (positive_int("3"), non_negative_int("0"), non_negative_float("0.25")) == (3, 0, 0.25)
