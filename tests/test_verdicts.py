"""The one verdict rule of the training claims and the speed claims (seqserve.verdicts)."""

from __future__ import annotations

import pytest

from seqserve.verdicts import Judgement, Verdict, verdict

SUPPORTS, CONTRADICTS, UNCLEAR = Judgement.SUPPORTS, Judgement.CONTRADICTS, Judgement.UNCLEAR


@pytest.mark.parametrize(
    ("judgements", "expected"),
    [
        ([SUPPORTS], Verdict.HOLDS),
        ([SUPPORTS, UNCLEAR, SUPPORTS], Verdict.HOLDS),  # what decided supports it
        ([CONTRADICTS], Verdict.DOES_NOT_HOLD),
        ([UNCLEAR, CONTRADICTS], Verdict.DOES_NOT_HOLD),  # contradicted, supported nowhere
        ([SUPPORTS, CONTRADICTS], Verdict.MIXED),
        ([SUPPORTS, UNCLEAR, CONTRADICTS], Verdict.MIXED),
        ([UNCLEAR], Verdict.UNCLEAR),
        ([UNCLEAR, UNCLEAR, UNCLEAR], Verdict.UNCLEAR),  # never "does not hold"
        ([], Verdict.NOT_MEASURED),
    ],
)
def test_the_verdict_counts_only_the_checks_that_decided(judgements, expected) -> None:
    assert verdict(judgements) is expected


def test_a_verdict_reads_as_the_reports_write_it() -> None:
    assert f"{Verdict.DOES_NOT_HOLD}" == "does not hold" and f"{Judgement.UNCLEAR}" == "unclear"
