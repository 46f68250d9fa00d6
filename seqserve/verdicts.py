"""One vocabulary for a claim judged by several checks: the training report's claims (training.claims)
and the speed claims (bench.speed_verdicts) both speak it.

A check either decides, supporting or contradicting the claim, or is unclear (a difference within the
noise, too few seeds). An unclear check is no evidence either way, so a claim nothing contradicted is
never reported as not holding.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Judgement(StrEnum):
    """What one check says about a claim."""

    SUPPORTS = "supports"
    CONTRADICTS = "contradicts"
    UNCLEAR = "unclear"


class Verdict(StrEnum):
    """What the checks of a claim say together."""

    HOLDS = "holds"
    DOES_NOT_HOLD = "does not hold"
    MIXED = "mixed"
    UNCLEAR = "unclear"
    NOT_MEASURED = "not measured"


RULE = (
    f"A claim **{Verdict.HOLDS}** when every check that decided supports it and at least one decided, "
    f"**{Verdict.DOES_NOT_HOLD}** when a decided check contradicts it and none supports it, is "
    f"**{Verdict.MIXED}** when decided checks disagree, and **{Verdict.UNCLEAR}** when none decided "
    f"(**{Verdict.NOT_MEASURED}**: there was nothing to check)."
)


def verdict(judgements: Iterable[Judgement]) -> Verdict:
    """The claim's verdict from its checks' judgements, by RULE."""
    judged = list(judgements)
    if not judged:
        return Verdict.NOT_MEASURED
    decided = set(judged) - {Judgement.UNCLEAR}
    if not decided:
        return Verdict.UNCLEAR
    if decided == {Judgement.SUPPORTS}:
        return Verdict.HOLDS
    if decided == {Judgement.CONTRADICTS}:
        return Verdict.DOES_NOT_HOLD
    return Verdict.MIXED
