import math

import pytest

from bench.cpu_budget import CpuBudget


def test_echo_cost_per_call_adds_client_and_server_cpu() -> None:
    # 2000 calls/s with the client at 80% and the server at 100% of one CPU: 0.9 ms of CPU per call
    budget = CpuBudget.from_echo(2000.0, client_cpu_percent=80.0, server_cpu_percent=100.0)
    assert budget.echo_cpu_ms_per_call == pytest.approx(0.9)


def test_ceiling_is_cpus_over_cost_per_call() -> None:
    budget = CpuBudget(cpus=2, echo_calls_per_s=4000.0, echo_cpu_ms_per_call=0.4)
    assert budget.ceiling_calls_per_s(0.0) == pytest.approx(5000.0)
    assert budget.ceiling_calls_per_s(0.1) == pytest.approx(4000.0)
    assert budget.ceiling_share_of_echo(0.1) == pytest.approx(1.0)
    # more compute per text can only lower the ceiling
    ceilings = [budget.ceiling_calls_per_s(ms) for ms in (0.0, 0.05, 0.2, 1.0)]
    assert ceilings == sorted(ceilings, reverse=True)
    assert math.isfinite(budget.ceiling_calls_per_s(10.0))
