"""The course's claims about the architectures, judged over seeds rather than on one run.

A difference of a few tenths of a point between two single runs may be no more than another seed would
change, so every check is decided on a 95 % interval (training.statistics) and is "unclear" when the
interval does not settle it; the checks of a claim make its verdict by seqserve.verdicts' rule. RULE
states the rule in the report; THRESHOLDS the ranges the claims imply.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from seqserve import verdicts as rule
from seqserve.verdicts import Judgement, Verdict
from training.runs import Model, Run, mean_step
from training.statistics import PERCENT, Interval, Spread, Unit, difference_interval, mean_interval

NOT_ENOUGH_SEEDS = "not enough seeds"  # why a check without an interval is unclear

# Thresholds of the claim checks (fractions of 1 for accuracies).
NEAR_ACCURACY = 0.05  # "~85%" means within 5 points
CLIMB_EPOCHS = 3  # "climbs quickly": within CLIMB_MARGIN of the best validation accuracy at this epoch
CLIMB_MARGIN = 0.02
FLAT_CHANGE = 0.01  # "flattens": validation accuracy moves < 1 point per epoch over the last half
HIGH_TRAIN_ACCURACY = 0.95  # "climbs to ~97% train accuracy"
VALIDATION_DROP = 0.01  # final validation accuracy this far below its best = "drops"
LOSS_RISE = 0.10  # final validation loss 10% above its minimum = "rises"
SMOOTHER_RATIO = 0.9  # smoother: jaggedness below 0.9x the other's
SLIGHTLY_LOWER = 0.03  # "slightly lower accuracy": 0 < lstm - gru < 3 points
MUCH_FASTER_RATIO = 0.5  # "much faster": below half the epoch time
SIMILAR_ACCURACY = 0.02  # "similar accuracy": test accuracies within 2 points
SIMILAR_LOSS = 0.05  # "similar loss": test losses within 0.05

SECONDS = Unit(digits=1, suffix=" s")
LOSS = Unit(digits=3)
JAGGEDNESS = Unit(digits=4)

RULE = (
    "Every check asks whether a figure lies in the range that the claim implies, over the seeds of each "
    "model: a figure of one architecture through the 95% interval of its mean (one-sample t), a "
    "comparison of two architectures through Welch's 95% interval of the difference of their means "
    "(unequal variances; it excludes 0 exactly when a two-sided Welch t-test at 5% rejects equal means). "
    f"A check **{Judgement.SUPPORTS}** the claim when the whole interval lies inside the range, "
    f"**{Judgement.CONTRADICTS}** it when the interval lies wholly outside, and is **{Judgement.UNCLEAR}** "
    f"when it straddles a bound, or ({NOT_ENOUGH_SEEDS}) with fewer than 2 runs on a side. {rule.RULE}",
    "Accuracy and loss figures leave degenerate runs out (unless every run of the model is "
    "degenerate); epoch times use every run. Accuracy comparisons use the test split at each run's "
    "published epoch, chosen on validation; curve shapes use the validation curves.",
)

THRESHOLDS = (
    f"~X%: within {PERCENT.show(NEAR_ACCURACY)}; climbs quickly: within "
    f"{PERCENT.show(CLIMB_MARGIN)} of the best validation accuracy at epoch {CLIMB_EPOCHS}; flattens: "
    f"validation accuracy moves less than {PERCENT.show(FLAT_CHANGE)} per epoch over the last half.",
    f"~97% train accuracy: above {PERCENT.show(HIGH_TRAIN_ACCURACY)}; validation accuracy drops: final "
    f"more than {PERCENT.show(VALIDATION_DROP)} below the best; validation loss rises: final more than "
    f"{PERCENT.show(LOSS_RISE)} above its minimum.",
    f"smoother: jaggedness (mean absolute change between consecutive epochs) below {SMOOTHER_RATIO:g}x "
    "the other's, for validation accuracy and loss; more stable: lower validation-accuracy jaggedness.",
    f"slightly lower accuracy: lower by between 0 and {PERCENT.value(SLIGHTLY_LOWER)} points; faster: "
    f"lower epoch time; much faster: below {MUCH_FASTER_RATIO:g}x the epoch time of the quicker of "
    "LSTM/GRU.",
    f"similar: test accuracies within {PERCENT.value(SIMILAR_ACCURACY)} points and test losses within "
    f"{SIMILAR_LOSS:g}.",
)


@dataclass(frozen=True)
class Check:
    text: str
    judgement: Judgement
    reason: str = ""  # why it is unclear, when that is not the interval straddling a bound

    def __str__(self) -> str:
        return f"{self.text}: {self.judgement}" + (f" ({self.reason})" if self.reason else "")


@dataclass(frozen=True)
class JudgedClaim:
    claim: str
    verdict: Verdict
    evidence: str


def decide(text: str, interval: Interval | None, low: float, high: float) -> Check:
    """Supports inside (low, high), contradicts wholly outside, unclear across a bound; no interval, no
    decision."""
    if interval is None:
        return Check(text, Judgement.UNCLEAR, NOT_ENOUGH_SEEDS)
    if low < interval.low and interval.high < high:
        return Check(text, Judgement.SUPPORTS)
    if interval.high < low or interval.low > high:
        return Check(text, Judgement.CONTRADICTS)
    return Check(text, Judgement.UNCLEAR)


def _claimed(low: float, high: float, unit: Unit) -> str:
    if math.isinf(low):
        return f"< {unit.show(high)}"
    if math.isinf(high):
        return f"> {unit.show(low)}"
    return f"between {unit.value(low)} and {unit.show(high)}"


def level(
    label: str, values: Sequence[float], unit: Unit, low: float = -math.inf, high: float = math.inf
) -> Check:
    """Is the mean of one architecture's per-seed figure inside (low, high)?"""
    interval = mean_interval(values)
    shown = "" if interval is None else f", 95% interval of the mean {unit.interval(interval)}"
    return decide(
        f"{label} {unit.spread(Spread.of(values))}{shown} (claimed {_claimed(low, high, unit)})",
        interval,
        low,
        high,
    )


def difference(
    label: str,
    first: tuple[str, Sequence[float]],
    second: tuple[str, Sequence[float]],
    unit: Unit,
    low: float = -math.inf,
    high: float = math.inf,
    scale: float = 1.0,
) -> Check:
    """Is mean(first) - scale * mean(second) inside (low, high)? Welch's interval decides."""
    (first_name, first_values), (second_name, second_values) = first, second
    interval = difference_interval(first_values, [scale * value for value in second_values])
    shown = ""
    if interval is not None:
        shown = f", difference {unit.value(interval.estimate, True)} {unit.interval(interval, True)}"
    factor = f"{scale:g}x " if scale != 1 else ""
    return decide(
        f"{label} {first_name} {unit.spread(Spread.of(first_values))} vs {second_name} "
        f"{unit.spread(Spread.of(second_values))}{shown} "
        f"(claimed {first_name} - {factor}{second_name} {_claimed(low, high, unit)})",
        interval,
        low,
        high,
    )


def _verdict(claim: str, checks: Sequence[Check]) -> JudgedClaim:
    evidence = "; ".join(map(str, checks))
    return JudgedClaim(claim, rule.verdict(check.judgement for check in checks), evidence)


# ---------------------------------------------------------------- per-seed figures


def _final(model: Model, key: str) -> list[float]:
    return [run.final(key) for run in model.counted]


def _test(model: Model, key: str) -> tuple[str, list[float]]:
    """(name, test figures) of the runs that have them: versions before the test split have none."""
    values = [getattr(run, key) for run in model.counted]
    return model.architecture, [value for value in values if value is not None]


def _jaggedness(model: Model, key: str) -> tuple[str, list[float]]:
    return model.architecture, [run.jaggedness(key) for run in model.counted]


def _seconds(model: Model) -> tuple[str, list[float]]:
    return model.architecture, [run.epoch_seconds for run in model.runs]


def _shortfall_at_climb(run: Run) -> float:
    """How far validation accuracy still is below its best at epoch CLIMB_EPOCHS."""
    validation = run.history["val_accuracy"]
    return max(validation) - validation[min(CLIMB_EPOCHS, len(validation)) - 1]


def _late_change(run: Run) -> float:
    """Mean absolute change of validation accuracy per epoch over the last half of training."""
    validation = run.history["val_accuracy"]
    return mean_step(validation[len(validation) // 2 :])


# ---------------------------------------------------------------- claims

Models = dict[str, Model]


def claim_gap_plateau(models: Models) -> JudgedClaim:
    claim = "Without RNNs (gap), accuracy climbs quickly to ~85% train / ~80% validation and flattens."
    gap = models.get("gap")
    if gap is None:
        return JudgedClaim(claim, Verdict.NOT_MEASURED, "no gap model")
    return _verdict(
        claim,
        [
            level(
                "final train accuracy",
                _final(gap, "accuracy"),
                PERCENT,
                0.85 - NEAR_ACCURACY,
                0.85 + NEAR_ACCURACY,
            ),
            level(
                "final validation accuracy",
                _final(gap, "val_accuracy"),
                PERCENT,
                0.80 - NEAR_ACCURACY,
                0.80 + NEAR_ACCURACY,
            ),
            level(
                f"validation accuracy below its best at epoch {CLIMB_EPOCHS}",
                [_shortfall_at_climb(run) for run in gap.counted],
                PERCENT,
                high=CLIMB_MARGIN,
            ),
            level(
                "validation accuracy change per epoch over the last half",
                [_late_change(run) for run in gap.counted],
                PERCENT,
                high=FLAT_CHANGE,
            ),
        ],
    )


def claim_lstm_overfits(models: Models) -> JudgedClaim:
    claim = (
        "The bidirectional LSTM climbs to ~97% train accuracy while validation accuracy drops "
        "and validation loss rises."
    )
    lstm = models.get("lstm")
    if lstm is None:
        return JudgedClaim(claim, Verdict.NOT_MEASURED, "no lstm model")
    runs = lstm.counted
    return _verdict(
        claim,
        [
            level("final train accuracy", _final(lstm, "accuracy"), PERCENT, low=HIGH_TRAIN_ACCURACY),
            level(
                "final validation accuracy below its best",
                [max(run.history["val_accuracy"]) - run.final("val_accuracy") for run in runs],
                PERCENT,
                low=VALIDATION_DROP,
            ),
            level(
                "final validation loss above its minimum",
                [run.final("val_loss") / min(run.history["val_loss"]) - 1 for run in runs],
                PERCENT,
                low=LOSS_RISE,
            ),
        ],
    )


def claim_stacked_lstm_smoother(models: Models) -> JudgedClaim:
    claim = "The multi-layer LSTM's curves are smoother than the single-layer LSTM's."
    lstm, lstm2 = models.get("lstm"), models.get("lstm2")
    if lstm is None or lstm2 is None:
        return JudgedClaim(claim, Verdict.NOT_MEASURED, "needs lstm and lstm2 models")
    checks = [
        difference(
            f"{key} jaggedness",
            _jaggedness(lstm2, key),
            _jaggedness(lstm, key),
            JAGGEDNESS,
            high=0,
            scale=SMOOTHER_RATIO,
        )
        for key in ("val_accuracy", "val_loss")
    ]
    return _verdict(claim, checks)


def claim_gru_vs_lstm(models: Models) -> JudgedClaim:
    claim = "GRU trains faster than LSTM, with slightly lower accuracy."
    lstm, gru = models.get("lstm"), models.get("gru")
    if lstm is None or gru is None:
        return JudgedClaim(claim, Verdict.NOT_MEASURED, "needs lstm and gru models")
    return _verdict(
        claim,
        [
            difference("epoch time", _seconds(gru), _seconds(lstm), SECONDS, high=0),
            difference(
                "test accuracy",
                _test(lstm, "test_accuracy"),
                _test(gru, "test_accuracy"),
                PERCENT,
                low=0,
                high=SLIGHTLY_LOWER,
            ),
        ],
    )


def claim_flatten_conv_fast(models: Models) -> JudgedClaim:
    claim = "Flatten and Conv1D train much faster than LSTM/GRU."
    recurrent = [models[name] for name in ("lstm", "gru") if name in models]
    fast = [models[name] for name in ("flatten", "conv") if name in models]
    if not recurrent or not fast:
        return JudgedClaim(claim, Verdict.NOT_MEASURED, "needs flatten or conv and lstm or gru models")
    quickest = min(recurrent, key=lambda model: Spread.of(_seconds(model)[1]).mean)
    checks = [
        difference(
            "epoch time", _seconds(model), _seconds(quickest), SECONDS, high=0, scale=MUCH_FASTER_RATIO
        )
        for model in fast
    ]
    return _verdict(claim, checks)


def claim_conv_matches_lstm(models: Models) -> JudgedClaim:
    claim = "The bidirectional LSTM and Conv1D reach similar accuracy and loss, with Conv1D more stable."
    lstm, conv = models.get("lstm"), models.get("conv")
    if lstm is None or conv is None:
        return JudgedClaim(claim, Verdict.NOT_MEASURED, "needs lstm and conv models")
    similar = [
        difference(
            f"test {figure}",
            _test(conv, f"test_{figure}"),
            _test(lstm, f"test_{figure}"),
            unit,
            -margin,
            margin,
        )
        for figure, unit, margin in (("accuracy", PERCENT, SIMILAR_ACCURACY), ("loss", LOSS, SIMILAR_LOSS))
    ]
    steadier = difference(
        "val_accuracy jaggedness",
        _jaggedness(conv, "val_accuracy"),
        _jaggedness(lstm, "val_accuracy"),
        JAGGEDNESS,
        high=0,
    )
    return _verdict(claim, [*similar, steadier])


CLAIMS: tuple[Callable[[Models], JudgedClaim], ...] = (
    claim_gap_plateau,
    claim_lstm_overfits,
    claim_stacked_lstm_smoother,
    claim_gru_vs_lstm,
    claim_flatten_conv_fast,
)
# The course states this one for the sarcasm headlines only.
SARCASM_CLAIMS = (claim_conv_matches_lstm,)


def verdicts(dataset: str, models: Models) -> list[JudgedClaim]:
    claims = CLAIMS + (SARCASM_CLAIMS if dataset == "sarcasm" else ())
    return [claim(models) for claim in claims]
