"""A benchmark target's outcome as the reports print it: PASS, FAIL or unclear with the figures that
decided."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TargetResult:
    target: str
    passed: bool
    evidence: str
    out_of_reach: bool = False  # above what the machine's CPUs allow (bench/cpu_budget.py)
    unclear: bool = False  # the figures straddle the target: no evidence either way (never a FAIL)

    @property
    def label(self) -> str:
        if self.passed:
            return "PASS"
        if self.unclear:
            return "unclear"
        return "FAIL, out of reach on this machine" if self.out_of_reach else "FAIL"

    def line(self) -> str:
        return f"- **{self.label}** {self.target}: {self.evidence}"
