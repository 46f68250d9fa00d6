"""A benchmark target's outcome as the reports print it: PASS or FAIL with the figures that decided."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TargetResult:
    target: str
    passed: bool
    evidence: str
    out_of_reach: bool = False  # above what the machine's CPUs allow (bench/cpu_budget.py)

    @property
    def label(self) -> str:
        if self.passed:
            return "PASS"
        return "FAIL, out of reach on this machine" if self.out_of_reach else "FAIL"

    def line(self) -> str:
        return f"- **{self.label}** {self.target}: {self.evidence}"
